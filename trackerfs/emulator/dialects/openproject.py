"""The OpenProject dialect: API v3 in HAL+JSON, work packages and their attachments.

Flavours are the two ways an instance stores files: ``local`` answers
``/attachments/{id}/content`` with the bytes (200, Range per the shared ``range_support``),
``remote`` with a 302 to a signed, expiring URL on the media origin (OpenProject on S3), and
then ``downloadLocation`` is that URL too.

Switches (``/_emulator/config``): ``classic_ids`` renders ``displayId`` as the numeric id
(OpenProject's classic mode) instead of ``PROJ-42`` (semantic mode) and stops resolving
``PROJ-42`` in paths.

Projects whose key is in ``HIDDEN_PROJECTS`` exist but the token's user is no member: every
path to them, their work packages and attachments answers 404, never 403, as OpenProject does.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formatdate
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.dialects import openproject_shapes as shapes
from trackerfs.emulator.dialects.base import Dialect, basic_credentials, bearer_token
from trackerfs.emulator.dialects.openproject_shapes import API, PageRequest, Renderer, paged_collection
from trackerfs.emulator.responses import discard_body
from trackerfs.emulator.seed import ALICE, BOB, SEED_EPOCH
from trackerfs.emulator.store import (
    Attachment,
    AttachmentState,
    Issue,
    Kind,
    Project,
    Store,
    User,
    guess_mime_type,
)
from trackerfs.emulator.uploads import (
    PartTooLargeError,
    ReceivedPart,
    UploadError,
    discard_parts,
    keep_part,
    receive_multipart,
)

LOCAL, REMOTE = "local", "remote"
#: the user name Basic auth takes with an API token (never the login)
APIKEY_USER = "apikey"
#: projects that exist but that the token's user may not see
HIDDEN_PROJECTS = frozenset({"HR"})
#: OpenProject's per-page default when a request gives no pageSize (the smallest per-page option)
DEFAULT_PAGE_SIZE = 20
#: a ``metadata`` part larger than this is not metadata
MAX_METADATA = 64 * 1024
NOT_AUTHENTICATED = "You need to be authenticated to access this resource."
WRONG_CREDENTIALS = "You did not provide the correct credentials."
NOT_ALLOWED = "You are not authorized to access this resource."
NOT_FOUND = "The requested resource could not be found."
NO_WORK_PACKAGE = "The specified work package does not exist."
NO_PROJECT = "The specified project does not exist."
NO_ATTACHMENT = "The specified attachment does not exist."
NO_DELETE = "You are not allowed to delete this attachment."
NO_DIRECT_UPLOAD = (
    "Direct file upload is not available due to a system configuration issue. "
    "Please contact your administrator."
)
INVALID_JSON = "The request could not be parsed as JSON."
NOT_AN_OBJECT = "The request body was not a single JSON object."
QUARANTINED = "The file '{name}' has been quarantined by the virus scanner and cannot be downloaded."
#: content types a browser may show inline; OpenProject sends others as octet-stream
INLINEABLE = re.compile(r"image/(png|jpeg|gif|webp)|application/pdf")


class OpenProjectError(Exception):
    """An error answered with OpenProject's ``_type: Error`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        identifier: str | None = None,
        attribute: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.identifier = identifier
        self.attribute = attribute
        self.headers = headers or {}


class MissingContentTypeError(Exception):
    """A write without Content-Type: OpenProject's plain-text 406."""


Handler = Callable[[Request, "Call"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about its request: the signed-in user and the renderer."""

    user: User
    render: Renderer


def ruby_int(value: str | None) -> int | None:
    """``String#to_i``: the leading integer of ``value``, 0 when there is none."""
    if value is None:
        return None
    match = re.match(r"\s*([-+]?\d+)", value)
    return int(match.group(1)) if match else 0


def _filters(raw: str | None) -> list[tuple[str, str, list[str]]]:
    """``[{"name": {"operator": …, "values": […]}}, …]`` as (name, operator, values)."""
    if raw is None:
        return []
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise OpenProjectError(
            400, f"unexpected token in filters: {error}", identifier="InvalidQuery"
        ) from None
    if not isinstance(parsed, list):
        raise OpenProjectError(400, "Filters are not an array.", identifier="InvalidQuery")
    found = []
    for item in parsed:
        if not isinstance(item, dict) or len(item) != 1:
            raise OpenProjectError(400, "Filters are malformed.", identifier="InvalidQuery")
        [(name, spec)] = item.items()
        if not isinstance(spec, dict):
            raise OpenProjectError(400, f"Filters {name} is malformed.", identifier="InvalidQuery")
        values = spec.get("values")
        found.append(
            (name, str(spec.get("operator")), [str(v) for v in values] if isinstance(values, list) else [])
        )
    return found


def _sort_keys(raw: str | None) -> list[tuple[str, bool]]:
    """``sortBy=[["id","asc"]]`` as (field, descending) pairs; only fields kept here."""
    if raw is None:
        return [("id", False)]
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise OpenProjectError(400, "Sort by is not valid JSON.", identifier="InvalidQuery") from None
    keys = []
    for item in parsed if isinstance(parsed, list) else [None]:
        if not (isinstance(item, list) and len(item) == 2 and item[1] in ("asc", "desc")):
            raise OpenProjectError(400, f"Sort by {item!r} is not valid.", identifier="InvalidQuery")
        if item[0] not in ("id", "subject", "createdAt", "created_at", "updatedAt", "updated_at"):
            raise OpenProjectError(400, f"Sort by {item[0]} is not supported.", identifier="InvalidQuery")
        keys.append((str(item[0]), item[1] == "desc"))
    return keys or [("id", False)]


def _content_disposition(name: str, inline: bool) -> str:
    """RFC 6266 with an ASCII fallback, safe for any name the store holds."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name) or "download"
    encoded = quote(name.encode("utf-8", "surrogateescape"), safe="")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


class OpenProjectDialect(Dialect):
    """Routes of OpenProject's API v3 over an EmulatorState."""

    name: ClassVar[str] = "openproject"
    flavours: ClassVar[tuple[str, ...]] = (LOCAL, REMOTE)
    switches: ClassVar[dict[str, bool]] = {"classic_ids": False}

    @staticmethod
    def format_id(kind: Kind, serial: int) -> str:
        """Integers from 1, one sequence for every kind (so no two records share an id)."""
        return str(1 + serial)

    @staticmethod
    def error_response(status: int, message: str) -> Response:
        """OpenProject's error body with the identifier of ``status``."""
        return shapes.error_body(status, message)

    @classmethod
    def seed(cls, store: Store, name: str) -> None:
        """The shared seed plus OpenProject's particulars (demo only):

        * DEMO-12 is closed, so that the default open-only listing leaves it out;
        * OPS-3 "Virus scan" holds ``scanned.txt`` and a quarantined ``eicar.com``;
        * project HR (hidden from the token's user) holds HR-1 with ``salaries.csv``.
        """
        super().seed(store, name)
        if name != "demo":
            return
        # go on from the shared seed's last minute, so creation times stay distinct
        store.set_clock(max(a.created for a in store.attachments.values()) + timedelta(minutes=1))
        try:
            demo_12 = store.issue_by_key("DEMO-12")
            assert demo_12 is not None
            demo_12.closed = True
            ops = store.project_by_key("OPS")
            assert ops is not None
            scan = store.add_issue(ops.id, "Virus scan").id
            store.add_attachment(scan, "scanned.txt", b"scanned and clean\n", author=ALICE)
            eicar = store.add_attachment(
                scan, "eicar.com", b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR\n", author=BOB
            )
            store.set_state(eicar.id, AttachmentState.QUARANTINED)
            hr = store.add_project("HR", "Human resources").id
            hr_1 = store.add_issue(hr, "Salaries").id
            store.add_attachment(hr_1, "salaries.csv", b"name,salary\n", author=ALICE)
        finally:
            store.set_clock(None)

    # -- auth and plumbing ------------------------------------------------------------------
    def authenticate(self, request: Request) -> User | None:
        """Basic ``apikey:TOKEN`` or ``Bearer TOKEN``; both act as the token's owner."""
        token = bearer_token(request)
        if token is None:
            credentials = basic_credentials(request)
            if credentials is None or credentials[0] != APIKEY_USER:
                return None
            token = credentials[1]
        return (
            self.state.token_owner if hmac.compare_digest(token.encode(), self.state.token.encode()) else None
        )

    def _renderer(self, user: User) -> Renderer:
        config = self.state.config
        return Renderer(
            self.state.store,
            semantic_ids=not self.switch("classic_ids"),
            author=ALICE,
            storage_url=self._storage_url if self.state.flavour == REMOTE else None,
            may_add=config.create_attachments and config.attachments_enabled,
            may_delete=partial(self._may_delete, user),
        )

    def _may_delete(self, user: User, attachment: Attachment) -> bool:
        """What the config's ``delete_attachments`` (``all``/``own``/``none``) allows ``user``."""
        rights = self.state.config.delete_attachments
        return rights == "all" or (rights == "own" and attachment.author == user)

    def _storage_url(self, attachment: Attachment) -> str | None:
        """A fresh signed URL on the media origin; none for bytes that may not be served."""
        if attachment.blob_name is None or attachment.state is not AttachmentState.AVAILABLE:
            return None
        return self.state.media_location(attachment.blob_name)

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                user = self.authenticate(request)
                if user is None:
                    given = "authorization" in request.headers
                    raise OpenProjectError(
                        401,
                        WRONG_CREDENTIALS if given else NOT_AUTHENTICATED,
                        headers={"WWW-Authenticate": 'Basic realm="OpenProject API"'},
                    )
                return await handler(request, Call(user, self._renderer(user)))
            except OpenProjectError as error:
                if request.method in ("POST", "PATCH", "PUT"):
                    await discard_body(request)
                response = shapes.error_body(
                    error.status, error.message, identifier=error.identifier, attribute=error.attribute
                )
                response.headers.update(error.headers)
                return response
            except MissingContentTypeError:
                await discard_body(request)
                return PlainTextResponse("Missing content-type header", status_code=406)

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """Every route this emulator serves under ``/api/v3``."""
        table: list[tuple[str, Handler, list[str]]] = [
            ("", self.root, ["GET"]),
            ("/configuration", self.configuration, ["GET"]),
            ("/users/me", self.me, ["GET"]),
            ("/users/{id}", self.user_get, ["GET"]),
            ("/projects", self.project_list, ["GET"]),
            ("/projects/{id}", self.project_get, ["GET"]),
            ("/projects/{id}/work_packages", self.project_work_packages, ["GET"]),
            ("/work_packages", self.work_package_list, ["GET"]),
            ("/work_packages/{id}", self.work_package_get, ["GET"]),
            ("/work_packages/{id}/attachments", self.attachment_list, ["GET"]),
            ("/work_packages/{id}/attachments", self.upload, ["POST"]),
            ("/work_packages/{id}/attachments/prepare", self.prepare, ["POST"]),
            ("/attachments/{id}", self.attachment_get, ["GET"]),
            ("/attachments/{id}", self.attachment_delete, ["DELETE"]),
            ("/attachments/{id}/content", self.attachment_content, ["GET"]),
        ]
        routes: list[BaseRoute] = [
            Route(f"{API}{path}", self._endpoint(handler), methods=methods)
            for path, handler, methods in table
        ]
        routes.append(Route("/api/{rest:path}", self._endpoint(self.not_found), methods=None))
        return routes

    # -- lookups: anything the user may not see is a 404 ------------------------------------
    @staticmethod
    def _visible(project: Project) -> bool:
        return project.key not in HIDDEN_PROJECTS

    def _project(self, ref: str) -> Project:
        store = self.state.store
        project = store.projects.get(ref) if ref.isdigit() else None
        if project is None:
            project = next((p for p in store.projects.values() if p.key.lower() == ref), None)
        if project is None or not self._visible(project):
            raise OpenProjectError(404, NO_PROJECT)
        return project

    def _work_package(self, ref: str) -> Issue:
        store = self.state.store
        if ref.isdigit():
            issue = store.issues.get(ref)
        elif not self.switch("classic_ids"):
            issue = store.issue_by_key(ref)
        else:
            issue = None
        if issue is None or not self._visible(store.project_of(issue)):
            raise OpenProjectError(404, NO_WORK_PACKAGE)
        return issue

    def _attachment(self, ref: str) -> Attachment:
        store = self.state.store
        attachment = store.attachments.get(ref) if ref.isdigit() else None
        if attachment is None or attachment.is_external:
            raise OpenProjectError(404, NO_ATTACHMENT)
        if not self._visible(store.project_of(store.issues[attachment.issue])):
            raise OpenProjectError(404, NO_ATTACHMENT)
        return attachment

    def _paging(self, request: Request) -> PageRequest:
        params = request.query_params
        page = ruby_int(params.get("offset"))
        limit = self.state.config.page_size
        size = ruby_int(params.get("pageSize"))
        if size is None:
            size = min(DEFAULT_PAGE_SIZE, limit)
        elif size < 0 or size > limit:
            size = limit
        echoed = {key: params[key] for key in ("filters", "sortBy", "select") if key in params}
        return PageRequest(page if page is not None and page > 0 else 1, size, echoed)

    # -- handlers ---------------------------------------------------------------------------
    async def not_found(self, request: Request, call: Call) -> Response:
        """Any other path under /api."""
        raise OpenProjectError(404, NOT_FOUND)

    async def root(self, request: Request, call: Call) -> Response:
        """The API root: instance name, version and the signed-in user."""
        links = {
            name: shapes.link(f"{API}/{path}")
            for name, path in (
                ("configuration", "configuration"),
                ("memberships", "memberships"),
                ("priorities", "priorities"),
                ("relations", "relations"),
                ("statuses", "statuses"),
                ("time_entries", "time_entries"),
                ("types", "types"),
                ("userPreferences", "my_preferences"),
                ("workPackages", "work_packages"),
            )
        }
        body = {
            "_type": "Root",
            "instanceName": "OpenProject",
            "coreVersion": "17.5.0",
            "_links": {"self": shapes.link(API), "user": shapes.user_link(call.user), **links},
        }
        return shapes.HalResponse(body)

    async def configuration(self, request: Request, call: Call) -> Response:
        """Instance settings; ``maximumAttachmentFileSize`` is the runtime upload limit."""
        limit = self.state.config.page_size
        body = {
            "_type": "Configuration",
            "maximumAttachmentFileSize": self.state.config.upload_limit,
            "hostName": request.url.netloc,
            "perPageOptions": sorted({min(DEFAULT_PAGE_SIZE, limit), limit}),
            "durationFormat": "hours_only",
            "activeFeatureFlags": [],
            "_links": {
                "self": shapes.link(f"{API}/configuration"),
                "userPreferences": shapes.link(f"{API}/my_preferences"),
            },
        }
        return shapes.HalResponse(body)

    def _known_users(self) -> list[User]:
        authors = {a.author for a in self.state.store.attachments.values()}
        return [*self.state.users.values(), *sorted(authors, key=lambda u: u.account_id), ALICE, BOB]

    async def me(self, request: Request, call: Call) -> Response:
        """The signed-in user."""
        return shapes.HalResponse(shapes.user(call.user, SEED_EPOCH))

    async def user_get(self, request: Request, call: Call) -> Response:
        """A user by integer id."""
        ref = request.path_params["id"]
        found = next((u for u in self._known_users() if str(shapes.user_number(u)) == ref), None)
        if found is None:
            raise OpenProjectError(404, NOT_FOUND)
        return shapes.HalResponse(shapes.user(found, SEED_EPOCH))

    def _project_created(self, project: Project) -> datetime:
        times = [i.created for i in self.state.store.issues_of(project.id)]
        return min(times, default=SEED_EPOCH)

    async def project_list(self, request: Request, call: Call) -> Response:
        """Visible projects, offset-paged by page number (filters are checked, not applied)."""
        paging = self._paging(request)
        _filters(request.query_params.get("filters"))
        projects = [p for p in self.state.store.projects.values() if self._visible(p)]
        projects.sort(key=lambda p: int(p.id))
        start = (paging.page - 1) * paging.size
        elements = [
            shapes.project(p, self._project_created(p)) for p in projects[start : start + paging.size]
        ]
        return shapes.HalResponse(
            paged_collection(f"{API}/projects", "Collection", elements, len(projects), paging)
        )

    async def project_get(self, request: Request, call: Call) -> Response:
        """One project by id or identifier."""
        project = self._project(request.path_params["id"])
        return shapes.HalResponse(shapes.project(project, self._project_created(project)))

    def _wp_matches(self, issue: Issue, name: str, operator: str, values: list[str]) -> bool:
        if name in ("status", "status_id"):
            status = str(shapes.CLOSED_STATUS[0] if issue.closed else shapes.OPEN_STATUS[0])
            verdicts = {
                "o": not issue.closed,
                "c": issue.closed,
                "*": True,
                "=": status in values,
                "!": status not in values,
            }
        elif name == "id":
            verdicts = {"=": issue.id in values, "!": issue.id not in values}
        elif name == "project":
            verdicts = {"=": issue.project in values, "!": issue.project not in values}
        elif name == "subject":
            text = values[0].lower() if values else ""
            verdicts = {"~": text in issue.summary.lower(), "!~": text not in issue.summary.lower()}
        else:
            raise OpenProjectError(
                400, f"Filters {name.capitalize()} filter does not exist.", identifier="InvalidQuery"
            )
        if operator not in verdicts:
            raise OpenProjectError(
                400, f"Filters {name.capitalize()} operator is not valid.", identifier="InvalidQuery"
            )
        return verdicts[operator]

    def _sort_value(self, issue: Issue, key: str) -> Any:
        # Any: each sort key has one type (str, datetime or int) across all issues
        if key == "subject":
            return issue.summary
        if key in ("createdAt", "created_at"):
            return issue.created
        if key in ("updatedAt", "updated_at"):
            return issue.updated
        return int(issue.id)

    def _work_package_page(self, request: Request, call: Call, path: str, issues: list[Issue]) -> Response:
        """Filter (default: open only), sort and page work packages."""
        params = request.query_params
        raw = params.get("filters")
        # OpenProject's default filter shows open work packages only; `[]` shows them all.
        filters = _filters(raw) if raw is not None else [("status_id", "o", [])]
        for name, operator, values in filters:
            issues = [i for i in issues if self._wp_matches(i, name, operator, values)]
        for key, descending in reversed(_sort_keys(params.get("sortBy"))):
            issues.sort(key=partial(self._sort_value, key=key), reverse=descending)
        paging = self._paging(request)
        start = (paging.page - 1) * paging.size
        elements = [call.render.work_package(i, embed=False) for i in issues[start : start + paging.size]]
        body = paged_collection(path, "WorkPackageCollection", elements, len(issues), paging)
        return shapes.HalResponse(body)

    async def project_work_packages(self, request: Request, call: Call) -> Response:
        """A project's work packages."""
        project = self._project(request.path_params["id"])
        issues = self.state.store.issues_of(project.id)
        return self._work_package_page(request, call, f"{API}/projects/{project.id}/work_packages", issues)

    async def work_package_list(self, request: Request, call: Call) -> Response:
        """Every visible work package (a ``project`` filter narrows it)."""
        store = self.state.store
        issues = [i for i in store.issues.values() if self._visible(store.project_of(i))]
        return self._work_package_page(request, call, f"{API}/work_packages", issues)

    async def work_package_get(self, request: Request, call: Call) -> Response:
        """One work package by id (or by semantic id), with its attachments embedded."""
        issue = self._work_package(request.path_params["id"])
        return shapes.HalResponse(call.render.work_package(issue, embed=True))

    async def attachment_list(self, request: Request, call: Call) -> Response:
        """A work package's attachments, one unpaged Collection."""
        issue = self._work_package(request.path_params["id"])
        return shapes.HalResponse(call.render.attachments(issue))

    async def attachment_get(self, request: Request, call: Call) -> Response:
        """One attachment."""
        return shapes.HalResponse(call.render.attachment(self._attachment(request.path_params["id"])))

    async def attachment_delete(self, request: Request, call: Call) -> Response:
        """204; 403 ``MissingPermission`` when the config's ``delete_attachments`` denies it."""
        attachment = self._attachment(request.path_params["id"])
        if not self._may_delete(call.user, attachment):
            raise OpenProjectError(403, NO_DELETE)
        self.state.store.delete_attachment(attachment.id)
        return Response(status_code=204)

    async def attachment_content(self, request: Request, call: Call) -> Response:
        """The bytes (local storage) or a 302 to signed storage (remote); quarantined: 403."""
        attachment = self._attachment(request.path_params["id"])
        if attachment.state is AttachmentState.QUARANTINED:
            raise OpenProjectError(403, QUARANTINED.format(name=attachment.filename))
        assert attachment.blob_name is not None
        if self.state.flavour == REMOTE:
            seconds = max(int(self.state.config.media_ttl) - 10, 0)
            headers = {
                "Cache-Control": f"public, max-age={seconds}",
                "Expires": formatdate(time.time() + seconds, usegmt=True),
            }
            return RedirectResponse(
                self.state.media_location(attachment.blob_name), status_code=302, headers=headers
            )
        mime = attachment.mime_type
        if mime.startswith("text/"):
            served = "text/plain"
        elif INLINEABLE.fullmatch(mime):
            served = mime
        else:
            served = "application/octet-stream"
        return self.serve_attachment(
            request,
            attachment,
            media_type=served,
            headers={
                "content-disposition": _content_disposition(
                    attachment.filename, served != "application/octet-stream"
                )
            },
        )

    # -- upload -----------------------------------------------------------------------------
    async def upload(self, request: Request, call: Call) -> Response:
        """Multipart with ``metadata`` (JSON, ``fileName`` required) and ``file``: 201 Attachment."""
        issue = self._work_package(request.path_params["id"])
        config = self.state.config
        if not (config.create_attachments and config.attachments_enabled):
            raise OpenProjectError(403, NOT_ALLOWED)
        content_type = request.headers.get("content-type")
        if not content_type:
            raise MissingContentTypeError
        if not content_type.lower().startswith("multipart/form-data"):
            raise OpenProjectError(
                415, f"Expected CONTENT-TYPE to be 'multipart/form-data' but got '{content_type}'."
            )
        limit = config.upload_limit
        try:
            parts = await receive_multipart(request, self.state.upload_dir, limit)
        except UploadError:
            raise OpenProjectError(
                400, "The request body could not be parsed as multipart/form-data."
            ) from None
        except PartTooLargeError:
            raise OpenProjectError(422, f"File is too large (maximum size is {limit} Bytes).") from None
        entry = request.scope.get("state", {}).get("log_entry")
        if entry is not None:
            entry["upload"] = [
                {"part": p.name, "filename": p.filename, "size": p.size, "sha256": p.sha256} for p in parts
            ]
        try:
            file_part, metadata = self._upload_parts(parts)
        except OpenProjectError:
            discard_parts(parts)
            raise
        discard_parts([p for p in parts if p is not file_part])
        filename = metadata["fileName"]
        mime_type = guess_mime_type(filename, file_part.content_type)
        attachment = keep_part(
            self.state.store, issue.id, filename, file_part, author=call.user, mime_type=mime_type
        )
        return shapes.HalResponse(call.render.attachment(attachment), status_code=201)

    async def prepare(self, request: Request, call: Call) -> Response:
        """Direct (three-step) uploads need remote storage set up for them: not here."""
        self._work_package(request.path_params["id"])
        raise OpenProjectError(422, NO_DIRECT_UPLOAD)

    @staticmethod
    def _last(parts: list[ReceivedPart], name: str) -> ReceivedPart | None:
        # Rack keeps the last of several parts of one name
        return next((p for p in reversed(parts) if p.name == name), None)

    def _upload_parts(self, parts: list[ReceivedPart]) -> tuple[ReceivedPart, dict[str, Any]]:
        """The ``file`` part and the decoded ``metadata``, checked as OpenProject checks them."""
        meta_part = self._last(parts, "metadata")
        if meta_part is None:
            raise OpenProjectError(400, "The metadata part is missing.")
        if meta_part.size > MAX_METADATA:
            raise OpenProjectError(400, INVALID_JSON)
        # a client that gives the metadata part a filename gets it spooled like a file
        raw = meta_part.path.read_bytes() if meta_part.path is not None else bytes(meta_part.value)
        try:
            metadata = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise OpenProjectError(400, INVALID_JSON) from None
        if not isinstance(metadata, dict):
            raise OpenProjectError(400, NOT_AN_OBJECT)
        file_part = self._last(parts, "file")
        if file_part is None or file_part.path is None:
            raise OpenProjectError(400, "The file part is missing.")
        name = metadata.get("fileName")
        if not isinstance(name, str) or not name.strip():
            raise OpenProjectError(422, "File can't be blank.", attribute="fileName")
        return file_part, metadata
