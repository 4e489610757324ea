"""Listings, TTLs and the negative cache of the namespace, with an injected clock."""

from __future__ import annotations

import pytest

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.config import CacheSettings
from trackerfs.core.namespace import ROOT_INODE, Kind, Namespace
from trackerfs.errors import NotFoundError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> tuple[MemoryTracker, Namespace, Clock]:
    tracker = MemoryTracker()
    tracker.add("P-1", ("1", "a.txt", b"one"), ("2", "a.txt", b"two"))
    tracker.add("P-2")
    tracker.add("P-99", ("9", "hidden.txt", b"unlisted"))
    clock = Clock()
    namespace = Namespace(tracker, CacheSettings(metadata_ttl=60, negative_ttl=30), clock=clock)
    return tracker, namespace, clock


async def test_listings_are_cached_until_their_ttl(world: tuple[MemoryTracker, Namespace, Clock]) -> None:
    tracker, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    await namespace.list_dir(project.inode)
    issue = await namespace.lookup(project.inode, "P-1")
    assert sorted(n.name for n in await namespace.list_dir(issue.inode)) == [
        "a (1970-01-01 00.00).txt",
        "a.txt",
    ]
    calls = len(tracker.calls)
    await namespace.list_dir(issue.inode)
    await namespace.list_dir(project.inode)
    assert len(tracker.calls) == calls, "fresh listings cost no call"
    clock.now += 61
    await namespace.list_dir(project.inode)
    assert tracker.calls[-1] == ("issues", "P")


async def test_project_listing_fills_attachment_listings(
    world: tuple[MemoryTracker, Namespace, Clock],
) -> None:
    tracker, namespace, _ = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issues = await namespace.list_dir(project.inode)
    for issue in issues:
        await namespace.list_dir(issue.inode)
    assert [c for c in tracker.calls if c[0] == "issue"] == []


async def test_misses_are_remembered_and_probes_cost_nothing(
    world: tuple[MemoryTracker, Namespace, Clock],
) -> None:
    tracker, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    await namespace.list_dir(project.inode)
    calls = len(tracker.calls)
    for name in (".Trash-0", "desktop.ini", ".git", "P-404", "P-404"):
        with pytest.raises(NotFoundError):
            await namespace.lookup(project.inode, name)
    assert [c for c in tracker.calls[calls:] if c != ("issue", "P-404")] == []
    assert tracker.calls[calls:].count(("issue", "P-404")) == 1
    assert namespace.statistics().negative_hits >= 1
    clock.now += 31
    with pytest.raises(NotFoundError):
        await namespace.lookup(project.inode, "P-404")
    assert tracker.calls[-1] == ("issue", "P-404")


async def test_unlisted_issue_is_found_by_key(world: tuple[MemoryTracker, Namespace, Clock]) -> None:
    _, namespace, _ = world
    project = await namespace.lookup(ROOT_INODE, "P")
    assert "P-99" not in [n.name for n in await namespace.list_dir(project.inode)]
    issue = await namespace.lookup(project.inode, "P-99")
    assert issue.kind is Kind.ISSUE
    assert [n.name for n in await namespace.list_dir(issue.inode)] == ["hidden.txt"]


async def test_inodes_are_stable_and_lookups_counted(world: tuple[MemoryTracker, Namespace, Clock]) -> None:
    _, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    first = await namespace.lookup(issue.inode, "a.txt")
    clock.now += 1000
    again = await namespace.lookup(issue.inode, "a.txt")
    assert again.inode == first.inode and again.lookups == 2
    namespace.forget(first.inode, 2)
    assert namespace.node(first.inode).lookups == 0
    with pytest.raises(NotFoundError):
        namespace.node(123456)
