"""The vendor-neutral store: projects, issues, attachments and their blobs on disk.

Every dialect renders these records in its vendor's JSON; nothing here knows a vendor.
Blob files live in ``data_dir/blobs/`` named exactly ``blob_name`` so that another web
server (nginx in the benchmarks) can serve the same directory behind ``--media-base``.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIRST_ID = 10000
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class User:
    """A tracker user (author of attachments, owner of the token)."""

    account_id: str
    display_name: str
    email: str


EMULATOR_USER = User("5b10a2844c20165700ede21g", "Emulator User", "emulator@example.com")


@dataclass(slots=True)
class Project:
    """A project (a Jira project, an Asana project, a Yandex queue, …)."""

    id: str
    key: str
    name: str
    next_number: int = 1


@dataclass(slots=True)
class Issue:
    """An issue of a project; ``number`` orders issues and makes the key."""

    id: str
    key: str
    project: str
    number: int
    summary: str
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    """Metadata of one attachment; its bytes are the blob file ``blob_name``."""

    id: str
    issue: str
    filename: str
    size: int
    sha256: str
    mime_type: str
    created: datetime
    author: User
    blob_name: str


@dataclass(slots=True)
class _Counters:
    project: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_ID))
    issue: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_ID))
    attachment: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_ID))


def guess_mime_type(filename: str, declared: str | None = None) -> str:
    """The MIME type a tracker would record: from the name first, as Jira does."""
    try:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
    except (UnicodeError, ValueError):
        guessed = None
    if guessed:
        return guessed
    if declared and declared != "application/octet-stream":
        return declared
    return "application/octet-stream"


class Store:
    """Projects, issues and attachments, in creation order, with blobs under ``blob_dir``."""

    def __init__(self, blob_dir: Path) -> None:
        self.blob_dir = blob_dir
        self.projects: dict[str, Project] = {}
        self.issues: dict[str, Issue] = {}
        self.attachments: dict[str, Attachment] = {}
        self._counters = _Counters()
        self._clock: datetime | None = None
        blob_dir.mkdir(parents=True, exist_ok=True)

    # -- time -------------------------------------------------------------------------------
    def set_clock(self, start: datetime | None) -> None:
        """Use a fixed, ticking clock (seeds) or, with ``None``, the wall clock."""
        self._clock = start

    def _now(self) -> datetime:
        # Seeds need fixed, distinct, increasing times; later objects must still sort after
        # the seed even when the wall clock is behind the seed's dates.
        if self._clock is not None:
            now, self._clock = self._clock, self._clock + timedelta(minutes=1)
            return now
        latest = max(
            itertools.chain(
                (a.created for a in self.attachments.values()),
                (i.updated for i in self.issues.values()),
            ),
            default=None,
        )
        now = datetime.now(UTC)
        # vendors show milliseconds; keep stored times equal to what is shown
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if latest is not None and now <= latest:
            now = latest + timedelta(milliseconds=1)
        return now

    # -- projects and issues ----------------------------------------------------------------
    def add_project(self, key: str, name: str) -> Project:
        """Create a project; its key must be new."""
        if key in self.projects:
            raise ValueError(f"project {key} exists")
        project = Project(str(next(self._counters.project)), key, name)
        self.projects[key] = project
        return project

    def add_issue(self, project_key: str, summary: str) -> Issue:
        """Create the next issue of a project (``KEY-n``)."""
        project = self.projects[project_key]
        number = project.next_number
        project.next_number += 1
        created = self._now()
        issue = Issue(
            id=str(next(self._counters.issue)),
            key=f"{project.key}-{number}",
            project=project.key,
            number=number,
            summary=summary,
            created=created,
            updated=created,
        )
        self.issues[issue.key] = issue
        return issue

    def issues_of(self, project_key: str) -> list[Issue]:
        """The issues of a project ordered by number."""
        return sorted((i for i in self.issues.values() if i.project == project_key), key=lambda i: i.number)

    def issue_by_key_or_id(self, key_or_id: str) -> Issue | None:
        """Look an issue up by key (``DEMO-1``) or numeric id, as vendors allow."""
        issue = self.issues.get(key_or_id)
        if issue is not None:
            return issue
        return next((i for i in self.issues.values() if i.id == key_or_id), None)

    # -- attachments ------------------------------------------------------------------------
    def attachments_of(self, issue_key: str) -> list[Attachment]:
        """The attachments of an issue, oldest first."""
        return [a for a in self.attachments.values() if a.issue == issue_key]

    def blob_path(self, attachment: Attachment) -> Path:
        """Where the bytes of an attachment are."""
        return self.blob_dir / attachment.blob_name

    def new_blob_path(self) -> tuple[str, Path]:
        """A fresh blob name and its path, for a caller that streams bytes into it."""
        name = uuid.uuid4().hex
        return name, self.blob_dir / name

    def add_attachment(
        self, issue_key: str, filename: str, data: bytes, *, author: User, mime_type: str | None = None
    ) -> Attachment:
        """Attach ``data`` to an issue (small seeds and control-API uploads)."""
        blob_name, path = self.new_blob_path()
        path.write_bytes(data)
        return self.register_blob(
            issue_key,
            filename,
            blob_name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            author=author,
            mime_type=mime_type,
        )

    def register_blob(
        self,
        issue_key: str,
        filename: str,
        blob_name: str,
        *,
        size: int,
        sha256: str,
        author: User,
        mime_type: str | None = None,
    ) -> Attachment:
        """Record an attachment whose blob file was already written under ``blob_dir``."""
        issue = self.issues[issue_key]
        created = self._now()
        attachment = Attachment(
            id=str(next(self._counters.attachment)),
            issue=issue_key,
            filename=filename,
            size=size,
            sha256=sha256,
            mime_type=mime_type or guess_mime_type(filename),
            created=created,
            author=author,
            blob_name=blob_name,
        )
        self.attachments[attachment.id] = attachment
        issue.updated = created
        return attachment

    def delete_attachment(self, attachment_id: str) -> Attachment | None:
        """Remove an attachment and its blob; ``None`` when there is no such attachment."""
        attachment = self.attachments.pop(attachment_id, None)
        if attachment is not None:
            self.blob_path(attachment).unlink(missing_ok=True)
            self.issues[attachment.issue].updated = self._now()
        return attachment

    def clear(self) -> None:
        """Forget everything and delete every blob (a reset starts from here)."""
        self.projects.clear()
        self.issues.clear()
        self.attachments.clear()
        self._counters = _Counters()
        self._clock = None
        shutil.rmtree(self.blob_dir, ignore_errors=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
