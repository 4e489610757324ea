"""The on-disk content cache: budget, eviction, remounts, crashes mid-fill, checksums."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
from pathlib import Path

import trio

from tests.support.commands import small_disk
from tests.unit.memory_tracker import MemoryTracker
from trackerfs.core.content_cache import ContentCache, Runs, entry_name
from trackerfs.core.reader import BLOCK_SIZE, Reader, open_reader
from trackerfs.model import Attachment

BLOCK = 4096
DATA = random.Random(3).randbytes(10 * BLOCK + 123)


def attachment(ident: str = "a1", data: bytes = DATA, checksum: str = "") -> Attachment:
    return Attachment(ident, f"{ident}.bin", len(data), 0.0, checksum=checksum)


def files(directory: Path, pattern: str) -> list[Path]:
    """The files under `directory` matching `pattern` (glob), sorted."""
    return sorted(Path(name) for name in glob.glob(str(directory / pattern)))


def blocks_of(data: bytes) -> list[bytes]:
    return [data[offset : offset + BLOCK] for offset in range(0, len(data), BLOCK)]


async def fill(cache: ContentCache, item: Attachment, data: bytes = DATA) -> None:
    for index, block in enumerate(blocks_of(data)):
        cache.store(item, index, block)
    await cache.drain()


async def opened(directory: Path, budget: int = 1 << 20) -> ContentCache:
    cache = ContentCache(directory, budget, BLOCK)
    await cache.load()
    return cache


def test_runs_merge_and_count() -> None:
    runs = Runs().with_indices([5, 1, 2, 3, 9, 4])
    assert runs.runs == [[1, 6], [9, 10]]
    assert runs.count() == 6
    assert 5 in runs and 6 not in runs and 0 not in runs


async def test_blocks_come_back_byte_for_byte(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    blocks = await cache.read(item, 0, 11)
    assert blocks is not None and b"".join(blocks) == DATA
    assert await cache.read(item, 3, 5) == blocks_of(DATA)[3:5]
    assert cache.statistics().bytes == len(DATA)


async def test_a_remount_sees_what_an_earlier_mount_stored(tmp_path: Path) -> None:
    first = await opened(tmp_path)
    item = attachment()
    first.store(item, 2, blocks_of(DATA)[2])
    first.store(item, 10, blocks_of(DATA)[10])
    await first.drain()
    second = await opened(tmp_path)
    assert second.has(item, 2) and second.has(item, 10) and not second.has(item, 3)
    assert await second.read(item, 10, 11) == [DATA[10 * BLOCK :]]
    assert await second.read(item, 2, 4) is None  # block 3 was never stored


async def test_only_whole_blocks_are_stored(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    cache.store(item, 0, DATA[: BLOCK - 1])  # a cut block
    cache.store(item, 10, DATA[10 * BLOCK : -1])  # the last block, one byte short
    await cache.drain()
    assert not cache.has(item, 0) and not cache.has(item, 10)


async def test_another_size_for_the_same_id_is_not_served(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    liar = Attachment("a1", "a1.bin", len(DATA) + 1, 0.0)
    assert not cache.has(liar, 0)
    assert await cache.read(liar, 0, 1) is None


async def test_least_recently_used_attachments_go_first(tmp_path: Path) -> None:
    small = DATA[: 4 * BLOCK]
    cache = await opened(tmp_path, budget=10 * BLOCK)
    one, two, three = (attachment(name, small) for name in ("one", "two", "three"))
    await fill(cache, one, small)
    await fill(cache, two, small)
    assert await cache.read(one, 0, 1) is not None  # one is now more recent than two
    await fill(cache, three, small)
    assert cache.has(one, 0) and cache.has(three, 0) and not cache.has(two, 0)
    assert cache.statistics().bytes <= 10 * BLOCK
    assert cache.statistics().evictions == 1
    assert not files(tmp_path, f"*/{entry_name('two')}.*")  # its files are gone too


async def test_a_budget_of_zero_stores_nothing(tmp_path: Path) -> None:
    cache = await opened(tmp_path / "off", budget=0)
    item = attachment()
    await fill(cache, item)
    assert not cache.has(item, 0)
    assert not (tmp_path / "off").exists()


async def test_an_attachment_larger_than_the_budget_is_not_stored(tmp_path: Path) -> None:
    cache = await opened(tmp_path, budget=len(DATA) - 1)
    item = attachment()
    await fill(cache, item)
    assert cache.statistics().entries == 0


async def test_a_deleted_attachment_is_forgotten_with_its_files(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    await cache.discard(item.id)
    assert not cache.has(item, 0)
    assert files(tmp_path, "*/*") == []
    assert not (await opened(tmp_path)).has(item, 0)


async def test_a_checksum_mismatch_drops_the_entry(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    good = attachment("good", checksum="md5:" + hashlib.md5(DATA).hexdigest())
    bad = attachment("bad", checksum="sha256:" + hashlib.sha256(b"other bytes").hexdigest())
    await fill(cache, good)
    await fill(cache, bad)
    assert cache.has(good, 0) and await cache.read(good, 0, 11) is not None
    assert not cache.has(bad, 0)
    assert cache.statistics().dropped == 1
    assert not (await opened(tmp_path)).has(bad, 0)


async def test_a_kill_between_data_and_index_never_serves_unindexed_blocks(tmp_path: Path) -> None:
    """A crash after the data write but before the index: the blocks simply are not there."""
    cache = await opened(tmp_path)
    item = attachment()
    cache.store(item, 0, blocks_of(DATA)[0])
    await cache.drain()
    name = entry_name(item.id)
    data_path = files(tmp_path, f"*/{name}.data")[0]
    with data_path.open("r+b") as data:  # more bytes on disk than the index names …
        data.seek(BLOCK)
        data.write(blocks_of(DATA)[1])
    (data_path.parent / f"{name}.tmp").write_text("{half an ind")  # … and a torn temp index
    again = await opened(tmp_path)
    assert again.has(item, 0) and not again.has(item, 1)
    assert not files(tmp_path, "*/*.tmp")


async def test_an_index_that_claims_more_than_the_data_holds_is_dropped(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    data_path = files(tmp_path, "*/*.data")[0]
    os.truncate(data_path, 5 * BLOCK)  # a power loss that lost the tail of the data
    again = await opened(tmp_path)
    assert await again.read(item, 0, 11) is None
    assert not again.has(item, 0)
    assert files(tmp_path, "*/*") == []


async def test_an_unreadable_index_is_dropped_with_its_data(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    index = files(tmp_path, "*/*.json")[0]
    index.write_text(json.dumps({"id": "a1", "size": len(DATA), "blocks": [[3, 1]]}))
    again = await opened(tmp_path)
    assert not again.has(item, 0)
    assert files(tmp_path, "*/*") == []


async def test_a_full_cache_disk_costs_cached_bytes_not_reads(tmp_path: Path) -> None:
    cache = await opened(tmp_path)
    item = attachment()
    await fill(cache, item)
    broken = attachment("broken")
    shard = tmp_path / entry_name("broken")[:2]
    shard.mkdir(exist_ok=True)
    shard.chmod(0o500)  # the directory refuses new files, as a full disk would
    try:
        if os.access(shard, os.W_OK):  # root ignores modes: fill the slot with a directory
            shard.chmod(0o700)
            (shard / f"{entry_name('broken')}.data").mkdir()
        cache.store(broken, 0, blocks_of(DATA)[0])
        await cache.drain()
    finally:
        shard.chmod(0o700)
    assert not cache.has(broken, 0)
    assert cache.statistics().entries <= 1


async def test_a_full_disk_gives_its_room_back_to_the_next_attachment(tmp_path: Path) -> None:
    # One batch: an attachment bigger than the disk, then a small one that fits once the
    # big one's partial file is gone.
    big_data = random.Random(5).randbytes(96 * BLOCK)
    with small_disk(tmp_path / "disk", "256k") as disk:
        cache = await opened(disk / "cache", budget=16 << 20)
        big, small = attachment("big", big_data), attachment("small")
        for index, block in enumerate(blocks_of(big_data)):
            cache.store(big, index, block)
        for index, block in enumerate(blocks_of(DATA)):
            cache.store(small, index, block)
        await cache.drain()
        assert not cache.has(big, 0)
        blocks = await cache.read(small, 0, 11)
        assert blocks is not None and b"".join(blocks) == DATA
        assert cache.budget < 16 << 20  # shrunk to what the disk holds
        assert files(disk / "cache", f"*/{entry_name('big')}.*") == []


# -- through the reader ---------------------------------------------------------------------


async def read_all(reader: Reader, item: Attachment) -> bytes:
    state = reader.open(item)
    out = bytearray()
    for offset in range(0, item.size, 64 << 10):
        out += await reader.read(state, offset, 64 << 10)
    return bytes(out)


async def test_a_reread_after_a_remount_fetches_nothing(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(3 * (1 << 20) + 77)
    tracker = MemoryTracker()
    [item] = tracker.add("P-1", ("c1", "c.bin", data)).attachments or ()
    async with open_reader(tracker, content=ContentCache(tmp_path, 64 << 20, BLOCK_SIZE)) as reader:
        assert await read_all(reader, item) == data
    fetched = len(tracker.ranges())
    assert fetched >= 1
    async with open_reader(tracker, content=ContentCache(tmp_path, 64 << 20, BLOCK_SIZE)) as reader:
        assert await read_all(reader, item) == data
        assert reader.statistics().disk_reads >= 1
    assert len(tracker.ranges()) == fetched


async def test_blocks_missing_from_disk_are_fetched_between_cached_ones(tmp_path: Path) -> None:
    data = random.Random(6).randbytes(2 * (1 << 20))
    tracker = MemoryTracker()
    [item] = tracker.add("P-1", ("c2", "c.bin", data)).attachments or ()
    async with open_reader(tracker, content=ContentCache(tmp_path, 64 << 20, BLOCK_SIZE)) as reader:
        state = reader.open(item)
        for block in (1, 4, 5):  # random reads, too large for a small piece: these blocks are kept
            offset = block * BLOCK_SIZE + 10
            assert await reader.read(state, offset, 40_000) == data[offset : offset + 40_000]
    tracker.calls.clear()
    async with open_reader(tracker, content=ContentCache(tmp_path, 64 << 20, BLOCK_SIZE)) as reader:
        assert await read_all(reader, item) == data
    fetched = {start // BLOCK_SIZE for start, _ in tracker.ranges()}
    assert not fetched & {1, 4, 5}
    assert 0 in fetched


async def test_a_block_still_queued_is_read_from_the_queue_not_from_a_hole(tmp_path: Path) -> None:
    """Block 5 is on disk, 2 to 4 wait in the queue: the data file has a hole where they go."""
    cache = await opened(tmp_path)
    item = attachment()
    blocks = blocks_of(DATA)
    cache.store(item, 5, blocks[5])
    await cache.drain()
    for index in (2, 3, 4):
        cache.store(item, index, blocks[index])
    assert await cache.read(item, 2, 6) == blocks[2:6]
    await cache.drain()
    assert await cache.read(item, 2, 6) == blocks[2:6]


async def test_written_blocks_are_served_at_once_and_indexed_only_once_synced(tmp_path: Path) -> None:
    """Until its data is fsynced no index names a block: a kill before that loses it, never
    serves a wrong byte; the writer makes it durable once idle, without an unmount."""
    cache = await opened(tmp_path)
    item = attachment()
    first = attachment("a2")
    await fill(cache, first)  # drained: durable
    blocks = blocks_of(DATA)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.serve)
            for index in (0, 1, 2):
                cache.store(item, index, blocks[index])
            while cache.statistics().written_bytes < 3 * BLOCK + len(DATA):
                await trio.sleep(0.01)
            assert await cache.read(item, 0, 3) == blocks[:3]  # from the data file
            killed = await opened(tmp_path)  # what a mount after a kill -9 would find
            assert not any(killed.has(item, index) for index in range(3))
            assert all(killed.has(first, index) for index in range(len(blocks)))
            while not files(tmp_path, f"*/{entry_name(item.id)}.json"):
                await trio.sleep(0.05)  # SYNC_DELAY after the last write
            nursery.cancel_scope.cancel()
    synced = await opened(tmp_path)
    assert await synced.read(item, 0, 3) == blocks[:3]
    assert not synced.has(item, 3)
