"""The Asana dialect: API 1.0 under ``/api/1.0``, workspaces, projects, tasks, attachments.

Bearer tokens only; every answer is a ``{"data": …}`` envelope; records are compact unless
``opt_fields`` asks for more; listings page by opaque ``offset`` tokens and carry
``next_page`` only when the request sent ``limit``. ``download_url`` is an S3-style
pre-signed URL on the media origin (``asana_storage.py``), valid for ``media_ttl`` seconds
(two minutes by default, as Asana documents).

Switches (``/_emulator/config``): ``rate_limit`` refuses requests over the free plan's
budget of 150 a minute (``paid_plan``: 1,500) with 429 and ``Retry-After``;
``expire_offsets`` rejects every offset token as expired (400), as Asana does once the
data under a listing has changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.dialects.asana_shapes import (
    OptFieldsError,
    Record,
    attachment_record,
    parse_opt_fields,
    project_record,
    select,
    task_record,
    user_record,
    workspace_record,
)
from trackerfs.emulator.dialects.asana_storage import presigned_url, storage_routes
from trackerfs.emulator.dialects.base import Dialect, bearer_token
from trackerfs.emulator.paging import page_of
from trackerfs.emulator.responses import AsciiJSONResponse, discard_body
from trackerfs.emulator.seed import ALICE, BOB, apply_seed
from trackerfs.emulator.store import Attachment, Issue, Kind, Project, Space, Store, User, guess_mime_type
from trackerfs.emulator.uploads import (
    PartTooLargeError,
    ReceivedPart,
    UploadError,
    discard_parts,
    keep_part,
    receive_multipart,
)

if TYPE_CHECKING:
    from trackerfs.emulator.state import EmulatorState

API = "/api/1.0"
HELP = (
    "For more information on API status codes and how to handle them, "
    "read the docs on errors: https://developers.asana.com/docs/errors"
)
NOT_AUTHORIZED = "Not Authorized"
RATE_LIMITED = (
    "You've made too many requests and hit a rate limit. Please retry after the given amount of time."
)
ONE_FILTER = "Must specify exactly one of project, tag, section, user task list, or assignee + workspace"
OFFSET_EXPIRED = "offset: Your pagination token has expired. Please restart paging from the first page."
#: requests a minute a token may make: Asana's free and paid plans
FREE_BUDGET, PAID_BUDGET = 150, 1500
RATE_WINDOW = 60.0
MAX_LIMIT = 100
#: how long an offset token stays valid (Asana: "after some time"; the emulator: 30 min)
OFFSET_TTL = 1800.0
#: query parameters that do not change which records a listing holds
NOT_LISTING = frozenset({"limit", "offset", "opt_fields", "opt_pretty", "pretty"})

Handler = Callable[[Request, User], Awaitable[Response]]
T = TypeVar("T")


class AsanaError(Exception):
    """An error answered with Asana's ``{"errors": [{"message", "help"}]}`` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Asana's error JSON: 401 is bare, 500s carry a ``phrase`` for support."""
    if status == 401:
        return {"errors": [{"message": message}]}
    error: dict[str, str] = {"message": message, "help": HELP}
    if status >= 500:
        error["phrase"] = "6 sad squid snuggle softly"
    return {"errors": [error]}


def asana_gid(kind: Kind, serial: int) -> str:
    """Sixteen-digit numeric strings like Asana's gids, one sequence for every kind."""
    return str(1_200_000_000_000_000 + 1000 + serial)


def rate_clock() -> float:
    """The rate limit's clock, looked up on every request so that tests can replace it."""
    return time.monotonic()


class RateLimiter:
    """The requests of the last minute; refuses one over the budget with a wait in seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def admit(self, budget: int) -> float:
        """0 when the request may go (and is counted), else the seconds until it may."""
        now = rate_clock()
        while self._times and self._times[0] <= now - RATE_WINDOW:
            self._times.popleft()
        if len(self._times) >= budget:
            return self._times[0] + RATE_WINDOW - now
        self._times.append(now)
        return 0.0

    def clear(self) -> None:
        """Forget the requests counted so far."""
        self._times.clear()


class AsanaDialect(Dialect):
    """Routes of the Asana API 1.0 over an EmulatorState."""

    name: ClassVar[str] = "asana"
    logged_headers: ClassVar[tuple[str, ...]] = ("x-asana-client-lib", "asana-enable", "asana-disable")
    switches: ClassVar[dict[str, bool]] = {"rate_limit": False, "paid_plan": False, "expire_offsets": False}
    media_ttl: ClassVar[float] = 120.0

    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        self.limiter = RateLimiter()
        self._budget_config = state.config

    @staticmethod
    def format_id(kind: Kind, serial: int) -> str:
        """Asana's numeric string gids."""
        return asana_gid(kind, serial)

    @staticmethod
    def error_response(status: int, message: str) -> Response:
        """An Asana error body with ``status``."""
        return AsciiJSONResponse(error_body(status, message), status_code=status)

    def media_routes(self) -> list[BaseRoute]:
        """Asana's storage: S3-style pre-signed URLs."""
        return storage_routes(self.state)

    # -- seed -------------------------------------------------------------------------------
    @classmethod
    def seed(cls, store: Store, name: str) -> None:
        """The shared seed in one workspace, plus what only Asana has (``demo``): a second
        workspace, a project name used twice, a task in two projects, a subtask, links to
        other services and a completed task."""
        apply_seed(store, name)
        # Every seed has issues, and an attachment makes its issue's ``updated`` its own time.
        store.set_clock(max(i.updated for i in store.issues.values()) + timedelta(minutes=1))
        try:
            home = store.add_space("Demo workspace" if name == "demo" else "Test workspace")
            for project in store.projects.values():
                project.space = home.id
            if name == "demo":
                cls._seed_particulars(store, home)
        finally:
            store.set_clock(None)

    @staticmethod
    def _seed_particulars(store: Store, home: Space) -> None:
        demo = store.project_by_key("DEMO")
        ops = store.project_by_key("OPS")
        assert demo is not None and ops is not None
        other = store.add_space("Other workspace")
        elsewhere = store.add_project("", "Demo project", space=other.id)
        store.add_issue(elsewhere.id, "A task in the other workspace", keyed=False)
        # A key Asana never shows: it lets the tests name the twin in the store.
        twin = store.add_project("LINKS", "Operations", space=home.id)
        shared = store.issue_by_key("DEMO-4")
        assert shared is not None
        store.show_in(shared.id, twin.id)
        links = store.add_issue(twin.id, "Links to other services", keyed=False)
        for title, url in (
            ("Budget.xlsx", "https://www.dropbox.com/s/abc123/Budget.xlsx?dl=0"),
            ("Roadmap", "https://docs.google.com/document/d/1AbCdEf/edit"),
            ("Contract.pdf", "https://app.box.com/s/xyz789"),
            ("Slides.pptx", "https://onedrive.live.com/view.aspx?resid=ABC!123"),
            ("Walkthrough", "https://vimeo.com/123456789"),
            ("Status page", "https://status.example.com/"),
        ):
            store.add_link(links.id, title, url, author=ALICE)
        parent = store.issue_by_key("DEMO-1")
        assert parent is not None
        sub = store.add_issue(demo.id, "Check the diagram", keyed=False, parent=parent.id)
        store.add_attachment(
            sub.id, "checklist.txt", b"1. diagram.png opens\n2. spec.pdf opens\n", author=BOB
        )
        done = store.issue_by_key("OPS-2")
        assert done is not None
        done.completed = done.created + timedelta(hours=1)

    # -- plumbing ---------------------------------------------------------------------------
    def authenticate(self, request: Request) -> User | None:
        """A personal access token as ``Authorization: Bearer``; nothing else."""
        token = bearer_token(request)
        if token is None or not hmac.compare_digest(token.encode(), self.state.token.encode()):
            return None
        return self.state.token_owner

    def _throttle(self) -> None:
        if not self.switch("rate_limit") or self.state.config is not self._budget_config:
            # Switched off, or a reset (a new config): the next budget starts from nothing.
            self.limiter.clear()
            self._budget_config = self.state.config
        if not self.switch("rate_limit"):
            return
        wait = self.limiter.admit(PAID_BUDGET if self.switch("paid_plan") else FREE_BUDGET)
        if wait > 0:
            raise AsanaError(429, RATE_LIMITED, {"Retry-After": str(max(1, math.ceil(wait)))})

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                user = self.authenticate(request)
                if user is None:
                    raise AsanaError(401, NOT_AUTHORIZED)
                self._throttle()
                return await handler(request, user)
            except AsanaError as error:
                if request.method in ("POST", "PUT"):
                    await discard_body(request)
                response = self.error_response(error.status, error.message)
                response.headers.update(error.headers)
                return response
            except OptFieldsError as error:
                return self.error_response(400, f"opt_fields: Unknown field: {error}")

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """Every route under ``/api/1.0``."""
        table: list[tuple[str, Handler, list[str]]] = [
            ("/users/me", self.me, ["GET"]),
            ("/workspaces", self.workspaces, ["GET"]),
            ("/workspaces/{gid}", self.workspace, ["GET"]),
            ("/workspaces/{gid}/projects", self.workspace_projects, ["GET"]),
            ("/projects", self.projects, ["GET"]),
            ("/projects/{gid}", self.project, ["GET"]),
            ("/projects/{gid}/tasks", self.project_tasks, ["GET"]),
            ("/tasks", self.tasks, ["GET"]),
            ("/tasks/{gid}", self.task, ["GET"]),
            ("/tasks/{gid}/subtasks", self.subtasks, ["GET"]),
            ("/tasks/{gid}/projects", self.task_projects, ["GET"]),
            ("/attachments", self.attachments, ["GET"]),
            ("/attachments", self.upload, ["POST"]),
            ("/attachments/{gid}", self.attachment, ["GET"]),
            ("/attachments/{gid}", self.delete, ["DELETE"]),
        ]
        routes: list[BaseRoute] = [
            Route(f"{API}{path}", self._endpoint(handler), methods=methods)
            for path, handler, methods in table
        ]
        routes.append(Route(f"{API}/{{rest:path}}", self._endpoint(self.no_route), methods=None))
        return routes

    # -- lookups ----------------------------------------------------------------------------
    @staticmethod
    def _gid(value: str, kind: str) -> str:
        if not value.isdigit():
            raise AsanaError(400, f"{kind}: Not a recognized ID: {value}")
        return value

    def _space(self, gid: str) -> Space:
        space = self.state.store.spaces.get(self._gid(gid, "workspace"))
        if space is None:
            raise AsanaError(404, f"Unknown object: {gid}")
        return space

    def _project(self, gid: str) -> Project:
        project = self.state.store.projects.get(self._gid(gid, "project"))
        if project is None:
            raise AsanaError(404, f"Unknown object: {gid}")
        return project

    def _task(self, gid: str) -> Issue:
        issue = self.state.store.issues.get(self._gid(gid, "task"))
        if issue is None:
            raise AsanaError(404, f"Unknown object: {gid}")
        return issue

    def _workspace_of(self, project: Project) -> Space:
        spaces = self.state.store.spaces
        # Projects made through the control API have no space: they are the first workspace's.
        return spaces[project.space] if project.space else next(iter(spaces.values()))

    def _projects_of(self, issue: Issue) -> list[Project]:
        store = self.state.store
        ids = ([] if issue.parent is not None else [issue.project]) + issue.also_in
        return [store.projects[p] for p in ids]

    # -- records ----------------------------------------------------------------------------
    def _task_record(self, issue: Issue) -> Record:
        store = self.state.store
        return task_record(
            issue,
            projects=self._projects_of(issue),
            workspace=self._workspace_of(store.projects[issue.project]),
            parent=store.issues.get(issue.parent or ""),
            subtasks=len(store.subtasks_of(issue.id)),
        )

    def _attachment_record(self, attachment: Attachment) -> Record:
        url = None if attachment.is_external else presigned_url(self.state, attachment)
        return attachment_record(attachment, self.state.store.issues[attachment.issue], url)

    def _project_record(self, project: Project) -> Record:
        return project_record(project, self._workspace_of(project))

    # -- paging -----------------------------------------------------------------------------
    def _listing_key(self, request: Request) -> str:
        kept = sorted((k, v) for k, v in request.query_params.multi_items() if k not in NOT_LISTING)
        return request.url.path + "?" + urlencode(kept)

    def _token(self, offset: int, listing: str) -> str:
        payload = {"offset": offset, "listing": hashlib.sha256(listing.encode()).hexdigest()[:16]}
        signed = self.state.signer.sign(f"{listing}:{offset}", OFFSET_TTL)
        expires, _, mac = signed.partition(".")
        payload["exp"] = int(expires)
        head = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"HS256"}').rstrip(b"=").decode()
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{head}.{body}.{mac}"

    def _offset(self, token: str, listing: str) -> int:
        try:
            _, body, mac = token.split(".")
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            offset, expires = int(payload["offset"]), int(payload["exp"])
        except (ValueError, KeyError, TypeError):
            raise AsanaError(400, "offset: Invalid offset token.") from None
        if self.switch("expire_offsets") or expires < time.time():
            raise AsanaError(400, OFFSET_EXPIRED)
        if not self.state.signer.verify(f"{listing}:{offset}", f"{expires}.{mac}"):
            raise AsanaError(400, "offset: Invalid offset token.")
        return offset

    def _listing(
        self, request: Request, items: Sequence[T], render: Callable[[T], Record], kind: str
    ) -> Response:
        """``items`` rendered in ``{"data": [...]}``, paged when the request sent ``limit``.

        Only the page is rendered: a project of thousands of tasks costs a page's records.
        """
        params = request.query_params
        fields = parse_opt_fields(params.get("opt_fields"))
        text = params.get("limit")
        if text is None:
            return AsciiJSONResponse({"data": [select(render(i), kind, fields) for i in items]})
        try:
            limit = int(text)
        except ValueError:
            raise AsanaError(400, f"limit: Not a valid integer: {text}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise AsanaError(400, f"limit: Must be between 1 and {MAX_LIMIT}, inclusive.")
        listing = self._listing_key(request)
        token = params.get("offset")
        start = self._offset(token, listing) if token else 0
        page = page_of(items, start, limit, self.state.config.page_size)
        next_page = None
        if not page.is_last:
            offset = self._token(page.next_start, listing)
            query = [(k, v) for k, v in params.multi_items() if k != "offset"] + [("offset", offset)]
            path = request.url.path.removeprefix(API) + "?" + urlencode(query)
            base = str(request.base_url).rstrip("/")
            next_page = {"offset": offset, "path": path, "uri": f"{base}{API}{path}"}
        return AsciiJSONResponse(
            {"data": [select(render(i), kind, fields) for i in page.items], "next_page": next_page}
        )

    @staticmethod
    def _one(request: Request, record: Record, kind: str) -> Response:
        fields = parse_opt_fields(request.query_params.get("opt_fields"))
        if fields is None:
            # A single record comes whole, as Asana's *Response schemas describe.
            return AsciiJSONResponse({"data": record})
        return AsciiJSONResponse({"data": select(record, kind, fields)})

    # -- handlers ---------------------------------------------------------------------------
    async def no_route(self, request: Request, user: User) -> Response:
        """Any other path under the API."""
        raise AsanaError(404, "Unknown object")

    async def me(self, request: Request, user: User) -> Response:
        """The token's user and the workspaces it sees."""
        return self._one(request, user_record(user, list(self.state.store.spaces.values())), "user")

    async def workspaces(self, request: Request, user: User) -> Response:
        """The workspaces the token sees."""
        return self._listing(request, list(self.state.store.spaces.values()), workspace_record, "workspace")

    async def workspace(self, request: Request, user: User) -> Response:
        """One workspace."""
        return self._one(request, workspace_record(self._space(request.path_params["gid"])), "workspace")

    def _project_list(self, request: Request, space: Space | None) -> Response:
        # No project is archived: ``archived=true`` lists none.
        projects = [
            p
            for p in self.state.store.projects.values()
            if (space is None or self._workspace_of(p).id == space.id)
            and request.query_params.get("archived") != "true"
        ]
        return self._listing(request, projects, self._project_record, "project")

    async def workspace_projects(self, request: Request, user: User) -> Response:
        """The projects of a workspace (names need not be unique)."""
        space = self._space(request.path_params["gid"])
        return self._project_list(request, space)

    async def projects(self, request: Request, user: User) -> Response:
        """Projects, of one ``workspace`` when given."""
        wanted = request.query_params.get("workspace")
        space = self._space(wanted) if wanted else None
        return self._project_list(request, space)

    async def project(self, request: Request, user: User) -> Response:
        """One project."""
        return self._one(request, self._project_record(self._project(request.path_params["gid"])), "project")

    def _completed_since(self, request: Request) -> datetime | None:
        text = request.query_params.get("completed_since")
        if text is None:
            return None
        if text == "now":
            return datetime.now().astimezone()
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise AsanaError(400, f"completed_since: Not a valid date-time: {text}") from None

    def _project_listing(self, request: Request, project: Project) -> Response:
        since = self._completed_since(request)
        issues = [
            i
            for i in self.state.store.issues_of(project.id)
            if not (i.parent is not None and i.project == project.id)
            and (since is None or i.completed is None or i.completed >= since)
        ]
        return self._listing(request, issues, self._task_record, "task")

    async def project_tasks(self, request: Request, user: User) -> Response:
        """The tasks of a project (a task may be in several; subtasks only where added)."""
        return self._project_listing(request, self._project(request.path_params["gid"]))

    async def tasks(self, request: Request, user: User) -> Response:
        """``GET /tasks?project=``: the same listing (other filters are not emulated)."""
        project = request.query_params.get("project")
        if not project:
            message = (
                "Must specify exactly one of project, tag, section, user task list, or assignee + workspace"
            )
            raise AsanaError(400, message)
        return self._project_listing(request, self._project(project))

    async def task(self, request: Request, user: User) -> Response:
        """One task, subtasks included."""
        return self._one(request, self._task_record(self._task(request.path_params["gid"])), "task")

    async def subtasks(self, request: Request, user: User) -> Response:
        """The subtasks of a task."""
        issue = self._task(request.path_params["gid"])
        return self._listing(request, self.state.store.subtasks_of(issue.id), self._task_record, "task")

    async def task_projects(self, request: Request, user: User) -> Response:
        """The projects a task is in."""
        issue = self._task(request.path_params["gid"])
        return self._listing(request, self._projects_of(issue), self._project_record, "project")

    async def attachments(self, request: Request, user: User) -> Response:
        """``GET /attachments?parent=``: a task's attachments (a project's: none here)."""
        parent = request.query_params.get("parent")
        if not parent:
            raise AsanaError(400, "parent: Missing input")
        store = self.state.store
        self._gid(parent, "parent")
        if parent in store.projects:
            return self._listing(request, [], self._attachment_record, "attachment")
        issue = store.issues.get(parent)
        if issue is None:
            raise AsanaError(404, f"Unknown object: {parent}")
        return self._listing(request, store.attachments_of(issue.id), self._attachment_record, "attachment")

    def _attachment(self, gid: str) -> Attachment:
        attachment = self.state.store.attachments.get(self._gid(gid, "attachment"))
        if attachment is None:
            raise AsanaError(404, f"Unknown object: {gid}")
        return attachment

    async def attachment(self, request: Request, user: User) -> Response:
        """One attachment with a freshly signed ``download_url``."""
        record = self._attachment_record(self._attachment(request.path_params["gid"]))
        return self._one(request, record, "attachment")

    async def delete(self, request: Request, user: User) -> Response:
        """Delete an attachment: 200 ``{"data": {}}``."""
        attachment = self._attachment(request.path_params["gid"])
        rights = self.state.config.delete_attachments
        if not (rights == "all" or (rights == "own" and attachment.author == user)):
            raise AsanaError(403, "Forbidden")
        self.state.store.delete_attachment(attachment.id)
        return AsciiJSONResponse({"data": {}})

    async def upload(self, request: Request, user: User) -> Response:
        """``POST /attachments``: a ``file`` (or an external ``url`` and ``name``) on ``parent``."""
        config = self.state.config
        if not (config.attachments_enabled and config.create_attachments):
            raise AsanaError(403, "Forbidden")
        limit = config.upload_limit
        try:
            parts = await receive_multipart(request, self.state.upload_dir, limit)
        except UploadError:
            raise AsanaError(400, "Request data must be multipart/form-data.") from None
        except PartTooLargeError:
            raise AsanaError(400, f"file: File is too large. The limit is {limit} bytes.") from None
        entry = request.scope.get("state", {}).get("log_entry")
        if entry is not None:
            entry["upload"] = [
                {"part": p.name, "filename": p.filename, "size": p.size, "sha256": p.sha256} for p in parts
            ]
        try:
            return self._create(request, parts, user)
        finally:
            discard_parts(parts)

    def _create(self, request: Request, parts: list[ReceivedPart], user: User) -> Response:
        fields = {p.name: p.value.decode("utf-8", "replace") for p in parts if p.path is None}
        files = [p for p in parts if p.path is not None and p.name == "file"]
        parent = fields.get("parent")
        if not parent:
            raise AsanaError(400, "parent: Missing input")
        store = self.state.store
        self._gid(parent, "parent")
        if parent in store.projects:
            raise AsanaError(400, "parent: Attachments on projects are not emulated; attach to a task.")
        issue = store.issues.get(parent)
        if issue is None:
            raise AsanaError(404, f"Unknown object: {parent}")
        subtype = fields.get("resource_subtype", "asana")
        if subtype == "external":
            url, name = fields.get("url"), fields.get("name")
            if not url:
                raise AsanaError(400, "url: Missing input")
            if not name:
                raise AsanaError(400, "name: Missing input")
            created = store.add_link(issue.id, name, url, author=user)
        elif subtype == "asana":
            if len(files) != 1:
                raise AsanaError(
                    400, "file: Missing input" if not files else "file: Only one file is allowed."
                )
            part = files[0]
            name = self.upload_name(issue, _uploaded_name(part.filename or "", part.headers))
            created = keep_part(
                store, issue.id, name, part, author=user, mime_type=guess_mime_type(name, part.content_type)
            )
        else:
            raise AsanaError(400, f"resource_subtype: Invalid value: {subtype}")
        return self._one(request, self._attachment_record(created), "attachment")


def _uploaded_name(name: str, headers: dict[str, str]) -> str:
    """The file name Asana stores: ``filename*`` (RFC 5987) as given, else ``filename``
    URL-decoded, as Asana asks clients to encode non-ASCII names (raw UTF-8 works too)."""
    if "filename*" in headers.get("content-disposition", "").lower():
        return name
    return unquote(name, errors="surrogateescape")
