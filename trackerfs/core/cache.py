"""Caches the core shares: a byte-budgeted LRU for content blocks, and single-flight calls."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class CacheStatistics:
    """Counters a cache exposes through `statistics()`."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0


class BlockCache(Generic[K]):
    """Least-recently-used bytes values whose total size stays within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[K, bytes] = OrderedDict()
        self._bytes = 0
        self._stats = CacheStatistics()

    def get(self, key: K) -> bytes | None:
        """The value, marked as recently used, or None."""
        value = self._items.get(key)
        if value is None:
            self._stats.misses += 1
            return None
        self._items.move_to_end(key)
        self._stats.hits += 1
        return value

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def put(self, key: K, value: bytes) -> None:
        """Store `value`, evicting the least recently used values beyond the budget."""
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        if len(value) > self.budget:
            return
        self._items[key] = value
        self._bytes += len(value)
        while self._bytes > self.budget:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)
            self._stats.evictions += 1

    def discard(self, key: K) -> None:
        """Drop `key` if present."""
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)

    def statistics(self) -> CacheStatistics:
        """A snapshot of the counters."""
        stats = self._stats
        return CacheStatistics(stats.hits, stats.misses, stats.evictions, len(self._items), self._bytes)


class Future(Generic[V]):
    """A value that one task produces and any number of tasks wait for."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: V | None = None
        self._error: BaseException | None = None

    def set(self, value: V) -> None:
        """Deliver the value to every waiter."""
        self._value = value
        self._event.set()

    def fail(self, error: BaseException) -> None:
        """Deliver an exception to every waiter."""
        self._error = error
        self._event.set()

    @property
    def done(self) -> bool:
        """Whether a value or an error has been delivered."""
        return self._event.is_set()

    async def wait(self) -> V:
        """The value, or the exception raised again."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class SingleFlight(Generic[K, V]):
    """Concurrent calls for the same key share one run of the producer."""

    def __init__(self) -> None:
        self._running: dict[K, Future[V]] = {}

    async def run(self, key: K, produce: Callable[[], Awaitable[V]]) -> V:
        """The producer's result for `key`, running it only if no call for `key` is running."""
        while (running := self._running.get(key)) is not None:
            try:
                return await running.wait()
            except _LeaderCancelledError:
                continue  # the task doing the work was cancelled; someone else takes over
        future: Future[V] = Future()
        self._running[key] = future
        try:
            value = await produce()
        except trio.Cancelled:
            future.fail(_LeaderCancelledError())
            raise
        except BaseException as exc:
            future.fail(exc)
            raise
        else:
            future.set(value)
            return value
        finally:
            del self._running[key]


class _LeaderCancelledError(Exception):
    """The task running a shared call was cancelled; its followers must not see Cancelled."""
