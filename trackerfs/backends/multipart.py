"""multipart/form-data bodies streamed from files, built once for every backend.

The body is produced in 1 MiB pieces read from the spool file in a worker thread, with
its length known in advance (no chunked encoding, which some trackers refuse for uploads), and
can be produced again from the start for a retry. A file part of unknown size (a
`GrowingSource`: a file still being written) makes a body of unknown length, sent chunked
by the HTTP client; its pieces follow the writer.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

import trio

from trackerfs.backends.base import GrowingSource

CHUNK = 1 << 20
#: What RFC 5987 lets through unencoded besides letters, digits and `_.-~`.
RFC5987_SAFE = "!#$&+^`|"


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file part: `open()` gives a fresh binary file positioned at 0 holding `size` bytes.

    A size of None is a file still being written: `open` is then a `GrowingSource`.
    """

    name: str
    filename: str
    size: int | None
    open: Callable[[], BinaryIO]
    content_type: str = "application/octet-stream"
    #: send the name percent-encoded, in `filename` and as RFC 5987's `filename*`, for a
    #: tracker that asks for it so (Asana); else as browsers do (UTF-8, quotes escaped)
    percent_encoded: bool = False


@dataclass(frozen=True, slots=True)
class FieldPart:
    """A plain form field (an issue URL, a JSON metadata document, …)."""

    name: str
    value: bytes
    content_type: str | None = None


Part = FilePart | FieldPart


def quote_param(value: str) -> str:
    """A Content-Disposition parameter value as browsers send it (UTF-8, CR/LF/quote escaped)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body with a known length, streamable any number of times."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.boundary = secrets.token_hex(16)
        self._parts = list(parts)
        self._heads = [self._head(part) for part in self._parts]
        self._tail = f"--{self.boundary}--\r\n".encode()

    def _head(self, part: Part) -> bytes:
        disposition = f'form-data; name="{quote_param(part.name)}"'
        content_type = part.content_type
        if isinstance(part, FilePart) and part.percent_encoded:
            encoded = quote(part.filename, safe=RFC5987_SAFE, errors="surrogateescape")
            disposition += f"; filename=\"{encoded}\"; filename*=UTF-8''{encoded}"
        elif isinstance(part, FilePart):
            disposition += f'; filename="{quote_param(part.filename)}"'
        lines = [f"--{self.boundary}", f"Content-Disposition: {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")

    @property
    def headers(self) -> dict[str, str]:
        """Content-Type (with the boundary) and Content-Length, where the length is known."""
        headers = {"Content-Type": f"multipart/form-data; boundary={self.boundary}"}
        length = self.length
        if length is not None:
            headers["Content-Length"] = str(length)
        return headers

    @property
    def length(self) -> int | None:
        """The body's length in bytes; None while a file part is still being written."""
        body = sum(len(head) + 2 for head in self._heads) + len(self._tail)
        for part in self._parts:
            if isinstance(part, FieldPart):
                body += len(part.value)
            elif part.size is None:
                return None
            else:
                body += part.size
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """The body from its first byte."""
        for head, part in zip(self._heads, self._parts, strict=True):
            yield head
            if isinstance(part, FieldPart):
                yield part.value
            else:
                async for chunk in _file_pieces(part):
                    yield chunk
            yield b"\r\n"
        yield self._tail


async def _file_pieces(part: FilePart) -> AsyncIterator[bytes]:
    """The bytes of a file part, in pieces of up to CHUNK (following a growing file)."""
    growing = part.open if isinstance(part.open, GrowingSource) and part.size is None else None
    if part.size is None and growing is None:
        raise TypeError(f"{part.filename}: a part of unknown size needs a GrowingSource")
    # Disk reads run in a worker thread: a slow disk must not stall the daemon.
    source = await trio.to_thread.run_sync(part.open)
    try:
        position = 0
        while True:
            if growing is not None:
                want = await growing.ready(position, CHUNK)
            else:
                assert part.size is not None
                want = min(CHUNK, part.size - position)
            if want <= 0:
                return
            chunk = await trio.to_thread.run_sync(source.read, want)
            if len(chunk) < want:
                raise OSError(f"{part.filename}: the file is shorter than {position + want} bytes")
            position += len(chunk)
            yield chunk
    finally:
        source.close()
