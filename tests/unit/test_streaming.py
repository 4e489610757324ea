"""An upload body that follows its file's writer: it sends only what was written, in
order, ends where the close says, and is given up by anything else."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from trackerfs.backends.multipart import CHUNK, FilePart, MultipartBody
from trackerfs.core.progress import UploadProgress
from trackerfs.core.spool import Manifest, Spool, SpoolFile
from trackerfs.core.streaming import StreamedUpload


def growing(tmp_path: Path) -> tuple[SpoolFile, StreamedUpload]:
    spooled = Spool(tmp_path / "spool").create(Manifest("P", "P-1", "big.bin"))
    return spooled, StreamedUpload(spooled, UploadProgress("P-1", "big.bin", 0))


def append(spooled: SpoolFile, streamed: StreamedUpload, data: bytes) -> None:
    offset = spooled.size()
    spooled.pwrite(data, offset)
    streamed.wrote(offset, len(data))


async def test_the_body_has_no_length_and_follows_the_writer_to_the_close(tmp_path: Path) -> None:
    spooled, streamed = growing(tmp_path)
    body = MultipartBody([FilePart("file", "big.bin", None, streamed)])
    assert body.length is None and "Content-Length" not in body.headers
    first, second = os.urandom(CHUNK + 5), os.urandom(CHUNK // 2)
    received: list[bytes] = []
    finished = trio.Event()

    async def send() -> None:
        async for piece in body.stream():
            received.append(piece)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.sleep(0.05)
        assert received and b"".join(received).endswith(b"\r\n\r\n"), "only the part's head so far"
        head = b"".join(received)
        append(spooled, streamed, first)
        await trio.sleep(0.05)
        assert b"".join(received) == head + first[:CHUNK], "whole pieces only, never past the writer"
        append(spooled, streamed, second)
        await trio.sleep(0.05)
        assert not finished.is_set() and not streamed.sent_all
        streamed.finish(len(first) + len(second))
    body_bytes = b"".join(received)
    assert body_bytes == head + first + second + f"\r\n--{body.boundary}--\r\n".encode()
    assert streamed.sent_all
    assert streamed.progress.sent == len(first) + len(second)


async def test_a_write_before_the_end_gives_the_body_up(tmp_path: Path) -> None:
    spooled, streamed = growing(tmp_path)
    append(spooled, streamed, os.urandom(CHUNK))
    body = MultipartBody([FilePart("file", "big.bin", None, streamed)])
    pieces = body.stream()
    await pieces.__anext__()  # the head
    await pieces.__anext__()  # the first piece
    spooled.pwrite(b"CHANGED", 3)
    streamed.wrote(3, 7)
    assert streamed.given_up is not None and "a write at byte 3" in streamed.given_up
    with pytest.raises(OSError) as raised:
        await pieces.__anext__()
    assert raised.value.errno == errno.ECANCELED
    assert streamed.scope.cancel_called
    await pieces.aclose()


async def test_a_finished_upload_is_not_given_up_by_later_writes(tmp_path: Path) -> None:
    spooled, streamed = growing(tmp_path)
    append(spooled, streamed, b"x" * 10)
    streamed.finish(10)
    streamed.wrote(0, 4)  # a second writer after the close: the next close uploads again
    assert streamed.given_up is None
    assert await streamed.ready(0, CHUNK) == 10
    assert await streamed.ready(10, CHUNK) == 0 and streamed.sent_all


async def test_a_part_of_unknown_size_needs_a_growing_source(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"abc")
    body = MultipartBody([FilePart("file", "data", None, path.open)])
    with pytest.raises(TypeError, match="GrowingSource"):
        async for _ in body.stream():
            pass
