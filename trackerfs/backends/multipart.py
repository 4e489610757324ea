"""multipart/form-data bodies streamed from files, built once for every backend.

The body is produced in 1 MiB pieces read from the spool file in a worker thread, with
its length known in advance (no chunked encoding, which some trackers refuse for uploads), and
can be produced again from the start for a retry.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

import trio

CHUNK = 1 << 20
#: What RFC 5987 lets through unencoded besides letters, digits and `_.-~`.
RFC5987_SAFE = "!#$&+^`|"


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file part: `open()` gives a fresh binary file positioned at 0 holding `size` bytes."""

    name: str
    filename: str
    size: int
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
        """Content-Type (with the boundary) and Content-Length."""
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(len(self)),
        }

    def __len__(self) -> int:
        body = sum(len(head) + 2 for head in self._heads) + len(self._tail)
        for part in self._parts:
            body += part.size if isinstance(part, FilePart) else len(part.value)
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """The body from its first byte."""
        for head, part in zip(self._heads, self._parts, strict=True):
            yield head
            if isinstance(part, FieldPart):
                yield part.value
            else:
                # Disk reads run in a worker thread: a slow disk must not stall the daemon.
                source = await trio.to_thread.run_sync(part.open)
                try:
                    left = part.size
                    while left > 0:
                        chunk = await trio.to_thread.run_sync(source.read, min(CHUNK, left))
                        if not chunk:
                            raise OSError(f"{part.filename}: the file is shorter than {part.size} bytes")
                        left -= len(chunk)
                        yield chunk
                finally:
                    source.close()
            yield b"\r\n"
        yield self._tail
