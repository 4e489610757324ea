"""Attachment listings that cost a request per issue run a bounded number at a time.

Asana lists a task's attachments with one `GET /attachments?parent=` per task. A file
manager opening a project's task directories asks for all of them at once; the namespace
lets `ATTACHMENT_LISTINGS` run and queues the rest.
"""

from __future__ import annotations

import trio

from tests.unit.memory_tracker import MemoryTracker
from trackerfs.core.namespace import ATTACHMENT_LISTINGS, ROOT_INODE, Namespace
from trackerfs.model import Attachment, Issue, Project


class PerIssueTracker(MemoryTracker):
    """Issues listed without attachments; each issue's listing takes a while."""

    def __init__(self, issues: int) -> None:
        super().__init__()
        for n in range(1, issues + 1):
            self.add(f"P-{n}", (f"a{n}", f"file{n}.txt", b"x"))
        self.running = 0
        self.most = 0

    async def list_issues(self, project: Project) -> list[Issue]:
        listed = await super().list_issues(project)
        return [Issue(i.key, i.id, i.project_key) for i in listed]

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await trio.sleep(0.01)
            return list(self.issues[issue.key].attachments or ())
        finally:
            self.running -= 1


async def test_issue_directories_opened_together_are_listed_a_few_at_a_time() -> None:
    tracker = PerIssueTracker(issues=3 * ATTACHMENT_LISTINGS)
    namespace = Namespace(tracker)
    project = await namespace.lookup(ROOT_INODE, "P")
    issues = await namespace.list_dir(project.inode)
    listed: dict[str, list[str]] = {}

    async def open_dir(inode: int, name: str) -> None:
        listed[name] = [node.name for node in await namespace.list_dir(inode)]

    async with trio.open_nursery() as nursery:
        for node in issues:
            nursery.start_soon(open_dir, node.inode, node.name)
    assert tracker.most == ATTACHMENT_LISTINGS
    assert listed == {f"P-{n}": [f"file{n}.txt"] for n in range(1, 3 * ATTACHMENT_LISTINGS + 1)}
