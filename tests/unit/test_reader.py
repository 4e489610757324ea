"""Range arithmetic and readahead policy of the reader, against an in-memory tracker."""

from __future__ import annotations

import random

import pytest
import trio

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.core.reader import BLOCK_SIZE, SMALL_BLOCK, open_reader
from trackerfs.errors import BadResponseError, TemporaryError

MiB = 1 << 20
DATA = random.Random(7).randbytes(40 * MiB + 12345)


@pytest.fixture
def tracker() -> MemoryTracker:
    memory = MemoryTracker()
    memory.add("P-1", ("a1", "big.bin", DATA), ("a2", "small.txt", b"hello"))
    return memory


def attachment(tracker: MemoryTracker, ident: str = "a1"):
    return next(a for a in tracker.issues["P-1"].attachments or () if a.id == ident)


async def test_a_small_random_read_fetches_only_the_small_piece_it_needs(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        state = reader.open(attachment(tracker))
        offset = 5 * MiB + 100
        assert await reader.read(state, offset, 4096) == DATA[offset : offset + 4096]
        assert (
            await reader.read(reader.open(attachment(tracker)), offset + 2000, 4096)
            == DATA[offset + 2000 : offset + 6096]
        )
    piece = offset // SMALL_BLOCK * SMALL_BLOCK
    assert tracker.ranges() == [(piece, piece + SMALL_BLOCK)], "the second read was served by the piece"


async def test_a_small_read_across_two_pieces_fetches_both_in_one_range(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        offset = 7 * SMALL_BLOCK - 100
        assert (
            await reader.read(reader.open(attachment(tracker)), offset + MiB, 4096)
            == DATA[offset + MiB : offset + MiB + 4096]
        )
    start = MiB + 6 * SMALL_BLOCK
    assert tracker.ranges() == [(start, start + 2 * SMALL_BLOCK)]


async def test_a_larger_random_read_fetches_its_aligned_block(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        state = reader.open(attachment(tracker))
        offset = 5 * MiB + 100
        assert await reader.read(state, offset, 64 << 10) == DATA[offset : offset + (64 << 10)]
    block = offset // BLOCK_SIZE
    assert tracker.ranges() == [(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)]


async def test_a_small_read_inside_a_cached_block_fetches_nothing(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        await reader.read(reader.open(attachment(tracker)), 3 * BLOCK_SIZE, 64 << 10)
        calls = len(tracker.ranges())
        offset = 3 * BLOCK_SIZE + 70_000
        got = await reader.read(reader.open(attachment(tracker)), offset, 4096)
    assert got == DATA[offset : offset + 4096]
    assert len(tracker.ranges()) == calls


async def test_read_across_blocks_and_at_the_end(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        state = reader.open(attachment(tracker))
        start = 3 * BLOCK_SIZE - 10
        assert await reader.read(state, start, 300_000) == DATA[start : start + 300_000]
        tail = len(DATA) - 50
        assert await reader.read(reader.open(attachment(tracker)), tail, 4096) == DATA[tail:]
        assert await reader.read(state, len(DATA) + 10, 4096) == b""


async def test_sequential_reader_gets_a_growing_window(tracker: MemoryTracker) -> None:
    async with open_reader(tracker, max_window=8 * MiB) as reader:
        state = reader.open(attachment(tracker))
        out = bytearray()
        for offset in range(0, len(DATA), BLOCK_SIZE):
            out += await reader.read(state, offset, BLOCK_SIZE)
    assert bytes(out) == DATA
    sizes = [stop - start for start, stop in tracker.ranges()]
    assert sizes[0] <= 2 * MiB
    assert max(sizes) == 8 * MiB
    # window-sized requests, not one per read
    assert len(sizes) < len(DATA) // MiB
    assert sum(sizes) == len(DATA)


async def test_aligned_block_read_returns_the_cached_block(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        state = reader.open(attachment(tracker))
        first = await reader.read(state, 0, BLOCK_SIZE)
        again = await reader.read(reader.open(attachment(tracker)), 0, BLOCK_SIZE)
    assert first is again


async def test_concurrent_readers_share_one_fetch(tracker: MemoryTracker) -> None:
    tracker.gate = trio.Event()
    results: list[bytes] = []
    async with open_reader(tracker) as reader:

        async def read_one() -> None:
            results.append(await reader.read(reader.open(attachment(tracker)), 7 * MiB, 1000))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(read_one)
            await trio.testing.wait_all_tasks_blocked()
            tracker.gate.set()
    assert results == [DATA[7 * MiB : 7 * MiB + 1000]] * 5
    assert len(tracker.ranges()) == 1


async def test_dropped_connection_resumes_at_the_missing_block(tracker: MemoryTracker) -> None:
    tracker.fail_after, tracker.drops = 2 * BLOCK_SIZE + 5, 1
    start = 10 * BLOCK_SIZE
    async with open_reader(tracker) as reader:
        state = reader.open(attachment(tracker))
        assert await reader.read(state, start, 4 * BLOCK_SIZE) == DATA[start : start + 4 * BLOCK_SIZE]
    assert tracker.ranges() == [(start, start + 4 * BLOCK_SIZE), (12 * BLOCK_SIZE, 14 * BLOCK_SIZE)]


async def test_a_failed_fetch_reaches_the_reader_and_is_not_cached(tracker: MemoryTracker) -> None:
    async with open_reader(tracker) as reader:
        tracker.fail_after, tracker.drops = 0, 3
        with pytest.raises(TemporaryError):
            await reader.read(reader.open(attachment(tracker)), 9 * MiB, 10)
        assert tracker.drops == 0
        assert (
            await reader.read(reader.open(attachment(tracker)), 9 * MiB, 10) == DATA[9 * MiB : 9 * MiB + 10]
        )


async def test_block_cache_stays_within_its_budget(tracker: MemoryTracker) -> None:
    async with open_reader(tracker, cache_bytes=2 * MiB, max_window=MiB) as reader:
        state = reader.open(attachment(tracker))
        for offset in range(0, 10 * MiB, BLOCK_SIZE):
            await reader.read(state, offset, BLOCK_SIZE)
        assert reader.statistics().cache.bytes <= 2 * MiB


async def test_a_short_answer_is_an_error_and_never_cached(tracker: MemoryTracker) -> None:
    tracker.short_by = 1000  # one answer ends 1000 bytes early, as a cut response would
    offset = 3 * BLOCK_SIZE + 10
    async with open_reader(tracker) as reader:
        with pytest.raises(BadResponseError):
            await reader.read(reader.open(attachment(tracker)), offset, 100)
        assert await reader.read(reader.open(attachment(tracker)), offset, 100) == DATA[offset : offset + 100]


async def test_chunks_that_are_whole_blocks_become_the_blocks_uncopied() -> None:
    """A transport that hands over block-sized pieces (as the threaded one does) costs no join."""
    memory = MemoryTracker(chunk=BLOCK_SIZE)
    memory.add("P-1", ("a1", "big.bin", DATA))
    handed: list[bytes] = []
    chunks = memory._chunks

    async def recording(data: bytes):  # type: ignore[no-untyped-def]
        async for piece in chunks(data):
            handed.append(piece)
            yield piece

    memory._chunks = recording  # type: ignore[method-assign]
    async with open_reader(memory) as reader:
        state = reader.open(attachment(memory))
        blocks = [await reader.read(state, index * BLOCK_SIZE, BLOCK_SIZE) for index in range(4)]
    assert b"".join(blocks) == DATA[: 4 * BLOCK_SIZE]
    assert all(any(block is piece for piece in handed) for block in blocks)
