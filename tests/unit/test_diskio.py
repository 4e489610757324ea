"""Direct writes and reads of the content cache's data files: the bytes, the fallbacks."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from tests.support.commands import small_disk
from trackerfs.core.diskio import ALIGN, BUFFER_BYTES, O_DIRECT, DiskWriter

BLOCK = 128 << 10


def supports_direct_io(directory: Path) -> bool:
    """Whether the filesystem of `directory` opens files with O_DIRECT."""
    probe = directory / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_WRONLY | O_DIRECT))
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        return False
    finally:
        probe.unlink()
    return True


def written(path: Path, runs: list[tuple[int, list[bytes]]], writer: DiskWriter) -> bytes:
    """Write the runs (offset, blocks) to a fresh file at `path`; what it then holds."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset, blocks in runs:
            writer.write(fd, str(path), offset, blocks)
    finally:
        os.close(fd)
    return path.read_bytes()


def test_direct_io_is_there_to_be_used_here(tmp_path: Path) -> None:
    """Linux has O_DIRECT and the suite's disk takes it: the tests below write directly."""
    assert O_DIRECT != 0
    assert supports_direct_io(tmp_path), f"{tmp_path} refuses O_DIRECT: run the suite on a disk"


def test_aligned_runs_with_a_short_last_block_land_byte_for_byte(tmp_path: Path) -> None:
    """More than one buffer's worth of blocks, the last one cut short as an attachment's is."""
    data = random.Random(1).randbytes(BUFFER_BYTES + 5 * BLOCK + 1234)
    blocks = [data[at : at + BLOCK] for at in range(0, len(data), BLOCK)]
    writer = DiskWriter()
    assert written(tmp_path / "f", [(0, blocks)], writer) == data
    assert writer.direct  # nothing made it give up


def test_runs_written_out_of_order_leave_holes_only_where_nothing_was_written(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(8 * BLOCK)
    blocks = [data[at : at + BLOCK] for at in range(0, len(data), BLOCK)]
    writer = DiskWriter()
    got = written(tmp_path / "f", [(6 * BLOCK, blocks[6:]), (0, blocks[:2])], writer)
    assert got[: 2 * BLOCK] == data[: 2 * BLOCK]
    assert got[2 * BLOCK : 6 * BLOCK] == bytes(4 * BLOCK)
    assert got[6 * BLOCK :] == data[6 * BLOCK :]


def test_unaligned_offsets_and_small_runs_go_through_the_page_cache(tmp_path: Path) -> None:
    """A run that starts mid-page, or is shorter than a page, cannot be written directly."""
    data = random.Random(3).randbytes(3 * ALIGN)
    writer = DiskWriter()
    got = written(tmp_path / "f", [(100, [data[100 : 2 * ALIGN + 7]]), (0, [data[:100]])], writer)
    assert got == data[: 2 * ALIGN + 7]
    assert writer.direct  # not a refusal: it goes on writing directly where it can


def test_a_writer_without_direct_io_writes_the_same_bytes(tmp_path: Path) -> None:
    data = random.Random(4).randbytes(3 * BLOCK + 99)
    blocks = [data[at : at + BLOCK] for at in range(0, len(data), BLOCK)]
    assert written(tmp_path / "f", [(0, blocks)], DiskWriter(direct=False)) == data


@pytest.mark.parametrize("size", [0, 1, ALIGN, BUFFER_BYTES, BUFFER_BYTES + 3 * ALIGN + 5])
def test_digests_match_hashlib_whatever_the_size(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    writer = DiskWriter()
    for algorithm in ("md5", "sha256"):
        assert writer.digest(str(path), algorithm) == hashlib.new(algorithm, data).hexdigest()
    assert DiskWriter(direct=False).digest(str(path), "sha1") == hashlib.sha1(data).hexdigest()


def test_a_full_disk_is_enospc_never_a_silent_hole(tmp_path: Path) -> None:
    """The disk takes part of a run: the writer says ENOSPC, whichever way it wrote."""
    data = random.Random(5).randbytes(2 << 20)
    blocks = [data[at : at + BLOCK] for at in range(0, len(data), BLOCK)]
    with small_disk(tmp_path / "disk", "1m") as disk:
        for writer in (DiskWriter(), DiskWriter(direct=False)):
            with pytest.raises(OSError) as raised:
                written(disk / "f", [(0, blocks)], writer)
            assert raised.value.errno == errno.ENOSPC
            (disk / "f").unlink()
