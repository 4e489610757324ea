"""The one interface every tracker backend implements.

A backend turns vendor URLs, JSON shapes, paging and quirks into the neutral records of
`trackerfs.model`, and vendor failures into `TrackerError` subclasses. It knows nothing of
inodes, file handles or errno values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import BinaryIO, ClassVar

from trackerfs.config import ProfileKey
from trackerfs.errors import NotFoundError
from trackerfs.model import Account, Attachment, Issue, Limits, Permissions, Project

#: Opens a fresh binary file positioned at 0 holding an upload's bytes (called per attempt).
UploadSource = Callable[[], BinaryIO]


class GrowingSource(ABC):
    """The bytes of a file still being written, for an upload that starts before its end.

    Calling it opens a fresh binary file positioned at 0, as an `UploadSource` does; the
    file holds only the bytes written so far, and `ready` says when more may be read.
    """

    @abstractmethod
    def __call__(self) -> BinaryIO:
        """A fresh binary file positioned at 0 (called per attempt)."""

    @abstractmethod
    async def ready(self, position: int, want: int) -> int:
        """Wait until `want` bytes past `position` are written, or the file ended sooner.

        Returns how many bytes may be read at `position` (at most `want`); 0 means the
        file ends at `position`. Raises OSError when the upload must be given up (the
        bytes already sent were changed).
        """


class Tracker(ABC):
    """A tracker account as a tree of projects, issues and attachments."""

    #: The name used in configuration files (`tracker = "jira"`).
    name: ClassVar[str]
    #: What this tracker calls its projects and issues, for messages.
    project_noun: ClassVar[str] = "project"
    issue_noun: ClassVar[str] = "issue"
    #: Whether `upload_growing` works: the tracker takes an upload body of unknown length
    #: (HTTP/1.1 chunked), so a large file is sent while it is still being written.
    grows_uploads: ClassVar[bool] = False
    #: The profile keys this backend reads besides the general ones, checked before it is
    #: built; the checked values reach its constructor as `BackendOptions`.
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {}

    @abstractmethod
    async def check_account(self) -> Account:
        """Verify the credentials; raise AuthenticationError when they are refused."""

    @abstractmethod
    async def list_projects(self) -> list[Project]:
        """Every project the account can see."""

    @abstractmethod
    async def list_issues(self, project: Project) -> list[Issue]:
        """The issues of a project shown in its directory (possibly a configured subset).

        Where the vendor can embed attachment metadata in the listing, the returned issues
        carry it (`Issue.attachments` is not None), so no per-issue request is needed.
        """

    @abstractmethod
    async def get_issue(self, project: Project, key: str) -> Issue:
        """One issue of `project` by its key (or a reference from `issue_reference`), with
        attachments; NotFoundError otherwise."""

    def locator(self, issue: Issue) -> str:
        """What finds `issue` again with `get_issue_by_reference`, in a later run too.

        The spool keeps it, so that an upload a crash cut off can be finished without a
        project record: a vendor whose issues are found by id (a gid, a uuid) says the id.
        """
        return issue.key

    async def get_issue_by_reference(self, reference: str) -> Issue:
        """The issue `locator` named, with attachments; NotFoundError if it is gone."""
        raise NotImplementedError

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        """The attachments of an issue (default: re-read the issue by its reference)."""
        fresh = await self.get_issue_by_reference(self.locator(issue))
        return list(fresh.attachments or ())

    def issue_reference(self, project: Project, name: str) -> str | None:
        """What to pass `get_issue` for a name of `project`'s directory no listing shows.

        None when `name` cannot name an issue (a desktop probe such as `.directory`): it
        then costs no request. The default knows no reference format: only listed issues
        are found.
        """
        return None

    def project_reference(self, name: str) -> str | None:
        """The project key or id a root name no listing shows may stand for (None: none).

        The core matches it against every listed project's key and id, so a project is
        also reachable under the vendor's own id or key when its label is different, and
        asks `get_project` for one no listing shows (archived, past a filter).
        """
        return name

    async def get_project(self, reference: str) -> Project:
        """A project by a reference from `project_reference`; NotFoundError if there is none.

        The default finds none: only listed projects are reachable.
        """
        raise NotFoundError(reference)

    @abstractmethod
    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream exactly the bytes [start, stop) of an attachment (fewer at its end)."""

    def honours_range(self, attachment: Attachment) -> bool:
        """Whether the content host sends the part of an attachment a Range asks for.

        A backend whose host always sends the whole body says False: the reader then
        downloads each attachment once, whole, into the disk cache, instead of paying
        for the bytes before every block it reads. One whose host may or may not says
        what `HttpClient.honours_range` has learnt from the answers so far.
        """
        return True

    async def limits(self) -> Limits:
        """The tracker's attachment settings (default: no known limit)."""
        return Limits()

    async def permissions(self, issue: Issue) -> Permissions:
        """What the account may do with the attachments of `issue` (default: cannot tell).

        Asked before an overwrite, so that one the tracker would half refuse (the upload
        allowed, the delete of the old attachment not) fails before anything is sent.
        """
        return Permissions()

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        """Attach a file to an issue and return the attachment the tracker made."""
        raise NotImplementedError

    async def upload_growing(self, issue: Issue, filename: str, source: GrowingSource) -> Attachment:
        """Attach a file that is still being written: its body is sent as it grows.

        Only for a tracker whose `grows_uploads` is true: the request has no length
        (chunked), which some servers refuse. The result is that of `upload`.
        """
        raise NotImplementedError

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        """Delete `attachment` of `issue` (the records as listed: some vendors address an
        attachment through its issue, others by a URL the record carries)."""
        raise NotImplementedError

    def request_statistics(self) -> dict[str, int]:
        """Requests sent so far by method and answer, and retries, for the status file.

        Every backend built on `HttpClient` keeps it as `self.http`, which counts them;
        {} for one that does not.
        """
        http = getattr(self, "http", None)
        statistics = getattr(http, "statistics", None)
        return dict(statistics()) if callable(statistics) else {}

    async def aclose(self) -> None:
        """Release connections."""
