"""The vendor-neutral store: spaces, projects, issues, comments, attachments and blobs.

Every dialect renders these records in its vendor's JSON; nothing here knows a vendor.
The store fits all five trackers at once:

* ids are unique across every kind of record (one serial number, formatted by the
  dialect: Jira's ``10000``, Asana's gids, Waldur's uuids, …), so a project and an issue
  never share an id as they would with one counter per kind;
* a space (an Asana workspace, a Waldur customer, a Yandex organisation) holds projects;
* an issue belongs to a home project and may be listed in more (Asana tasks), may have a
  parent (subtasks) and a blank key (Waldur); a moved issue keeps its old keys as aliases;
* an attachment is a blob (with size, sha256 and md5) or an external link without bytes,
  may hang off a comment, and may be quarantined (OpenProject's virus scan).

Blob files live in ``data_dir/blobs/`` named exactly ``blob_name`` so that another web
server (nginx in the benchmarks) can serve the same directory behind ``--media-base``.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Literal

#: The kinds of record that get an id; a dialect may format each kind differently.
Kind = Literal["space", "project", "issue", "comment", "attachment", "user"]
#: Turns a kind and a serial number (0, 1, 2, … across all kinds) into a vendor id.
IdFormat = Callable[[Kind, int], str]


def decimal_ids(kind: Kind, serial: int) -> str:
    """Numeric string ids from 10000, one sequence for every kind."""
    return str(10000 + serial)


@dataclass(frozen=True, slots=True)
class User:
    """A tracker user: author of attachments and comments, owner of a credential."""

    account_id: str
    display_name: str
    email: str


EMULATOR_USER = User("5b10a2844c20165700ede21g", "Emulator User", "emulator@example.com")


def user_for_login(login: str) -> User:
    """A deterministic user record for a login name (``tester@example.com`` → "Tester")."""
    local = login.partition("@")[0] or login
    digest = hashlib.sha256(login.encode()).hexdigest()[:24]
    return User(f"557058:{digest}", local.replace(".", " ").title(), login)


@dataclass(slots=True)
class Space:
    """What holds projects: an Asana workspace, a Waldur customer, a Yandex organisation."""

    id: str
    name: str


@dataclass(slots=True)
class Project:
    """A project (a Jira project, an Asana project, a Waldur project, a Yandex queue, …)."""

    id: str
    key: str
    name: str
    space: str | None = None
    next_number: int = 1


@dataclass(slots=True)
class Issue:
    """An issue (Jira issue, Asana task, Waldur support issue, work package, Yandex issue).

    ``number`` orders the issues of the home ``project`` and makes the key; ``key`` may
    be blank (Waldur). ``also_in`` lists further projects the issue is shown in (Asana),
    ``aliases`` the keys it had before it was moved, ``completed`` when it was done.
    ``closed`` marks a resolved issue, which some vendors leave out of a listing unless
    asked (OpenProject's open-only default filter). ``traits`` are vendor flags a dialect's
    seed sets and renders (Waldur's ``destroy_is_available``); the store does not read them.
    """

    id: str
    key: str
    project: str
    number: int
    summary: str
    created: datetime
    updated: datetime
    parent: str | None = None
    also_in: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    closed: bool = False
    traits: dict[str, bool] = field(default_factory=dict)
    #: when the issue was completed (Asana tasks, closed issues); ``None`` while open
    completed: datetime | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment on an issue; attachments may be posted with it (Yandex)."""

    id: str
    issue: str
    author: User
    body: str
    created: datetime


class AttachmentState(Enum):
    """Whether an attachment's bytes may be served."""

    AVAILABLE = "available"
    #: held back by a virus scan (OpenProject): listed, its content refused
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class Attachment:
    """Metadata of one attachment of issue ``issue`` (an issue id).

    A blob attachment's bytes are the file ``blob_name``; an external one (an Asana link)
    has ``external_url`` instead, no blob and size 0.
    """

    id: str
    issue: str
    filename: str
    size: int
    sha256: str
    md5: str
    mime_type: str
    created: datetime
    author: User
    blob_name: str | None
    external_url: str | None = None
    comment: str | None = None
    state: AttachmentState = AttachmentState.AVAILABLE

    @property
    def is_external(self) -> bool:
        """A link to elsewhere, with no bytes in this store."""
        return self.external_url is not None


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
    """Every record in creation order, with blobs under ``blob_dir``.

    Records are keyed by id. Keys (``DEMO-1``) are looked up with :meth:`issue_by_key`,
    which follows the aliases of moved issues.
    """

    def __init__(self, blob_dir: Path, id_format: IdFormat = decimal_ids) -> None:
        self.blob_dir = blob_dir
        self.id_format = id_format
        self.spaces: dict[str, Space] = {}
        self.projects: dict[str, Project] = {}
        self.issues: dict[str, Issue] = {}
        self.comments: dict[str, Comment] = {}
        self.attachments: dict[str, Attachment] = {}
        #: attachment ids by issue (in creation order) and by blob: listings of big trees
        #: must not scan every attachment per issue
        self._of_issue: dict[str, dict[str, None]] = {}
        self._by_blob: dict[str, str] = {}
        self._serials = itertools.count()
        self._clock: datetime | None = None
        #: the latest time handed out: every stored time comes from `_now`
        self._latest: datetime | None = None
        blob_dir.mkdir(parents=True, exist_ok=True)

    def new_id(self, kind: Kind) -> str:
        """A fresh id, unique across every kind of record."""
        return self.id_format(kind, next(self._serials))

    # -- time -------------------------------------------------------------------------------
    def set_clock(self, start: datetime | None) -> None:
        """Use a fixed, ticking clock (seeds) or, with ``None``, the wall clock."""
        self._clock = start

    def _now(self) -> datetime:
        # Seeds need fixed, distinct, increasing times; later objects must still sort after
        # the seed even when the wall clock is behind the seed's dates.
        if self._clock is not None:
            now, self._clock = self._clock, self._clock + timedelta(minutes=1)
        else:
            now = datetime.now(UTC)
            # vendors show milliseconds; keep stored times equal to what is shown
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if self._latest is not None and now <= self._latest:
                now = self._latest + timedelta(milliseconds=1)
        if self._latest is None or now > self._latest:
            self._latest = now
        return now

    # -- spaces and projects ----------------------------------------------------------------
    def add_space(self, name: str) -> Space:
        """Create a space (workspace, customer, organisation)."""
        space = Space(self.new_id("space"), name)
        self.spaces[space.id] = space
        return space

    def add_project(self, key: str, name: str, *, space: str | None = None) -> Project:
        """Create a project; a non-blank key must be new."""
        if key and self.project_by_key(key) is not None:
            raise ValueError(f"project {key} exists")
        if space is not None and space not in self.spaces:
            raise KeyError(space)
        project = Project(self.new_id("project"), key, name, space)
        self.projects[project.id] = project
        return project

    def project_by_key(self, key_or_id: str) -> Project | None:
        """A project by key or id."""
        project = self.projects.get(key_or_id)
        if project is not None:
            return project
        return next((p for p in self.projects.values() if p.key and p.key == key_or_id), None)

    # -- issues -----------------------------------------------------------------------------
    def add_issue(
        self, project_id: str, summary: str, *, keyed: bool = True, parent: str | None = None
    ) -> Issue:
        """Create the next issue of a project: ``KEY-n``, or a blank key with ``keyed=False``."""
        project = self.projects[project_id]
        if parent is not None and parent not in self.issues:
            raise KeyError(parent)
        number = project.next_number
        project.next_number += 1
        created = self._now()
        issue = Issue(
            id=self.new_id("issue"),
            key=f"{project.key}-{number}" if keyed and project.key else "",
            project=project.id,
            number=number,
            summary=summary,
            created=created,
            updated=created,
            parent=parent,
        )
        self.issues[issue.id] = issue
        return issue

    def show_in(self, issue_id: str, project_id: str) -> None:
        """List an issue in a further project too (an Asana task in several projects)."""
        issue = self.issues[issue_id]
        if project_id not in self.projects:
            raise KeyError(project_id)
        if project_id != issue.project and project_id not in issue.also_in:
            issue.also_in.append(project_id)

    def move_issue(self, issue_id: str, project_id: str) -> Issue:
        """Move an issue to another project: a new key there, the old key kept as an alias."""
        issue = self.issues[issue_id]
        target = self.projects[project_id]
        if target.id == issue.project:
            return issue
        if issue.key:
            issue.aliases.append(issue.key)
            issue.key = f"{target.key}-{target.next_number}" if target.key else ""
        issue.number = target.next_number
        target.next_number += 1
        issue.project = target.id
        if target.id in issue.also_in:
            issue.also_in.remove(target.id)
        issue.updated = self._now()
        return issue

    def issues_of(self, project_id: str) -> list[Issue]:
        """The issues shown in a project (home ones ordered by number, then the others)."""
        home = sorted((i for i in self.issues.values() if i.project == project_id), key=lambda i: i.number)
        return home + [i for i in self.issues.values() if project_id in i.also_in]

    def subtasks_of(self, issue_id: str) -> list[Issue]:
        """The issues whose parent is ``issue_id``, in creation order."""
        return [i for i in self.issues.values() if i.parent == issue_id]

    def issue_by_key(self, key_or_id: str) -> Issue | None:
        """An issue by its key, an alias of a moved issue, or its id, as vendors allow."""
        issue = self.issues.get(key_or_id)
        if issue is not None:
            return issue
        if not key_or_id:
            return None
        current = next((i for i in self.issues.values() if i.key == key_or_id), None)
        if current is not None:
            return current
        return next((i for i in self.issues.values() if key_or_id in i.aliases), None)

    def project_of(self, issue: Issue) -> Project:
        """The home project of an issue."""
        return self.projects[issue.project]

    # -- comments ---------------------------------------------------------------------------
    def add_comment(self, issue_id: str, body: str, *, author: User) -> Comment:
        """Comment on an issue."""
        issue = self.issues[issue_id]
        comment = Comment(self.new_id("comment"), issue.id, author, body, self._now())
        self.comments[comment.id] = comment
        issue.updated = comment.created
        return comment

    def comments_of(self, issue_id: str) -> list[Comment]:
        """The comments of an issue, oldest first."""
        return [c for c in self.comments.values() if c.issue == issue_id]

    # -- attachments ------------------------------------------------------------------------
    def attachments_of(self, issue_id: str) -> list[Attachment]:
        """The attachments of an issue, oldest first."""
        return [self.attachments[ident] for ident in self._of_issue.get(issue_id, ())]

    def attachment_by_blob(self, blob_name: str) -> Attachment | None:
        """The attachment whose bytes are ``blob_name``."""
        ident = self._by_blob.get(blob_name)
        return None if ident is None else self.attachments.get(ident)

    def blob_path(self, attachment: Attachment) -> Path:
        """Where the bytes of a blob attachment are."""
        if attachment.blob_name is None:
            raise ValueError(f"attachment {attachment.id} is an external link without bytes")
        return self.blob_dir / attachment.blob_name

    def new_blob_path(self) -> tuple[str, Path]:
        """A fresh blob name and its path, for a caller that streams bytes into it."""
        name = uuid.uuid4().hex
        return name, self.blob_dir / name

    def add_attachment(
        self,
        issue_id: str,
        filename: str,
        data: bytes,
        *,
        author: User,
        mime_type: str | None = None,
        comment: str | None = None,
    ) -> Attachment:
        """Attach ``data`` to an issue (small seeds and control-API uploads)."""
        blob_name, path = self.new_blob_path()
        path.write_bytes(data)
        return self.register_blob(
            issue_id,
            filename,
            blob_name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            author=author,
            mime_type=mime_type,
            comment=comment,
        )

    def register_blob(
        self,
        issue_id: str,
        filename: str,
        blob_name: str,
        *,
        size: int,
        sha256: str,
        md5: str,
        author: User,
        mime_type: str | None = None,
        comment: str | None = None,
    ) -> Attachment:
        """Record an attachment whose blob file was already written under ``blob_dir``."""
        return self._record(
            Attachment(
                id=self.new_id("attachment"),
                issue=issue_id,
                filename=filename,
                size=size,
                sha256=sha256,
                md5=md5,
                mime_type=mime_type or guess_mime_type(filename),
                created=self._now(),
                author=author,
                blob_name=blob_name,
                comment=comment,
            )
        )

    def add_link(self, issue_id: str, name: str, url: str, *, author: User) -> Attachment:
        """An external (link) attachment: a name and a URL, no bytes (Asana)."""
        return self._record(
            Attachment(
                id=self.new_id("attachment"),
                issue=issue_id,
                filename=name,
                size=0,
                sha256="",
                md5="",
                mime_type="",
                created=self._now(),
                author=author,
                blob_name=None,
                external_url=url,
            )
        )

    def _record(self, attachment: Attachment) -> Attachment:
        issue = self.issues[attachment.issue]
        if attachment.comment is not None and self.comments[attachment.comment].issue != issue.id:
            raise ValueError(f"comment {attachment.comment} is not on issue {issue.id}")
        self.attachments[attachment.id] = attachment
        self._of_issue.setdefault(issue.id, {})[attachment.id] = None
        if attachment.blob_name is not None:
            self._by_blob[attachment.blob_name] = attachment.id
        issue.updated = attachment.created
        return attachment

    def set_state(self, attachment_id: str, state: AttachmentState) -> Attachment:
        """Quarantine an attachment or release it."""
        attachment = replace(self.attachments[attachment_id], state=state)
        self.attachments[attachment_id] = attachment
        return attachment

    def misstate_size(self, attachment_id: str, size: int) -> Attachment:
        """List an attachment with a size its bytes do not have (a tracker that lies).

        The listings show `size`; the content answers still send the bytes the blob holds
        (`stored_size`), as a tracker whose metadata and storage disagree does.
        """
        attachment = replace(self.attachments[attachment_id], size=size)
        self.attachments[attachment_id] = attachment
        self.issues[attachment.issue].updated = self._now()
        return attachment

    def stored_size(self, attachment: Attachment) -> int:
        """How many bytes the blob of an attachment really holds."""
        return self.blob_path(attachment).stat().st_size

    def delete_attachment(self, attachment_id: str) -> Attachment | None:
        """Remove an attachment and its blob; ``None`` when there is no such attachment."""
        attachment = self.attachments.pop(attachment_id, None)
        if attachment is not None:
            self._of_issue.get(attachment.issue, {}).pop(attachment_id, None)
            if attachment.blob_name is not None:
                self._by_blob.pop(attachment.blob_name, None)
                self.blob_path(attachment).unlink(missing_ok=True)
            self.issues[attachment.issue].updated = self._now()
        return attachment

    def clear(self) -> None:
        """Forget everything and delete every blob (a reset starts from here)."""
        self.spaces.clear()
        self.projects.clear()
        self.issues.clear()
        self.comments.clear()
        self.attachments.clear()
        self._of_issue.clear()
        self._by_blob.clear()
        self._serials = itertools.count()
        self._clock = None
        self._latest = None
        shutil.rmtree(self.blob_dir, ignore_errors=True)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
