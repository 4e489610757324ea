"""Listings, TTLs and the negative cache of the namespace, with an injected clock."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.config import CacheSettings
from trackerfs.core.namespace import ROOT_INODE, AttachmentEntry, Kind, Namespace, Node
from trackerfs.core.spool import LocalFile, Manifest, Spool
from trackerfs.errors import NotFoundError
from trackerfs.model import Attachment, Issue, Project


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


class ArchivingTracker(MemoryTracker):
    """A memory tracker with a project its listing leaves out (archived), found by id."""

    archived = Project("OLD", "Old project", "7", label="Old project")

    def project_reference(self, name: str) -> str | None:
        return name if name.isupper() or name.isdigit() else None

    async def get_project(self, reference: str) -> Project:
        self.calls.append(("project", reference))
        if reference in (self.archived.key, self.archived.id):
            return self.archived
        raise NotFoundError(reference)


async def test_a_project_no_listing_shows_opens_by_its_own_reference() -> None:
    tracker = ArchivingTracker()
    namespace = Namespace(tracker, CacheSettings(metadata_ttl=60, negative_ttl=30), clock=Clock())
    assert [n.name for n in await namespace.list_dir(ROOT_INODE)] == ["P"]
    by_id = await namespace.lookup(ROOT_INODE, "7")
    assert by_id.kind is Kind.PROJECT and by_id.name == "7"
    assert (await namespace.lookup(ROOT_INODE, "7")) is by_id
    with pytest.raises(NotFoundError):
        await namespace.lookup(ROOT_INODE, "NOPE")
    with pytest.raises(NotFoundError):
        await namespace.lookup(ROOT_INODE, ".directory")
    assert [c for c in tracker.calls if c[0] == "project"] == [("project", "7"), ("project", "NOPE")]


async def test_inodes_are_stable_and_lookups_counted(world: tuple[MemoryTracker, Namespace, Clock]) -> None:
    _, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    first = await namespace.lookup(issue.inode, "a.txt")
    clock.now += 1000
    again = await namespace.lookup(issue.inode, "a.txt")
    assert again.inode == first.inode and again.lookups == 2
    namespace.forget(first.inode, 2)
    with pytest.raises(NotFoundError):
        namespace.node(first.inode)  # forgotten by the kernel, used by no handle: freed
    assert (await namespace.lookup(issue.inode, "a.txt")).inode == first.inode
    with pytest.raises(NotFoundError):
        namespace.node(123456)


def attachment_ids(listing: dict[str, Node]) -> dict[str, str]:
    """Name → attachment id of the attachments in a listing (local files left out)."""
    return {
        name: node.entry.attachment.id
        for name, node in listing.items()
        if isinstance(node.entry, AttachmentEntry)
    }


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
    assert isinstance(theirs.entry, AttachmentEntry) and theirs.entry.attachment.id == "5"
    # Once uploaded, the local file is the newest "new.txt": it keeps the plain name and
    # the other attachment keeps its dated one.
    namespace.uploaded(mine, Attachment("6", "new.txt", 4, created=60.0))
    tracker.add("P-2", ("5", "new.txt", b"someone else's"), ("6", "new.txt", b"mine"))
    clock.now += 61
    listing = {node.name: node for node in await namespace.list_dir(issue.inode)}
    assert attachment_ids(listing) == {
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
    assert isinstance(node.entry, AttachmentEntry) and node.entry.attachment.id == "2"
    namespace.make_local(node, local_file(tmp_path, "P-1", "a.txt", replaces=node.entry.attachment))
    clock.now += 61
    listing = {child.name: child for child in await namespace.list_dir(issue.inode)}
    assert listing["a.txt"] is node
    assert attachment_ids(listing) == {"a (1970-01-01 00.00).txt": "1"}


async def test_forgotten_nodes_are_freed_and_keep_their_inode_numbers(tmp_path: Path) -> None:
    tracker = MemoryTracker()
    tracker.add("P-1", *((str(n), f"file-{n}.bin", b"x") for n in range(10_000)))
    namespace = Namespace(tracker, CacheSettings(metadata_ttl=60, negative_ttl=30), clock=Clock())
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    before = namespace.statistics().nodes
    numbers = {}
    for n in range(10_000):
        node = await namespace.lookup(issue.inode, f"file-{n}.bin")
        numbers[n] = node.inode
    assert namespace.statistics().nodes == before + 10_000
    for inode in numbers.values():
        namespace.forget(inode, 1)
    assert namespace.statistics().nodes == before, "the node table shrinks back"
    assert (await namespace.lookup(issue.inode, "file-1234.bin")).inode == numbers[1234]
    # A directory goes once its children have gone, and keeps its number too.
    namespace.forget(numbers[1234], 1)
    namespace.forget(issue.inode, 1)
    namespace.forget(project.inode, 1)
    assert namespace.statistics().nodes == 1
    assert (await namespace.lookup(ROOT_INODE, "P")).inode == project.inode
    assert namespace.statistics().inodes == 10_003


async def test_nodes_in_use_are_kept_until_their_last_user_goes(
    world: tuple[MemoryTracker, Namespace, Clock],
) -> None:
    _, namespace, _ = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    listed = await namespace.list_dir(issue.inode)
    namespace.pin(listed)  # a directory handle holds the listing, not yet replied
    opened = await namespace.lookup(issue.inode, "a.txt")
    opened.opens += 1
    namespace.forget(opened.inode, 1)
    namespace.forget(issue.inode, 1)
    assert namespace.node(opened.inode) is opened and namespace.node(issue.inode) is issue
    namespace.unpin(listed)
    assert namespace.node(opened.inode) is opened, "still open"
    opened.opens -= 1
    namespace.settle(opened)
    with pytest.raises(NotFoundError):
        namespace.node(opened.inode)
    with pytest.raises(NotFoundError):
        namespace.node(issue.inode)


class LazyTracker(MemoryTracker):
    """A tracker whose project listing does not embed attachments (one request per issue)."""

    async def list_issues(self, project: Project) -> list[Issue]:
        return [replace(issue, attachments=None) for issue in await super().list_issues(project)]

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        self.calls.append(("attachments", issue.key))
        return list(self.issues[issue.key].attachments or ())


async def test_a_refresh_keeps_the_attachments_of_issues_whose_update_time_did_not_change() -> None:
    tracker = LazyTracker()
    for n in range(1, 6):
        tracker.add(f"P-{n}", (str(n), f"{n}.txt", b"x"))
        tracker.issues[f"P-{n}"] = replace(tracker.issues[f"P-{n}"], updated=100.0)
    clock = Clock()
    namespace = Namespace(tracker, CacheSettings(metadata_ttl=60, negative_ttl=30), clock=clock)
    project = await namespace.lookup(ROOT_INODE, "P")

    async def walk() -> dict[str, list[str]]:
        issues = await namespace.list_dir(project.inode)
        return {issue.name: [f.name for f in await namespace.list_dir(issue.inode)] for issue in issues}

    assert (await walk())["P-3"] == ["3.txt"]
    assert len([c for c in tracker.calls if c[0] == "attachments"]) == 5
    tracker.add("P-3", ("3", "3.txt", b"x"), ("33", "new.txt", b"y"))
    tracker.issues["P-3"] = replace(tracker.issues["P-3"], updated=200.0)
    clock.now += 61
    del tracker.calls[:]
    assert (await walk())["P-3"] == ["3.txt", "new.txt"]
    assert [c for c in tracker.calls if c[0] == "attachments"] == [("attachments", "P-3")]


async def test_an_upload_the_tracker_renamed_is_listed_under_its_name_and_found_under_both(
    world: tuple[MemoryTracker, Namespace, Clock], tmp_path: Path
) -> None:
    tracker, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-2")
    await namespace.list_dir(issue.inode)
    mine = namespace.add_local(issue, "my report.pdf", local_file(tmp_path, "P-2", "my report.pdf"))
    namespace.remember(mine)  # as create does
    namespace.uploaded(mine, Attachment("7", "my_report.pdf", 4, created=60.0))
    assert [node.name for node in await namespace.list_dir(issue.inode)] == ["my_report.pdf"]
    assert await namespace.lookup(issue.inode, "my report.pdf") is mine
    assert await namespace.lookup(issue.inode, "my_report.pdf") is mine
    tracker.add("P-2", ("7", "my_report.pdf", b"mine"))
    clock.now += 61  # a fresh listing from the tracker: the alias still holds
    assert [node.name for node in await namespace.list_dir(issue.inode)] == ["my_report.pdf"]
    assert (await namespace.lookup(issue.inode, "my report.pdf")).inode == mine.inode
    namespace.deleted(issue, "7")
    with pytest.raises(NotFoundError):
        await namespace.lookup(issue.inode, "my report.pdf")


class LabelledTracker(MemoryTracker):
    """Projects and issues named by labels that are not keys (as Asana names tasks)."""

    def __init__(self) -> None:
        super().__init__()
        self.projects = [
            Project("P", "Project", "100", label="Roadmap"),
            Project("Q", "Other", "200", label="Roadmap"),
        ]

    def issue_reference(self, project: Project, name: str) -> str | None:
        return name if name.isdigit() else None

    async def get_issue(self, project: Project, key: str) -> Issue:
        self.calls.append(("issue", key))
        for issue in self.issues.values():
            if issue.id == key:
                return issue
        raise NotFoundError(key)


async def test_directories_show_labels_and_the_vendor_reference_still_works() -> None:
    tracker = LabelledTracker()
    for n, label in ((1, "Fix it"), (2, "Fix it"), (3, "a/b")):
        issue = tracker.add(f"P-{n}")
        tracker.issues[f"P-{n}"] = replace(issue, id=str(500 + n), label=label, created=float(n))
    namespace = Namespace(tracker, CacheSettings(metadata_ttl=60, negative_ttl=30), clock=Clock())
    assert [node.name for node in await namespace.list_dir(ROOT_INODE)] == ["Roadmap", "Roadmap (200)"]
    project = await namespace.lookup(ROOT_INODE, "Roadmap")
    assert await namespace.lookup(ROOT_INODE, "P") is project, "the project key works too"
    assert await namespace.lookup(ROOT_INODE, "100") is project, "and its id"
    names = [node.name for node in await namespace.list_dir(project.inode)]
    assert names == ["Fix it", "Fix it (502)", "a_b"]
    calls = len(tracker.calls)
    listed = await namespace.lookup(project.inode, "Fix it (502)")
    assert await namespace.lookup(project.inode, "502") is listed, "the id finds the listed issue"
    assert tracker.calls[calls:] == [], "without a request"
    tracker.issues["P-9"] = Issue("P-9", "509", "P", label="unlisted")
    hidden = await namespace.lookup(project.inode, "509")
    assert hidden.name == "509" and tracker.calls[-1] == ("issue", "509")
    with pytest.raises(NotFoundError):
        await namespace.lookup(project.inode, "P-1")  # not a reference this tracker knows


async def test_directories_are_keyed_by_vendor_ids_not_by_keys(
    world: tuple[MemoryTracker, Namespace, Clock],
) -> None:
    tracker, namespace, clock = world
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    file = await namespace.lookup(issue.inode, "a.txt")
    moved = tracker.issues.pop("P-1")
    tracker.issues["P-7"] = replace(moved, key="P-7")  # a moved Jira issue: new key, same id
    clock.now += 61
    again = await namespace.lookup(project.inode, "P-7")
    assert again.inode == issue.inode
    assert (await namespace.lookup(again.inode, "a.txt")).inode == file.inode


async def test_an_issue_in_two_projects_has_a_node_in_each(
    world: tuple[MemoryTracker, Namespace, Clock],
) -> None:
    tracker, namespace, _ = world
    tracker.projects.append(Project("R", "Other", "2"))  # this tracker lists every issue in both
    here = await namespace.lookup((await namespace.lookup(ROOT_INODE, "P")).inode, "P-1")
    there = await namespace.lookup((await namespace.lookup(ROOT_INODE, "R")).inode, "P-1")
    assert here.inode != there.inode and here.parent != there.parent
    mine = await namespace.lookup(here.inode, "a.txt")
    theirs = await namespace.lookup(there.inode, "a.txt")
    assert mine.inode != theirs.inode, "attachment nodes are keyed by (project, issue, id)"
    assert mine.parent == here.inode and theirs.parent == there.inode


async def test_a_zero_metadata_ttl_still_answers_every_lookup() -> None:
    tracker = MemoryTracker()
    tracker.add("P-1", ("1", "a.txt", b"one"))
    clock = Clock()

    def ticking() -> float:
        clock.now += 0.001  # time passes between any two questions, as on a real clock
        return clock.now

    namespace = Namespace(tracker, CacheSettings(metadata_ttl=0, negative_ttl=0), clock=ticking)
    project = await namespace.lookup(ROOT_INODE, "P")
    issue = await namespace.lookup(project.inode, "P-1")
    assert [node.name for node in await namespace.list_dir(issue.inode)] == ["a.txt"]
