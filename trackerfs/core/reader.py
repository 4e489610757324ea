"""Lazy reads of attachment content: aligned blocks, readahead, shared fetches.

Content is cut into aligned blocks of `BLOCK_SIZE` bytes (the size of the kernel's
usual read request, so an aligned read is answered with a cached block and no copy).
Attachments are immutable, so blocks are cached by attachment id with no expiry, in a
byte-budgeted LRU.

- A random read fetches only the blocks it touches.
- A sequential reader (each read starting near where the last one ended) gets a
  readahead window that starts at `initial_window` and doubles with every fetch it
  starts, up to `max_window`. A new fetch starts when less than half a window of data
  is ahead of the reader, so requests stay window-sized.
- A fetch streams one HTTP range for a run of missing blocks and publishes each block as
  soon as its bytes arrive; concurrent readers of a block wait for the same fetch.
- Readahead of every reader together is bounded by one prefetch budget per mount (the
  blocks readers have asked for beyond where they read; half the block cache by
  default), so readers never push each other's unread blocks out of the cache and the
  number of fetches stays bounded. It is shared fairly: no sequential reader's window
  grows beyond the budget over the number of sequential readers open, so eight readers
  each stream with an eighth rather than the first holding it all and the rest fetching
  read by read. Blocks a read needs now are always fetched.
- A connection dropped mid-fetch is resumed from the first missing block.
- With an on-disk content cache (`core.content_cache`), blocks found there are read from
  disk instead of fetched, and every fetched block is handed to it (write behind).
- A tracker whose content host ignores Range (`Tracker.honours_range`) gets ONE download
  of the whole attachment, which every read of it waits on: each block is published as
  it arrives (a read at offset 0 does not wait for the end) and the rest goes to the disk
  cache, at the disk's pace, so no later read downloads it again.
- Such a whole download of an attachment with a vendor checksum (`md5:HEX`, …) is
  verified before its last block is handed out: a reader never reaches the end of bytes
  that do not match. On a mismatch everything kept of it is dropped and it is downloaded
  once more; a second mismatch, or blocks a reader already had that the second download
  contradicts, fail the read with EIO and an ERROR line.
"""

from __future__ import annotations

import hashlib
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from trackerfs.backends.base import Tracker
from trackerfs.core.cache import BlockCache, CacheStatistics, Future
from trackerfs.core.content_cache import ALGORITHMS, ContentCache
from trackerfs.errors import BadResponseError, TemporaryError, TrackerError, UnreachableError
from trackerfs.model import Attachment

log = logging.getLogger(__name__)

BLOCK_SIZE = 128 << 10
INITIAL_WINDOW = 1 << 20
MAX_WINDOW = 64 << 20
#: A random read of at most SMALL_READ bytes that touches no cached block fetches only the
#: SMALL_BLOCK pieces it covers (fio's 4 KiB random reads: 8 KiB fetched per read, not
#: 128 KiB); those pieces have a cache of their own, 1/SMALL_CACHE_SHARE of the block cache.
SMALL_BLOCK = 8 << 10
SMALL_READ = 32 << 10
SMALL_CACHE_SHARE = 16
#: How far behind the last read a read may start and still count as sequential: the
#: kernel's readahead sends several reads at once and they may arrive out of order.
BACKWARD_SLACK = 8 * BLOCK_SIZE
FETCH_RESUMES = 2
#: Blocks read from the disk cache per worker-thread call: a reader waiting for the first
#: of them does not wait for a whole readahead window to come off the disk.
DISK_RUN = 8
#: Seconds a whole download that failed its checksum fails again at once: the kernel
#: repeats a failed read straight away, and a third download must not turn the EIO the
#: user was owed into a success.
MISMATCH_MEMORY = 2.0

BlockKey = tuple[str, int]


@dataclass(slots=True)
class Lead:
    """Blocks a reader scheduled beyond its read position, as counted in the shared budget."""

    blocks: int = 0


@dataclass(slots=True, weakref_slot=True, eq=False)
class ReadState:
    """Where one open file's reader is, and how much it reads ahead.

    A run of reads that starts at offset 0 is taken as a whole-file read and gets the
    initial window at once. A run that starts elsewhere earns readahead only by going on:
    its second contiguous read gets two blocks, then the window doubles per fetch. So a
    random read, even with the kernel's own readahead behind it, fetches little.
    """

    attachment: Attachment
    next_offset: int = -1
    run_start: int = 0
    window: int = 0
    #: first block after those this reader already scheduled for readahead
    ahead: int = 0
    #: blocks before this one were dropped from the cache behind this reader
    released: int = 0
    lead: Lead = field(default_factory=Lead)

    def observe(self, offset: int, end: int, initial: int) -> bool:
        """Record a read of [offset, end); return whether it continues a sequential run."""
        if self.next_offset < 0:
            sequential = offset == 0
        else:
            slack = max(self.window, initial)
            sequential = self.next_offset - BACKWARD_SLACK <= offset <= self.next_offset + slack
        if sequential:
            if not self.window:
                self.window = initial if self.run_start == 0 else 2 * BLOCK_SIZE
            self.next_offset = max(end, self.next_offset)
        else:
            self.window, self.run_start, self.next_offset, self.ahead = 0, offset, end, 0
            self.released = offset // BLOCK_SIZE
        return sequential


@dataclass(slots=True)
class WholeDownload:
    """What verifies the passes of one whole download against the vendor's checksum.

    The last block of a pass is held back until the pass's digest matches; `served` keeps
    a sha256 of each block a reader was given, so a later pass can tell whether what a
    reader already has was wrong.
    """

    attachment: Attachment
    algorithm: str
    expected: str
    mismatches: int = 0
    served: dict[int, bytes] = field(default_factory=dict)
    held: tuple[int, bytes] | None = None
    digest: hashlib._Hash | None = None
    #: the checksum failure that ended the download, if one did
    failed: BadResponseError | None = None

    @classmethod
    def of(cls, attachment: Attachment) -> WholeDownload:
        """The download of `attachment`, checked when its checksum is one hashlib knows."""
        algorithm, _, expected = attachment.checksum.partition(":")
        known = algorithm in ALGORITHMS and bool(expected)
        return cls(attachment, algorithm if known else "", expected.strip().lower() if known else "")

    def start(self) -> None:
        """A new pass from byte 0."""
        self.held = None
        self.digest = hashlib.new(self.algorithm) if self.algorithm else None

    def holds_back(self, index: int, block: bytes) -> bool:
        """Hash `block`; whether it is the last one, kept until the pass is verified."""
        if self.digest is None:
            return False
        self.digest.update(block)
        given = self.served.get(index)
        if given is not None and given != hashlib.sha256(block).digest():
            raise self.failure("bytes already read differ from those downloaded again")
        if index < Reader._block_count(self.attachment) - 1:
            return False
        self.held = (index, block)
        return True

    def matches(self) -> bool:
        """Whether the pass's bytes have the vendor's checksum (always, without one)."""
        return self.digest is None or self.digest.hexdigest() == self.expected

    def hand_out(self, index: int, block: bytes) -> None:
        """Record that a reader got `block` (what a later pass must then agree with)."""
        if self.digest is not None:
            self.served.setdefault(index, hashlib.sha256(block).digest())

    def failure(self, why: str) -> BadResponseError:
        """The EIO that ends the download, logged once as an error."""
        what = self.attachment
        log.error("attachment %s (%s): %s checksum mismatch; %s", what.id, what.filename, self.algorithm, why)
        self.failed = BadResponseError(
            f"attachment {what.id}: its content does not match its {self.algorithm}"
        )
        return self.failed


@dataclass(slots=True)
class ReaderStatistics:
    """What the reader has done since the mount."""

    reads: int = 0
    fetches: int = 0
    bytes_fetched: int = 0
    disk_reads: int = 0
    #: the most bytes that were ever on the way at once (readahead and demand)
    peak_pending_bytes: int = 0
    cache: CacheStatistics = field(default_factory=CacheStatistics)


class Reader:
    """Serves reads of attachments from a block cache filled by ranged fetches."""

    def __init__(
        self,
        tracker: Tracker,
        nursery: trio.Nursery,
        *,
        cache_bytes: int = 96 << 20,
        initial_window: int = INITIAL_WINDOW,
        max_window: int = MAX_WINDOW,
        prefetch_bytes: int | None = None,
        content: ContentCache | None = None,
    ) -> None:
        self._tracker = tracker
        self._nursery = nursery
        self._content = content
        self._cache: BlockCache[BlockKey] = BlockCache(cache_bytes)
        self._pending: dict[BlockKey, Future[bytes]] = {}
        #: the SMALL_BLOCK pieces of small random reads (`_read_small`)
        self._small: BlockCache[BlockKey] = BlockCache(max(SMALL_BLOCK, cache_bytes // SMALL_CACHE_SHARE))
        self._small_pending: dict[BlockKey, Future[bytes]] = {}
        self.initial_window = max(initial_window, BLOCK_SIZE)
        self.max_window = max(max_window, self.initial_window)
        budget = cache_bytes // 2 if prefetch_bytes is None else prefetch_bytes
        self.prefetch_blocks = max(1, budget // BLOCK_SIZE)
        #: the sum of every open reader's lead (blocks ahead of its read position)
        self._lead_blocks = 0
        #: open readers that read ahead (sequential runs): they share the prefetch budget
        self._streams: weakref.WeakSet[ReadState] = weakref.WeakSet()
        #: bytes of the blocks in `_pending`
        self._pending_bytes = 0
        #: attachments whose whole-file download (no Range) is running → the blocks asked of it
        self._fills: dict[str, set[int]] = {}
        #: attachments whose whole download failed its checksum → when, and the error
        self._mismatched: dict[str, tuple[float, BadResponseError]] = {}
        self._stats = ReaderStatistics()

    def open(self, attachment: Attachment) -> ReadState:
        """Per-open-file state for reading `attachment`.

        When the state goes away (its file was closed), its lead leaves the budget.
        """
        state = ReadState(attachment)
        weakref.finalize(state, self._forget_lead, state.lead)
        return state

    def _forget_lead(self, lead: Lead) -> None:
        self._lead_blocks -= lead.blocks
        lead.blocks = 0

    def _count_lead(self, state: ReadState, position: int) -> None:
        """Record how far ahead of block `position` this reader has scheduled."""
        lead = max(0, state.ahead - position) if state.window else 0
        self._lead_blocks += lead - state.lead.blocks
        state.lead.blocks = lead

    async def read(self, state: ReadState, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer only at the end of the attachment)."""
        attachment = state.attachment
        end = min(offset + size, attachment.size)
        if offset >= end:
            return b""
        self._stats.reads += 1
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        sequential = state.observe(offset, end, self.initial_window)
        if not sequential and self._small_read(attachment, offset, end, first, last):
            self._streams.discard(state)
            return await self._read_small(attachment, offset, end)
        self._fetch_missing(attachment, first, last + 1)
        if sequential:
            self._read_ahead(state, last + 1)
        else:
            self._streams.discard(state)
        self._count_lead(state, last + 1)
        start = offset - first * BLOCK_SIZE
        if first == last:
            block = await self._block(attachment, first)
            data = block if start == 0 and len(block) <= end - offset else block[start : start + end - offset]
        else:
            # One copy: views of the blocks' parts, joined once.
            parts = [memoryview(await self._block(attachment, index)) for index in range(first, last + 1)]
            parts[-1] = parts[-1][: end - last * BLOCK_SIZE]
            parts[0] = parts[0][start:]
            data = b"".join(parts)
        if sequential:
            self._release_behind(state, first)
        return data

    def _small_read(self, attachment: Attachment, offset: int, end: int, first: int, last: int) -> bool:
        """Whether a random read is served by a small fetch: it is small, ranged answers
        are at hand, and no block it touches is cached, on the way or on disk."""
        if end - offset > SMALL_READ or not self._tracker.honours_range(attachment):
            return False
        touched = range(first, last + 1)
        return not any(self._present(attachment, i) or self._on_disk(attachment, i) for i in touched)

    async def _read_small(self, attachment: Attachment, offset: int, end: int) -> bytes:
        """A small random read from SMALL_BLOCK pieces, fetched alone when missing.

        A 4 KiB read at a random place then costs an 8 KiB range, not a 128 KiB block.
        Pieces live in a small LRU of their own and are not written to the disk cache
        (whose unit is the block); concurrent readers of a piece share its fetch.
        """
        first, last = offset // SMALL_BLOCK, (end - 1) // SMALL_BLOCK
        index = first
        while index <= last:
            if self._small_present(attachment, index):
                index += 1
                continue
            run = index
            while index <= last and not self._small_present(attachment, index):
                self._small_pending[(attachment.id, index)] = Future()
                index += 1
            self._nursery.start_soon(self._fetch_small, attachment, run, index)
        parts = [memoryview(await self._small_piece(attachment, index)) for index in range(first, last + 1)]
        start = offset - first * SMALL_BLOCK
        return b"".join(parts)[start : start + end - offset]

    def _small_present(self, attachment: Attachment, index: int) -> bool:
        key = (attachment.id, index)
        return key in self._small or key in self._small_pending

    async def _small_piece(self, attachment: Attachment, index: int) -> bytes:
        key = (attachment.id, index)
        cached = self._small.get(key)
        if cached is not None:
            return cached
        pending = self._small_pending.get(key)
        if pending is None:
            # Evicted between its fetch and this read (a tiny cache): fetch it alone.
            self._small_pending[key] = pending = Future()
            self._nursery.start_soon(self._fetch_small, attachment, index, index + 1)
        return await pending.wait()

    async def _fetch_small(self, attachment: Attachment, lo: int, hi: int) -> None:
        """Pieces [lo, hi) in one ranged request; an error fails the readers waiting for them."""
        start, stop = lo * SMALL_BLOCK, min(hi * SMALL_BLOCK, attachment.size)
        self._stats.fetches += 1
        log.debug("fetch %s bytes %d-%d (small)", attachment.id, start, stop - 1)
        keys = [(attachment.id, index) for index in range(lo, hi)]
        try:
            data = await self._fetch_small_range(attachment, start, stop)
            if len(data) != stop - start:
                raise BadResponseError(
                    f"attachment {attachment.id}: the answer ended at byte {start + len(data)} of {stop}"
                )
        except TrackerError as exc:
            self._fail_small(keys, exc)
            return
        except Exception as exc:
            log.exception("fetch of attachment %s failed", attachment.id)
            self._fail_small(keys, exc)
            return
        except BaseException:
            self._fail_small(keys, TemporaryError("fetch cancelled"))
            raise
        for offset, key in zip(range(0, len(data), SMALL_BLOCK), keys, strict=True):
            piece = data[offset : offset + SMALL_BLOCK]
            self._small.put(key, piece)
            pending = self._small_pending.pop(key, None)
            if pending is not None:
                pending.set(piece)

    async def _fetch_small_range(self, attachment: Attachment, start: int, stop: int) -> bytes:
        """Bytes [start, stop), asked again after a dropped connection (FETCH_RESUMES times)."""
        resumes = 0
        while True:
            try:
                async with self._tracker.open_range(attachment, start, stop) as chunks:
                    data = b"".join([chunk async for chunk in chunks])
            except (TemporaryError, UnreachableError) as exc:
                if resumes >= FETCH_RESUMES:
                    raise
                resumes += 1
                log.warning("fetch of %s interrupted (%s); asking again", attachment.id, exc)
                continue
            self._stats.bytes_fetched += len(data)
            return data

    def _fail_small(self, keys: list[BlockKey], error: BaseException) -> None:
        for key in keys:
            pending = self._small_pending.pop(key, None)
            if pending is not None:
                pending.fail(error)

    def _release_behind(self, state: ReadState, first: int) -> None:
        """Drop blocks a sequential reader has left behind.

        The kernel keeps what was read (keep_cache), so holding it here as well would
        only double the memory. A short backward window stays, for the kernel's reads
        that arrive out of order.
        """
        keep_from = first - BACKWARD_SLACK // BLOCK_SIZE
        for index in range(max(state.released, 0), keep_from):
            self._cache.discard((state.attachment.id, index))
        state.released = max(state.released, keep_from)

    def statistics(self) -> ReaderStatistics:
        """Counters since the mount (reads, fetches, bytes fetched, cache)."""
        stats = self._stats
        return ReaderStatistics(
            stats.reads,
            stats.fetches,
            stats.bytes_fetched,
            stats.disk_reads,
            stats.peak_pending_bytes,
            self._cache.statistics(),
        )

    def _read_ahead(self, state: ReadState, after: int) -> None:
        """Keep at least half a window of blocks after `after` cached or on the way.

        The window is at most this reader's fair share of the prefetch budget (the budget
        over the sequential readers open), so that a reader that came first cannot hold
        the whole budget and leave the others to fetch each read on demand.
        """
        blocks = self._block_count(state.attachment)
        self._streams.add(state)
        share = max(1, self.prefetch_blocks // len(self._streams))
        window = max(1, min(state.window // BLOCK_SIZE, share))
        # Blocks up to `ahead` were scheduled by this reader before; do not scan them again.
        index = max(after, state.ahead)
        while index < blocks and index < after + window and self._present(state.attachment, index):
            index += 1
        state.ahead = index
        if index >= blocks or index - after >= window // 2:
            return
        others = self._lead_blocks - state.lead.blocks
        stop = min(blocks, index + window, after + self.prefetch_blocks - others)
        if stop <= index:
            return  # the budget is spent; the next read of this reader tries again
        self._fetch_missing(state.attachment, index, stop)
        state.ahead = stop
        state.window = min(state.window * 2, self.max_window)

    def _present(self, attachment: Attachment, index: int) -> bool:
        key = (attachment.id, index)
        return key in self._cache or key in self._pending

    def _fetch_missing(self, attachment: Attachment, lo: int, hi: int) -> None:
        """Start one fetch per run of consecutive blocks in [lo, hi) not cached or pending.

        Runs of blocks the disk cache holds are read from disk instead (at most DISK_RUN
        blocks per read).
        """
        hi = min(hi, self._block_count(attachment))
        index = lo
        while index < hi:
            if self._present(attachment, index):
                index += 1
                continue
            on_disk = self._on_disk(attachment, index)
            run_start = index
            while (
                index < hi
                and not self._present(attachment, index)
                and self._on_disk(attachment, index) == on_disk
                and not (on_disk and index - run_start >= DISK_RUN)
            ):
                self._pending[(attachment.id, index)] = Future()
                self._pending_bytes += self._block_length(attachment, index)
                index += 1
            self._stats.peak_pending_bytes = max(self._stats.peak_pending_bytes, self._pending_bytes)
            if on_disk:
                self._nursery.start_soon(self._load, attachment, run_start, index)
            else:
                self._fetch_soon(attachment, run_start, index)

    def _fetch_soon(self, attachment: Attachment, lo: int, hi: int) -> None:
        """Start fetching the pending blocks [lo, hi): a ranged fetch, or the whole-file one."""
        if self._tracker.honours_range(attachment):
            self._nursery.start_soon(self._fetch, attachment, lo, hi)
            return
        wanted = self._fills.get(attachment.id)
        if wanted is None:
            wanted = self._fills[attachment.id] = set()
            self._nursery.start_soon(self._fill, attachment, wanted)
        wanted.update(range(lo, hi))

    def _on_disk(self, attachment: Attachment, index: int) -> bool:
        return self._content is not None and self._content.has(attachment, index)

    async def _load(self, attachment: Attachment, lo: int, hi: int) -> None:
        """Blocks [lo, hi) from the disk cache; fetched after all if the disk lets us down."""
        assert self._content is not None
        try:
            blocks = await self._content.read(attachment, lo, hi)
        except Exception:
            log.exception("reading attachment %s from the content cache failed", attachment.id)
            blocks = None
        except BaseException:
            self._fail(attachment, lo, hi, TemporaryError("disk read cancelled"))
            raise
        if blocks is None:
            self._fetch_soon(attachment, lo, hi)
            return
        self._stats.disk_reads += 1
        for index, block in enumerate(blocks, start=lo):
            self._publish(attachment, index, block, fetched=False)

    async def _block(self, attachment: Attachment, index: int) -> bytes:
        key = (attachment.id, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pending = self._pending.get(key)
        if pending is None:
            # Evicted between scheduling and reading (a tiny cache): fetch it alone.
            self._fetch_missing(attachment, index, index + 1)
            pending = self._pending[key]
        return await pending.wait()

    async def _fetch(self, attachment: Attachment, lo: int, hi: int) -> None:
        """Fetch blocks [lo, hi) in one ranged stream, resuming after a dropped connection."""
        index = lo
        resumes = 0
        try:
            while index < hi:
                try:
                    index = await self._stream_blocks(attachment, index, hi)
                except (TemporaryError, UnreachableError) as exc:
                    while index < hi and (attachment.id, index) not in self._pending:
                        index += 1  # published before the connection dropped
                    if resumes >= FETCH_RESUMES:
                        raise
                    resumes += 1
                    log.warning(
                        "fetch of %s interrupted (%s); resuming at block %d", attachment.id, exc, index
                    )
        except TrackerError as exc:
            self._fail(attachment, index, hi, exc)
        except Exception as exc:
            log.exception("fetch of attachment %s failed", attachment.id)
            self._fail(attachment, index, hi, exc)
        except BaseException:
            self._fail(attachment, index, hi, TemporaryError("fetch cancelled"))
            raise

    async def _fill(self, attachment: Attachment, wanted: set[int]) -> None:
        """Download a whole attachment from a server that ignores Range.

        Blocks somebody waits for are published as they arrive; the others go to the disk
        cache (waiting for the disk rather than skipping them). A block that is asked for
        after the download passed it, and that the disk cache could not keep, makes one
        more pass from byte 0; so does a dropped connection (a server without Range
        cannot resume), up to FETCH_RESUMES times.
        """
        passes = 0
        error: BaseException | None = None
        download = WholeDownload.of(attachment)
        try:
            recent = self._mismatched.pop(attachment.id, None)
            if recent is not None and trio.current_time() - recent[0] < MISMATCH_MEMORY:
                self._mismatched[attachment.id] = recent
                raise recent[1]
            while self._waiting(attachment, wanted):
                if passes > FETCH_RESUMES:
                    raise error or TemporaryError(f"attachment {attachment.id}: download did not finish")
                passes += 1
                download.start()
                try:
                    await self._stream_blocks(attachment, 0, self._block_count(attachment), whole=download)
                except (TemporaryError, UnreachableError) as exc:
                    error = exc
                    log.warning("download of %s interrupted (%s); starting again", attachment.id, exc)
                    continue
                await self._settle(attachment, download)
        except TrackerError as exc:
            if exc is download.failed:
                self._mismatched[attachment.id] = (trio.current_time(), download.failed)
            self._fail_waiting(attachment, wanted, exc)
        except Exception as exc:
            log.exception("download of attachment %s failed", attachment.id)
            self._fail_waiting(attachment, wanted, exc)
        except BaseException:
            self._fail_waiting(attachment, wanted, TemporaryError("download cancelled"))
            raise
        finally:
            del self._fills[attachment.id]

    async def _settle(self, attachment: Attachment, download: WholeDownload) -> None:
        """After a complete pass: hand out the held last block, or drop the pass and go again.

        A second mismatch raises (EIO); the first drops every block kept of the
        attachment, in memory and on disk, so the next pass and later reads start clean.
        """
        if download.matches():
            if download.held is not None:
                await self._keep(attachment, *download.held, download)
            return
        download.mismatches += 1
        if download.mismatches > 1:
            raise download.failure("downloaded twice, wrong both times")
        log.warning(
            "attachment %s: content does not match its %s; downloading it again",
            attachment.id,
            download.algorithm,
        )
        for index in range(self._block_count(attachment)):
            if (attachment.id, index) not in self._pending:
                self._cache.discard((attachment.id, index))
        if self._content is not None:
            await self._content.discard(attachment.id)

    def _waiting(self, attachment: Attachment, wanted: set[int]) -> bool:
        """Whether a block asked of this download still waits (others may have served some)."""
        wanted.intersection_update(index for index in wanted if (attachment.id, index) in self._pending)
        return bool(wanted)

    def _fail_waiting(self, attachment: Attachment, wanted: set[int], error: BaseException) -> None:
        for index in sorted(wanted):
            self._fail(attachment, index, index + 1, error)

    async def _stream_blocks(
        self, attachment: Attachment, lo: int, hi: int, *, whole: WholeDownload | None = None
    ) -> int:
        """Stream blocks [lo, hi); publish each as it completes; return the next index.

        In a `whole` download only the blocks somebody waits for are published; the
        others go to the disk cache alone, and the last one waits for the verdict on the
        checksum (`_settle`).
        """
        start = lo * BLOCK_SIZE
        stop = min(hi * BLOCK_SIZE, attachment.size)
        self._stats.fetches += 1
        log.debug("fetch %s bytes %d-%d", attachment.id, start, stop - 1)
        index = lo
        # Views of the received chunks; each block is joined from them with one copy.
        pending: deque[memoryview] = deque()
        held = 0
        async with self._tracker.open_range(attachment, start, stop) as chunks:
            async for chunk in chunks:
                self._stats.bytes_fetched += len(chunk)
                pending.append(memoryview(chunk))
                held += len(chunk)
                while held >= BLOCK_SIZE:
                    block = _take(pending, BLOCK_SIZE)
                    if whole is not None:
                        if not whole.holds_back(index, block):
                            await self._keep(attachment, index, block, whole)
                    else:
                        self._publish(attachment, index, block)
                    held -= BLOCK_SIZE
                    index += 1
        if index < hi:
            # Only the attachment's own last block may be short, and only by its true size:
            # anything shorter is a cut response, never cached (blocks have no expiry).
            expected = attachment.size - index * BLOCK_SIZE
            if index == hi - 1 and held == expected:
                block = _take(pending, held)
                if whole is not None:
                    if not whole.holds_back(index, block):
                        await self._keep(attachment, index, block, whole)
                else:
                    self._publish(attachment, index, block)
                index += 1
            else:
                raise BadResponseError(
                    f"attachment {attachment.id}: the answer ended at byte "
                    f"{index * BLOCK_SIZE + held} of {stop} asked for"
                )
        return index

    async def _keep(self, attachment: Attachment, index: int, data: bytes, download: WholeDownload) -> None:
        """A block of a whole download: to whoever waits for it, to memory, to the disk cache.

        The block cache takes every block, so that a reader following the download finds
        the next ones in memory rather than reading them back from the disk; the disk
        cache takes them at the disk's pace. A block is never skipped there (that would
        cost a whole download again): the download waits for the disk instead.
        """
        self._hand_out(attachment, index, data, download)
        self._cache.put((attachment.id, index), data)
        content = self._content
        if content is None or not content.enabled or content.has(attachment, index):
            return
        await content.wait_for_room()
        self._hand_out(attachment, index, data, download)  # asked for during the wait
        content.store(attachment, index, data)

    def _hand_out(self, attachment: Attachment, index: int, data: bytes, download: WholeDownload) -> None:
        """A block of a whole download to the reader waiting for it, if one is."""
        if (attachment.id, index) in self._pending:
            download.hand_out(index, data)
            self._publish(attachment, index, data, fetched=False)

    def _publish(self, attachment: Attachment, index: int, data: bytes, *, fetched: bool = True) -> None:
        key = (attachment.id, index)
        self._cache.put(key, data)
        if fetched and self._content is not None:
            self._content.store(attachment, index, data)
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._pending_bytes -= self._block_length(attachment, index)
            pending.set(data)

    def _fail(self, attachment: Attachment, lo: int, hi: int, error: BaseException) -> None:
        for index in range(lo, hi):
            pending = self._pending.pop((attachment.id, index), None)
            if pending is not None:
                self._pending_bytes -= self._block_length(attachment, index)
                pending.fail(error)

    @staticmethod
    def _block_count(attachment: Attachment) -> int:
        return math.ceil(attachment.size / BLOCK_SIZE)

    @staticmethod
    def _block_length(attachment: Attachment, index: int) -> int:
        return max(0, min(BLOCK_SIZE, attachment.size - index * BLOCK_SIZE))


def _take(views: deque[memoryview], size: int) -> bytes:
    """The first `size` bytes of `views` as one bytes object, removed from `views`.

    A view that is a whole bytes object of exactly `size` bytes is that object (no copy).
    """
    first = views[0]
    if len(first) == size and isinstance(first.obj, bytes) and len(first.obj) == size:
        views.popleft()
        return first.obj
    parts: list[memoryview] = []
    while size > 0:
        view = views.popleft()
        if len(view) > size:
            views.appendleft(view[size:])
            view = view[:size]
        parts.append(view)
        size -= len(view)
    return b"".join(parts)


@asynccontextmanager
async def open_reader(
    tracker: Tracker, *, content: ContentCache | None = None, **options: int
) -> AsyncIterator[Reader]:
    """A Reader whose background fetches run in a nursery that ends with the block.

    A content cache is loaded first, written behind in the same nursery, and drained
    when the block ends normally (an unmount), so what was fetched survives the mount.
    """
    async with trio.open_nursery() as nursery:
        if content is not None:
            await content.load()
            await nursery.start(content.serve)
        yield Reader(tracker, nursery, content=content, **options)
        if content is not None:
            await content.drain()
        nursery.cancel_scope.cancel()
