"""Waldur (Mastermind): projects → support issues → `/api/support-attachments/`.

Everything Waldur-specific lives here: DRF paging (`page`, `page_size`, `Link` rel="next",
`X-Result-Count`), `Authorization: Token …`, uuids with or without dashes, the issue flags
`destroy_is_available` and `add_attachment_is_available`, DRF error bodies.

- **Listing.** Issues are not embedded with their attachments, and attachments cannot be
  filtered by project. So `list_issues` pages the project's support issues and then makes
  ONE paged sweep of `/api/support-attachments/` (everything the token may see, 300 a
  page), grouped by the `issue` hyperlink: every listed issue comes back with its
  attachments, and a `find` over a project costs pages, not issues. The sweep is made
  only when it is cheaper than asking per issue (its first page says how many pages it
  has: past one page per listed issue the rest is dropped and each issue directory asks
  `?issue_uuid=` when it is opened). A sweep is shared by the listings of every project
  that ask within `SWEEP_REUSE` seconds (a `find` over the whole mount pays for it once),
  but never after an upload or a delete through this mount; one whose total changed
  between its pages is not trusted (a delete meanwhile shifts the pages: an attachment
  could be missed), and the issues fall back to one request each.
- **Content.** The `file` URL (`/api/media/{uuid}/`) sends the whole body and ignores
  Range, so `honours_range` is False and the reader downloads each attachment once into
  the on-disk content cache. A `file` URL under Waldur's own paths is used on the
  profile's origin (Waldur behind a TLS proxy writes its internal scheme, host or port);
  any other is fetched as given, without the token unless it is on the profile's origin.
- **Writing.** Uploads are multipart `issue` (the issue's hyperlink) and `file`; Waldur
  stores them under a name of its own (Django's storage), which the 201 body gives.
  Deletes address the attachment by uuid; a 400 `["Destroying is not available."]` is
  EPERM. `destroy_is_available: false` makes the attachment read-only ahead of any
  request; `add_attachment_is_available: false` refuses a create with EACCES.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
import trio

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.backends.http import Answer, Credentials, HttpClient, decode_json, describe_generic_error
from trackerfs.backends.multipart import FieldPart, FilePart, MultipartBody
from trackerfs.backends.records import attachment_size, expect_dict, expect_list, iso_time, records
from trackerfs.config import BackendOptions, Profile, ProfileKey
from trackerfs.errors import (
    BadResponseError,
    NotFoundError,
    NotPermittedError,
    PermissionDeniedError,
    TooLargeError,
    TrackerError,
)
from trackerfs.model import Account, Attachment, Issue, Permissions, Project

log = logging.getLogger(__name__)

API = "/api"
#: LinkHeaderPagination.max_page_size: Waldur clamps larger pages to it
MAX_PAGE_SIZE = 300
#: Paths of Waldur's own routes: a `file` URL under them is the tracker's, whatever host
#: it names (the 2024 server served media at `/media/{uuid}/`).
OWN_PATHS = (f"{API}/", "/media/")
#: A bound on pages per listing, against a server whose `next` link never ends.
MAX_PAGES = 10_000
#: Seconds one sweep of every attachment serves the listings of further projects.
SWEEP_REUSE = 10.0
#: What Waldur answers a delete its support backend refuses, and an upload it refuses.
DESTROY_REFUSED = "Destroying is not available."
ADD_REFUSED = "Adding attachments is not available."
#: Characters of the uuid in the name of an issue with a blank key.
SHORT_UUID = 8
#: Characters of the summary kept in the name of an issue with a blank key.
SUMMARY_IN_NAME = 60
#: What a real key looks like: a helpdesk key (`WAL-164`) or a numeric id (Zammad, SMAX).
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+|[0-9]+")
_ISSUE_PATH = re.compile(rf"{API}/support-issues/([^/]+)/?$")


def uuid_hex(text: str) -> str | None:
    """A uuid in Waldur's 32-hex form, from the dashed or the bare form; None if neither."""
    if not re.fullmatch(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}", text):
        return None
    return uuid.UUID(text).hex


def issue_uuid_of(url: Any) -> str | None:
    """The uuid of an issue hyperlink (`…/api/support-issues/UUID/`), else None."""
    if not isinstance(url, str):
        return None
    match = _ISSUE_PATH.search(urlsplit(url).path)
    return uuid_hex(match.group(1)) if match else None


def blank_key_label(summary: str, ident: str) -> str:
    """The directory name of an issue without a key: its summary and the start of its uuid.

    A key never holds a space or parentheses, so this cannot be taken for a real key; the
    uuid part keeps equal summaries apart and the name stable while the summary is.
    """
    text = " ".join(summary.split())[:SUMMARY_IN_NAME].rstrip() or "issue"
    return f"{text} ({ident[:SHORT_UUID]})"


@dataclass(frozen=True, slots=True)
class Sweep:
    """Every attachment the token may see, by issue uuid, as one paged sweep found them."""

    #: when it began, on trio's clock (for reuse) and as wall time (against issue times)
    started: float
    began: float
    #: uploads and deletes made through this mount before the sweep began
    changes: int
    by_issue: Mapping[str, tuple[Attachment, ...]]


class WaldurTracker(Tracker):
    """A Waldur site's support module as projects → support issues → attachments."""

    name: ClassVar[str] = "waldur"
    issue_noun: ClassVar[str] = "support issue"
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {
        "page_size": ProfileKey(
            int, MAX_PAGE_SIZE, "page_size of each listing page", low=1, high=MAX_PAGE_SIZE
        ),
    }

    def __init__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.site = profile.url
        self.page_size = options.whole("page_size")
        self.max_issues = profile.max_issues
        self.http = HttpClient.for_profile(
            profile,
            credentials=Credentials.from_secret(profile.secret, token_header),
            headers={"Accept": "application/json"},
            describe_error=describe_drf_error,
            classify=classify_answer,
            transport=transport,
        )
        #: issue uuid → what its record said of adding attachments (from listings)
        self._may_add: dict[str, bool] = {}
        #: uploads and deletes made through this mount (a sweep from before is stale)
        self._changes = 0
        self._sweep: Sweep | None = None
        self._sweep_lock = trio.Lock()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- reading --------------------------------------------------------------------------

    async def check_account(self) -> Account:
        body = expect_dict(await self.http.get_json(f"{API}/users/me/"), "users/me")
        ident = str(body.get("uuid") or "")
        name = str(body.get("full_name") or body.get("username") or ident)
        return Account(id=ident, name=name)

    async def list_projects(self) -> list[Project]:
        items = await self._all_pages(f"{API}/projects/", {}, "project")
        return [self._project(item) for item in records(items, "project", ("uuid",))]

    async def list_issues(self, project: Project) -> list[Issue]:
        issues: list[Issue] = []
        params = {"project_uuid": project.id}
        async for page in self._pages(f"{API}/support-issues/", params, "support issue"):
            for item in records(page, "support issue", ("uuid",)):
                issues.append(self._issue(item, project))
                if self.max_issues and len(issues) >= self.max_issues:
                    return await self._with_attachments(issues)
        return await self._with_attachments(issues)

    async def _with_attachments(self, issues: list[Issue]) -> list[Issue]:
        """The issues with their attachments from a sweep, where a sweep is worth it."""
        if not issues:
            return issues
        sweep = await self._current_sweep(len(issues))
        if sweep is None:
            return issues
        # An issue made after the sweep began may have attachments it did not see.
        return [
            replace(issue, attachments=sweep.by_issue.get(issue.id, ()))
            if issue.created <= sweep.began
            else issue
            for issue in issues
        ]

    async def _current_sweep(self, issues: int) -> Sweep | None:
        """A sweep of every attachment, shared while fresh; None where one request per
        issue is cheaper, or the sweep could have missed an attachment."""
        async with self._sweep_lock:
            now = trio.current_time()
            sweep = self._sweep
            if sweep is not None and sweep.changes == self._changes and now - sweep.started < SWEEP_REUSE:
                return sweep
            try:
                self._sweep = sweep = await self._sweep_attachments(issues)
            except TrackerError as exc:
                # The issues are listed; their attachments can still be asked one by one.
                log.warning("cannot list every attachment at once (%s); listing them per issue", exc)
                self._sweep = sweep = None
            return sweep

    async def _sweep_attachments(self, issues: int) -> Sweep | None:
        started, began, changes = trio.current_time(), time.time(), self._changes
        by_issue: dict[str, list[Attachment]] = {}
        seen: set[str] = set()
        total: int | None = None
        number = 0
        async for response in self._responses(f"{API}/support-attachments/", {}, "attachment"):
            page = expect_list(decode_json(response), "attachment page")
            count = result_count(response)
            if number == 0:
                total = count
                if count is not None and page and math.ceil(count / len(page)) > issues:
                    log.debug("%d attachments in all: one listing per issue is cheaper", count)
                    return None
            elif count != total:
                log.info("the attachments changed during a sweep; listing them per issue")
                return None
            number += 1
            for item in records(page, "attachment", ("uuid", "issue")):
                attachment = self._attachment_or_none(item)
                owner = issue_uuid_of(item.get("issue"))
                if attachment is not None and owner is not None and attachment.id not in seen:
                    seen.add(attachment.id)
                    by_issue.setdefault(owner, []).append(attachment)
        return Sweep(started, began, changes, {key: tuple(items) for key, items in by_issue.items()})

    async def get_issue(self, project: Project, key: str) -> Issue:
        ident = uuid_hex(key)
        if ident is not None:
            body = await self._issue_record(ident)
            if uuid_hex(str(body.get("project_uuid") or "")) != project.id:
                raise NotFoundError(f"support issue {key} belongs to another project")
            issue = self._issue(body, project)
            return replace(issue, attachments=tuple(await self.list_attachments(issue)))
        params = {"project_uuid": project.id, "key": key}
        found = records(
            await self._first_page(f"{API}/support-issues/", params, "support issue"),
            "support issue",
            ("uuid",),
        )
        match = [item for item in found if item.get("key") == key]
        if not match:
            raise NotFoundError(f"no support issue {key} in {project.name}")
        issue = self._issue(match[0], project)
        return replace(issue, attachments=tuple(await self.list_attachments(issue)))

    def locator(self, issue: Issue) -> str:
        """The issue's uuid: what finds it again in any later run."""
        return issue.id

    async def get_issue_by_reference(self, reference: str) -> Issue:
        ident = uuid_hex(reference)
        if ident is None:
            raise NotFoundError(f"{reference!r} is not a support issue uuid")
        return await self._issue_by_uuid(ident, None)

    async def _issue_record(self, ident: str) -> dict[str, Any]:
        body = expect_dict(await self.http.get_json(f"{API}/support-issues/{ident}/"), "support issue")
        if not body.get("uuid"):
            raise BadResponseError(f"support issue {ident}: the answer has no uuid")
        return body

    async def _issue_by_uuid(self, ident: str, project: Project | None) -> Issue:
        issue = self._issue(await self._issue_record(ident), project)
        return replace(issue, attachments=tuple(await self.list_attachments(issue)))

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        items = await self._all_pages(f"{API}/support-attachments/", {"issue_uuid": issue.id}, "attachment")
        found = (self._attachment_or_none(item) for item in records(items, "attachment", ("uuid",)))
        return [item for item in found if item is not None]

    def issue_reference(self, project: Project, name: str) -> str | None:
        """A uuid (with or without dashes) or a key-like name (`WAL-164`, `1234`)."""
        ident = uuid_hex(name)
        if ident is not None:
            return ident
        return name if _KEY.fullmatch(name) else None

    def project_reference(self, name: str) -> str | None:
        """A project uuid in either form (its id), else the name as a slug, in any case."""
        return uuid_hex(name) or name.lower()

    async def get_project(self, reference: str) -> Project:
        """A project no listing shows, by its uuid (a slug is only matched among the listed)."""
        ident = uuid_hex(reference)
        if ident is None:
            raise NotFoundError(f"no project {reference!r}")
        body = expect_dict(await self.http.get_json(f"{API}/projects/{ident}/"), "project")
        if not body.get("uuid"):
            raise BadResponseError(f"project {reference}: the answer has no uuid")
        return self._project(body)

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.http.stream_range(self.content_url(attachment), start, stop, total=attachment.size)

    def content_url(self, attachment: Attachment) -> str:
        """Where the bytes are: the `file` URL, on the profile's origin when it is Waldur's own.

        Waldur builds the URL from the request it saw: behind a TLS proxy it writes
        `http://` and its internal host or port. A path of Waldur's own routes (`/api/…`,
        `/media/…`) is therefore used on the profile's origin, where the token goes; any
        other `file` URL is fetched as given, and gets the token only if it is on that
        origin (the HTTP client's rule).
        """
        url = attachment.content_url or f"{API}/media/{quote(attachment.id, safe='')}/"
        if "://" in url and urlsplit(url).path.startswith(OWN_PATHS):
            return self.http.on_own_origin(url)
        return url

    def honours_range(self, attachment: Attachment) -> bool:
        """Never: the media endpoint answers every request with the whole body."""
        return False

    async def permissions(self, issue: Issue) -> Permissions:
        """No adding where the issue says `add_attachment_is_available: false`.

        Deleting is told per attachment (`destroy_is_available`, a read-only record); who
        may add is decided by the server (staff, owner, caller) and cannot be told ahead.
        """
        may_add = self._may_add.get(issue.id)
        if may_add is None:
            self._issue(await self._issue_record(issue.id), None)
            may_add = self._may_add.get(issue.id)
        return Permissions(create=False) if may_add is False else Permissions()

    # -- writing --------------------------------------------------------------------------

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        """Multipart `issue` (its hyperlink; a bare uuid is refused) and `file` → 201."""
        self._changes += 1
        body = MultipartBody(
            [
                FieldPart("issue", self.issue_url(issue).encode()),
                FilePart("file", filename, size, source),
            ]
        )
        response = await self.http.request("POST", f"{API}/support-attachments/", body=body, idempotent=False)
        created = records([decode_json(response)], "uploaded attachment", ("uuid",))
        if not created:
            raise BadResponseError(f"upload of {filename!r} to {issue.key}: no attachment in the answer")
        attachment = self._attachment(created[0])
        if attachment.filename != filename:
            log.debug("Waldur stored %r as %r", filename, attachment.filename)
        return attachment

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        self._changes += 1
        await self.http.request("DELETE", f"{API}/support-attachments/{quote(attachment.id, safe='')}/")

    def issue_url(self, issue: Issue) -> str:
        """The issue's hyperlink, as Waldur's upload wants it (any host: the path counts)."""
        return self.http.url(f"{API}/support-issues/{issue.id}/")

    # -- paging -----------------------------------------------------------------------------

    async def _responses(
        self, path: str, params: Mapping[str, Any], what: str
    ) -> AsyncIterator[httpx.Response]:
        """The page answers of a list endpoint, following `Link` rel="next"."""
        target: str = path
        query: Mapping[str, Any] | None = {**params, "page_size": self.page_size}
        for _ in range(MAX_PAGES):
            response = await self.http.request("GET", target, params=query)
            yield response
            following = next_page(response)
            if following is None:
                return
            target, query = self.http.on_own_origin(following), None
        log.warning("stopped listing %ss after %d pages", what, MAX_PAGES)

    async def _pages(self, path: str, params: Mapping[str, Any], what: str) -> AsyncIterator[list[Any]]:
        """The items of each page of a list endpoint."""
        async for response in self._responses(path, params, what):
            yield expect_list(decode_json(response), f"{what} page")

    async def _all_pages(self, path: str, params: Mapping[str, Any], what: str) -> list[Any]:
        items: list[Any] = []
        async for page in self._pages(path, params, what):
            items.extend(page)
        return items

    async def _first_page(self, path: str, params: Mapping[str, Any], what: str) -> list[Any]:
        async for page in self._pages(path, params, what):
            return page
        return []

    # -- records ----------------------------------------------------------------------------

    def _project(self, item: dict[str, Any]) -> Project:
        ident = uuid_hex(str(item["uuid"])) or str(item["uuid"])
        name = str(item.get("name") or item.get("slug") or ident)
        return Project(
            # Slugs are matched in any case: `cd /tracker/DEMO` opens the project `demo`.
            key=str(item.get("slug") or ident).lower(),
            name=name,
            id=ident,
            web_url=str(item.get("url") or self.http.url(f"{API}/projects/{ident}/")),
            label=name,
        )

    def _issue(self, item: dict[str, Any], project: Project | None) -> Issue:
        raw = str(item["uuid"])
        ident = uuid_hex(raw) or raw
        key = str(item.get("key") or "").strip()
        summary = str(item.get("summary") or "")
        may_add = item.get("add_attachment_is_available")
        if isinstance(may_add, bool):
            self._may_add[ident] = may_add
        # The project's name, which is what a person finds the issue's files under when
        # they are kept for recovery (`recovered/PROJECT/ISSUE/`).
        project_name = str(item.get("project_name") or (project.name if project else ""))
        return Issue(
            key=key or ident,
            id=ident,
            project_key=project_name or str(item.get("project_uuid") or ""),
            summary=summary,
            created=iso_time(item.get("created")),
            # `modified` is not known to change when an attachment is added: an issue's
            # attachments are never kept past their TTL on its strength.
            updated=0.0,
            web_url=str(item.get("url") or self.http.url(f"{API}/support-issues/{ident}/")),
            label=key or blank_key_label(summary, ident),
        )

    def _attachment_or_none(self, item: dict[str, Any]) -> Attachment | None:
        try:
            return self._attachment(item)
        except BadResponseError as exc:
            log.warning("skipping an attachment: %s", exc)
            return None

    def _attachment(self, item: dict[str, Any]) -> Attachment:
        raw = str(item["uuid"])
        ident = uuid_hex(raw) or raw
        size = attachment_size(item.get("file_size"), f"attachment {ident}: file_size")
        content = str(item.get("file") or "")
        if not content:
            raise BadResponseError(f"attachment {ident}: no file URL")
        destroy = item.get("destroy_is_available")
        return Attachment(
            id=raw,
            filename=str(item.get("file_name") or ""),
            size=size,
            created=iso_time(item.get("created")),
            mime_type=str(item.get("mime_type") or "application/octet-stream"),
            web_url=content,
            content_url=content,
            read_only=destroy is False,
        )


def token_header(token: str) -> dict[str, str]:
    """DRF's TokenAuthentication header."""
    return {"Authorization": f"Token {token}"}


def result_count(response: httpx.Response) -> int | None:
    """`X-Result-Count`: how many items the whole list holds."""
    try:
        return int(response.headers["X-Result-Count"])
    except (KeyError, ValueError):
        return None


def next_page(response: httpx.Response) -> str | None:
    """The URL of `Link` rel="next", or None on the last page."""
    url = response.links.get("next", {}).get("url")
    return str(url) if url else None


def drf_messages(body: Any) -> list[str]:
    """The messages of a DRF error body: `{"detail": …}`, field errors, a bare list."""
    if isinstance(body, str):
        return [body]
    if isinstance(body, list):
        return [text for item in body for text in drf_messages(item)]
    if not isinstance(body, dict):
        return []
    out: list[str] = []
    for field, value in body.items():
        texts = drf_messages(value)
        if field in ("detail", "non_field_errors"):
            out.extend(texts)
        else:
            out.extend(f"{field}: {text}" for text in texts)
    return out


def describe_drf_error(response: httpx.Response) -> str:
    """A DRF error body in one line; an HTML page (a proxy's) by its status alone."""
    try:
        messages = drf_messages(response.json())
    except (ValueError, RecursionError):
        return describe_generic_error(response)
    return "; ".join(messages) or response.reason_phrase


def classify_answer(answer: Answer) -> TrackerError | None:
    """What a Waldur answer means beyond its status.

    A delete its support backend refuses is 400 `["Destroying is not available."]`: the
    attachment cannot be removed (EPERM). An upload to an issue that takes no more files
    is 400 with "Adding attachments is not available." (EACCES). A 413 comes from the
    proxy in front of Waldur, which has no limit of its own.
    """
    if answer.status == 400:
        messages = drf_messages(answer.json())
        if DESTROY_REFUSED in messages:
            return NotPermittedError(f"{answer.message} (Waldur's support backend keeps it)", status=400)
        if ADD_REFUSED in messages:
            return PermissionDeniedError(answer.message, status=400)
    if answer.status == 413:
        return TooLargeError(f"{answer.message} (over the limit of the proxy in front of Waldur)", status=413)
    return None
