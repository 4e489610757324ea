"""An in-memory Tracker for unit tests of the core's pure logic (no HTTP, no FUSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import trio

from trackerfs.backends.base import Tracker
from trackerfs.errors import NotFoundError, TemporaryError
from trackerfs.model import Account, Attachment, Issue, Project


class MemoryTracker(Tracker):
    """Projects, issues and attachment bytes held in dicts; every call is recorded."""

    name: ClassVar[str] = "memory"

    def __init__(self, *, chunk: int = 64 << 10) -> None:
        self.projects = [Project("P", "Project", "1")]
        self.issues: dict[str, Issue] = {}
        self.blobs: dict[str, bytes] = {}
        self.calls: list[tuple[object, ...]] = []
        self.chunk = chunk
        self.fail_after: int | None = None  # drop the connection after this many bytes …
        self.drops = 0  # … this many times
        self.gate: trio.Event | None = None  # when set, fetches wait for it
        self.short_by = 0  # the next answer is this many bytes short
        self.range_support = True  # False: a content host that ignores Range (sends whole bodies)

    def add(self, issue_key: str, *attachments: tuple[str, str, bytes]) -> Issue:
        items = tuple(
            Attachment(id=ident, filename=name, size=len(data), created=float(n))
            for n, (ident, name, data) in enumerate(attachments)
        )
        for ident, _, data in attachments:
            self.blobs[ident] = data
        issue = Issue(issue_key, issue_key, "P", attachments=items)
        self.issues[issue_key] = issue
        return issue

    async def check_account(self) -> Account:
        return Account("me", "Me")

    async def list_projects(self) -> list[Project]:
        self.calls.append(("projects",))
        return list(self.projects)

    async def list_issues(self, project: Project) -> list[Issue]:
        self.calls.append(("issues", project.key))
        return [issue for key, issue in sorted(self.issues.items()) if key != "P-99"]

    async def get_issue(self, project: Project, key: str) -> Issue:
        self.calls.append(("issue", key))
        if key not in self.issues:
            raise NotFoundError(key)
        return self.issues[key]

    def issue_reference(self, project: Project, name: str) -> str | None:
        """`P-12`: a key of this tracker's one project (as Jira's keys read)."""
        prefix, _, number = name.partition("-")
        return name if prefix == project.key and number.isdigit() else None

    async def get_issue_by_reference(self, reference: str) -> Issue:
        self.calls.append(("issue", reference))
        if reference not in self.issues:
            raise NotFoundError(reference)
        return self.issues[reference]

    def honours_range(self, attachment: Attachment) -> bool:
        return self.range_support

    @asynccontextmanager
    async def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        self.calls.append(("range", attachment.id, start, stop))
        if self.gate is not None:
            await self.gate.wait()
        data = self.blobs[attachment.id][start:stop]
        if self.short_by:
            data, self.short_by = data[: -self.short_by], 0
        yield self._chunks(data)

    async def _chunks(self, data: bytes) -> AsyncIterator[bytes]:
        sent = 0
        for offset in range(0, len(data), self.chunk):
            piece = data[offset : offset + self.chunk]
            if self.drops and self.fail_after is not None and sent + len(piece) > self.fail_after:
                self.drops -= 1
                raise TemporaryError("connection lost")
            sent += len(piece)
            await trio.lowlevel.checkpoint()
            yield piece

    def ranges(self) -> list[tuple[int, int]]:
        return [(int(c[2]), int(c[3])) for c in self.calls if c[0] == "range"]  # type: ignore[call-overload]
