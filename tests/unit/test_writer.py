"""The writer's decisions with an in-memory tracker: lost upload answers, permissions."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
import trio

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.backends.base import UploadSource
from trackerfs.config import CacheSettings
from trackerfs.core.namespace import ROOT_INODE, AttachmentEntry, LocalEntry, Namespace, Node
from trackerfs.core.spool import PENDING, Manifest, Spool
from trackerfs.core.writer import Writer
from trackerfs.errors import (
    NotPermittedError,
    OutcomeUnknownError,
    PermissionDeniedError,
    TooLargeError,
    TrackerError,
)
from trackerfs.model import Attachment, Issue, Limits, Permissions, Project


class WritableTracker(MemoryTracker):
    """A memory tracker that takes uploads, can lose their answers, and has permissions."""

    def __init__(self) -> None:
        super().__init__()
        #: per upload attempt: (store it?, then lose the answer?)
        self.upload_plan: list[tuple[bool, bool]] = []
        self.granted = Permissions()
        self._next_id = 100

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        store, lose = self.upload_plan.pop(0) if self.upload_plan else (True, False)
        self.calls.append(("upload", issue.key, filename))
        with source() as handle:
            data = handle.read()
        attachment = Attachment(str(self._next_id), filename, len(data), time.time())
        self._next_id += 1
        if store:
            self.blobs[attachment.id] = data
            current = self.issues[issue.key]
            self.issues[issue.key] = Issue(
                current.key, current.id, "P", attachments=(*(current.attachments or ()), attachment)
            )
        if lose:
            raise OutcomeUnknownError("connection lost after sending")
        return attachment

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        self.calls.append(("delete", issue.key, attachment))
        current = self.issues[issue.key]
        kept = tuple(a for a in current.attachments or () if a.id != attachment.id)
        self.issues[issue.key] = Issue(current.key, current.id, "P", attachments=kept)

    async def permissions(self, issue: Issue) -> Permissions:
        self.calls.append(("permissions", issue.key))
        return self.granted

    def uploads(self) -> int:
        return sum(1 for call in self.calls if call[0] == "upload")


@pytest.fixture
def tracker() -> WritableTracker:
    tracker = WritableTracker()
    tracker.add("P-1", ("1", "old.txt", b"old bytes"))
    return tracker


@pytest.fixture
def writer(tracker: WritableTracker, tmp_path: Path) -> Writer:
    namespace = Namespace(tracker, CacheSettings())
    return Writer(namespace, tracker, Spool(tmp_path / "spool"), tmp_path, Limits())


async def issue_dir(writer: Writer) -> Node:
    project = await writer.namespace.lookup(ROOT_INODE, "P")
    directory = await writer.namespace.lookup(project.inode, "P-1")
    await writer.namespace.list_dir(directory.inode)
    return directory


async def write_and_close(writer: Writer, name: str, data: bytes) -> Node:
    node = await writer.create(await issue_dir(writer), name)
    assert isinstance(node.entry, LocalEntry)
    writer.write(node.entry.local, 0, data)
    await writer.flush(node)
    return node


async def test_an_upload_whose_answer_was_lost_but_that_landed_is_not_sent_again(
    tracker: WritableTracker, writer: Writer
) -> None:
    tracker.upload_plan = [(True, True)]
    node = await write_and_close(writer, "new.txt", b"new bytes")
    assert tracker.uploads() == 1
    [landed] = [a for a in tracker.issues["P-1"].attachments or () if a.filename == "new.txt"]
    assert isinstance(node.entry, AttachmentEntry) and node.entry.attachment == landed


async def test_an_upload_that_surely_did_not_land_is_sent_once_more(
    tracker: WritableTracker, writer: Writer
) -> None:
    tracker.upload_plan = [(False, True), (True, False)]
    node = await write_and_close(writer, "new.txt", b"new bytes")
    assert tracker.uploads() == 2
    assert isinstance(node.entry, AttachmentEntry) and tracker.blobs[node.entry.attachment.id] == b"new bytes"


async def test_a_second_lost_answer_without_a_landing_is_eio_and_the_bytes_stay(
    tracker: WritableTracker, writer: Writer, tmp_path: Path
) -> None:
    tracker.upload_plan = [(False, True), (False, True)]
    with pytest.raises(TrackerError) as caught:
        await write_and_close(writer, "new.txt", b"new bytes")
    assert caught.value.errno == errno.EIO
    assert tracker.uploads() == 2
    assert [p.read_bytes() for p in (tmp_path / "spool").glob("*.data")] == [b"new bytes"]


async def test_an_overwrite_the_account_may_not_delete_is_refused_before_any_upload(
    tracker: WritableTracker, writer: Writer
) -> None:
    tracker.granted = Permissions(create=True, delete_own=False, delete_any=False, account="me")
    directory = await issue_dir(writer)
    node = await writer.namespace.lookup(directory.inode, "old.txt")
    with pytest.raises(PermissionDeniedError):
        await writer.begin_overwrite(node, truncate=True)
    assert tracker.uploads() == 0 and isinstance(node.entry, AttachmentEntry)


@pytest.fixture
def fixed(tracker: WritableTracker) -> WritableTracker:
    """P-1 holds `fixed.txt`, an attachment the tracker will not let anyone delete."""
    issue = tracker.issues["P-1"]
    item = Attachment("2", "fixed.txt", 5, 1.0, read_only=True)
    tracker.blobs["2"] = b"fixed"
    tracker.issues["P-1"] = Issue(issue.key, issue.id, "P", attachments=(*(issue.attachments or ()), item))
    return tracker


@pytest.mark.parametrize("change", ["unlink", "truncate", "write"])
async def test_a_read_only_attachment_is_refused_eperm_before_any_request(
    fixed: WritableTracker, writer: Writer, change: str
) -> None:
    directory = await issue_dir(writer)
    node = await writer.namespace.lookup(directory.inode, "fixed.txt")
    fixed.calls.clear()
    with pytest.raises(NotPermittedError) as refused:
        if change == "unlink":
            await writer.unlink(directory, "fixed.txt")
        else:
            await writer.begin_overwrite(node, truncate=change == "truncate")
    assert refused.value.errno == errno.EPERM
    assert fixed.calls == [] and isinstance(node.entry, AttachmentEntry)
    assert await writer.namespace.find(directory, "fixed.txt") is node


async def test_a_read_only_attachment_is_not_replaced_by_a_rename_onto_it(
    fixed: WritableTracker, writer: Writer
) -> None:
    directory = await issue_dir(writer)
    local = await writer.create(directory, "draft.txt")
    fixed.calls.clear()
    with pytest.raises(NotPermittedError):
        await writer.rename(directory, "draft.txt", directory, "fixed.txt", no_replace=False)
    assert fixed.uploads() == 0 and not [call for call in fixed.calls if call[0] == "delete"]
    assert await writer.namespace.find(directory, "draft.txt") is local


async def test_nodes_the_kernel_never_looked_up_are_freed_after_unlink_and_rename(
    tracker: WritableTracker, writer: Writer
) -> None:
    """Removing or replacing a name the kernel holds no reference to leaves no node behind."""
    tracker.add("P-1", ("1", "old.txt", b"old bytes"), ("2", "gone.txt", b"gone"))
    project = await writer.namespace.lookup(ROOT_INODE, "P")
    directory = await writer.namespace.lookup(project.inode, "P-1")
    before = writer.namespace.statistics().nodes
    await writer.unlink(directory, "gone.txt")
    assert writer.namespace.statistics().nodes == before
    draft = await writer.create(directory, "draft.txt")
    writer.namespace.remember(draft)
    await writer.rename(directory, "draft.txt", directory, "old.txt", no_replace=False)
    # The draft's node (the kernel's) now holds the name; old.txt's own node is gone.
    assert writer.namespace.statistics().nodes == before + 1


async def test_the_permission_answer_is_asked_once_for_a_burst_of_creates(
    tracker: WritableTracker, writer: Writer
) -> None:
    directory = await issue_dir(writer)
    for name in ("a.txt", "b.txt", "c.txt"):
        await writer.create(directory, name)
    assert [call for call in tracker.calls if call[0] == "permissions"] == [("permissions", "P-1")]


async def test_concurrent_first_writes_share_one_local_file(tracker: WritableTracker, writer: Writer) -> None:
    directory = await issue_dir(writer)
    node = await writer.namespace.lookup(directory.inode, "old.txt")
    tracker.gate = trio.Event()
    results = []

    async def begin() -> None:
        results.append(await writer.begin_overwrite(node, truncate=False))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(begin)
        nursery.start_soon(begin)
        await trio.testing.wait_all_tasks_blocked()
        tracker.gate.set()
    assert len(results) == 2 and results[0] is results[1]
    assert len([call for call in tracker.calls if call[0] == "range"]) == 1


def deletes(tracker: WritableTracker) -> list[tuple[object, ...]]:
    return [call for call in tracker.calls if call[0] == "delete"]


async def test_an_overwrite_deletes_the_old_attachment_by_its_issue_and_whole_record(
    tracker: WritableTracker, writer: Writer
) -> None:
    [original] = tracker.issues["P-1"].attachments or ()
    directory = await issue_dir(writer)
    node = await writer.namespace.lookup(directory.inode, "old.txt")
    local = await writer.begin_overwrite(node, truncate=True)
    assert local.replaces == original
    writer.write(local, 0, b"new bytes")
    await writer.flush(node)
    assert deletes(tracker) == [("delete", "P-1", original)]


async def test_unlinking_an_attachment_deletes_it_by_its_issue_and_whole_record(
    tracker: WritableTracker, writer: Writer
) -> None:
    [original] = tracker.issues["P-1"].attachments or ()
    await writer.unlink(await issue_dir(writer), "old.txt")
    assert deletes(tracker) == [("delete", "P-1", original)]


async def test_recovery_finds_the_issue_by_its_reference_and_the_replaced_record_by_listing(
    tracker: WritableTracker, writer: Writer, tmp_path: Path
) -> None:
    [original] = tracker.issues["P-1"].attachments or ()
    manifest = Manifest("P", "P-1", "old.txt", replaces="1", issue_ref="P-1")
    spooled = writer.spool.create(manifest)
    spooled.pwrite(b"newer bytes", 0)
    spooled.save(state=PENDING, size=11, upload_started=time.time())
    spooled.close()
    pending = writer.prepare_recovery()
    await writer.recover(pending, lambda left: None)
    assert ("issue", "P-1") in tracker.calls
    assert deletes(tracker) == [("delete", "P-1", original)]
    [uploaded] = tracker.issues["P-1"].attachments or ()
    assert tracker.blobs[uploaded.id] == b"newer bytes"


def own(author: str) -> Attachment:
    return Attachment("5", "a.txt", 1, 0.0, author_id=author)


@pytest.mark.parametrize(
    ("permissions", "attachment", "expected"),
    [
        (Permissions(), own("me"), None),
        (Permissions(delete_any=True), own("other"), True),
        (Permissions(delete_own=True, delete_any=False, account="me"), own("me"), True),
        (Permissions(delete_own=True, delete_any=False, account="me"), own("other"), False),
        (Permissions(delete_own=True, delete_any=False, account="me"), own(""), None),
        (Permissions(delete_own=False, delete_any=False, account="me"), own(""), False),
    ],
)
def test_who_may_delete_what(permissions: Permissions, attachment: Attachment, expected: bool | None) -> None:
    assert permissions.may_delete(attachment) is expected


async def test_a_file_cut_short_by_a_refused_write_is_uploaded_only_once_emptied(
    tracker: WritableTracker, tmp_path: Path
) -> None:
    namespace = Namespace(tracker, CacheSettings())
    writer = Writer(namespace, tracker, Spool(tmp_path / "spool"), tmp_path, Limits(upload_limit=4))
    node = await writer.create(await issue_dir(writer), "big.txt")
    assert isinstance(node.entry, LocalEntry)
    local = node.entry.local
    with pytest.raises(TooLargeError):
        writer.write(local, 0, b"too long")
    with pytest.raises(TooLargeError):
        await writer.flush(node)
    assert tracker.uploads() == 0
    writer.truncate(local, 0)
    writer.write(local, 0, b"fits")
    await writer.flush(node)
    assert isinstance(node.entry, AttachmentEntry) and tracker.blobs[node.entry.attachment.id] == b"fits"


class SlowListingTracker(WritableTracker):
    """Answers each attachment listing with the state at the time it was asked, later."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[trio.Event] = [trio.Event() for _ in range(4)]
        self.answer: list[trio.Event] = [trio.Event() for _ in range(4)]
        self.listings = 0

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        number, self.listings = self.listings, self.listings + 1
        then = list(self.issues[issue.key].attachments or ())
        self.asked[number].set()
        await self.answer[number].wait()
        return then


class SlowIssueListingTracker(WritableTracker):
    """Once `slow`, answers a project's issue listing (attachments embedded) with the state
    at the time it was asked, after `answer` is set; counts attachment listings."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.asked = trio.Event()
        self.answer = trio.Event()
        self.attachment_listings = 0

    async def list_issues(self, project: Project) -> list[Issue]:
        then = await super().list_issues(project)
        if self.slow:
            self.asked.set()
            await self.answer.wait()
        return then

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        self.attachment_listings += 1
        return list(self.issues[issue.key].attachments or ())


async def test_an_issue_listing_answered_while_a_delete_landed_is_corrected_not_dropped(
    tmp_path: Path,
) -> None:
    tracker = SlowIssueListingTracker()
    tracker.add("P-1", ("1", "keep.txt", b"keep"), ("2", "gone.txt", b"gone"))
    namespace = Namespace(tracker, CacheSettings())
    writer = Writer(namespace, tracker, Spool(tmp_path / "spool"), tmp_path, Limits())
    directory = await issue_dir(writer)
    project = namespace.node(directory.parent)
    namespace.flush()
    tracker.slow = True

    async def delete_lands_meanwhile() -> None:
        await tracker.asked.wait()
        issue = tracker.issues["P-1"]
        [item] = [item for item in issue.attachments or () if item.id == "2"]
        await tracker.delete(issue, item)
        namespace.deleted(directory, "2")
        tracker.answer.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(delete_lands_meanwhile)
            await namespace.list_dir(project.inode)
    listed = [node.name for node in await namespace.list_dir(directory.inode)]
    # The embedded listing, with the delete applied, fills the issue: no request of its own.
    assert listed == ["keep.txt"]
    assert tracker.attachment_listings == 0
    # No listing is in flight any more: the journal holds nothing.
    assert not namespace._journal


async def test_the_journal_keeps_nothing_while_no_listing_is_in_flight(tmp_path: Path) -> None:
    tracker = WritableTracker()
    tracker.add("P-1")
    namespace = Namespace(tracker, CacheSettings())
    writer = Writer(namespace, tracker, Spool(tmp_path / "spool"), tmp_path, Limits())
    for number in range(20):
        await write_and_close(writer, f"file-{number}.txt", b"x")
    assert not namespace._journal


async def test_listings_answered_while_deletes_landed_do_not_bring_the_files_back(tmp_path: Path) -> None:
    tracker = SlowListingTracker()
    tracker.add("P-1", ("1", "old.txt", b"old"), ("2", "gone.txt", b"gone"), ("3", "also.txt", b"also"))
    namespace = Namespace(tracker, CacheSettings())
    writer = Writer(namespace, tracker, Spool(tmp_path / "spool"), tmp_path, Limits())
    directory = await issue_dir(writer)
    namespace.flush()
    listed: list[list[str]] = []

    async def deletes_land_meanwhile() -> None:
        # Each listing is a snapshot taken before one of the mount's deletes lands (as the
        # writer's delete of a replaced attachment does, behind the close).
        for number, ident in ((0, "2"), (1, "3")):
            await tracker.asked[number].wait()
            issue = tracker.issues["P-1"]
            [item] = [item for item in issue.attachments or () if item.id == ident]
            await tracker.delete(issue, item)
            namespace.deleted(directory, ident)
            tracker.answer[number].set()
        tracker.answer[2].set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deletes_land_meanwhile)
            listed.append([node.name for node in await namespace.list_dir(directory.inode)])
            nursery.cancel_scope.cancel()
    # The listing shows what the tracker holds once it is answered, deletes included.
    held = sorted(item.filename for item in tracker.issues["P-1"].attachments or ())
    assert sorted(listed[0]) == held
    assert held in (["also.txt", "old.txt"], ["old.txt"])
    assert await namespace.find(directory, "gone.txt") is None
