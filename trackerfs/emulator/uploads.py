"""Streaming multipart/form-data reception into files (vendor-neutral).

Parts are written to disk as they arrive, with their size, sha256 and md5, so a 1 GiB upload
never sits in memory. Dialects decide which part names they accept.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from trackerfs.emulator.responses import discard_body
from trackerfs.emulator.store import Attachment, Store, User

_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
# HTML5 form encoding (browsers, httpx, urllib3) percent-escapes only these in filename="…"
_HTML5_ESCAPES = {"%22": '"', "%0A": "\n", "%0D": "\r", "%0a": "\n", "%0d": "\r"}


class UploadError(ValueError):
    """The body is not valid multipart/form-data."""


class PartTooLargeError(ValueError):
    """A file part is larger than the limit (the rest of the body was read and dropped)."""


@dataclass(slots=True)
class ReceivedPart:
    """One part of a multipart body; file parts are in ``path``, fields in ``value``."""

    name: str
    filename: str | None
    content_type: str | None
    path: Path | None
    size: int = 0
    sha256: str = ""
    md5: str = ""
    value: bytearray = field(default_factory=bytearray)
    #: the part's own headers, lower-cased names (a dialect may read more of them)
    headers: dict[str, str] = field(default_factory=dict)


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_content_disposition(value: str) -> dict[str, str]:
    """Parameters of a Content-Disposition header; ``filename*`` (RFC 5987) wins over ``filename``."""
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for raw_key, raw in _PARAM.findall(";" + value.partition(";")[2]):
        key = raw_key.lower()
        text = raw.strip()
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        if key.endswith("*"):
            charset, _, rest = text.partition("'")
            _, _, encoded = rest.partition("'")
            extended[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
        else:
            for escaped, unescaped in _HTML5_ESCAPES.items():
                text = text.replace(escaped, unescaped)
            plain.setdefault(key, text)
    return plain | extended


class _PartWriter:
    """python-multipart callbacks that route part data to files or memory."""

    def __init__(self, spool_dir: Path, limit: int) -> None:
        self.spool_dir = spool_dir
        self.limit = limit
        self.parts: list[ReceivedPart] = []
        self.too_large = False
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = _decode_header(self._value)
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        params = parse_content_disposition(self._headers.get("content-disposition", ""))
        filename = params.get("filename")
        path = None
        if filename is not None:
            path = self.spool_dir / uuid.uuid4().hex
            self._file = path.open("wb")
            self._hash = hashlib.sha256()
            self._md5 = hashlib.md5(usedforsecurity=False)
        self.parts.append(
            ReceivedPart(
                name=params.get("name", ""),
                filename=filename,
                content_type=self._headers.get("content-type"),
                path=path,
                headers=self._headers,
            )
        )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        chunk = data[start:end]
        part.size += len(chunk)
        if self._file is None:
            part.value += chunk
            return
        if part.size > self.limit:
            self.too_large = True
        if self.too_large:
            return
        # Synchronous writes: they land in the page cache and keep the parser simple.
        self._file.write(chunk)
        self._hash.update(chunk)
        self._md5.update(chunk)

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.parts[-1].sha256 = self._hash.hexdigest()
            self.parts[-1].md5 = self._md5.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def discard_parts(parts: list[ReceivedPart]) -> None:
    """Delete the spool files of parts that will not be kept."""
    for part in parts:
        if part.path is not None:
            part.path.unlink(missing_ok=True)


async def receive_multipart(request: Request, spool_dir: Path, limit: int) -> list[ReceivedPart]:
    """Read a multipart/form-data body, file parts streamed into ``spool_dir``.

    Raises UploadError for a body that is not multipart and PartTooLargeError when a file
    part exceeds ``limit`` bytes; either way no spool file is left behind.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        await discard_body(request)
        raise UploadError("the request is not multipart/form-data")
    writer = _PartWriter(spool_dir, limit)
    callbacks = {
        name: getattr(writer, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except Exception as error:
        writer.close()
        discard_parts(writer.parts)
        await discard_body(request)
        raise UploadError(f"malformed multipart body: {error}") from error
    writer.close()
    if writer.too_large:
        discard_parts(writer.parts)
        raise PartTooLargeError(limit)
    return writer.parts


def keep_part(
    store: Store, issue_id: str, filename: str, part: ReceivedPart, *, author: User, mime_type: str | None
) -> Attachment:
    """Move a received file part into the store's blobs and record it as an attachment."""
    assert part.path is not None, "only file parts are kept"
    blob_name, blob_path = store.new_blob_path()
    part.path.replace(blob_path)
    return store.register_blob(
        issue_id,
        filename,
        blob_name,
        size=part.size,
        sha256=part.sha256,
        md5=part.md5,
        author=author,
        mime_type=mime_type,
    )
