"""Byte content responses: single-range parsing and streaming a blob file from disk.

Files are streamed in chunks (they may be gigabytes); nothing is read whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CHUNK_SIZE = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

ErrorFactory = Callable[[int, str], Response]


class MalformedRangeError(ValueError):
    """The Range header does not parse (answered with 400)."""


class UnsatisfiableRangeError(ValueError):
    """The Range lies outside the content (answered with 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``start``..``end`` of a body of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 206 answer."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """Parse one ``bytes=`` range; ``None`` means "send the whole body".

    Several ranges are answered with the whole body, which RFC 9110 allows a server to do.
    """
    value = header.strip()
    if "," in value and value.startswith("bytes="):
        return None
    match = _RANGE.fullmatch(value)
    if match is None or match.group(1) == match.group(2) == "":
        raise MalformedRangeError(header)
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise UnsatisfiableRangeError(header)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        raise MalformedRangeError(header)
    if start >= size:
        raise UnsatisfiableRangeError(header)
    return ByteRange(start, min(end, size - 1), size)


class FileSliceResponse(Response):
    """Streams ``length`` bytes of a file from ``offset``; HEAD gets the headers only."""

    def __init__(
        self,
        path: Path,
        *,
        offset: int,
        length: int,
        status_code: int,
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        super().__init__(status_code=status_code, media_type=media_type, headers=headers)
        self.path = path
        self.offset = offset
        self.length = length
        self.headers["content-length"] = str(length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then the slice in chunks."""
        try:
            handle = await trio.open_file(self.path, "rb")
        except FileNotFoundError:
            # Deleted between lookup and send; the attachment is gone.
            await Response(status_code=404)(scope, receive, send)
            return
        async with handle:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if scope.get("method") == "HEAD" or self.length == 0:
                await send({"type": "http.response.body", "body": b""})
                return
            await handle.seek(self.offset)
            remaining = self.length
            while remaining > 0:
                chunk = await handle.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})


def blob_response(
    request: Request,
    path: Path,
    *,
    size: int,
    media_type: str,
    range_support: bool,
    error: ErrorFactory,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """The answer to a content request: 200 whole, 206 one range, 416 or 400.

    With ``range_support`` off the Range header is ignored (200, whole body), like a
    server that does not implement ranges.
    """
    headers = dict(extra_headers or {})
    if range_support:
        headers["accept-ranges"] = "bytes"
    header = request.headers.get("range")
    byte_range: ByteRange | None = None
    if range_support and header is not None:
        try:
            byte_range = parse_range(header, size)
        except MalformedRangeError:
            return error(400, f"Invalid Range header: {header}")
        except UnsatisfiableRangeError:
            response = error(416, f"Requested range not satisfiable: {header}")
            response.headers["content-range"] = f"bytes */{size}"
            response.headers["accept-ranges"] = "bytes"
            return response
    if byte_range is None:
        return FileSliceResponse(
            path, offset=0, length=size, status_code=200, media_type=media_type, headers=headers
        )
    headers["content-range"] = byte_range.content_range()
    return FileSliceResponse(
        path,
        offset=byte_range.start,
        length=byte_range.length,
        status_code=206,
        media_type=media_type,
        headers=headers,
    )
