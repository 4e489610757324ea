"""Jira Cloud (REST v3) and Jira Data Center (REST v2).

Everything Jira-specific lives here: URLs, JSON shapes, paging, the upload header, the
login page Data Center answers a refused token with.

- Listing a project is one `search/jql` (Cloud, nextPageToken paging) or `search` (Data
  Center, startAt paging) per page with `fields=attachment`, so the attachments of every
  listed issue arrive with the listing.
- Content is read from `/attachment/content/{id}?redirect=false` with a Range header
  (Cloud), or from the attachment's `content` URL moved onto the profile's origin (Data
  Center). A 303 to the media host is followed without credentials by the HTTP client,
  and its signed target reused for `MEDIA_URL_REUSE` seconds.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from trackerfs.backends.base import GrowingSource, Tracker, UploadSource
from trackerfs.backends.http import Answer, Credentials, HttpClient, decode_json
from trackerfs.backends.multipart import FilePart, MultipartBody
from trackerfs.backends.records import (
    attachment_size,
    expect_dict,
    expect_list,
    records,
)
from trackerfs.config import BackendOptions, Profile, ProfileKey
from trackerfs.errors import (
    AuthenticationError,
    BadResponseError,
    ConfigError,
    NotFoundError,
    TooLargeError,
    TrackerError,
)
from trackerfs.model import Account, Attachment, Issue, Limits, Permissions, Project

log = logging.getLogger(__name__)

FLAVOURS: dict[str, str] = {"cloud": "/rest/api/3", "datacenter": "/rest/api/2"}
#: "direct": Jira sends the bytes itself (`redirect=false`); "redirect": follow Jira's 303
#: to its media host (a CDN) without credentials.
DOWNLOADS = ("direct", "redirect")
ISSUE_FIELDS = "summary,created,updated,attachment"
#: Jira silently caps maxResults; the token/startAt loop copes with shorter pages.
DEFAULT_PAGE_SIZE = 100
#: A bound on pages per listing, against a server whose token never ends.
MAX_PAGES = 10_000
#: Seconds a signed media URL from Jira's 303 serves further ranges of its download: well
#: inside the minutes its token is valid; an expired one is asked for again anyway.
MEDIA_URL_REUSE = 30.0
#: Where Data Center sends a client whose credentials it refused (Seraph's login pages).
LOGIN_PAGES = ("/login.jsp", "/login")
#: Seraph's `X-Seraph-LoginReason` values for refused credentials: Data Center may answer
#: 200 with one (as an anonymous user) instead of 401.
REFUSED_LOGINS = frozenset({"AUTHENTICATED_FAILED", "AUTHENTICATION_DENIED"})
#: The permission keys `mypermissions` is asked for (Jira grants each separately).
CREATE_ATTACHMENTS = "CREATE_ATTACHMENTS"
DELETE_OWN_ATTACHMENTS = "DELETE_OWN_ATTACHMENTS"
DELETE_ALL_ATTACHMENTS = "DELETE_ALL_ATTACHMENTS"
ATTACHMENT_PERMISSIONS = (CREATE_ATTACHMENTS, DELETE_OWN_ATTACHMENTS, DELETE_ALL_ATTACHMENTS)


class JiraTracker(Tracker):
    """A Jira site (Cloud or Data Center) as projects → issues → attachments."""

    name: ClassVar[str] = "jira"
    #: Jira's attachment resource reads the multipart stream to its closing boundary
    #: (Tomcat takes chunked request bodies); a proxy that refuses one answers 411, and
    #: the file is then uploaded at close with its length.
    grows_uploads: ClassVar[bool] = True
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {
        "flavour": ProfileKey(
            str,
            "cloud",
            "Jira Cloud (REST /rest/api/3) or Jira Data Center (REST /rest/api/2)",
            choices=tuple(FLAVOURS),
        ),
        "auth": ProfileKey(
            str,
            "basic",
            "basic: `user` and the token; bearer: the token alone (a Data Center personal access token)",
            choices=("basic", "bearer"),
        ),
        "user": ProfileKey(str, "", "the user name of basic auth (Jira Cloud: the account email)"),
        "jql": ProfileKey(str, "", "an extra JQL condition for every project listing"),
        "page_size": ProfileKey(int, DEFAULT_PAGE_SIZE, "maxResults of each search page", low=1, high=1000),
        "download": ProfileKey(
            str,
            "direct",
            "direct: Jira sends the bytes (redirect=false); redirect: follow its 303 to the media host",
            choices=DOWNLOADS,
        ),
    }

    def __init__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.flavour = options.text("flavour")
        self.jql = options.text("jql")
        if "order by" in self.jql.lower():
            raise ConfigError(f"profile {profile.name!r}: jql is a filter; leave ORDER BY out")
        self.max_issues = profile.max_issues
        self.page_size = options.whole("page_size")
        self.download = options.text("download")
        self.api = FLAVOURS[self.flavour]
        self.site = profile.url
        auth, user = options.text("auth"), options.text("user")
        if auth == "basic" and not user:
            raise ConfigError(f"profile {profile.name!r}: basic auth needs `user` (the account email)")
        self.http = HttpClient.for_profile(
            profile,
            credentials=Credentials.from_secret(profile.secret, partial(authorization, auth, user)),
            headers={"Accept": "application/json"},
            classify=classify_answer,
            location_ttl=MEDIA_URL_REUSE,
            transport=transport,
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

    def issue_reference(self, project: Project, name: str) -> str | None:
        """`PROJ-12` in PROJ's directory, or an issue id (`10042`): what `issue/{ref}` takes.

        Anything else (a desktop probe) costs no request.
        """
        key = re.fullmatch(rf"{re.escape(project.key)}-[1-9][0-9]*", name)
        return name if key or re.fullmatch(r"[1-9][0-9]*", name) else None

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        source = self._content_source(attachment)
        if self.flavour == "datacenter" and attachment.content_url:
            return self.http.stream_range(source, start, stop, total=attachment.size)
        params = {"redirect": "false"} if self.download == "direct" else None
        return self.http.stream_range(source, start, stop, params=params, total=attachment.size)

    def honours_range(self, attachment: Attachment) -> bool:
        # Jira's own servers honour Range; a proxy in front of one may not, which the
        # client learns from the first answer that comes back whole.
        return self.http.honours_range(self._content_source(attachment))

    def _content_source(self, attachment: Attachment) -> str:
        """Where an attachment's bytes are asked for (the DC content URL, else the API's)."""
        if self.flavour == "datacenter" and attachment.content_url:
            return self.http.on_own_origin(unfoldable_content_url(attachment.content_url))
        return f"{self.api}/attachment/content/{quote(attachment.id, safe='')}"

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
        return await self._upload(issue, FilePart("file", filename, size, source))

    async def upload_growing(self, issue: Issue, filename: str, source: GrowingSource) -> Attachment:
        return await self._upload(issue, FilePart("file", filename, None, source))

    async def _upload(self, issue: Issue, part: FilePart) -> Attachment:
        filename = part.filename
        response = await self.http.request(
            "POST",
            f"{self.api}/issue/{quote(issue.key, safe='')}/attachments",
            headers={"X-Atlassian-Token": "no-check"},
            body=MultipartBody([part]),
        )
        created = records(expect_list(decode_json(response), "upload response"), "attachment", ("id",))
        if not created:
            raise BadResponseError(f"upload of {filename!r} to {issue.key}: empty response")
        return self._attachment(created[0])

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        await self.http.request("DELETE", f"{self.api}/attachment/{quote(attachment.id, safe='')}")

    def project_reference(self, name: str) -> str | None:
        """A project key (`DEMO`) or numeric id; anything else (a desktop probe) is none."""
        return name if re.fullmatch(r"[A-Z][A-Z0-9_]+|[1-9][0-9]*", name) else None

    async def get_project(self, reference: str) -> Project:
        body = await self.http.get_json(f"{self.api}/project/{quote(reference, safe='')}")
        found = records([expect_dict(body, "project")], "project", ("key",))
        if not found:
            raise BadResponseError(f"project {reference}: the answer names no project")
        return self._project(found[0])

    def _project(self, item: dict[str, Any]) -> Project:
        key = str(item["key"])
        return Project(
            key=key,
            name=str(item.get("name", key)),
            id=str(item.get("id", "")),
            web_url=f"{self.site}/browse/{quote(key)}",
            label=key,
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
            label=key,
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
        size = attachment_size(item.get("size", 0), f"attachment {ident}")
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


def unfoldable_content_url(url: str) -> str:
    """A Data Center content URL whose file name URL normalisation cannot fold away.

    `/secure/attachment/{id}/{name}` finds the attachment by id; a name of `.`, `..` or
    nothing would be folded into the path, so it is replaced.
    """
    parts = urlsplit(url)
    base, _, name = parts.path.rpartition("/")
    if name not in ("", ".", ".."):
        return url
    return urlunsplit(parts._replace(path=f"{base}/attachment"))


def authorization(scheme: str, user: str, token: str) -> dict[str, str]:
    """The Authorization header of basic (`user:token`) or bearer auth."""
    if scheme == "basic":
        pair = base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    return {"Authorization": f"Bearer {token}"}


def classify_answer(answer: Answer) -> TrackerError | None:
    """What a Jira answer means beyond its status.

    Data Center refuses credentials with a redirect to its login page, or with a 200 as an
    anonymous user that only Seraph's header tells apart; a 413 is one of Jira's limits.
    """
    if answer.location is not None and answer.location.path.endswith(LOGIN_PAGES):
        return AuthenticationError(
            f"{answer.message}: Jira sent its login page, so it refused the credentials",
            status=answer.status,
        )
    if answer.headers.get("X-Seraph-LoginReason", "").upper() in REFUSED_LOGINS:
        return AuthenticationError(f"{answer.message}: Jira refused the credentials (Seraph)", status=401)
    if answer.status == 413:
        return TooLargeError(
            f"{answer.message} (over the site's attachment size limit, or its per-issue limit)",
            status=413,
        )
    return None
