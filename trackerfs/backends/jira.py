"""Jira Cloud (REST v3) and Jira Data Center (REST v2).

Everything Jira-specific lives here: URLs, JSON shapes, paging, the upload header.

- Listing a project is one `search/jql` (Cloud, nextPageToken paging) or `search` (Data
  Center, startAt paging) per page with `fields=attachment`, so the attachments of every
  listed issue arrive with the listing.
- Content is read from `/attachment/content/{id}?redirect=false` with a Range header
  (Cloud), or from the attachment's `content` URL (Data Center). A 303 to the media host
  is followed without credentials by the HTTP client.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.backends.http import HttpClient, decode_json
from trackerfs.backends.multipart import FilePart, MultipartBody
from trackerfs.backends.records import (
    expect_dict,
    expect_list,
    option,
    records,
)
from trackerfs.config import Profile
from trackerfs.errors import BadResponseError, ConfigError, NotFoundError
from trackerfs.model import Account, Attachment, Issue, Limits, Permissions, Project

log = logging.getLogger(__name__)

FLAVOURS: dict[str, str] = {"cloud": "/rest/api/3", "datacenter": "/rest/api/2"}
OPTIONS = frozenset({"flavour", "auth", "jql", "max_issues", "page_size", "download"})
#: "direct": Jira sends the bytes itself (`redirect=false`); "redirect": follow Jira's 303
#: to its media host (a CDN) without credentials.
DOWNLOADS = ("direct", "redirect")
ISSUE_FIELDS = "summary,created,updated,attachment"
#: Jira silently caps maxResults; the token/startAt loop copes with shorter pages.
DEFAULT_PAGE_SIZE = 100
#: A bound on pages per listing, against a server whose token never ends.
MAX_PAGES = 10_000
#: The permission keys `mypermissions` is asked for (Jira grants each separately).
CREATE_ATTACHMENTS = "CREATE_ATTACHMENTS"
DELETE_OWN_ATTACHMENTS = "DELETE_OWN_ATTACHMENTS"
DELETE_ALL_ATTACHMENTS = "DELETE_ALL_ATTACHMENTS"
ATTACHMENT_PERMISSIONS = (CREATE_ATTACHMENTS, DELETE_OWN_ATTACHMENTS, DELETE_ALL_ATTACHMENTS)


class JiraTracker(Tracker):
    """A Jira site (Cloud or Data Center) as projects → issues → attachments."""

    name: ClassVar[str] = "jira"

    def __init__(self, profile: Profile, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        unknown = set(profile.options) - OPTIONS
        if unknown:
            raise ConfigError(
                f"profile {profile.name!r}: unknown jira option(s): {', '.join(sorted(unknown))}"
            )
        self.flavour = str(option(profile, "flavour", "cloud", choices=FLAVOURS))
        auth = str(option(profile, "auth", "basic", choices=("basic", "bearer")))
        self.jql = str(option(profile, "jql", ""))
        if "order by" in self.jql.lower():
            raise ConfigError(f"profile {profile.name!r}: jql is a filter; leave ORDER BY out")
        self.max_issues = int(option(profile, "max_issues", 0))
        self.page_size = int(option(profile, "page_size", DEFAULT_PAGE_SIZE))
        if self.max_issues < 0 or not 1 <= self.page_size <= 1000:
            raise ConfigError(f"profile {profile.name!r}: max_issues must be >= 0, page_size 1 to 1000")
        self.download = str(option(profile, "download", "direct", choices=DOWNLOADS))
        self.api = FLAVOURS[self.flavour]
        self.site = profile.url
        secret = profile.secret.read()
        if auth == "basic":
            if not profile.user:
                raise ConfigError(f"profile {profile.name!r}: basic auth needs `user` (the account email)")
            pair = f"{profile.user}:{secret}".encode()
            header = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            header = "Bearer " + secret
        self.http = HttpClient(
            profile.url,
            auth_headers={"Authorization": header, "Accept": "application/json"},
            transport=transport,
            timeout=profile.timeout,
            deadline=profile.deadline,
            max_concurrency=profile.max_concurrency,
        )
        #: the signed-in account, as attachment authors name it (set by check_account)
        self.account_id = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def check_account(self) -> Account:
        body = expect_dict(await self.http.get_json(f"{self.api}/myself"), "myself")
        self.account_id = user_id(body)
        return Account(id=self.account_id, name=str(body.get("displayName") or body.get("name") or ""))

    async def list_projects(self) -> list[Project]:
        if self.flavour == "datacenter":
            values = expect_list(await self.http.get_json(f"{self.api}/project"), "projects")
        else:
            values = await self._paged_projects()
        return [self._project(item) for item in records(values, "project", ("key",))]

    async def _paged_projects(self) -> list[Any]:
        values: list[Any] = []
        start = 0
        for _ in range(MAX_PAGES):
            page = expect_dict(
                await self.http.get_json(
                    f"{self.api}/project/search", params={"startAt": start, "maxResults": 50}
                ),
                "project page",
            )
            batch = expect_list(page.get("values", []), "project page values")
            values.extend(batch)
            start += len(batch)
            if page.get("isLast", True) or not batch:
                break
        return values

    async def list_issues(self, project: Project) -> list[Issue]:
        jql = f'project = "{project.key}"'
        if self.jql:
            jql += f" AND ({self.jql})"
        jql += " ORDER BY key ASC"
        issues: list[Issue] = []
        async for batch in self._search_pages(jql):
            for item in records(batch, "issue", ("key",)):
                issues.append(self._issue(item, project.key))
                if self.max_issues and len(issues) >= self.max_issues:
                    return issues
        return issues

    async def _search_pages(self, jql: str) -> AsyncIterator[list[Any]]:
        params: dict[str, Any] = {"jql": jql, "fields": ISSUE_FIELDS, "maxResults": self.page_size}
        if self.flavour == "datacenter":
            params["startAt"] = 0
        for _ in range(MAX_PAGES):
            path = f"{self.api}/search" if self.flavour == "datacenter" else f"{self.api}/search/jql"
            page = expect_dict(await self.http.get_json(path, params=params), "search page")
            batch = expect_list(page.get("issues", []), "search page issues")
            yield batch
            if not batch or page.get("isLast") is True:
                return
            if self.flavour == "datacenter":
                params["startAt"] += len(batch)
                total = page.get("total")
                if isinstance(total, int) and params["startAt"] >= total:
                    return
            else:
                token = page.get("nextPageToken")
                if not token:
                    return
                params["nextPageToken"] = token

    async def get_issue(self, project: Project, key: str) -> Issue:
        issue = await self.get_issue_by_reference(key)
        # A moved issue answers under its new key; it is not this project's directory.
        if project.key and issue.project_key != project.key:
            raise NotFoundError(f"{key} belongs to another project ({issue.key})")
        return issue

    async def get_issue_by_reference(self, reference: str) -> Issue:
        """The issue by its key (an old key of a moved issue finds it under its new one)."""
        body = expect_dict(
            await self.http.get_json(
                f"{self.api}/issue/{quote(reference, safe='')}", params={"fields": ISSUE_FIELDS}
            ),
            "issue",
        )
        key = str(body.get("key") or reference)
        return self._issue(body, project_key_of(key))

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        if self.flavour == "datacenter" and attachment.content_url:
            return self.http.stream_range(dc_content_url(self.site, attachment), start, stop)
        return self.http.stream_range(
            f"{self.api}/attachment/content/{quote(attachment.id, safe='')}",
            start,
            stop,
            params={"redirect": "false"} if self.download == "direct" else None,
        )

    async def limits(self) -> Limits:
        body = expect_dict(await self.http.get_json(f"{self.api}/attachment/meta"), "attachment meta")
        limit = body.get("uploadLimit")
        return Limits(
            enabled=bool(body.get("enabled", True)),
            upload_limit=int(limit) if isinstance(limit, int | float) and limit > 0 else None,
        )

    async def permissions(self, issue: Issue) -> Permissions:
        """`mypermissions` for the issue: create, delete own and delete all attachments."""
        body = expect_dict(
            await self.http.get_json(
                f"{self.api}/mypermissions",
                params={"issueKey": issue.key, "permissions": ",".join(ATTACHMENT_PERMISSIONS)},
            ),
            "mypermissions",
        )
        granted = expect_dict(body.get("permissions", {}), "mypermissions permissions")

        def have(key: str) -> bool | None:
            entry = granted.get(key)
            answer = entry.get("havePermission") if isinstance(entry, dict) else None
            return answer if isinstance(answer, bool) else None

        return Permissions(
            create=have(CREATE_ATTACHMENTS),
            delete_own=have(DELETE_OWN_ATTACHMENTS),
            delete_any=have(DELETE_ALL_ATTACHMENTS),
            account=self.account_id,
        )

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        response = await self.http.request(
            "POST",
            f"{self.api}/issue/{quote(issue.key, safe='')}/attachments",
            headers={"X-Atlassian-Token": "no-check"},
            body=MultipartBody([FilePart("file", filename, size, source)]),
        )
        created = records(expect_list(decode_json(response), "upload response"), "attachment", ("id",))
        if not created:
            raise BadResponseError(f"upload of {filename!r} to {issue.key}: empty response")
        return self._attachment(created[0])

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        await self.http.request("DELETE", f"{self.api}/attachment/{quote(attachment.id, safe='')}")

    def _project(self, item: dict[str, Any]) -> Project:
        key = str(item["key"])
        return Project(
            key=key,
            name=str(item.get("name", key)),
            id=str(item.get("id", "")),
            web_url=f"{self.site}/browse/{quote(key)}",
        )

    def _issue(self, item: dict[str, Any], project_key: str) -> Issue:
        key = str(item["key"])
        fields = item.get("fields")
        fields = fields if isinstance(fields, dict) else {}
        raw = fields.get("attachment")
        attachments = None
        if isinstance(raw, list):
            attachments = tuple(self._attachments(raw, key))
        return Issue(
            key=key,
            id=str(item.get("id", "")),
            project_key=project_key,
            summary=str(fields.get("summary") or ""),
            created=parse_time(fields.get("created")),
            updated=parse_time(fields.get("updated")),
            web_url=f"{self.site}/browse/{quote(key)}",
            attachments=attachments,
        )

    def _attachments(self, raw: Iterable[Any], issue_key: str) -> Iterable[Attachment]:
        for item in records(list(raw), f"attachment of {issue_key}", ("id",)):
            try:
                yield self._attachment(item)
            except BadResponseError as exc:
                log.warning("skipping an attachment of %s: %s", issue_key, exc)

    def _attachment(self, item: dict[str, Any]) -> Attachment:
        ident = str(item["id"])
        author = item.get("author")
        content = str(item.get("content") or "")
        if self.flavour == "datacenter":
            web = content
        else:
            web = f"{self.site}{self.api}/attachment/content/{quote(ident)}"
        try:
            size = max(0, int(item.get("size", 0)))
        except (TypeError, ValueError):
            raise BadResponseError(f"attachment {ident}: size is not a number") from None
        return Attachment(
            id=ident,
            filename=str(item.get("filename") or ""),
            size=size,
            created=parse_time(item.get("created")),
            mime_type=str(item.get("mimeType") or "application/octet-stream"),
            author=str(author.get("displayName", "")) if isinstance(author, dict) else "",
            author_id=user_id(author) if isinstance(author, dict) else "",
            web_url=web,
            content_url=content,
        )


def project_key_of(issue_key: str) -> str:
    """The project key of a Jira issue key (`ABC-12` → `ABC`)."""
    return issue_key.rpartition("-")[0] or issue_key


def user_id(user: dict[str, Any]) -> str:
    """A user's stable id: Cloud's accountId, Data Center's key or name."""
    return str(user.get("accountId") or user.get("key") or user.get("name") or "")


def parse_time(value: Any) -> float:
    """Seconds since the epoch from Jira's `2022-10-06T07:32:47.000+0000` or epoch ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.replace("Z", "+0000")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        log.warning("unparseable time %r", value)
        return 0.0


def dc_content_url(site: str, attachment: Attachment) -> str:
    """The Data Center content URL on the configured site, safe from normalisation.

    The server's absolute URL may name another origin (http behind a proxy, an internal
    host name); its path is used on the profile's own origin so credentials still apply.
    `/secure/attachment/{id}/{name}` finds the attachment by id; a name of `.`, `..` or
    nothing would be folded away by URL normalisation, so it is replaced.
    """
    path = urlsplit(attachment.content_url).path
    base, _, name = path.rpartition("/")
    if name in ("", ".", ".."):
        path = f"{base}/attachment"
    site_path = urlsplit(site).path.rstrip("/")
    if site_path and path.startswith(site_path + "/"):
        path = path[len(site_path) :]
    return site.rstrip("/") + path
