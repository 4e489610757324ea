"""Yandex Tracker (API v2): queues → issues → attachments, with an organisation header.

Everything Tracker-specific lives here: the `OAuth`/`Bearer` schemes, the `X-Org-ID` or
`X-Cloud-Org-ID` header every request carries (to the tracker's own origin only), paging
by `perPage`/`page` with `Link` and `X-Total-Pages`, the scroll API, Tracker's error body.

- Listing a queue is one `POST /v2/issues/_search?expand=attachments` with
  `{"queue": KEY}` per page: the attachments of every listed issue (those posted with
  its comments too) arrive with the listing. The search changes nothing, so it is
  declared idempotent and may be repeated. A paged search reaches only the first
  `SEARCH_WINDOW` results; a bigger queue is scrolled with a `filter` body (the scroll
  API refuses `queue`), and the scroll is released when the listing ends.
- Which comment a file was posted with is not in the attachment record: only the
  issue's comments say it. They are read for an issue that has both attachments and
  comments (Tracker's issue record counts its comments), and again only once its files
  or its count of comments changed: a queue whose issues carry no comments costs its
  search pages and nothing more, and so does a refresh.
- Content is the attachment's `content` URL (`/v2/issues/KEY/attachments/ID/NAME`)
  moved onto the profile's origin, with the same headers and a Range; a file named `.`
  or `..` keeps its name segment percent-encoded, which HTTP clients would fold away.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, aclosing
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import trio
from cachetools import LRUCache

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.backends.http import Answer, Credentials, HttpClient, decode_json
from trackerfs.backends.multipart import FilePart, MultipartBody
from trackerfs.backends.records import attachment_size, expect_dict, expect_list, records
from trackerfs.config import BackendOptions, Profile, ProfileKey
from trackerfs.errors import BadResponseError, ConfigError, NotFoundError, PermissionDeniedError, TrackerError
from trackerfs.model import Account, Attachment, Issue, Project

log = logging.getLogger(__name__)

API = "v2"
AUTH_SCHEMES = {"oauth": "OAuth", "bearer": "Bearer"}
#: Tracker pages hold at most this many items whatever `perPage` asks.
DEFAULT_PAGE_SIZE = 100
#: The results a paged search reaches; past them only the scroll API lists a queue.
SEARCH_WINDOW = 10_000
#: Issues per scroll request (Tracker's most) and how long a scroll lives between them.
PER_SCROLL = 1000
SCROLL_TTL_MS = 60_000
#: Seconds the release of a scroll may take when the listing that opened it was cancelled.
RELEASE_GRACE = 5.0
#: A bound on pages per listing, against a server whose `next` link never ends.
MAX_PAGES = 10_000
#: The web UI of each organisation kind, for `api.tracker.yandex.net`.
API_HOST = "api.tracker.yandex.net"
WEB_UI = {"org_id": "https://tracker.yandex.ru", "cloud_org_id": "https://tracker.yandex.cloud"}
#: Issues whose comment files are remembered between listings.
COMMENT_MEMORY = 4096
#: Fields of an issue record that count its comments (absent: none).
COMMENT_COUNTS = ("commentWithoutExternalMessageCount", "commentWithExternalMessageCount")
#: An issue key (`QUEUE-12`, perhaps an old key of a moved issue) and an issue id.
ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*-[1-9][0-9]*")
ISSUE_ID = re.compile(r"[0-9a-f]{24}")


class YandexTracker(Tracker):
    """A Yandex Tracker organisation as queues → issues → attachments."""

    name: ClassVar[str] = "yandex"
    project_noun: ClassVar[str] = "queue"
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {
        "auth": ProfileKey(
            str,
            "oauth",
            "oauth: `Authorization: OAuth TOKEN`; bearer: an IAM token (needs cloud_org_id)",
            choices=tuple(AUTH_SCHEMES),
        ),
        "org_id": ProfileKey(str, "", "the Yandex 360 organisation's id, sent as X-Org-ID"),
        "cloud_org_id": ProfileKey(str, "", "the Yandex Cloud organisation's id, sent as X-Cloud-Org-ID"),
        "web_url": ProfileKey(str, "", "the web UI the url xattrs point at (default: from url)"),
        "page_size": ProfileKey(int, DEFAULT_PAGE_SIZE, "perPage of each search page", low=1, high=1000),
    }
    #: Class attributes so that a test can shrink them (the emulator's window too).
    search_window: ClassVar[int] = SEARCH_WINDOW
    per_scroll: ClassVar[int] = PER_SCROLL

    def __init__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        org_header, org_kind = organisation_header(profile.name, options)
        scheme = options.text("auth")
        if scheme == "bearer" and org_kind != "cloud_org_id":
            raise ConfigError(
                f'profile {profile.name!r}: an IAM token (auth = "bearer") works only with cloud_org_id'
            )
        self.max_issues = profile.max_issues
        self.page_size = options.whole("page_size")
        self.org_label = f"{options.text(org_kind)} of {org_kind}"
        self.web = options.text("web_url").rstrip("/") or web_ui(profile.url, org_kind)
        #: issue id → (what its comment files depend on, attachment id → comment id)
        self._posted: LRUCache[str, tuple[Hashable, dict[str, str]]] = LRUCache(COMMENT_MEMORY)
        self.http = HttpClient.for_profile(
            profile,
            credentials=Credentials.from_secret(profile.secret, partial(authorization, AUTH_SCHEMES[scheme])),
            headers={"Accept": "application/json", **org_header},
            classify=classify_answer,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def check_account(self) -> Account:
        try:
            body = expect_dict(await self.http.get_json(f"{API}/myself"), "myself")
        except PermissionDeniedError as exc:
            # Tracker takes the token but not in this organisation: say which key to check.
            raise PermissionDeniedError(
                f"{exc} (the token is valid, but not in organisation {self.org_label})", status=exc.status
            ) from None
        ident = body.get("uid") or body.get("id") or body.get("login") or ""
        return Account(id=str(ident), name=str(body.get("display") or body.get("login") or ""))

    async def list_projects(self) -> list[Project]:
        queues: list[Any] = []
        async with aclosing(self._pages("GET", f"{API}/queues/", {"perPage": 50})) as pages:
            async for batch, _ in pages:
                queues.extend(batch)
        return [self._project(item) for item in records(queues, "queue", ("key",))]

    async def list_issues(self, project: Project) -> list[Issue]:
        issues: list[Issue] = []
        async with aclosing(self._queue_issues(project.key)) as batches:
            async for batch in batches:
                for item in records(batch, "issue", ("key", "id")):
                    issues.append(await self._issue(item))
                    if self.max_issues and len(issues) >= self.max_issues:
                        return issues
        return issues

    async def _queue_issues(self, queue: str) -> AsyncGenerator[list[Any], None]:
        """The issues of a queue in key order: paged, or scrolled where paging cannot reach."""
        params = {"expand": "attachments", "perPage": self.page_size}
        too_many = 0
        pages = self._pages("POST", f"{API}/issues/_search", params, json={"queue": queue})
        async with aclosing(pages):
            async for batch, total in pages:
                if self._needs_scroll(total):
                    too_many = total
                    break
                yield batch
        if too_many:
            log.info("queue %s holds %d issues: scrolling past the search window", queue, too_many)
            async with aclosing(self._scrolled({"filter": {"queue": queue}, "order": "+key"})) as scrolled:
                async for batch in scrolled:
                    yield batch

    def _needs_scroll(self, total: int) -> bool:
        """Whether a queue of `total` issues holds more of them than paging reaches."""
        within = 0 < self.max_issues <= self.search_window
        return not within and total > self.search_window

    async def _pages(
        self, method: str, path: str, params: Mapping[str, Any], *, json: Any = None
    ) -> AsyncGenerator[tuple[list[Any], int], None]:
        """The items of each page of a Tracker list and its `X-Total-Count`.

        The next page is the one `Link: rel="next"` names; without the link, the next
        `page` while `X-Total-Pages` says there are more.
        """
        url: str = path
        query: dict[str, Any] | None = dict(params)
        page = 1
        for _ in range(MAX_PAGES):
            response = await self.http.request(method, url, params=query, json=json, idempotent=True)
            batch = expect_list(decode_json(response), f"page of {path}")
            yield batch, header_number(response, "X-Total-Count")
            following = response.links.get("next", {}).get("url")
            if not batch:
                return
            if following:
                url, query = self.http.on_own_origin(following), None
            elif page < header_number(response, "X-Total-Pages"):
                url, query = path, {**params, "page": page + 1}
            else:
                return
            page += 1

    async def _scrolled(self, body: dict[str, Any]) -> AsyncGenerator[list[Any], None]:
        """Every issue `body` selects, through a sorted scroll released at the end."""
        params: Mapping[str, Any] | None = {
            "expand": "attachments",
            "scrollType": "sorted",
            "perScroll": self.per_scroll,
            "scrollTTLMillis": SCROLL_TTL_MS,
        }
        url = f"{API}/issues/_search"
        scroll: tuple[str, str] | None = None
        try:
            for _ in range(MAX_PAGES):
                response = await self.http.request("POST", url, params=params, json=body, idempotent=True)
                ident, token = response.headers.get("X-Scroll-Id"), response.headers.get("X-Scroll-Token")
                if ident and token:
                    scroll = (ident, token)
                batch = expect_list(decode_json(response), "scroll page")
                yield batch
                following = response.links.get("next", {}).get("url")
                if not batch or not following:
                    return
                url, params = self.http.on_own_origin(following), None
        finally:
            if scroll is not None:
                await self._release(*scroll)

    async def _release(self, ident: str, token: str) -> None:
        """Release a scroll (the server would keep it for its TTL); a failure only warns."""
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_GRACE):
            try:
                await self.http.request(
                    "POST", f"{API}/system/search/scroll/_clear", json={ident: token}, idempotent=True
                )
            except TrackerError as exc:
                log.warning("could not release a search scroll: %s", exc)

    async def get_issue(self, project: Project, key: str) -> Issue:
        issue = await self.get_issue_by_reference(key)
        # A moved issue answers its old key under its new one, from another queue.
        if issue.project_key != project.key:
            raise NotFoundError(f"{key} is in queue {issue.project_key} now ({issue.key})")
        return issue

    async def get_issue_by_reference(self, reference: str) -> Issue:
        """The issue by its key, an old key of a moved issue, or its id."""
        body = expect_dict(
            await self.http.get_json(
                f"{API}/issues/{quote(reference, safe='')}", params={"expand": "attachments"}
            ),
            "issue",
        )
        if not body.get("key") or not body.get("id"):
            raise BadResponseError(f"issue {reference}: no key or id in the answer")
        return await self._issue(body)

    def locator(self, issue: Issue) -> str:
        """The issue's id: it stays when the issue moves to another queue and changes key."""
        return issue.id or issue.key

    def issue_reference(self, project: Project, name: str) -> str | None:
        """An issue key (of any queue: an old key finds a moved issue) or a 24-hex issue id.

        Anything else (a desktop probe) costs no request.
        """
        return name if ISSUE_KEY.fullmatch(name) or ISSUE_ID.fullmatch(name) else None

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.http.stream_range(attachment.content_url, start, stop, total=attachment.size)

    def honours_range(self, attachment: Attachment) -> bool:
        # Tracker does not document Range on content; the client learns from the first
        # answer that comes back whole, and the reader then downloads each file once.
        return self.http.honours_range(attachment.content_url)

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        response = await self.http.request(
            "POST",
            f"{API}/issues/{quote(issue.key, safe='')}/attachments/",
            params={"filename": filename},
            body=MultipartBody([FilePart("file", filename, size, source)]),
            idempotent=False,
        )
        created = expect_dict(decode_json(response), "upload response")
        if not created.get("id"):
            raise BadResponseError(f"upload of {filename!r} to {issue.key}: no attachment in the answer")
        return self._attachment(created, issue.key, {})

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        # The attachment's `self` path, as the official client deletes it; Tracker takes it
        # with or without the trailing slash its documentation shows.
        await self.http.request(
            "DELETE",
            f"{API}/issues/{quote(issue.key, safe='')}/attachments/{quote(attachment.id, safe='')}",
        )

    def _project(self, item: dict[str, Any]) -> Project:
        key = str(item["key"])
        return Project(
            key=key,
            name=str(item.get("name") or key),
            id=str(item.get("id") or key),
            web_url=f"{self.web}/{quote(key)}",
            label=key,
        )

    async def _issue(self, item: dict[str, Any]) -> Issue:
        key = str(item["key"])
        queue = item.get("queue")
        queue_key = str(queue.get("key") or "") if isinstance(queue, dict) else ""
        raw = item.get("attachments")
        attachments = None
        if isinstance(raw, list):
            comments = await self._comment_files(key, str(item["id"]), item, raw) if raw else {}
            attachments = tuple(self._attachments(raw, key, comments))
        return Issue(
            key=key,
            id=str(item["id"]),
            project_key=queue_key or key.rpartition("-")[0],
            summary=str(item.get("summary") or ""),
            created=parse_time(item.get("createdAt")),
            updated=parse_time(item.get("updatedAt")),
            web_url=f"{self.web}/{quote(key)}",
            attachments=attachments,
            label=key,
        )

    async def _comment_files(
        self, key: str, ident: str, item: Mapping[str, Any], raw: list[Any]
    ) -> dict[str, str]:
        """Attachment id → comment id for an issue's files, read again only when it can differ.

        Attachments never change, so while an issue holds the same files and the same
        number of comments, the comments name the same files: a refresh reads nothing.
        """
        if not has_comments(item):
            return {}
        files = frozenset(str(a.get("id")) for a in raw if isinstance(a, dict))
        basis: Hashable = (files, tuple(item.get(count) for count in COMMENT_COUNTS))
        known = self._posted.get(ident)
        if known is not None and known[0] == basis:
            return known[1]
        posted = await self._comments_of(key)
        self._posted[ident] = (basis, posted)
        return posted

    async def _comments_of(self, key: str) -> dict[str, str]:
        """Attachment id → the id of the comment it was posted with, for one issue."""
        posted: dict[str, str] = {}
        path = f"{API}/issues/{quote(key, safe='')}/comments"
        async with aclosing(self._pages("GET", path, {"perPage": 100})) as pages:
            async for batch, _ in pages:
                for comment in records(batch, f"comment of {key}", ("id",)):
                    files = comment.get("attachments")
                    for item in records(files if isinstance(files, list) else [], "comment file", ("id",)):
                        posted[str(item["id"])] = str(comment["id"])
        return posted

    def _attachments(
        self, raw: Iterable[Any], issue_key: str, comments: Mapping[str, str]
    ) -> Iterable[Attachment]:
        for item in records(list(raw), f"attachment of {issue_key}", ("id",)):
            try:
                yield self._attachment(item, issue_key, comments)
            except BadResponseError as exc:
                log.warning("skipping an attachment of %s: %s", issue_key, exc)

    def _attachment(self, item: dict[str, Any], issue_key: str, comments: Mapping[str, str]) -> Attachment:
        ident = str(item["id"])
        name = str(item.get("name") or "")
        author = item.get("createdBy")
        author = author if isinstance(author, dict) else {}
        size = attachment_size(item.get("size", 0), f"attachment {ident}")
        given = str(item.get("content") or "")
        where = unfoldable(given) if given else content_path(issue_key, ident, name)
        content = self.http.on_own_origin(where)
        comment = comments.get(ident)
        return Attachment(
            id=ident,
            filename=name,
            size=size,
            created=parse_time(item.get("createdAt")),
            mime_type=str(item.get("mimetype") or "application/octet-stream"),
            author=str(author.get("display") or ""),
            author_id=str(author.get("id") or ""),
            web_url=content,
            content_url=content,
            attributes=(("comment", comment),) if comment else (),
        )


def organisation_header(profile: str, options: BackendOptions) -> tuple[dict[str, str], str]:
    """The organisation header of a profile and the key that gave it (exactly one is set)."""
    given = {key: options.text(key) for key in WEB_UI if options.text(key)}
    if len(given) != 1:
        raise ConfigError(f"profile {profile!r}: give exactly one of org_id (Yandex 360) and cloud_org_id")
    [(kind, ident)] = given.items()
    return {"X-Org-ID" if kind == "org_id" else "X-Cloud-Org-ID": ident}, kind


def web_ui(url: str, org_kind: str) -> str:
    """Where the web UI is: Tracker's own for its API host, else the profile's URL."""
    return WEB_UI[org_kind] if urlsplit(url).hostname == API_HOST else url.rstrip("/")


def authorization(scheme: str, token: str) -> dict[str, str]:
    """`Authorization: OAuth TOKEN` or `Bearer TOKEN`."""
    return {"Authorization": f"{scheme} {token}"}


def has_comments(item: Mapping[str, Any]) -> bool:
    """Whether an issue record counts any comment (a record without the counts has none)."""
    return any(isinstance(item.get(field), int) and item[field] > 0 for field in COMMENT_COUNTS)


def header_number(response: httpx.Response, name: str) -> int:
    """A whole number from a response header; 0 when it is missing or not a number."""
    try:
        return max(0, int(response.headers.get(name, "0")))
    except ValueError:
        return 0


def content_path(issue_key: str, ident: str, name: str) -> str:
    """The content path of an attachment whose record gives none."""
    issue, attachment = quote(issue_key, safe=""), quote(ident, safe="")
    return f"{API}/issues/{issue}/attachments/{attachment}/{name_segment(name)}"


def name_segment(name: str) -> str:
    """A file name as one path segment; `.` and `..` percent-encoded (clients fold them)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if name in (".", "..") else encoded


def unfoldable(url: str) -> str:
    """A content URL whose last segment, a literal `.` or `..`, is percent-encoded."""
    parts = urlsplit(url)
    base, _, name = parts.path.rpartition("/")
    if name not in (".", ".."):
        return url
    return urlunsplit(parts._replace(path=f"{base}/{name_segment(name)}"))


def parse_time(value: Any) -> float:
    """Seconds since the epoch from Tracker's `2017-06-11T05:11:12.347+0000`."""
    if not isinstance(value, str) or not value:
        return 0.0
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    log.warning("unparseable time %r", value)
    return 0.0


def classify_answer(answer: Answer) -> TrackerError | None:
    """What a Tracker answer means beyond its status: 423 is a refusal to edit (EACCES).

    Tracker answers 423 when an object is past its version limit and edits are disabled;
    the user sees EACCES, and the log keeps Tracker's own message.
    """
    if answer.status == 423:
        log.error("Tracker refused the change: %s", answer.message)
        return PermissionDeniedError(answer.message, status=423)
    return None
