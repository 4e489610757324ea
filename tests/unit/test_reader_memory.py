"""The reader's memory: one prefetch budget for all readers, so none evicts another's blocks."""

from __future__ import annotations

import random

import trio

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.core.reader import BLOCK_SIZE, open_reader

MiB = 1 << 20


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
