"""Listings, TTLs and the negative cache of the namespace, with an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.config import CacheSettings
from trackerfs.core.namespace import ROOT_INODE, Kind, Namespace
from trackerfs.core.spool import LocalFile, Manifest, Spool
from trackerfs.errors import NotFoundError
from trackerfs.model import Attachment


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


def local_file(tmp_path: Path, issue: str, name: str, replaces: Attachment | None = None) -> LocalFile:
    manifest = Manifest("P", issue, name, replaces=replaces.id if replaces else None)
    spooled = Spool(tmp_path / "spool").create(manifest)
    return LocalFile(spooled, temporary=False, replaces=replaces)


async def test_an_attachment_named_like_a_local_file_shows_under_a_dated_name(
    world: tuple[MemoryTracker, Namespace, Clock], tmp_path: Path
) -> None:
    tracker, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-2")
    assert await namespace.list_dir(issue.inode) == []
    mine = namespace.add_local(issue, "new.txt", local_file(tmp_path, "P-2", "new.txt"))
    tracker.add("P-2", ("5", "new.txt", b"someone else's"))
    clock.now += 61
    listing = {node.name: node for node in await namespace.list_dir(issue.inode)}
    assert listing["new.txt"] is mine
    theirs = listing["new (1970-01-01 00.00).txt"]
    assert theirs.attachment is not None and theirs.attachment.id == "5"
    # Once uploaded, the local file is the newest "new.txt": it keeps the plain name and
    # the other attachment keeps its dated one.
    namespace.uploaded(mine, Attachment("6", "new.txt", 4, created=60.0))
    tracker.add("P-2", ("5", "new.txt", b"someone else's"), ("6", "new.txt", b"mine"))
    clock.now += 61
    listing = {node.name: node for node in await namespace.list_dir(issue.inode)}
    assert {name: node.attachment.id for name, node in listing.items() if node.attachment} == {
        "new.txt": "6",
        "new (1970-01-01 00.00).txt": "5",
    }


async def test_the_attachment_being_overwritten_stays_out_of_the_listing(
    world: tuple[MemoryTracker, Namespace, Clock], tmp_path: Path
) -> None:
    _, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    node = await namespace.lookup(issue.inode, "a.txt")
    assert node.attachment is not None and node.attachment.id == "2"
    namespace.make_local(node, local_file(tmp_path, "P-1", "a.txt", replaces=node.attachment))
    clock.now += 61
    listing = {child.name: child for child in await namespace.list_dir(issue.inode)}
    assert listing["a.txt"] is node
    assert {name: child.attachment.id for name, child in listing.items() if child.attachment} == {
        "a (1970-01-01 00.00).txt": "1"
    }
