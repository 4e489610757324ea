"""The Waldur dialect: customers, projects, support issues and ``/api/support-attachments/``.

Waldur is Django REST Framework, and this dialect answers as DRF does: lists are plain JSON
arrays paged by ``page`` (1-based) and ``page_size`` (default 10, clamped at 300), with the
total in ``X-Result-Count`` and the neighbouring pages in ``Link`` (only the rels that
exist); ``HEAD`` on a list sends the count alone. Ids are 32-hex uuids, accepted with or
without dashes in paths and filters (the official client sends dashes). Credentials are
``Authorization: Token KEY`` (or ``?x-auth-token=KEY``); errors are DRF bodies:
``{"detail": …}``, ``{"field": [...]}``, ``{"non_field_errors": [...]}`` or a bare list.

Content is ``/api/media/{uuid}/`` on the API origin: the whole body every time (Range is
ignored, as Django's ``HttpResponse(file.content)`` does), 404 when the token may not see
it. Uploads are renamed as Django's storage does (:func:`stored_name`) and their type is
sniffed from the first bytes (:func:`sniff_mime_type`), as Waldur's libmagic does.

Switches (``/_emulator/config``): ``media_hidden`` makes the media endpoint answer 404 to
every request, as for a token that may not see the files; ``rename_uploads`` (on, as
Waldur) off keeps upload names as sent, for tests that need a name unchanged.
"""

from __future__ import annotations

import hmac
import os.path
import random
import re
import string
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, Route

from trackerfs.emulator.dialects.base import Dialect, bearer_token
from trackerfs.emulator.options import DEFAULT_PAGE_SIZE
from trackerfs.emulator.responses import AsciiJSONResponse, discard_body
from trackerfs.emulator.seed import ALICE, BOB, SEED_EPOCH, apply_seed, pdf_document
from trackerfs.emulator.store import Attachment, Issue, Kind, Project, Space, Store, User
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

API = "/api"
#: DRF's PAGE_SIZE in Waldur's settings and LinkHeaderPagination.max_page_size
DEFAULT_LIST_SIZE = 10
MAX_LIST_SIZE = 300
#: Django's FileField default max_length; it bounds the whole stored name, folder included
MAX_STORED_NAME = 100
UPLOAD_FOLDER = "support_attachments/"
#: what the issue flags are called in the JSON (and in ``Issue.traits``)
DESTROY = "destroy_is_available"
ADD_ATTACHMENT = "add_attachment_is_available"
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
PROXY_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_UUID_NAMESPACE = uuid.UUID("6f1c55a2-0b7e-4a43-9d51-1c3f6c0e7a10")
_INVALID_CHARS = re.compile(r"[^-\w.]")
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")
_SUFFIX_ALPHABET = string.ascii_letters + string.digits

T = TypeVar("T")
Handler = Callable[[Request, "Call"], Awaitable[Response]]


class DrfError(Exception):
    """An error answered with a DRF body (``{"detail": …}``, field errors or a bare list)."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about its request: the signed-in user and the API's base URL."""

    user: User
    base: str


def valid_filename(name: str) -> str:
    """Django's ``get_valid_filename``: spaces to ``_``, characters outside ``[-\\w.]`` dropped."""
    cleaned = _INVALID_CHARS.sub("", name.strip().replace(" ", "_"))
    if cleaned in ("", ".", ".."):
        raise ValueError(f"Could not derive file name from '{name}'")
    return cleaned


def stored_name(requested: str, taken: Callable[[str], bool], rng: random.Random) -> str:
    """The name Django's storage keeps an upload under (without the upload folder).

    Like ``Storage.get_available_name``: a name already stored, or one too long for the
    100-character column (folder included), gets ``_`` and 7 random letters or digits
    before its extension, and its root is cut until the whole fits.
    """
    name = valid_filename(os.path.basename(requested.replace("\\", "/")))
    root, ext = os.path.splitext(name)
    limit = MAX_STORED_NAME - len(UPLOAD_FOLDER)
    while taken(name) or len(name) > limit:
        suffix = "_" + "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(7))
        excess = len(root) + len(suffix) + len(ext) - limit
        if excess > 0:
            root = root[:-excess]
            if not root:
                raise ValueError(f"Storage can not find an available filename for '{name}'")
        name = root + suffix + ext
    return name


#: (magic bytes at offset 0, type) in the order libmagic's rules would match them
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"\x1f\x8b", "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"BZh", "application/x-bzip2"),
)
_OOXML = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
)


def sniff_mime_type(head: bytes) -> str:
    """The type libmagic gives the first 1024 bytes of a file (the common cases)."""
    if not head:
        return "application/x-empty"
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head.startswith(b"PK\x03\x04"):
        if head[30:49] == b"[Content_Types].xml":
            return next((mime for marker, mime in _OOXML if marker in head), "application/octet-stream")
        return "application/zip"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            # a multi-byte character cut by the 1024-byte window is still text
            if error.start < len(head) - 3:
                return "application/octet-stream"
        return "text/plain"
    return "application/octet-stream"


def parse_uuid(text: str) -> str | None:
    """A uuid in Waldur's 32-hex form, from the dashed or the bare form; ``None`` if neither."""
    try:
        return uuid.UUID(text.strip()).hex
    except ValueError:
        return None


def drf_time(moment: datetime) -> str:
    """DRF's ISO 8601: microseconds when there are any, ``Z`` for UTC."""
    return moment.isoformat().replace("+00:00", "Z")


def slugify(text: str) -> str:
    """A Waldur slug (``^[-a-zA-Z0-9_]+$``) from a name."""
    return _SLUG_CHARS.sub("-", text.lower()).strip("-") or "item"


def _page_size(value: str | None) -> int:
    """DRF's ``page_size``: a positive integer, anything else means the default."""
    try:
        number = int(value or "")
    except ValueError:
        return DEFAULT_LIST_SIZE
    return number if number > 0 else DEFAULT_LIST_SIZE


def _page_number(value: str | None, pages: int) -> int:
    """DRF's ``page``: 1…pages or ``last``; anything else is its 404."""
    if value is None or value == "":
        return 1
    if value == "last":
        return pages
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= pages:
        raise DrfError(404, {"detail": "Invalid page."})
    return number


class WaldurDialect(Dialect):
    """Routes of Waldur's REST API (the support part) over an EmulatorState."""

    name: ClassVar[str] = "waldur"
    range_support: ClassVar[bool] = False
    #: ``rename_uploads`` is Waldur's own behaviour, on by default; off keeps names as sent
    switches: ClassVar[dict[str, bool]] = {"media_hidden": False, "rename_uploads": True}

    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        # Django draws the suffix from a CSPRNG; a seeded one keeps runs reproducible.
        self._rng = random.Random(0x5A1D)
        #: the vendor routes, for telling a wrong method (405) from a wrong path (404)
        self._served: list[BaseRoute] = []

    @staticmethod
    def format_id(kind: Kind, serial: int) -> str:
        """Deterministic 32-hex uuids, one per serial, so no two records share one."""
        return uuid.uuid5(_UUID_NAMESPACE, f"{kind}:{serial}").hex

    @staticmethod
    def error_response(status: int, message: str) -> Response:
        """DRF's ``{"detail": …}`` body with ``status``."""
        return AsciiJSONResponse({"detail": message}, status_code=status)

    @classmethod
    def seed(cls, store: Store, name: str) -> None:
        """The shared seed, put into customers, plus Waldur's own records in ``demo``.

        ``demo`` adds a second customer whose project has the same name as DEMO's, with
        support issues of Waldur's basic backend (blank keys), one whose attachments may not
        be deleted and one that takes no attachments.
        """
        apply_seed(store, name)
        first = store.add_space("Demo Organisation")
        for project in store.projects.values():
            project.space = first.id
        if name == "demo":
            store.set_clock(SEED_EPOCH + timedelta(days=1))
            try:
                second = store.add_space("Second Organisation")
                twin = store.add_project("", "Demo project", space=second.id)
                basic = store.add_issue(twin.id, "Printer on fire", keyed=False)
                store.add_attachment(basic.id, "printer.pdf", pdf_document("printer"), author=ALICE)
                store.add_attachment(basic.id, "error_log.txt", b"PC LOAD LETTER\n", author=BOB)
                locked = store.add_issue(twin.id, "Closed ticket", keyed=False)
                locked.traits[DESTROY] = False
                store.add_attachment(locked.id, "final_report.txt", b"resolved, keep for audit\n", author=BOB)
                frozen = store.add_issue(twin.id, "No more files", keyed=False)
                frozen.traits[ADD_ATTACHMENT] = False
            finally:
                store.set_clock(None)
        # Waldur records the type libmagic finds in the bytes, not the one the name suggests.
        for attachment in list(store.attachments.values()):
            if not attachment.is_external:
                head = store.blob_path(attachment).read_bytes()[:1024]
                store.attachments[attachment.id] = replace(attachment, mime_type=sniff_mime_type(head))

    # -- auth and plumbing ------------------------------------------------------------------
    def _given_token(self, request: Request) -> str | None:
        if "authorization" in request.headers:
            return bearer_token(request, "token")
        return request.query_params.get("x-auth-token")

    def authenticate(self, request: Request) -> User | None:
        """``Authorization: Token KEY`` (keyword in any case) or ``?x-auth-token=KEY``."""
        token = self._given_token(request)
        if token is None or not hmac.compare_digest(token.encode(), self.state.token.encode()):
            return None
        return self.state.token_owner

    def _refusal(self, request: Request) -> DrfError:
        token = self._given_token(request)
        if token is None:
            message = NOT_PROVIDED
        elif not token:
            message = "Invalid token header. No credentials provided."
        else:
            message = INVALID_TOKEN
        return DrfError(401, {"detail": message}, {"WWW-Authenticate": "Token"})

    def _endpoint(self, handler: Handler, *, media: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                user = self.authenticate(request)
                if user is None:
                    if media and self._given_token(request) is None:
                        # the media view's access rules hide files from anonymous callers
                        raise DrfError(404, {"detail": NOT_FOUND})
                    raise self._refusal(request)
                return await handler(request, Call(user, str(request.base_url).rstrip("/")))
            except DrfError as error:
                if request.method in ("POST", "PUT", "PATCH"):
                    await discard_body(request)
                if isinstance(error.body, str):
                    response: Response = HTMLResponse(error.body, status_code=error.status)
                else:
                    response = AsciiJSONResponse(error.body, status_code=error.status)
                response.headers.update(error.headers)
                return response

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """Every route this dialect serves, all under ``/api``."""
        table: list[tuple[str, Handler, list[str]]] = [
            ("/users/me/", self.current_user, ["GET"]),
            ("/customers/", self.customer_list, ["GET", "HEAD"]),
            ("/customers/{uuid}/", self.customer_get, ["GET"]),
            ("/projects/", self.project_list, ["GET", "HEAD"]),
            ("/projects/{uuid}/", self.project_get, ["GET"]),
            ("/support-issues/", self.issue_list, ["GET", "HEAD"]),
            ("/support-issues/{uuid}/", self.issue_get, ["GET"]),
            ("/support-attachments/", self.attachment_list, ["GET", "HEAD"]),
            ("/support-attachments/", self.upload, ["POST"]),
            ("/support-attachments/{uuid}/", self.attachment_get, ["GET"]),
            ("/support-attachments/{uuid}/", self.attachment_delete, ["DELETE"]),
        ]
        routes: list[BaseRoute] = [
            Route(f"{API}{path}", self._endpoint(handler), methods=methods)
            for path, handler, methods in table
        ]
        routes.append(
            Route(f"{API}/media/{{uuid}}/", self._endpoint(self.media, media=True), methods=["GET"])
        )
        self._served = list(routes)
        every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        routes.append(Route(f"{API}/{{rest:path}}", self._endpoint(self.not_found), methods=every))
        return routes

    # -- lookups ----------------------------------------------------------------------------
    @staticmethod
    def _find(records: Mapping[str, T], text: str) -> T:
        ident = parse_uuid(text)
        record = records.get(ident) if ident is not None else None
        if record is None:
            raise DrfError(404, {"detail": NOT_FOUND})
        return record

    @staticmethod
    def _uuid_filter(request: Request, name: str) -> str | None:
        value = request.query_params.get(name)
        return WaldurDialect._uuid_value(value, name) if value else None

    @staticmethod
    def _uuid_value(value: str, name: str) -> str:
        ident = parse_uuid(value)
        if ident is None:
            raise DrfError(400, {name: ["Enter a valid UUID."]})
        return ident

    @staticmethod
    def _url_filter(request: Request, name: str, collection: str) -> str | None:
        """The uuid in a hyperlink filter (``?issue=<issue URL>``)."""
        value = request.query_params.get(name)
        if value is None or value == "":
            return None
        ident = _uuid_in_url(value, collection)
        if ident is None:
            raise DrfError(400, {name: ["Invalid hyperlink - No URL match."]})
        return ident

    def _project_slugs(self) -> dict[str, str]:
        """Project id → its slug, unique like Waldur's (later duplicates get ``-2``, ``-3``…)."""
        slugs: dict[str, str] = {}
        used: set[str] = set()
        for project in self.state.store.projects.values():
            base = slugify(project.key or project.name)
            slug, n = base, 1
            while slug in used:
                n += 1
                slug = f"{base}-{n}"
            used.add(slug)
            slugs[project.id] = slug
        return slugs

    # -- JSON shapes ------------------------------------------------------------------------
    def _customer(self, space: Space, call: Call) -> dict[str, Any]:
        projects = [p for p in self.state.store.projects.values() if p.space == space.id]
        return {
            "url": f"{call.base}{API}/customers/{space.id}/",
            "uuid": space.id,
            "name": space.name,
            "slug": slugify(space.name),
            "native_name": "",
            "abbreviation": "",
            "description": "",
            "created": "2026-01-05T09:00:00Z",
            "backend_id": "",
            "blocked": False,
            "archived": False,
            "projects_count": len(projects),
        }

    def _project(self, project: Project, call: Call, slugs: Mapping[str, str]) -> dict[str, Any]:
        space = self.state.store.spaces.get(project.space) if project.space else None
        return {
            "url": f"{call.base}{API}/projects/{project.id}/",
            "uuid": project.id,
            "name": project.name,
            "slug": slugs[project.id],
            "customer": f"{call.base}{API}/customers/{space.id}/" if space else None,
            "customer_uuid": space.id if space else None,
            "customer_name": space.name if space else None,
            "customer_slug": slugify(space.name) if space else None,
            "description": "",
            "created": "2026-01-05T09:00:00Z",
            "type": None,
            "backend_id": "",
            "end_date": None,
            "is_removed": False,
            "resources_count": 0,
        }

    def _user_url(self, user: User, call: Call) -> tuple[str, str]:
        user_uuid = uuid.uuid5(_UUID_NAMESPACE, f"user:{user.account_id}").hex
        return f"{call.base}{API}/users/{user_uuid}/", user_uuid

    def _issue(self, issue: Issue, call: Call) -> dict[str, Any]:
        store = self.state.store
        project = store.project_of(issue)
        space = store.spaces.get(project.space) if project.space else None
        reporter_url, reporter_uuid = self._user_url(call.user, call)
        url = f"{call.base}{API}/support-issues/{issue.id}/"
        return {
            "url": url,
            "uuid": issue.id,
            "type": "Informational",
            "key": issue.key,
            "backend_id": issue.key or None,
            "backend_name": None,
            "remote_id": None,
            "link": f"{call.base}/support/{issue.id}/",
            "summary": issue.summary,
            "description": "",
            "status": "new",
            "resolution": "",
            "priority": "",
            "caller": reporter_url,
            "caller_uuid": reporter_uuid,
            "caller_full_name": call.user.display_name,
            "reporter": reporter_url,
            "reporter_uuid": reporter_uuid,
            "reporter_name": call.user.display_name,
            "assignee": None,
            "assignee_uuid": None,
            "assignee_name": None,
            "customer": f"{call.base}{API}/customers/{space.id}/" if space else None,
            "customer_uuid": space.id if space else None,
            "customer_name": space.name if space else None,
            "project": f"{call.base}{API}/projects/{project.id}/",
            "project_uuid": project.id,
            "project_name": project.name,
            "resource": "",
            "resource_type": "",
            "resource_name": "",
            "created": drf_time(issue.created),
            "modified": drf_time(issue.updated),
            "template": None,
            "feedback": None,
            "resolved": None,
            "update_is_available": True,
            "destroy_is_available": issue.traits.get(DESTROY, True),
            "add_comment_is_available": True,
            "add_attachment_is_available": issue.traits.get(ADD_ATTACHMENT, True),
            "processing_log": {},
            "order_uuid": None,
            "order_project_uuid": None,
            "order_customer_uuid": None,
            "order_resource_name": None,
        }

    def _attachment(self, attachment: Attachment, call: Call) -> dict[str, Any]:
        issue = self.state.store.issues[attachment.issue]
        return {
            "url": f"{call.base}{API}/support-attachments/{attachment.id}/",
            "uuid": attachment.id,
            "issue": f"{call.base}{API}/support-issues/{issue.id}/",
            "issue_key": issue.key,
            "created": drf_time(attachment.created),
            "file": self._file_url(attachment, call),
            "mime_type": attachment.mime_type,
            "file_size": attachment.size,
            "file_name": attachment.filename,
            "backend_id": "",
            "destroy_is_available": issue.traits.get(DESTROY, True),
        }

    def _file_url(self, attachment: Attachment, call: Call) -> str:
        assert attachment.blob_name is not None
        if self.state.options.media_base:
            return f"{self.state.options.media_base.rstrip('/')}/{attachment.blob_name}"
        return f"{call.base}{API}/media/{attachment.blob_name}/"

    @staticmethod
    def _fields(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """``?field=a&field=b``: only those keys, as Waldur's field selection does."""
        wanted = request.query_params.getlist("field")
        return {k: v for k, v in body.items() if k in wanted} if wanted else body

    # -- paging -----------------------------------------------------------------------------
    def _max_page(self) -> int:
        # The shared default page size means "as the vendor"; a smaller one set by a test
        # lowers Waldur's clamp so that paging shows with a small seed.
        configured = self.state.config.page_size
        return MAX_LIST_SIZE if configured == DEFAULT_PAGE_SIZE else min(configured, MAX_LIST_SIZE)

    def _listing(
        self, request: Request, items: Sequence[T], render: Callable[[T], dict[str, Any]]
    ) -> Response:
        """A DRF page of ``items``: plain array, ``X-Result-Count`` and ``Link``; HEAD: count only."""
        params = request.query_params
        size = min(_page_size(params.get("page_size")), self._max_page())
        pages = max(1, -(-len(items) // size))
        page = _page_number(params.get("page"), pages)
        headers = {"X-Result-Count": str(len(items))}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        links = []
        for rel, number, present in (
            ("first", 1, page > 1),
            ("prev", page - 1, page > 1),
            ("next", page + 1, page < pages),
            ("last", pages, page < pages),
        ):
            if present:
                links.append(f'<{self._page_url(request, number)}>; rel="{rel}"')
        if links:
            headers["Link"] = ", ".join(links)
        body = [self._fields(request, render(item)) for item in items[(page - 1) * size : page * size]]
        return AsciiJSONResponse(body, headers=headers)

    @staticmethod
    def _page_url(request: Request, page: int) -> str:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "page"] + [("page", str(page))]
        return str(request.url.replace(query=urlencode(query)))

    # -- handlers ---------------------------------------------------------------------------
    async def not_found(self, request: Request, call: Call) -> Response:
        """Any other path under ``/api``: DRF's 405 for a served path, else 404."""
        if any(route.matches(request.scope)[0] is not Match.NONE for route in self._served):
            raise DrfError(405, {"detail": f'Method "{request.method}" not allowed.'})
        raise DrfError(404, {"detail": NOT_FOUND})

    async def current_user(self, request: Request, call: Call) -> Response:
        """The token's owner (``/api/users/me/``), with the fields a client reads."""
        url, user_uuid = self._user_url(call.user, call)
        body = {
            "url": url,
            "uuid": user_uuid,
            "username": call.user.email,
            "full_name": call.user.display_name,
            "email": call.user.email,
            "is_staff": False,
            "is_active": True,
            "is_support": False,
        }
        return AsciiJSONResponse(self._fields(request, body))

    async def customer_list(self, request: Request, call: Call) -> Response:
        """Customers (the spaces of the store)."""
        spaces = list(self.state.store.spaces.values())
        return self._listing(request, spaces, lambda s: self._customer(s, call))

    async def customer_get(self, request: Request, call: Call) -> Response:
        """One customer by uuid."""
        space = self._find(self.state.store.spaces, request.path_params["uuid"])
        return AsciiJSONResponse(self._fields(request, self._customer(space, call)))

    async def project_list(self, request: Request, call: Call) -> Response:
        """Projects; filters ``customer`` (uuids, repeatable), ``name`` (contains), ``name_exact``,
        ``slug``."""
        params = request.query_params
        customers = {self._uuid_value(v, "customer") for v in params.getlist("customer") if v}
        slugs = self._project_slugs()
        projects = [
            p
            for p in self.state.store.projects.values()
            if (not customers or p.space in customers)
            and params.get("name", "").lower() in p.name.lower()
            and params.get("name_exact", p.name) == p.name
            and params.get("slug", slugs[p.id]) == slugs[p.id]
        ]
        return self._listing(request, projects, lambda p: self._project(p, call, slugs))

    async def project_get(self, request: Request, call: Call) -> Response:
        """One project by uuid."""
        project = self._find(self.state.store.projects, request.path_params["uuid"])
        return AsciiJSONResponse(self._fields(request, self._project(project, call, self._project_slugs())))

    async def issue_list(self, request: Request, call: Call) -> Response:
        """Support issues; filters ``project_uuid``, ``project`` (URL), ``customer_uuid``, ``key``,
        ``summary``."""
        store = self.state.store
        project = self._uuid_filter(request, "project_uuid") or self._url_filter(
            request, "project", "projects"
        )
        customer = self._uuid_filter(request, "customer_uuid")
        params = request.query_params
        issues = [
            i
            for i in store.issues.values()
            if (project is None or i.project == project)
            and (customer is None or store.project_of(i).space == customer)
            and params.get("key", i.key) == i.key
            and params.get("summary", "").lower() in i.summary.lower()
        ]
        return self._listing(request, issues, lambda i: self._issue(i, call))

    async def issue_get(self, request: Request, call: Call) -> Response:
        """One support issue by uuid."""
        issue = self._find(self.state.store.issues, request.path_params["uuid"])
        return AsciiJSONResponse(self._fields(request, self._issue(issue, call)))

    def _blob_attachments(self) -> list[Attachment]:
        return [a for a in self.state.store.attachments.values() if not a.is_external]

    async def attachment_list(self, request: Request, call: Call) -> Response:
        """Attachments, all of them or one issue's (``issue_uuid``, ``issue`` URL)."""
        issue = self._uuid_filter(request, "issue_uuid") or self._url_filter(
            request, "issue", "support-issues"
        )
        attachments = [a for a in self._blob_attachments() if issue is None or a.issue == issue]
        return self._listing(request, attachments, lambda a: self._attachment(a, call))

    def _stored_attachment(self, text: str) -> Attachment:
        attachment = self._find(self.state.store.attachments, text)
        if attachment.is_external:
            raise DrfError(404, {"detail": NOT_FOUND})
        return attachment

    async def attachment_get(self, request: Request, call: Call) -> Response:
        """One attachment by uuid."""
        attachment = self._stored_attachment(request.path_params["uuid"])
        return AsciiJSONResponse(self._fields(request, self._attachment(attachment, call)))

    async def attachment_delete(self, request: Request, call: Call) -> Response:
        """204; 400 ``["Destroying is not available."]`` where the issue forbids it; 403 by config."""
        attachment = self._stored_attachment(request.path_params["uuid"])
        rights = self.state.config.delete_attachments
        if rights == "none" or (rights == "own" and attachment.author != call.user):
            raise DrfError(403, {"detail": NO_PERMISSION})
        if not self.state.store.issues[attachment.issue].traits.get(DESTROY, True):
            raise DrfError(400, ["Destroying is not available."])
        self.state.store.delete_attachment(attachment.id)
        return Response(status_code=204)

    async def media(self, request: Request, call: Call) -> Response:
        """The whole stored file (Range ignored); 404 for a file this token may not see."""
        blob = parse_uuid(request.path_params["uuid"])
        attachment = self.state.store.attachment_by_blob(blob) if blob is not None else None
        if attachment is None or self.switch("media_hidden"):
            raise DrfError(404, {"detail": NOT_FOUND})
        disposition = "inline" if attachment.mime_type.startswith("image/") else "attachment"
        if attachment.mime_type == "image/svg+xml":
            disposition = "attachment"
        return self.serve_attachment(
            request,
            attachment,
            headers={
                "content-disposition": content_disposition(disposition, attachment.filename),
                "content-security-policy": "default-src 'none'; sandbox",
                "x-content-type-options": "nosniff",
            },
        )

    async def upload(self, request: Request, call: Call) -> Response:
        """Multipart ``issue`` (the issue's API URL) and ``file``: 201 with the stored object."""
        config = self.state.config
        if not (config.attachments_enabled and config.create_attachments):
            raise DrfError(403, {"detail": NO_PERMISSION})
        limit = config.upload_limit
        try:
            parts = await receive_multipart(request, self.state.upload_dir, limit)
        except UploadError:
            raise DrfError(
                415,
                {"detail": f'Unsupported media type "{request.headers.get("content-type", "")}" in request.'},
            ) from None
        except PartTooLargeError:
            # Waldur sets no limit itself; the proxy in front of it answers in HTML
            raise DrfError(413, PROXY_413) from None
        entry = request.scope.get("state", {}).get("log_entry")
        if entry is not None:
            entry["upload"] = [
                {"part": p.name, "filename": p.filename, "size": p.size, "sha256": p.sha256} for p in parts
            ]
        try:
            issue, part = self._upload_target(parts)
            try:
                filename = self.upload_name(issue, part.filename or "")
            except ValueError as error:
                raise DrfError(400, {"file": [str(error) + "."]}) from None
        except DrfError:
            discard_parts(parts)
            raise
        assert part.path is not None
        with part.path.open("rb") as handle:
            head = handle.read(1024)
        discard_parts([p for p in parts if p is not part])
        attachment = keep_part(
            self.state.store, issue.id, filename, part, author=call.user, mime_type=sniff_mime_type(head)
        )
        return AsciiJSONResponse(self._attachment(attachment, call), status_code=201)

    def _upload_target(self, parts: Sequence[ReceivedPart]) -> tuple[Issue, ReceivedPart]:
        """The issue and the file part of an upload, or DRF's 400 for what is wrong."""
        errors: dict[str, list[str]] = {}
        issue_part = next((p for p in parts if p.name == "issue"), None)
        file_part = next((p for p in parts if p.name == "file"), None)
        issue: Issue | None = None
        if issue_part is None or (issue_part.path is None and not issue_part.value.strip()):
            errors["issue"] = ["This field is required."]
        else:
            text = bytes(issue_part.value).decode("utf-8", "replace").strip()
            ident = _uuid_in_url(text, "support-issues")
            if ident is None:
                errors["issue"] = ["Invalid hyperlink - No URL match."]
            else:
                issue = self.state.store.issues.get(ident)
                if issue is None:
                    errors["issue"] = ["Invalid hyperlink - Object does not exist."]
        if file_part is None or file_part.path is None:
            message = "No file was submitted." if file_part is None else "The submitted data was not a file."
            errors["file"] = [message + (" Check the encoding type on the form." if file_part else "")]
        elif file_part.size == 0:
            errors["file"] = ["The submitted file is empty."]
        if errors:
            raise DrfError(400, errors)
        assert issue is not None and file_part is not None
        if not issue.traits.get(ADD_ATTACHMENT, True):
            raise DrfError(400, {"non_field_errors": ["Adding attachments is not available."]})
        return issue, file_part

    def upload_name(self, issue: Issue, requested: str) -> str:
        """Django's stored name: sanitised, suffixed when taken, cut to the column's length."""
        if not self.switch("rename_uploads"):
            return requested
        names = {a.filename for a in self.state.store.attachments.values()}
        return stored_name(requested, names.__contains__, self._rng)


def _uuid_in_url(text: str, collection: str) -> str | None:
    """The uuid of a hyperlink ``…/api/<collection>/<uuid>/``; ``None`` for anything else.

    Like DRF's HyperlinkedRelatedField only the path counts, so any host is accepted.
    """
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return None
    match = re.fullmatch(rf"{API}/{re.escape(collection)}/([^/]+)/", parts.path)
    return parse_uuid(match.group(1)) if match else None


def content_disposition(disposition: str, name: str) -> str:
    """``Content-Disposition`` as Django writes it: a quoted ASCII name, else RFC 5987.

    Control characters go the RFC 5987 way too: a header cannot carry them raw.
    """
    if not (name.isascii() and name.isprintable()):
        return f"{disposition}; filename*=utf-8''{quote(name, safe='', errors='surrogateescape')}"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{disposition}; filename="{escaped}"'
