"""The reader's memory: one prefetch budget for all readers; one download where Range is ignored."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.core import content_cache
from trackerfs.core.content_cache import ContentCache
from trackerfs.core.reader import BLOCK_SIZE, Reader, open_reader
from trackerfs.model import Attachment

MiB = 1 << 20


async def read_through(reader: Reader, item: Attachment, step: int = BLOCK_SIZE) -> bytes:
    """The whole attachment, read from start to end in reads of `step` bytes, as `cat` does."""
    state = reader.open(item)
    out = bytearray()
    for offset in range(0, item.size, step):
        out += await reader.read(state, offset, step)
    return bytes(out)


async def test_two_sequential_readers_share_the_budget_and_fetch_each_block_once() -> None:
    first, second = (random.Random(seed).randbytes(24 * MiB + 5) for seed in (1, 2))
    tracker = MemoryTracker(chunk=256 << 10)
    tracker.add("P-1", ("f1", "one.bin", first), ("f2", "two.bin", second))
    attachments = {a.id: a for a in tracker.issues["P-1"].attachments or ()}
    results: dict[str, bytes] = {}
    budget = 4 * MiB
    async with open_reader(tracker, cache_bytes=8 * MiB, max_window=16 * MiB) as reader:

        async def read(ident: str) -> None:
            state = reader.open(attachments[ident])
            out = bytearray()
            for offset in range(0, attachments[ident].size, BLOCK_SIZE):
                out += await reader.read(state, offset, BLOCK_SIZE)
                await trio.lowlevel.checkpoint()  # the two readers take turns, as two cats would
            results[ident] = bytes(out)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, "f1")
            nursery.start_soon(read, "f2")
        stats = reader.statistics()
    assert results == {"f1": first, "f2": second}
    assert stats.bytes_fetched == len(first) + len(second)  # no block was fetched twice
    # What is on the way at once stays near the budget (plus the blocks reads wait for).
    assert stats.peak_pending_bytes <= budget + 2 * BLOCK_SIZE


async def test_a_read_that_needs_a_block_is_served_when_the_budget_is_spent() -> None:
    data = random.Random(9).randbytes(8 * MiB)
    tracker = MemoryTracker()
    [item] = tracker.add("P-1", ("g", "g.bin", data)).attachments or ()
    tracker.gate = trio.Event()
    async with open_reader(tracker, cache_bytes=2 * MiB, prefetch_bytes=BLOCK_SIZE) as reader:
        state = reader.open(item)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.read, state, 0, BLOCK_SIZE)
            await trio.testing.wait_all_tasks_blocked()
            random_state = reader.open(item)
            offset = 6 * MiB
            tracker.gate.set()
            assert await reader.read(random_state, offset, 10) == data[offset : offset + 10]


# -- a content host that ignores Range ----------------------------------------------------------


def whole_tracker(data: bytes) -> tuple[MemoryTracker, Attachment]:
    tracker = MemoryTracker(chunk=256 << 10)
    tracker.range_support = False
    [item] = tracker.add("P-1", ("w", "whole.bin", data)).attachments or ()
    return tracker, item


async def test_a_read_far_into_a_file_without_range_downloads_it_once(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(20 * MiB + 99)
    tracker, item = whole_tracker(data)
    cache = ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)
    async with open_reader(tracker, content=cache, cache_bytes=4 * MiB) as reader:
        far = 18 * MiB + 5
        assert await reader.read(reader.open(item), far, 4096) == data[far : far + 4096]
        out = await read_through(reader, item)
        assert out == data
    assert tracker.ranges() == [(0, item.size)]  # one download, never a restart from 0
    async with open_reader(tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)) as reader:
        state = reader.open(item)
        assert await reader.read(state, 7 * MiB, MiB) == data[7 * MiB : 8 * MiB]
    assert len(tracker.ranges()) == 1  # after a remount: from disk


async def test_a_read_at_the_start_does_not_wait_for_the_end(tmp_path: Path) -> None:
    data = random.Random(12).randbytes(8 * MiB)
    tracker, item = whole_tracker(data)
    async with open_reader(tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)) as reader:
        tracker.chunk = 64 << 10
        with trio.move_on_after(5) as waited:
            assert await reader.read(reader.open(item), 0, 4096) == data[:4096]
        assert not waited.cancelled_caught
        # The download goes on behind the read: the first block came before the last.
        assert reader.statistics().bytes_fetched < item.size


async def test_without_a_disk_cache_a_sequential_read_still_comes_out_whole() -> None:
    data = random.Random(13).randbytes(6 * MiB + 1)
    tracker, item = whole_tracker(data)
    async with open_reader(tracker, cache_bytes=2 * MiB) as reader:
        out = await read_through(reader, item, 64 << 10)
    assert out == data
    assert all(start == 0 for start, _ in tracker.ranges())


async def test_a_download_cut_short_starts_again_and_never_serves_a_cut_block(tmp_path: Path) -> None:
    data = random.Random(14).randbytes(3 * MiB)
    tracker, item = whole_tracker(data)
    tracker.fail_after, tracker.drops = MiB + 7, 1
    async with open_reader(tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)) as reader:
        out = await read_through(reader, item)
    assert out == data
    assert tracker.ranges() == [(0, item.size), (0, item.size)]


async def test_blocks_a_reader_waited_for_reach_the_disk_even_when_it_is_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write-behind queue of two blocks: the disk is behind almost all the time.
    monkeypatch.setattr(content_cache, "WRITE_BEHIND_BYTES", 2 * BLOCK_SIZE)
    data = random.Random(15).randbytes(12 * MiB + 3)
    tracker, item = whole_tracker(data)
    async with open_reader(tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)) as reader:
        out = await read_through(reader, item)
    assert out == data
    assert tracker.ranges() == [(0, item.size)]
    # Skipping a block here would cost a whole download again after the remount.
    async with open_reader(tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE)) as reader:
        again = await read_through(reader, item, MiB)
    assert again == data
    assert tracker.ranges() == [(0, item.size)]


async def test_a_reader_behind_a_whole_download_is_served_from_memory_not_the_disk(tmp_path: Path) -> None:
    # The download runs ahead of the reader (the first read waits for nothing else);
    # what it put in the block cache is what the reader takes next, without disk reads.
    data = random.Random(16).randbytes(6 * MiB + 5)
    tracker, item = whole_tracker(data)
    async with open_reader(
        tracker, content=ContentCache(tmp_path, 1 << 30, BLOCK_SIZE), cache_bytes=32 * MiB
    ) as reader:
        state = reader.open(item)
        assert await reader.read(state, 0, 4096) == data[:4096]
        with trio.fail_after(5):
            while reader.statistics().bytes_fetched < item.size:
                await trio.sleep(0.01)
        assert await read_through(reader, item) == data
        assert reader.statistics().disk_reads == 0
    assert tracker.ranges() == [(0, item.size)]


async def test_eight_sequential_readers_each_stream_with_a_fair_share_of_the_budget() -> None:
    """No reader is left to fetch read by read while another holds the whole budget."""
    size = 16 * MiB
    files = {f"s{n}": random.Random(n).randbytes(size) for n in range(8)}
    tracker = MemoryTracker(chunk=256 << 10)
    tracker.add("P-1", *((ident, f"{ident}.bin", data) for ident, data in files.items()))
    attachments = {a.id: a for a in tracker.issues["P-1"].attachments or ()}
    results: dict[str, bytes] = {}
    async with open_reader(tracker, cache_bytes=32 * MiB, max_window=64 * MiB) as reader:

        async def read(ident: str) -> None:
            state = reader.open(attachments[ident])
            out = bytearray()
            for offset in range(0, size, 2 * BLOCK_SIZE):
                out += await reader.read(state, offset, 2 * BLOCK_SIZE)
                await trio.lowlevel.checkpoint()
            results[ident] = bytes(out)

        async with trio.open_nursery() as nursery:
            for ident in files:
                nursery.start_soon(read, ident)
        stats = reader.statistics()
    assert results == files
    assert stats.bytes_fetched == 8 * size
    # 16 MiB budget / 8 readers = 2 MiB windows: fetches of about 1 MiB, not of one read each
    assert stats.fetches <= 8 * size // MiB * 2
