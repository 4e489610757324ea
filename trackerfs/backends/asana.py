"""Asana (API 1.0): the projects of one workspace, their tasks, the tasks' attachments.

Everything Asana-specific lives here: the `{"data": …}` envelopes, `opt_fields`, offset
paging, the workspace choice, pre-signed downloads, the upload's form fields.

- Asana has no issue keys: a task directory is named by the task's name (the core
  sanitises it and settles equal names by gid), and any task is reachable by its gid.
- A task listing cannot embed attachments, so each task costs one
  `GET /attachments?parent=` when its directory is first read. The client keeps a
  request budget (`requests_per_minute`, Asana's free plan by default) so that a sweep of
  a big project queues instead of meeting 429s.
- Listings send `limit` (without it Asana gives no `next_page`); an offset token that
  expired (400) restarts the listing from its first page.
- Content is read from the attachment's pre-signed `download_url` on Asana's storage,
  which lives about two minutes: it is asked for (`GET /attachments/{gid}`) when a
  download starts, reused by its ranges for `URL_REUSE` seconds, and asked for again
  when the storage answers 403. The token never goes there (the HTTP client sends
  credentials to the API's origin only).
- Links to other services (Dropbox, Google Drive, Box, OneDrive, Vimeo, any URL) have no
  bytes on Asana: each shows as a small read-only `NAME.url` Internet shortcut.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import trio

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.backends.http import (
    Answer,
    ContentLocation,
    Credentials,
    HttpClient,
    RequestBudget,
    decode_json,
)
from trackerfs.backends.multipart import FieldPart, FilePart, MultipartBody
from trackerfs.backends.records import attachment_size, expect_dict, expect_list, iso_time, records
from trackerfs.config import BackendOptions, Profile, ProfileKey
from trackerfs.errors import (
    BadRequestError,
    BadResponseError,
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    TooLargeError,
    TrackerError,
)
from trackerfs.model import Account, Attachment, Issue, Limits, Project

log = logging.getLogger(__name__)

API = "/api/1.0"
#: Asana's largest page; without `limit` a listing has no `next_page` at all.
MAX_LIMIT = 100
#: A bound on pages per listing, against a server whose offsets never end.
MAX_PAGES = 10_000
#: How often a listing whose offset token expired is started again from its first page.
LISTING_RESTARTS = 3
#: Requests a minute Asana allows a token on its free plan (paid plans: 1,500).
FREE_PLAN_BUDGET = 150
#: Asana refuses uploads over 100 MB; the limit is fixed, not announced.
UPLOAD_LIMIT = 100 * 1024 * 1024
#: Seconds the ranges of one download reuse the `download_url` they were sent to, then a
#: fresh one is asked for: well inside the two minutes Asana signs it for.
URL_REUSE = 60.0

PROJECT_FIELDS = "name,permalink_url"
TASK_FIELDS = "name,created_at,modified_at,permalink_url"
ATTACHMENT_FIELDS = "name,size,created_at,host,resource_subtype,permanent_url,view_url"
#: Attachments Asana holds the bytes of; any other host is a link to another service.
OWN_HOST = "asana"
SHORTCUT_SUFFIX = ".url"
SHORTCUT_TYPE = "application/x-mswinurl"
GID = re.compile(r"[0-9]{1,32}")


class _OffsetRefusedError(Exception):
    """A page after the first was refused (400): its offset token is no longer good."""

    def __init__(self, error: BadRequestError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Asked:
    """One request for a `download_url` that others wait on."""

    done: trio.Event = field(default_factory=trio.Event)
    url: str = ""
    error: TrackerError | None = None


class AsanaTracker(Tracker):
    """One Asana workspace as projects → tasks → attachments."""

    name: ClassVar[str] = "asana"
    issue_noun: ClassVar[str] = "task"
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {
        "workspace": ProfileKey(
            str, "", "the workspace to show, by gid or name (may be left out when the token sees one)"
        ),
        "completed_since": ProfileKey(
            str,
            "",
            'list only tasks not completed before this ISO 8601 date-time ("now": incomplete '
            'tasks only; "": every task)',
        ),
        "requests_per_minute": ProfileKey(
            int,
            FREE_PLAN_BUDGET,
            "requests a minute the mount sends at most (Asana allows 150 on free plans, 1500 on paid)",
            low=1,
            high=100_000,
        ),
        "page_size": ProfileKey(int, MAX_LIMIT, "`limit` of each listing page", low=1, high=MAX_LIMIT),
    }

    def __init__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.profile_name = profile.name
        self.wanted_workspace = options.text("workspace").strip()
        self.completed_since = checked_since(profile.name, options.text("completed_since").strip())
        self.page_size = options.whole("page_size")
        self.max_issues = profile.max_issues
        self.budget = RequestBudget(options.whole("requests_per_minute"))
        self.http = HttpClient.for_profile(
            profile,
            credentials=Credentials.from_secret(profile.secret, bearer),
            headers={"Accept": "application/json"},
            classify=classify_answer,
            location_ttl=URL_REUSE,
            budget=self.budget,
            transport=transport,
        )
        self.workspace_gid = ""
        self._workspace_lock = trio.Lock()
        #: download URLs being asked for, by attachment gid
        self._asking: dict[str, _Asked] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- account and workspace ----------------------------------------------------------

    async def check_account(self) -> Account:
        me = await self._me()
        self._choose_workspace(me)
        return Account(id=str(me.get("gid", "")), name=str(me.get("name") or ""))

    async def _me(self) -> dict[str, Any]:
        return data_of(
            await self.http.get_json(f"{API}/users/me", params={"opt_fields": "name,workspaces.name"}),
            "users/me",
        )

    async def _workspace(self) -> str:
        """The gid of the workspace the mount shows, chosen once."""
        async with self._workspace_lock:
            if not self.workspace_gid:
                self._choose_workspace(await self._me())
        return self.workspace_gid

    def _choose_workspace(self, me: dict[str, Any]) -> None:
        seen = records(expect_list(me.get("workspaces") or [], "users/me workspaces"), "workspace", ("gid",))
        self.workspace_gid = choose_workspace(self.profile_name, self.wanted_workspace, seen)

    # -- listings -------------------------------------------------------------------------

    async def list_projects(self) -> list[Project]:
        workspace = await self._workspace()
        items = await self._paged(f"{API}/workspaces/{workspace}/projects", {"opt_fields": PROJECT_FIELDS})
        return [self._project(item) for item in records(items, "project", ("gid",))]

    async def list_issues(self, project: Project) -> list[Issue]:
        params: dict[str, Any] = {"opt_fields": TASK_FIELDS}
        if self.completed_since:
            params["completed_since"] = self.completed_since
        items = await self._paged(
            f"{API}/projects/{quote(project.id, safe='')}/tasks", params, most=self.max_issues
        )
        return [self._issue(item, project.key) for item in records(items, "task", ("gid",))]

    async def _paged(self, path: str, params: dict[str, Any], *, most: int = 0) -> list[Any]:
        """Every record of a listing (the first `most` where given), page by page.

        An offset token Asana no longer accepts (400: it expired, or the data under it
        changed) starts the listing again from its first page.
        """
        restarts = 0
        while True:
            try:
                return await self._pages(path, params, most)
            except _OffsetRefusedError as refused:
                restarts += 1
                if restarts > LISTING_RESTARTS:
                    raise refused.error from None
                log.info("%s: offset refused (%s); listing again from the start", path, refused.error)

    async def _pages(self, path: str, params: dict[str, Any], most: int) -> list[Any]:
        items: list[Any] = []
        query = {**params, "limit": self.page_size}
        for _ in range(MAX_PAGES):
            try:
                body = expect_dict(await self.http.get_json(path, params=query), path)
            except BadRequestError as exc:
                if "offset" in query:
                    raise _OffsetRefusedError(exc) from exc
                raise
            items.extend(expect_list(body.get("data"), f"{path} data"))
            if most and len(items) >= most:
                return items[:most]
            following = body.get("next_page")
            offset = following.get("offset") if isinstance(following, dict) else None
            if not offset:
                return items
            query = {**params, "limit": self.page_size, "offset": str(offset)}
        raise BadResponseError(f"{path}: more than {MAX_PAGES} pages")

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        items = await self._paged(f"{API}/attachments", {"parent": issue.id, "opt_fields": ATTACHMENT_FIELDS})
        found: list[Attachment] = []
        for item in records(items, f"attachment of task {issue.id}", ("gid",)):
            try:
                found.append(self._attachment(item))
            except BadResponseError as exc:
                log.warning("skipping an attachment of task %s: %s", issue.id, exc)
        return found

    # -- single tasks ---------------------------------------------------------------------

    async def get_issue(self, project: Project, key: str) -> Issue:
        """Any task the token sees, by gid: subtasks and tasks of other projects too."""
        return await self._task(key, project.key)

    async def get_issue_by_reference(self, reference: str) -> Issue:
        return await self._task(reference, "")

    async def _task(self, gid: str, project_key: str) -> Issue:
        if not GID.fullmatch(gid):
            raise NotFoundError(f"{gid!r} is not a task gid")
        body = await self.http.get_json(f"{API}/tasks/{gid}", params={"opt_fields": TASK_FIELDS})
        item = data_of(body, f"task {gid}")
        if not item.get("gid"):
            raise BadResponseError(f"task {gid}: the answer has no gid")
        return self._issue(item, project_key)

    def locator(self, issue: Issue) -> str:
        return issue.id

    def issue_reference(self, project: Project, name: str) -> str | None:
        """A task gid (digits); anything else, a desktop probe among them, costs nothing."""
        return name if GID.fullmatch(name) else None

    # -- content --------------------------------------------------------------------------

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        if attachment.read_only:
            return shortcut_range(attachment.content_url, start, stop)
        return self.http.stream_range(self._location(attachment), start, stop, total=attachment.size)

    def honours_range(self, attachment: Attachment) -> bool:
        """What the storage's answers for this attachment have shown so far (S3 honours it)."""
        return attachment.read_only or self.http.honours_range(self._location(attachment))

    def _location(self, attachment: Attachment) -> ContentLocation:
        """Where an attachment's bytes are: its `download_url`, asked for when needed."""
        return ContentLocation(f"attachment {attachment.id}", lambda: self._download_url(attachment.id))

    async def _download_url(self, gid: str) -> str:
        """A freshly signed `download_url`; block fetches of one attachment ask together."""
        while True:
            asked = self._asking.get(gid)
            if asked is None:
                break
            await asked.done.wait()
            if asked.error is not None:
                raise asked.error
            if asked.url:
                return asked.url
            # The one asking was cancelled: ask again.
        asked = _Asked()
        self._asking[gid] = asked
        try:
            asked.url = await self._ask_download_url(gid)
        except TrackerError as exc:
            asked.error = exc
            raise
        finally:
            del self._asking[gid]
            asked.done.set()
        return asked.url

    async def _ask_download_url(self, gid: str) -> str:
        """`download_url` as Asana signs it now (a listing's would be as old as the listing)."""
        body = await self.http.get_json(f"{API}/attachments/{gid}", params={"opt_fields": "download_url"})
        url = data_of(body, f"attachment {gid}").get("download_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise NotFoundError(f"attachment {gid}: Asana gives no download URL for it")
        return url

    # -- writing --------------------------------------------------------------------------

    async def limits(self) -> Limits:
        return Limits(upload_limit=UPLOAD_LIMIT)

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        # Asana asks for the file name URL-encoded (its servers decode it), so any name,
        # UTF-8 or one with quotes, arrives as it was.
        body = MultipartBody(
            [
                FieldPart("parent", issue.id.encode("ascii")),
                FilePart("file", filename, size, source, mime_type_of(filename), percent_encoded=True),
            ]
        )
        response = await self.http.request("POST", f"{API}/attachments", body=body, idempotent=False)
        item = data_of(decode_json(response), "upload response")
        if not item.get("gid"):
            raise BadResponseError(f"upload of {filename!r} to task {issue.id}: the answer has no gid")
        return self._attachment(item)

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        await self.http.request("DELETE", f"{API}/attachments/{quote(attachment.id, safe='')}")

    # -- records --------------------------------------------------------------------------

    def _web(self, url: Any, fallback: str) -> str:
        """An Asana web page on the profile's origin (the emulator's, or app.asana.com)."""
        return self.http.on_own_origin(url) if isinstance(url, str) and url else self.http.url(fallback)

    def _project(self, item: dict[str, Any]) -> Project:
        gid = str(item["gid"])
        name = str(item.get("name") or "")
        return Project(
            key=gid,
            name=name,
            id=gid,
            web_url=self._web(item.get("permalink_url"), f"/0/{gid}"),
            label=name or gid,
        )

    def _issue(self, item: dict[str, Any], project_key: str) -> Issue:
        gid = str(item["gid"])
        name = str(item.get("name") or "")
        return Issue(
            key=gid,
            id=gid,
            project_key=project_key,
            summary=name,
            created=iso_time(item.get("created_at")),
            updated=iso_time(item.get("modified_at")),
            web_url=self._web(item.get("permalink_url"), f"/0/0/{gid}"),
            label=name or gid,
        )

    def _attachment(self, item: dict[str, Any]) -> Attachment:
        gid = str(item["gid"])
        name = str(item.get("name") or "")
        host = str(item.get("host") or item.get("resource_subtype") or OWN_HOST)
        created = iso_time(item.get("created_at"))
        if host != OWN_HOST:
            link = next(
                (
                    str(item[field])
                    for field in ("view_url", "download_url", "permanent_url")
                    if isinstance(item.get(field), str) and item[field]
                ),
                "",
            )
            return Attachment(
                id=gid,
                filename=name + SHORTCUT_SUFFIX,
                size=len(shortcut(link)),
                created=created,
                mime_type=SHORTCUT_TYPE,
                web_url=link,
                content_url=link,
                read_only=True,
                attributes=(("host", host),),
            )
        if "size" not in item:
            raise BadResponseError(f"attachment {gid}: no size")
        size = attachment_size(item["size"], f"attachment {gid}")
        return Attachment(
            id=gid,
            filename=name,
            size=size,
            created=created,
            mime_type=mime_type_of(name),
            web_url=self._web(item.get("permanent_url"), f"/app/asana/-/get_asset?asset_id={gid}"),
            attributes=(("host", host),),
        )


def bearer(token: str) -> dict[str, str]:
    """A personal access token (or an OAuth access token) as Asana takes it."""
    return {"Authorization": f"Bearer {token}"}


def data_of(body: Any, what: str) -> dict[str, Any]:
    """The record inside Asana's `{"data": {...}}` envelope."""
    return expect_dict(expect_dict(body, what).get("data"), f"{what} data")


def choose_workspace(profile: str, wanted: str, seen: list[dict[str, Any]]) -> str:
    """The gid of the workspace `wanted` names (a gid or a name) among those the token sees.

    Left out, it may be only when the token sees exactly one; otherwise the error lists
    them, so the line says what to write.
    """
    listed = ", ".join(f'"{w.get("name", "")}" ({w["gid"]})' for w in seen) or "none"
    if not wanted:
        if len(seen) == 1:
            return str(seen[0]["gid"])
        raise ConfigError(
            f"profile {profile!r}: the token sees {len(seen)} Asana workspaces; "
            f"set workspace to one of them: {listed}"
        )
    by_gid = [w for w in seen if str(w["gid"]) == wanted]
    by_name = [w for w in seen if str(w.get("name", "")).casefold() == wanted.casefold()]
    chosen = by_gid or by_name
    if len(chosen) == 1:
        return str(chosen[0]["gid"])
    if chosen:
        raise ConfigError(
            f"profile {profile!r}: several workspaces are called {wanted!r}; name one by gid: {listed}"
        )
    raise ConfigError(f"profile {profile!r}: the token sees no workspace {wanted!r}; it sees {listed}")


def checked_since(profile: str, value: str) -> str:
    """`completed_since` as Asana takes it: "", "now" or an ISO 8601 date-time."""
    if value in ("", "now"):
        return value
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f'profile {profile!r}: completed_since must be "now" or an ISO 8601 date-time, not {value!r}'
        ) from None
    return value


def mime_type_of(name: str) -> str:
    """The type of an attachment by its name (Asana's records do not say)."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def shortcut(url: str) -> bytes:
    """An Internet shortcut desktops open in a browser."""
    return f"[InternetShortcut]\r\nURL={url}\r\n".encode("utf-8", "surrogateescape")


@asynccontextmanager
async def shortcut_range(url: str, start: int, stop: int) -> AsyncIterator[AsyncIterator[bytes]]:
    """The bytes [start, stop) of a link's shortcut file: made here, no request."""

    async def chunks() -> AsyncIterator[bytes]:
        part = shortcut(url)[start:stop]
        if part:
            yield part

    yield chunks()


def classify_answer(answer: Answer) -> TrackerError | None:
    """What an Asana answer means beyond its status.

    Asana refuses an upload over its limit with a 400 that says so; 402 is a feature of
    a paid plan the workspace does not have.
    """
    if answer.status == 400 and "too large" in answer.message.lower():
        return TooLargeError(f"{answer.message} (larger than Asana's upload limit)", status=400)
    if answer.status == 402:
        return PermissionDeniedError(f"{answer.message} (a feature of a paid Asana plan)", status=402)
    return None
