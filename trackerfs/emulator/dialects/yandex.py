"""The Yandex Tracker dialect: API v2 (and v3, which has the same paths and shapes).

Every request needs ``Authorization: OAuth TOKEN`` or ``Bearer TOKEN`` (an IAM token, which
only a Yandex Cloud organisation takes, so it needs ``X-Cloud-Org-ID``) and an organisation
header, ``X-Org-ID`` or ``X-Cloud-Org-ID``, equal to ``--org-id`` (default ``12345``).
Lists page by ``perPage``/``page`` with ``X-Total-Count``, ``X-Total-Pages`` and ``Link``;
``POST /issues/_search`` takes one of ``queue``, ``keys``, ``filter``, ``query`` and scrolls
(``filter`` only) past the 10,000 results a paged search reaches.

Switches (``/_emulator/config``): ``edits_disabled`` answers uploads and deletes with 423,
as Tracker does for an object past its version limit; ``rename_uploads`` stores uploads
under the name Waldur would (for the shared suite's renamed-upload tests). A 429 without ``Retry-After`` is a
fault rule with ``"headers": {}``.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.dialects.base import Dialect, bearer_token, stored_file_name
from trackerfs.emulator.responses import AsciiJSONResponse, discard_body
from trackerfs.emulator.routing import ANY_TEXT
from trackerfs.emulator.seed import ALICE, BOB, SEED_EPOCH, png_image
from trackerfs.emulator.store import Attachment, Comment, Issue, Kind, Project, Store, User, guess_mime_type
from trackerfs.emulator.uploads import (
    PartTooLargeError,
    UploadError,
    discard_parts,
    keep_part,
    receive_multipart,
)

if TYPE_CHECKING:
    from trackerfs.emulator.state import EmulatorState

DEFAULT_ORG_ID = "12345"
VERSIONS = ("v2", "v3")
DEFAULT_PER_PAGE = 50
DEFAULT_PER_SCROLL = 100
MAX_PER_SCROLL = 1000
DEFAULT_SCROLL_TTL_MS = 60_000
NOT_AUTHORIZED = (
    "The user is not authorized. Make sure that actions described in the API access section are performed."
)
NO_RIGHTS = "You are not authorized to perform this action."
NOT_FOUND = "The requested object was not found."
ONE_SELECTOR = "You can only use keys, a queue, or a search query"
NO_SCROLL = "Scroll is not supported"
EDITS_DISABLED = "Object edits disabled."
#: the selectors of a search body, strongest first; only one may be given
SELECTORS = ("queue", "keys", "filter", "query")
#: ``Queue: KEY``, ``Key: A-1, A-2`` terms of the query language, joined by AND
_QUERY_TERM = re.compile(r'\s*(queue|key)\s*:\s*("[^"]*"|[^\s"]+(?:\s*,\s*[^\s"]+)*)\s*', re.IGNORECASE)
_SORT = re.compile(r'\s*"?sort by"?\s*:\s*(key|created|updated)\s*(asc|desc)?\s*$', re.IGNORECASE)
#: the order fields ``filter`` searches take (``+key``, ``-createdAt``)
ORDER_FIELDS = ("key", "createdAt", "updatedAt")

Handler = Callable[[Request, "Call"], Awaitable[Response]]


class YandexError(Exception):
    """An error answered with Tracker's ``{"errors": {}, "errorMessages": [...], "statusCode": N}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about its request: the API root (``…/v2``) and the user."""

    api: str
    user: User


@dataclass(slots=True)
class Scroll:
    """A scroll opened by a search: the issue ids it found, how far it got, until when."""

    token: str
    issue_ids: list[str]
    per_scroll: int
    ttl_ms: int
    expires: float
    position: int = 0
    query: dict[str, str] = field(default_factory=dict)


def tracker_time(moment: datetime) -> str:
    """Tracker's time format, ``2017-06-11T05:11:12.347+0000``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + moment.strftime("%z")


def content_name(name: str) -> str:
    """A file name as one path segment: percent-encoded, ``.``/``..`` too (clients drop those)."""
    encoded = quote(name.encode("utf-8", "surrogateescape"), safe="")
    return encoded.replace(".", "%2E") if name in (".", "..") else encoded


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG from its header, else ``None``."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _positive(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise YandexError(400, f"Parameter '{name}' must be a number.") from None
    if number < 1:
        raise YandexError(400, f"Parameter '{name}' must be positive.")
    return number


def _as_list(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise YandexError(400, "Expected a string or a list of strings.")
    return [str(v) for v in values]


class YandexDialect(Dialect):
    """Routes of the Yandex Tracker API over an EmulatorState."""

    name: ClassVar[str] = "yandex"
    logged_headers: ClassVar[tuple[str, ...]] = ("x-org-id", "x-cloud-org-id")
    switches: ClassVar[dict[str, bool]] = {"edits_disabled": False, "rename_uploads": False}
    #: how many results a paged search reaches; beyond that a client must scroll
    search_window: ClassVar[int] = 10_000

    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        self.org_id = self.state.options.org_id or DEFAULT_ORG_ID
        self._scrolls: dict[str, Scroll] = {}

    @staticmethod
    def format_id(kind: Kind, serial: int) -> str:
        """Issues get 24-hex ids (``5f0c…``); every other record a decimal string from 10000.

        The hex ids always hold a letter, so they never equal a decimal one.
        """
        if kind == "issue":
            return f"5f{serial:022x}"
        return str(10000 + serial)

    @staticmethod
    def error_response(status: int, message: str) -> Response:
        """Tracker's error body with ``status``."""
        body = {"errors": {}, "errorMessages": [message], "statusCode": status}
        return AsciiJSONResponse(body, status_code=status)

    @classmethod
    def seed(cls, store: Store, name: str) -> None:
        """The shared seed; ``demo`` adds queue YAN: a comment's attachment, a moved issue."""
        super().seed(store, name)
        if name != "demo":
            return
        store.set_clock(SEED_EPOCH + timedelta(days=1))
        try:
            queue = store.add_project("YAN", "Tracker particulars").id
            commented = store.add_issue(queue, "Attachments of a comment")
            store.add_attachment(commented.id, "photo.png", png_image(32, 16), author=ALICE)
            comment = store.add_comment(commented.id, "The log of the failed run is attached.", author=BOB)
            store.add_attachment(
                commented.id, "run.log", b"step 1 ok\nstep 2 failed\n", author=BOB, comment=comment.id
            )
            ops = store.project_by_key("OPS")
            assert ops is not None
            moved = store.add_issue(ops.id, "Moved from OPS")
            store.add_attachment(moved.id, "moved.txt", b"attached while in OPS\n", author=ALICE)
            store.move_issue(moved.id, queue)
        finally:
            store.set_clock(None)

    # -- auth and plumbing ------------------------------------------------------------------
    def _token(self, request: Request) -> tuple[str, str] | None:
        for scheme in ("oauth", "bearer"):
            token = bearer_token(request, scheme)
            if token is not None:
                return scheme, token
        return None

    def _refusal(self, request: Request) -> YandexError | None:
        """Why the request is refused (401 credentials, 403 organisation), else ``None``."""
        credentials = self._token(request)
        if credentials is None or not hmac.compare_digest(credentials[1].encode(), self.state.token.encode()):
            return YandexError(401, NOT_AUTHORIZED)
        org, cloud_org = (request.headers.get(name, "") for name in ("x-org-id", "x-cloud-org-id"))
        # an IAM token belongs to Yandex Cloud: a Yandex 360 organisation does not take it
        if credentials[0] == "bearer" and not cloud_org:
            return YandexError(401, NOT_AUTHORIZED)
        # the organisation header is part of API access: without one nobody is signed in
        if not org and not cloud_org:
            return YandexError(401, NOT_AUTHORIZED)
        if self.org_id not in (org, cloud_org):
            return YandexError(403, NO_RIGHTS)
        return None

    def authenticate(self, request: Request) -> User | None:
        """The token's owner for an OAuth or IAM token with the right organisation header."""
        return None if self._refusal(request) is not None else self.state.token_owner

    def _endpoint(self, handler: Handler, version: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                refusal = self._refusal(request)
                if refusal is not None:
                    raise refusal
                api = f"{str(request.base_url).rstrip('/')}/{version}"
                return await handler(request, Call(api, self.state.token_owner))
            except YandexError as error:
                if request.method in ("POST", "PUT", "PATCH"):
                    await discard_body(request)
                return self.error_response(error.status, error.message)

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """The routes of API v2 and v3."""
        attachment = "/issues/{key}/attachments/{id}"
        table: list[tuple[str, Handler, list[str]]] = [
            ("/myself", self.myself, ["GET"]),
            ("/users/{login}", self.user_get, ["GET"]),
            ("/fields", self.field_list, ["GET"]),
            ("/fields/", self.field_list, ["GET"]),
            ("/queues", self.queue_list, ["GET"]),
            ("/queues/", self.queue_list, ["GET"]),
            ("/queues/{key}", self.queue_get, ["GET"]),
            ("/issues/_search", self.search, ["POST"]),
            ("/system/search/scroll/_clear", self.scroll_clear, ["POST"]),
            ("/issues/{key}", self.issue_get, ["GET"]),
            ("/issues/{key}/comments", self.comment_list, ["GET"]),
            ("/issues/{key}/attachments", self.attachment_list, ["GET"]),
            ("/issues/{key}/attachments/", self.attachment_list, ["GET"]),
            ("/issues/{key}/attachments", self.upload, ["POST"]),
            ("/issues/{key}/attachments/", self.upload, ["POST"]),
            (attachment, self.attachment_get, ["GET"]),
            (attachment, self.attachment_delete, ["DELETE"]),
            (attachment + "/", self.attachment_delete, ["DELETE"]),
            # the empty name too: a name-less attachment's content URL ends in "/"
            (attachment + f"/{{name:{ANY_TEXT}}}", self.attachment_content, ["GET"]),
            ("/issues/{key}/thumbnails/{id}", self.thumbnail, ["GET"]),
        ]
        routes: list[BaseRoute] = [
            Route(f"/{version}{path}", self._endpoint(handler, version), methods=methods)
            for version in VERSIONS
            for path, handler, methods in table
        ]
        for version in VERSIONS:
            routes.append(Route(f"/{version}/{{rest:path}}", self._endpoint(self.not_found, version)))
        return routes

    # -- shapes -----------------------------------------------------------------------------
    @staticmethod
    def _login(user: User) -> str:
        return user.email.partition("@")[0] or user.email

    def _user(self, call: Call, user: User) -> dict[str, Any]:
        login = self._login(user)
        return {"self": f"{call.api}/users/{login}", "id": login, "display": user.display_name}

    def _queue_ref(self, call: Call, project: Project) -> dict[str, Any]:
        return {
            "self": f"{call.api}/queues/{project.key}",
            "id": project.id,
            "key": project.key,
            "display": project.name,
        }

    def _queue(self, call: Call, project: Project) -> dict[str, Any]:
        return {
            **self._queue_ref(call, project),
            "version": 1,
            "name": project.name,
            "description": "",
            "lead": self._user(call, self.state.token_owner),
            "assignAuto": False,
            "defaultType": {"self": f"{call.api}/issuetypes/1", "id": "1", "key": "task", "display": "Task"},
            "defaultPriority": {
                "self": f"{call.api}/priorities/3",
                "id": "3",
                "key": "normal",
                "display": "Normal",
            },
            "teamUsers": [],
            "denyVoting": False,
        }

    def _attachment(self, call: Call, issue: Issue, attachment: Attachment) -> dict[str, Any]:
        base = f"{call.api}/issues/{issue.key}/attachments/{attachment.id}"
        body: dict[str, Any] = {
            "self": base,
            "id": attachment.id,
            "name": attachment.filename,
            "content": f"{base}/{content_name(attachment.filename)}",
            "createdBy": self._user(call, attachment.author),
            "createdAt": tracker_time(attachment.created),
            "mimetype": attachment.mime_type,
            "size": attachment.size,
        }
        if attachment.mime_type.startswith("image/"):
            body["thumbnail"] = f"{call.api}/issues/{issue.key}/thumbnails/{attachment.id}"
            with self.state.store.blob_path(attachment).open("rb") as blob:
                dimensions = png_size(blob.read(24))
            if dimensions is not None:
                body["metadata"] = {"size": f"{dimensions[0]}x{dimensions[1]}"}
        return body

    def _attachments_of(self, issue: Issue) -> list[Attachment]:
        return [a for a in self.state.store.attachments_of(issue.id) if not a.is_external]

    def _issue(self, call: Call, issue: Issue, *, expand: Iterable[str] = ()) -> dict[str, Any]:
        project = self.state.store.project_of(issue)
        owner = self._user(call, self.state.token_owner)
        body: dict[str, Any] = {
            "self": f"{call.api}/issues/{issue.key}",
            "id": issue.id,
            "key": issue.key,
            "version": 1,
            "summary": issue.summary,
            "createdBy": owner,
            "updatedBy": owner,
            "createdAt": tracker_time(issue.created),
            "updatedAt": tracker_time(issue.updated),
            "queue": self._queue_ref(call, project),
            "type": {"self": f"{call.api}/issuetypes/1", "id": "1", "key": "task", "display": "Task"},
            "status": {"self": f"{call.api}/statuses/1", "id": "1", "key": "open", "display": "Open"},
            "favorite": False,
            "votes": 0,
        }
        if issue.aliases:
            body["aliases"] = list(issue.aliases)
        # Tracker counts an issue's comments in its record (and leaves the count out at 0)
        comments = len(self.state.store.comments_of(issue.id))
        if comments:
            body["commentWithoutExternalMessageCount"] = comments
        if "attachments" in expand:
            body["attachments"] = [self._attachment(call, issue, a) for a in self._attachments_of(issue)]
        return body

    def _comment(self, call: Call, issue: Issue, comment: Comment) -> dict[str, Any]:
        numeric = int(comment.id)
        attached = [a for a in self._attachments_of(issue) if a.comment == comment.id]
        return {
            "self": f"{call.api}/issues/{issue.key}/comments/{numeric}",
            "id": numeric,
            "longId": f"{numeric:024x}",
            "text": comment.body,
            "createdBy": self._user(call, comment.author),
            "updatedBy": self._user(call, comment.author),
            "createdAt": tracker_time(comment.created),
            "updatedAt": tracker_time(comment.created),
            "version": 1,
            "attachments": [
                {
                    "self": f"{call.api}/issues/{issue.key}/attachments/{a.id}",
                    "id": a.id,
                    "display": a.filename,
                }
                for a in attached
            ],
        }

    # -- paging -----------------------------------------------------------------------------
    def _paged(
        self, request: Request, items: list[Any], *, window: int | None = None
    ) -> tuple[list[Any], dict[str, str]]:
        """One page by ``perPage``/``page``, with Tracker's headers (``Link``: next, seek).

        A page starting past ``window`` results is a 400 (a search must scroll there).
        """
        params = request.query_params
        per_page = min(
            _positive(params.get("perPage"), "perPage", DEFAULT_PER_PAGE), self.state.config.page_size
        )
        page = _positive(params.get("page"), "page", 1)
        total_pages = max(1, -(-len(items) // per_page))
        start = (page - 1) * per_page
        if window is not None and start >= window:
            raise YandexError(400, f"Only the first {window} results can be paged; use scroll.")
        url = str(request.url.replace(query=""))
        rest = [(k, v) for k, v in params.multi_items() if k not in ("perPage", "page")]

        def link(rel: str, number: int | None) -> str:
            query = urlencode([*rest, ("perPage", str(per_page))])
            target = f"{url}?{query}" + (f"&page={number}" if number is not None else "{&page}")
            return f'<{target}>; rel="{rel}"'

        links = [link("first", 1)]
        if page > 1:
            links.append(link("prev", page - 1))
        if page < total_pages:
            links.append(link("next", page + 1))
        links += [link("last", total_pages), link("seek", None)]
        headers = {
            "X-Total-Count": str(len(items)),
            "X-Total-Pages": str(total_pages),
            "Link": ", ".join(links),
        }
        return items[start : start + per_page], headers

    # -- handlers ---------------------------------------------------------------------------
    async def not_found(self, request: Request, call: Call) -> Response:
        """Any other path under the API."""
        raise YandexError(404, NOT_FOUND)

    def _user_record(self, call: Call, user: User) -> dict[str, Any]:
        return {**self._user(call, user), "login": self._login(user), "email": user.email}

    async def myself(self, request: Request, call: Call) -> Response:
        """The token's owner."""
        return AsciiJSONResponse(self._user_record(call, self.state.token_owner))

    async def user_get(self, request: Request, call: Call) -> Response:
        """A user by login: the accepted ones and the seed's authors (what ``createdBy`` links to)."""
        known = [*self.state.users.values(), ALICE, BOB]
        user = next((u for u in known if self._login(u) == request.path_params["login"]), None)
        if user is None:
            raise YandexError(404, NOT_FOUND)
        return AsciiJSONResponse(self._user_record(call, user))

    async def field_list(self, request: Request, call: Call) -> Response:
        """The issue fields this emulator fills (the python client asks before reading one)."""
        kinds = {
            "key": "string",
            "summary": "string",
            "queue": "queue",
            "type": "issuetype",
            "status": "status",
            "createdBy": "user",
            "updatedBy": "user",
            "createdAt": "date",
            "updatedAt": "date",
            "aliases": "array",
            "attachments": "array",
            "favorite": "boolean",
            "votes": "integer",
        }
        return AsciiJSONResponse(
            [
                {
                    "self": f"{call.api}/fields/{name}",
                    "id": name,
                    "name": name,
                    "key": name,
                    "version": 1,
                    "schema": {"type": kind, "required": name in ("key", "summary", "queue")},
                    "readonly": name not in ("summary", "attachments"),
                    "options": False,
                    "suggest": False,
                    "type": "standard",
                }
                for name, kind in kinds.items()
            ]
        )

    async def queue_list(self, request: Request, call: Call) -> Response:
        """Queues by key, paged."""
        queues = sorted(self.state.store.projects.values(), key=lambda p: p.key)
        page, headers = self._paged(request, queues)
        return AsciiJSONResponse([self._queue(call, q) for q in page], headers=headers)

    async def queue_get(self, request: Request, call: Call) -> Response:
        """One queue by its key (case-sensitive) or id."""
        project = self.state.store.project_by_key(request.path_params["key"])
        if project is None:
            raise YandexError(404, NOT_FOUND)
        return AsciiJSONResponse(self._queue(call, project))

    def _find_issue(self, key: str) -> Issue:
        issue = self.state.store.issue_by_key(key)
        if issue is None:
            raise YandexError(404, NOT_FOUND)
        return issue

    @staticmethod
    def _expand(request: Request) -> set[str]:
        return {part for value in request.query_params.getlist("expand") for part in value.split(",")}

    async def issue_get(self, request: Request, call: Call) -> Response:
        """One issue by key, id or an old key; ``expand=attachments`` embeds them."""
        issue = self._find_issue(request.path_params["key"])
        return AsciiJSONResponse(self._issue(call, issue, expand=self._expand(request)))

    async def comment_list(self, request: Request, call: Call) -> Response:
        """The comments of an issue, oldest first, each naming its attachments."""
        issue = self._find_issue(request.path_params["key"])
        comments = self.state.store.comments_of(issue.id)
        return AsciiJSONResponse([self._comment(call, issue, c) for c in comments])

    # -- search -----------------------------------------------------------------------------
    def _issue_order(self, issues: list[Issue]) -> list[Issue]:
        store = self.state.store
        return sorted(issues, key=lambda i: (store.project_of(i).key, i.number))

    def _by_queue(self, keys: list[str]) -> list[Issue]:
        store = self.state.store
        wanted = set()
        for key in keys:
            project = store.project_by_key(key)
            if project is None:
                raise YandexError(400, f"Queue {key} does not exist.")
            wanted.add(project.id)
        return [i for i in store.issues.values() if i.project in wanted]

    def _by_keys(self, keys: list[str]) -> list[Issue]:
        found = {}
        for key in keys:
            issue = self.state.store.issue_by_key(key)
            if issue is not None:
                found[issue.id] = issue
        return list(found.values())

    def _filtered(self, conditions: Any, order: Any) -> list[Issue]:
        if not isinstance(conditions, dict):
            raise YandexError(400, "The filter must be an object.")
        issues = list(self.state.store.issues.values())
        for name, value in conditions.items():
            if name == "queue":
                queues = {p.id for k in _as_list(value) if (p := self.state.store.project_by_key(k))}
                issues = [i for i in issues if i.project in queues]
            elif name == "key":
                wanted = {i.id for i in self._by_keys(_as_list(value))}
                issues = [i for i in issues if i.id in wanted]
            elif name == "summary":
                texts = [t.lower() for t in _as_list(value)]
                issues = [i for i in issues if any(t in i.summary.lower() for t in texts)]
            else:
                raise YandexError(400, f"Unknown field in filter: {name}")
        issues = self._issue_order(issues)
        for term in reversed(_as_list(order) if order is not None else []):
            descending = term.startswith("-")
            name = term.lstrip("+-")
            if name not in ORDER_FIELDS:
                raise YandexError(400, f"Cannot sort by field {name}")
            if name == "key":
                issues = self._issue_order(issues)
                if descending:
                    issues.reverse()
            else:
                attribute = "created" if name == "createdAt" else "updated"
                issues.sort(key=lambda i: getattr(i, attribute), reverse=descending)
        return issues

    def _queried(self, query: Any) -> list[Issue]:
        if not isinstance(query, str):
            raise YandexError(400, "The query must be a string.")
        text, sort, descending = query, "key", False
        match = re.search(r'"?sort by"?\s*:.*$', query, re.IGNORECASE)
        if match is not None:
            sort_match = _SORT.fullmatch(match.group(0))
            if sort_match is None:
                raise YandexError(400, f"Query could not be parsed: {query}")
            sort, descending = sort_match.group(1).lower(), (sort_match.group(2) or "").lower() == "desc"
            text = query[: match.start()]
        issues = self._issue_order(list(self.state.store.issues.values()))
        for term in filter(str.strip, re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE)):
            term_match = _QUERY_TERM.fullmatch(term)
            if term_match is None:
                raise YandexError(400, f"Query could not be parsed: {query}")
            values = [v.strip().strip('"') for v in term_match.group(2).split(",")]
            if term_match.group(1).lower() == "queue":
                issues = [i for i in issues if self.state.store.project_of(i).key in values]
            else:
                wanted = {i.id for i in self._by_keys(values)}
                issues = [i for i in issues if i.id in wanted]
        if sort != "key":
            issues.sort(key=lambda i: i.created if sort == "created" else i.updated)
        if descending:
            issues.reverse()
        return issues

    @staticmethod
    async def _search_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise YandexError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise YandexError(400, "The request body must be a JSON object.")
        return body

    async def search(self, request: Request, call: Call) -> Response:
        """Issues by one selector, paged or (``filter`` only) scrolled."""
        body = await self._search_body(request)
        given = [name for name in SELECTORS if body.get(name) is not None]
        if len(given) > 1:
            raise YandexError(400, ONE_SELECTOR)
        expand = self._expand(request)
        params = request.query_params
        if "scrollId" in params:
            return self._scroll_next(request, call, params["scrollId"], expand)
        selector = given[0] if given else None
        if "scrollType" in params and selector != "filter":
            raise YandexError(400, NO_SCROLL)
        if selector == "queue":
            issues = self._issue_order(self._by_queue(_as_list(body["queue"])))
        elif selector == "keys":
            issues = self._by_keys(_as_list(body["keys"]))
        elif selector == "filter":
            issues = self._filtered(body["filter"], body.get("order"))
        elif selector == "query":
            issues = self._queried(body["query"])
        else:
            issues = self._issue_order(list(self.state.store.issues.values()))
        if "scrollType" in params:
            return self._scroll_open(request, call, issues, expand)
        page, headers = self._paged(request, issues, window=self.search_window)
        return AsciiJSONResponse([self._issue(call, i, expand=expand) for i in page], headers=headers)

    def _forget_expired_scrolls(self) -> None:
        now = time.monotonic()
        for scroll_id in [s for s, scroll in self._scrolls.items() if scroll.expires < now]:
            del self._scrolls[scroll_id]

    def _scroll_open(self, request: Request, call: Call, issues: list[Issue], expand: set[str]) -> Response:
        params = request.query_params
        if params["scrollType"] not in ("sorted", "unsorted"):
            raise YandexError(400, "scrollType must be sorted or unsorted.")
        per_scroll = min(_positive(params.get("perScroll"), "perScroll", DEFAULT_PER_SCROLL), MAX_PER_SCROLL)
        ttl_ms = _positive(params.get("scrollTTLMillis"), "scrollTTLMillis", DEFAULT_SCROLL_TTL_MS)
        self._forget_expired_scrolls()
        scroll_id = secrets.token_hex(16)
        scroll = Scroll(
            token=secrets.token_urlsafe(24),
            issue_ids=[i.id for i in issues],
            per_scroll=per_scroll,
            ttl_ms=ttl_ms,
            expires=time.monotonic() + ttl_ms / 1000,
            query={k: v for k, v in params.items() if k == "expand"},
        )
        self._scrolls[scroll_id] = scroll
        return self._scroll_page(request, call, scroll_id, scroll, expand)

    def _scroll_next(self, request: Request, call: Call, scroll_id: str, expand: set[str]) -> Response:
        self._forget_expired_scrolls()
        scroll = self._scrolls.get(scroll_id)
        if scroll is None:
            raise YandexError(404, f"Scroll {scroll_id} not found or expired.")
        scroll.expires = time.monotonic() + scroll.ttl_ms / 1000
        return self._scroll_page(request, call, scroll_id, scroll, expand)

    def _scroll_page(
        self, request: Request, call: Call, scroll_id: str, scroll: Scroll, expand: set[str]
    ) -> Response:
        store = self.state.store
        batch = scroll.issue_ids[scroll.position : scroll.position + scroll.per_scroll]
        scroll.position += len(batch)
        issues = [store.issues[i] for i in batch if i in store.issues]
        headers = {
            "X-Scroll-Id": scroll_id,
            "X-Scroll-Token": scroll.token,
            "X-Total-Count": str(len(scroll.issue_ids)),
        }
        if scroll.position < len(scroll.issue_ids):
            query = urlencode(
                {
                    **scroll.query,
                    "scrollId": scroll_id,
                    "perScroll": scroll.per_scroll,
                    "scrollTTLMillis": scroll.ttl_ms,
                }
            )
            headers["Link"] = f'<{call.api}/issues/_search?{query}>; rel="next"'
        return AsciiJSONResponse([self._issue(call, i, expand=expand) for i in issues], headers=headers)

    async def scroll_clear(self, request: Request, call: Call) -> Response:
        """Release scrolls given as ``{scrollId: scrollToken}``; a wrong token keeps one open."""
        body = await self._search_body(request)
        for scroll_id, token in body.items():
            scroll = self._scrolls.get(scroll_id)
            if scroll is not None and isinstance(token, str) and hmac.compare_digest(token, scroll.token):
                del self._scrolls[scroll_id]
        return Response(status_code=200)

    # -- attachments ------------------------------------------------------------------------
    def _find_attachment(self, request: Request) -> tuple[Issue, Attachment]:
        issue = self._find_issue(request.path_params["key"])
        attachment = self.state.store.attachments.get(request.path_params["id"])
        if attachment is None or attachment.issue != issue.id or attachment.is_external:
            raise YandexError(404, NOT_FOUND)
        return issue, attachment

    async def attachment_list(self, request: Request, call: Call) -> Response:
        """Every attachment of the issue and of its comments, unpaged, oldest first."""
        issue = self._find_issue(request.path_params["key"])
        return AsciiJSONResponse([self._attachment(call, issue, a) for a in self._attachments_of(issue)])

    async def attachment_get(self, request: Request, call: Call) -> Response:
        """One attachment's metadata."""
        issue, attachment = self._find_attachment(request)
        return AsciiJSONResponse(self._attachment(call, issue, attachment))

    async def attachment_content(self, request: Request, call: Call) -> Response:
        """The bytes, directly (the name segment is not checked, as for Jira Data Center)."""
        return self.serve_attachment(request, self._find_attachment(request)[1])

    async def thumbnail(self, request: Request, call: Call) -> Response:
        """An image's thumbnail: the image itself (404 for anything not an image)."""
        attachment = self._find_attachment(request)[1]
        if not attachment.mime_type.startswith("image/"):
            raise YandexError(404, NOT_FOUND)
        return self.serve_attachment(request, attachment)

    def upload_name(self, issue: Issue, requested: str) -> str:
        """The requested name, or with ``rename_uploads`` the name Waldur would store.

        Tracker keeps the name it is given; the switch lets the shared suite check that a
        client shows whatever name the tracker answered with.
        """
        if not self.switch("rename_uploads"):
            return requested
        return stored_file_name(requested, {a.filename for a in self.state.store.attachments.values()})

    def _check_edits(self) -> None:
        if self.switch("edits_disabled"):
            raise YandexError(423, EDITS_DISABLED)

    async def attachment_delete(self, request: Request, call: Call) -> Response:
        """Delete an attachment: 204; 404 when missing; 403 or 423 as the config says."""
        _, attachment = self._find_attachment(request)
        self._check_edits()
        rights = self.state.config.delete_attachments
        if rights == "none" or (rights == "own" and attachment.author != call.user):
            raise YandexError(403, NO_RIGHTS)
        self.state.store.delete_attachment(attachment.id)
        return Response(status_code=204)

    async def upload(self, request: Request, call: Call) -> Response:
        """One ``file`` part, named by ``?filename=`` (else the part's name): 201 Attachment."""
        issue = self._find_issue(request.path_params["key"])
        self._check_edits()
        config = self.state.config
        if not (config.attachments_enabled and config.create_attachments):
            raise YandexError(403, NO_RIGHTS)
        try:
            parts = await receive_multipart(request, self.state.upload_dir, config.upload_limit)
        except UploadError as error:
            raise YandexError(400, str(error)) from None
        except PartTooLargeError:
            raise YandexError(413, f"The file is larger than {config.upload_limit} bytes.") from None
        entry = request.scope.get("state", {}).get("log_entry")
        if entry is not None:
            entry["upload"] = [
                {"part": p.name, "filename": p.filename, "size": p.size, "sha256": p.sha256} for p in parts
            ]
        files = [p for p in parts if p.name == "file" and p.path is not None]
        if len(files) != 1:
            discard_parts(parts)
            raise YandexError(400, "Exactly one 'file' part is expected.")
        part = files[0]
        discard_parts([p for p in parts if p is not part])
        requested = request.query_params.get("filename") or part.filename or "file"
        filename = self.upload_name(issue, requested)
        mime_type = guess_mime_type(filename, part.content_type)
        created = keep_part(self.state.store, issue.id, filename, part, author=call.user, mime_type=mime_type)
        return AsciiJSONResponse(self._attachment(call, issue, created), status_code=201)
