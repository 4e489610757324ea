"""Attachment bytes on local disk, kept across remounts within a byte budget.

Attachments are immutable (an id always names the same bytes), so what was fetched once
never needs fetching again. The cache keeps, per profile, one sparse data file per
attachment and a small index of which blocks of it are present:

    DIR/ab/abcdef….data    the bytes, at their own offsets (holes where nothing is cached)
    DIR/ab/abcdef….json    {"id", "size", "checksum", "blocks": [[lo, hi], …]}

The file names are a hash of the attachment id (ids come from servers: untrusted text).

- **Write behind.** The reader hands over every block it fetched; a worker thread writes
  them in batches of `WRITE_BATCH` bytes (one hand-over per block cost a cold read more
  than the writing), around the page cache where the filesystem allows (`diskio`: a
  page-cache copy of every block cost more CPU than the read that fetched it). When the
  disk falls behind, blocks are skipped rather than queued without bound, so a cold read
  is never slowed to the disk's pace.
- **Crash-safe.** Blocks are written to the data file soon and served from it; the
  index on disk follows later: once the writer has been idle for
  `SYNC_DELAY` seconds, at most `SYNC_MAX_AGE` seconds after a block was written, and at
  unmount, the data file is fsynced and then the index replaced atomically (temp,
  fsync, rename). The index never names a block whose bytes are not on disk, so a kill
  -9 or a power loss mid-fill leaves blocks missing, never wrong. A data file shorter
  than its index claims is dropped when read. Syncing late keeps a cold read at the
  page cache's pace instead of the disk's.
- **Verified.** An entry whose recorded size differs from the attachment's is dropped.
  Once every block of an attachment with a vendor checksum is present, the file is
  hashed; a mismatch drops the entry, so the next read fetches again.
- **Bounded.** The budget counts cached bytes; the least recently used attachments are
  evicted whole. A budget of 0 turns the cache off.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from trackerfs.core.diskio import DiskWriter
from trackerfs.model import Attachment

log = logging.getLogger(__name__)

#: Bytes of fetched blocks that may wait for the disk; beyond it, blocks are not cached.
WRITE_BEHIND_BYTES = 64 << 20
#: Buffers per pwritev call, well inside every system's IOV_MAX (1024 on Linux).
MAX_IOVEC = 512
#: Bytes of queued blocks that make a batch for the writer thread …
WRITE_BATCH = 8 << 20
#: … or seconds after which a smaller batch is written all the same.
BATCH_DELAY = 0.05
#: Seconds the writer waits, idle, before it makes what it wrote durable (fsync, index).
SYNC_DELAY = 2.0
#: Seconds a written block may wait for its index while writes never pause.
SYNC_MAX_AGE = 30.0
#: How often (seconds) a cache hit refreshes an entry's last use on disk.
TOUCH_INTERVAL = 60.0
#: Checksum algorithms the cache can verify, as `ALGORITHM:HEX` in `Attachment.checksum`.
ALGORITHMS = frozenset({"md5", "sha1", "sha256"})


def entry_name(attachment_id: str) -> str:
    """A file name for an attachment id, safe whatever the id holds."""
    return hashlib.sha256(attachment_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(slots=True)
class Runs:
    """A set of block indices held as sorted, disjoint [lo, hi) runs."""

    runs: list[list[int]] = field(default_factory=list)

    def __contains__(self, index: int) -> bool:
        return any(lo <= index < hi for lo, hi in self.runs)

    def with_indices(self, indices: Iterable[int]) -> Runs:
        """A new set with `indices` added."""
        return Runs(_coalesce([*self.runs, *([index, index + 1] for index in indices)]))

    def count(self) -> int:
        """How many indices the set holds."""
        return sum(hi - lo for lo, hi in self.runs)


def _coalesce(runs: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(runs):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


@dataclass(slots=True)
class Entry:
    """What the cache holds of one attachment."""

    ident: str
    size: int
    checksum: str
    blocks: Runs
    last_used: float
    verified: bool = False
    #: when a hit last refreshed the index's time on disk
    touched: float = 0.0


@dataclass(slots=True)
class ContentCacheStatistics:
    """Counters of the on-disk cache since the mount."""

    hits: int = 0
    misses: int = 0
    written_bytes: int = 0
    skipped_bytes: int = 0
    evictions: int = 0
    dropped: int = 0
    entries: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _Write:
    """One attachment's share of a write-behind batch, prepared on the trio thread."""

    entry: Entry
    blocks: list[tuple[int, bytes]]
    after: Runs
    verify: bool
    #: no index names this attachment yet: whatever its data file holds is stale
    fresh: bool
    error: str | None = None
    #: the disk (or the quota) was full
    full: bool = False
    mismatch: bool = False


class ContentCache:
    """Blocks of attachments on disk, by attachment id; see the module docstring.

    Bookkeeping (which blocks are where, the budget, eviction) happens on the trio
    thread; worker threads only read, write, hash and remove files.
    """

    def __init__(self, directory: Path, budget: int, block_size: int) -> None:
        self.directory = directory
        self.budget = budget
        self.block_size = block_size
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._queue: list[tuple[Attachment, int, bytes]] = []
        #: the blocks of `_queue` and of the batch being written, readable meanwhile
        self._queued: dict[tuple[str, int], bytes] = {}
        self._queued_bytes = 0
        self._room = trio.Event()
        self._room.set()
        self._wakeup = trio.Event()
        #: when the first block of `_queue` was queued (trio clock)
        self._queued_since = 0.0
        self._writing = trio.Lock()
        #: entries with blocks written but not yet named by their index on disk
        self._unsynced: dict[str, Entry] = {}
        #: when the oldest of those blocks was written (trio clock)
        self._unsynced_since: float | None = None
        #: ids discarded while a batch that holds them was being written
        self._discarded: set[str] = set()
        self._stats = ContentCacheStatistics()
        #: writes and hashes data files, around the page cache where it can
        self._disk = DiskWriter()

    @property
    def enabled(self) -> bool:
        """Whether the cache stores anything at all (a budget above 0)."""
        return self.budget > 0

    # -- start and stop ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read the indexes left by earlier mounts (in a worker thread)."""
        if not self.enabled:
            return
        try:
            entries = await trio.to_thread.run_sync(self._scan)
        except OSError as exc:
            # Reads work without it: a cache folder that cannot be used costs speed only.
            log.warning("content cache %s cannot be used (%s); reads go to the tracker", self.directory, exc)
            self.budget = 0
            return
        for entry in sorted(entries, key=lambda item: item.last_used):
            self._entries[entry.ident] = entry
            self._bytes += self._entry_bytes(entry)
        log.debug("content cache %s: %d attachments, %d bytes", self.directory, len(entries), self._bytes)
        await self._evict(self._bytes - self.budget)

    def _scan(self) -> list[Entry]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = []
        for path in self.directory.glob("*/*.json"):
            try:
                entry = _read_index(path)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("dropping an unreadable content cache index %s: %s", path.name, exc)
                _remove(path, path.with_suffix(".data"))
                continue
            if path.stem != entry_name(entry.ident):
                _remove(path, path.with_suffix(".data"))
                continue
            found.append(entry)
        for stray in self.directory.glob("*/*.tmp"):
            stray.unlink(missing_ok=True)
        return found

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued blocks until cancelled (run in the mount's nursery); sync them later.

        Blocks are written in batches of `WRITE_BATCH` bytes, or `BATCH_DELAY` seconds
        after the first of a smaller batch was queued: one hand-over to a worker thread per
        block would cost a cold read more than the writing itself.
        """
        task_status.started()
        while True:
            now = trio.current_time()
            sync_at = math.inf
            if self._unsynced_since is not None:
                sync_at = min(now + SYNC_DELAY, self._unsynced_since + SYNC_MAX_AGE)
            write_at = self._queued_since + BATCH_DELAY if self._queue else math.inf
            with trio.move_on_at(min(sync_at, write_at)):
                await self._wakeup.wait()
            late = trio.current_time() >= write_at
            if self._wakeup.is_set() or (self._queue and late):
                self._wakeup = trio.Event()
                await self._write_queued(everything=late)
            # Idle for SYNC_DELAY, or writing without a pause for SYNC_MAX_AGE.
            if self._unsynced_since is not None and trio.current_time() >= sync_at:
                await self.sync()

    async def drain(self) -> None:
        """Write every block queued so far and make it durable (unmount, tests)."""
        await self._write_queued()
        await self.sync()

    async def sync(self) -> None:
        """Make the written blocks durable: fsync each data file, then replace its index."""
        async with self._writing:
            pending, self._unsynced, self._unsynced_since = self._unsynced, {}, None
            pending = {ident: entry for ident, entry in pending.items() if self._entries.get(ident) is entry}
            if not pending:
                return
            snapshots = [(entry, entry.blocks) for entry in pending.values()]
            failed = await trio.to_thread.run_sync(self._sync_files, snapshots)
            for entry, _ in snapshots:
                if entry.ident in self._discarded:
                    self._discarded.discard(entry.ident)
                    await trio.to_thread.run_sync(_remove, *self._paths(entry.ident))
                elif entry.ident in failed and self._entries.get(entry.ident) is entry:
                    why = failed[entry.ident]
                    log.warning("content cache: cannot store attachment %s: %s", entry.ident, why)
                    await self._drop(entry, "the cache disk refused a write")

    def _sync_files(self, snapshots: list[tuple[Entry, Runs]]) -> dict[str, str]:
        failed = {}
        for entry, blocks in snapshots:
            try:
                self._sync_one(entry, blocks)
            except OSError as exc:
                failed[entry.ident] = exc.strerror or str(exc)
        return failed

    def _sync_one(self, entry: Entry, blocks: Runs) -> None:
        fd = os.open(self._data_path(entry.ident), os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        index_path = self._index_path(entry.ident)
        temp = index_path.with_suffix(".tmp")
        body = {"id": entry.ident, "size": entry.size, "checksum": entry.checksum, "blocks": blocks.runs}
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(body).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, index_path)

    async def _write_queued(self, *, everything: bool = True) -> None:
        """Write the blocks queued so far to the data files (durable only after `sync`):
        every one, or (not `everything`) as many whole batches as are queued."""
        async with self._writing:
            while self._queue and (everything or self._queued_bytes >= _batch_bytes()):
                batch, self._queue = self._queue, []
                writes = self._prepare(batch)
                try:
                    await trio.to_thread.run_sync(self._write_files, writes)
                finally:
                    self._queued_bytes -= sum(len(data) for _, _, data in batch)
                    if self._queued_bytes <= WRITE_BEHIND_BYTES // 2:
                        self._room.set()
                await self._commit(writes)
                for attachment, index, _ in batch:
                    self._queued.pop((attachment.id, index), None)

    async def wait_for_room(self) -> None:
        """Wait until the write-behind queue has room (a download that must not skip)."""
        await self._room.wait()

    # -- reading ------------------------------------------------------------------------------

    def has(self, attachment: Attachment, index: int) -> bool:
        """Whether block `index` of `attachment` is on disk (no I/O)."""
        if (attachment.id, index) in self._queued:
            return True
        entry = self._entries.get(attachment.id)
        return entry is not None and entry.size == attachment.size and index in entry.blocks

    async def read(self, attachment: Attachment, lo: int, hi: int) -> list[bytes] | None:
        """Blocks [lo, hi) from disk, or None when any of them is missing or damaged.

        A block still waiting in the write-behind queue comes from the queue, never from
        the data file (where it may be a hole while a later block is already written).
        """
        if not all(self.has(attachment, index) for index in range(lo, hi)):
            self._stats.misses += 1
            return None
        blocks = [self._queued.get((attachment.id, index)) for index in range(lo, hi)]
        on_disk = [index for index, block in zip(range(lo, hi), blocks, strict=True) if block is None]
        entry = self._entries.get(attachment.id)
        if on_disk:
            if entry is None or any(index not in entry.blocks for index in on_disk):
                self._stats.misses += 1
                return None
            touch = time.time() - entry.touched > TOUCH_INTERVAL
            read = await trio.to_thread.run_sync(self._read_blocks, attachment, on_disk, touch)
            if read is None:
                if self._entries.get(attachment.id) is entry:
                    await self._drop(entry, "its data file is shorter than its index says")
                self._stats.misses += 1
                return None
            for index, block in zip(on_disk, read, strict=True):
                blocks[index - lo] = block
            if touch:
                entry.touched = time.time()
        self._stats.hits += 1
        if entry is not None and self._entries.get(attachment.id) is entry:
            self._entries.move_to_end(attachment.id)
            entry.last_used = time.time()
        return [block for block in blocks if block is not None]

    def _read_blocks(self, attachment: Attachment, indices: list[int], touch: bool) -> list[bytes] | None:
        try:
            with self._data_path(attachment.id).open("rb") as data:
                out = []
                for index in indices:
                    want = self._block_length(attachment.size, index)
                    block = os.pread(data.fileno(), want, index * self.block_size)
                    if len(block) != want:
                        return None
                    out.append(block)
            if touch:
                # The index's mtime is the entry's last use for the next mount's LRU order.
                with contextlib.suppress(OSError):
                    os.utime(self._index_path(attachment.id))
            return out
        except OSError:
            return None

    # -- writing ------------------------------------------------------------------------------

    def store(self, attachment: Attachment, index: int, data: bytes) -> None:
        """Queue a fetched block for the disk; skipped when the disk is behind."""
        if not self.enabled or attachment.size > self.budget or self.has(attachment, index):
            return
        if not data or len(data) != self._block_length(attachment.size, index):
            return  # only whole blocks (the last one by the attachment's true size)
        if self._queued_bytes + len(data) > WRITE_BEHIND_BYTES:
            self._stats.skipped_bytes += len(data)
            return
        first = not self._queue
        if first:
            self._queued_since = trio.current_time()
        self._queue.append((attachment, index, data))
        self._queued[(attachment.id, index)] = data
        self._queued_bytes += len(data)
        if self._queued_bytes > WRITE_BEHIND_BYTES // 2:
            self._room = trio.Event() if self._room.is_set() else self._room
        if first or self._queued_bytes >= _batch_bytes():
            self._wakeup.set()  # to write a whole batch, or to start the batch's clock

    def _prepare(self, batch: list[tuple[Attachment, int, bytes]]) -> list[_Write]:
        grouped: dict[str, list[tuple[Attachment, int, bytes]]] = {}
        for item in batch:
            if item[0].size > self.budget:
                continue  # queued before a full disk shrank the budget below it
            grouped.setdefault(item[0].id, []).append(item)
        writes = []
        for ident, items in grouped.items():
            attachment = items[0][0]
            entry = self._entries.get(ident)
            fresh = entry is None or entry.size != attachment.size
            if entry is None or fresh:
                entry = Entry(ident, attachment.size, attachment.checksum, Runs(), time.time())
            blocks = [(index, data) for _, index, data in items if index not in entry.blocks]
            after = entry.blocks.with_indices(index for index, _ in blocks)
            verify = bool(entry.checksum) and after.count() >= self._block_count(entry.size)
            self._discarded.discard(ident)
            writes.append(_Write(entry, blocks, after, verify, fresh))
        return writes

    def _write_files(self, writes: list[_Write]) -> None:
        for write in writes:
            try:
                self._write_one(write)
            except OSError as exc:
                write.error = exc.strerror or str(exc)
                write.full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                if write.full:
                    # Give the room back now, so the next attachment of this batch fits.
                    _remove(*self._paths(write.entry.ident))

    def _write_one(self, write: _Write) -> None:
        entry = write.entry
        data_path = self._data_path(entry.ident)
        data_path.parent.mkdir(mode=0o700, exist_ok=True)
        if write.fresh:
            # An index of other bytes under this id must not outlive the truncation.
            self._index_path(entry.ident).unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if write.fresh else 0)
        fd = os.open(data_path, flags, 0o600)
        try:
            # One system call per run of consecutive blocks (a few where they go around the
            # page cache): fewer hand-overs of the GIL to and from the thread that serves reads.
            for first, run in _runs_of(write.blocks):
                self._disk.write(fd, str(data_path), first * self.block_size, run)
        finally:
            os.close(fd)
        if write.verify and not self._matches(data_path, entry.checksum):
            write.mismatch = True

    def _matches(self, path: Path, checksum: str) -> bool:
        """Whether the file's digest is `checksum` (`ALGORITHM:HEX`; unknown algorithms pass)."""
        algorithm, _, expected = checksum.partition(":")
        if algorithm not in ALGORITHMS or not expected:
            return True
        return self._disk.digest(str(path), algorithm) == expected.strip().lower()

    async def _commit(self, writes: list[_Write]) -> None:
        for write in writes:
            entry = write.entry
            current = self._entries.get(entry.ident)
            if entry.ident in self._discarded:
                self._discarded.discard(entry.ident)
                await trio.to_thread.run_sync(_remove, *self._paths(entry.ident))
            elif write.error is not None:
                # A full or failing cache disk costs cached bytes, never a read.
                log.warning("content cache: cannot store attachment %s: %s", entry.ident, write.error)
                await self._drop(entry, "the cache disk refused a write")
                if write.full:
                    await self._shrink_to_disk()
                else:
                    await self._evict(self._bytes // 2)
            elif write.mismatch:
                log.warning("content cache: attachment %s does not match its checksum; dropped", entry.ident)
                await self._drop(entry, "checksum mismatch")
            else:
                if current is not None and current is not entry:
                    self._bytes -= self._entry_bytes(current)
                before = self._entry_bytes(entry) if current is entry else 0
                entry.blocks = write.after
                entry.verified = entry.verified or write.verify
                entry.last_used = time.time()
                self._entries[entry.ident] = entry
                self._entries.move_to_end(entry.ident)
                self._bytes += self._entry_bytes(entry) - before
                self._stats.written_bytes += sum(len(data) for _, data in write.blocks)
                self._unsynced[entry.ident] = entry
                if self._unsynced_since is None:
                    self._unsynced_since = trio.current_time()
        await self._evict(self._bytes - self.budget)

    async def _shrink_to_disk(self) -> None:
        """The disk is full: the budget becomes what the cache holds plus the room left.

        So the cache goes on keeping what fits instead of filling the disk again and again
        with attachments it can never hold whole.
        """
        try:
            room = await trio.to_thread.run_sync(_free_bytes, self.directory)
        except OSError:
            room = 0
        budget = min(self.budget, self._bytes + room)
        if budget < self.budget:
            self.budget = max(budget, 1)  # 0 would mean "turned off" to the status output
            log.warning(
                "content cache: the disk of %s is full; its budget is now %d MiB for this mount",
                self.directory,
                budget >> 20,
            )

    # -- removing -------------------------------------------------------------------------------

    async def discard(self, attachment_id: str) -> None:
        """Forget an attachment (deleted on the tracker): its files go at once."""
        kept = [item for item in self._queue if item[0].id != attachment_id]
        self._queued_bytes -= sum(len(data) for _, _, data in self._queue) - sum(
            len(data) for _, _, data in kept
        )
        self._queue = kept
        for key in [key for key in self._queued if key[0] == attachment_id]:
            del self._queued[key]
        if self._writing.locked():
            self._discarded.add(attachment_id)
        entry = self._entries.get(attachment_id)
        if entry is not None:
            await self._drop(entry, None)

    async def clear(self) -> int:
        """Drop every attachment the cache holds (the control file's `flush content`)."""
        held = self._bytes
        await self._evict(self._bytes)
        return held

    async def _drop(self, entry: Entry, why: str | None) -> None:
        if self._entries.get(entry.ident) is entry:
            del self._entries[entry.ident]
            self._bytes -= self._entry_bytes(entry)
        if why is not None:
            self._stats.dropped += 1
            log.info("content cache: dropped attachment %s: %s", entry.ident, why)
        await trio.to_thread.run_sync(_remove, *self._paths(entry.ident))

    async def _evict(self, amount: int) -> None:
        """Evict least recently used attachments until `amount` bytes are freed."""
        victims: list[Path] = []
        while amount > 0 and self._entries:
            _, entry = self._entries.popitem(last=False)
            freed = self._entry_bytes(entry)
            self._bytes -= freed
            amount -= freed
            victims.extend(self._paths(entry.ident))
            self._stats.evictions += 1
        if victims:
            await trio.to_thread.run_sync(_remove, *victims)

    # -- bookkeeping ----------------------------------------------------------------------------

    def statistics(self) -> ContentCacheStatistics:
        """A snapshot of the counters."""
        stats = self._stats
        return ContentCacheStatistics(
            stats.hits,
            stats.misses,
            stats.written_bytes,
            stats.skipped_bytes,
            stats.evictions,
            stats.dropped,
            len(self._entries),
            self._bytes,
        )

    def _entry_bytes(self, entry: Entry) -> int:
        last = self._block_count(entry.size) - 1
        total = entry.blocks.count() * self.block_size
        if last in entry.blocks:
            total -= self.block_size - self._block_length(entry.size, last)
        return total

    def _block_count(self, size: int) -> int:
        return -(-size // self.block_size)

    def _block_length(self, size: int, index: int) -> int:
        return max(0, min(self.block_size, size - index * self.block_size))

    def _index_path(self, attachment_id: str) -> Path:
        name = entry_name(attachment_id)
        return self.directory / name[:2] / f"{name}.json"

    def _data_path(self, attachment_id: str) -> Path:
        return self._index_path(attachment_id).with_suffix(".data")

    def _paths(self, attachment_id: str) -> tuple[Path, Path]:
        # The index first: without it the data file is never read.
        return self._index_path(attachment_id), self._data_path(attachment_id)


def _batch_bytes() -> int:
    """A whole batch: `WRITE_BATCH`, or less where the queue may not hold that much before a
    download that must not skip waits for room (it then waits for one batch, not a delay)."""
    return min(WRITE_BATCH, WRITE_BEHIND_BYTES // 2)


def _runs_of(blocks: list[tuple[int, bytes]]) -> Iterator[tuple[int, list[bytes]]]:
    """(first index, the blocks) of each run of consecutive indices, in index order."""
    run: list[bytes] = []
    first = previous = -2
    for index, data in sorted(blocks, key=lambda item: item[0]):
        if run and (index != previous + 1 or len(run) >= MAX_IOVEC):
            yield first, run
            run = []
        if not run:
            first = index
        run.append(data)
        previous = index
    if run:
        yield first, run


def _read_index(path: Path) -> Entry:
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    runs = [[int(lo), int(hi)] for lo, hi in body["blocks"]]
    if any(lo < 0 or hi <= lo for lo, hi in runs):
        raise ValueError("bad block runs")
    return Entry(
        ident=str(body["id"]),
        size=int(body["size"]),
        checksum=str(body.get("checksum") or ""),
        blocks=Runs(_coalesce(runs)),
        last_used=path.stat().st_mtime,
    )


def _free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still put on the filesystem of `directory`."""
    found = os.statvfs(directory)
    return found.f_bavail * found.f_frsize


def _remove(*paths: Path) -> None:
    """Remove files; one that cannot be removed is left (its index is gone first)."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("content cache: cannot remove %s: %s", path, exc.strerror)
