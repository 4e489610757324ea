"""The Jira dialect: Cloud REST v3 and Data Center REST v2, one flavour at a time.

``--flavour cloud`` serves only ``/rest/api/3`` and Cloud's content endpoint
(``/attachment/content/{id}``, 303 to the media origin); ``--flavour datacenter`` only
``/rest/api/2`` and Data Center's ``/secure/attachment/{id}/{name}``. The default, ``both``,
serves the two at once so that one emulator can answer clients of either (the emulator's
own tests, ``trackerfs demo``). ``/rest/api/3/search`` answers 410 like Cloud since its
removal; ``/rest/api/2/search`` pages by ``startAt`` like Data Center.

Switches (``/_emulator/config``): ``login_redirect`` answers refused credentials with a 302
to ``/login.jsp``, as Jira Server does for a bad token, instead of 401. ``rename_uploads``
stores uploads the way Waldur does (Jira never renames): spaces to ``_``, a random suffix
when the name is taken, at most 100 characters; so the client's handling of a renamed
upload is testable against this dialect.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.dialects.base import Dialect, basic_credentials, bearer_token, stored_file_name
from trackerfs.emulator.dialects.jira_jql import (
    Condition,
    JqlError,
    JqlFields,
    JqlQuery,
    matches,
    parse_jql,
)
from trackerfs.emulator.dialects.jira_shapes import Shapes, jira_time, parse_fields
from trackerfs.emulator.paging import BadPageTokenError, decode_token, encode_token, page_of
from trackerfs.emulator.responses import AsciiJSONResponse, discard_body
from trackerfs.emulator.routing import ANY_TEXT
from trackerfs.emulator.store import Attachment, Issue, Kind, User, decimal_ids, guess_mime_type
from trackerfs.emulator.uploads import (
    PartTooLargeError,
    UploadError,
    discard_parts,
    keep_part,
    receive_multipart,
)

CLOUD, DATACENTER, BOTH = "cloud", "datacenter", "both"
#: the REST versions each flavour serves
VERSIONS = {CLOUD: ("3",), DATACENTER: ("2",), BOTH: ("2", "3")}
MAX_FILES_PER_UPLOAD = 60
PROJECT_SEARCH_MAX = 100
DEFAULT_MAX_RESULTS = 50
LOGIN_PATH = "/login.jsp"
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
NO_ISSUE = "Issue does not exist or you do not have permission to see it."
BAD_TOKEN = "The provided next page token is invalid or expired."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."

#: The JQL this emulator evaluates; any other field or operator is Jira's 400.
_EQUALITY = frozenset({"=", "!=", "in", "not in"})
JQL_FIELDS = JqlFields(
    names={
        "project": "project",
        "key": "key",
        "issuekey": "key",
        "issue": "key",
        "id": "key",
        "summary": "summary",
        "created": "created",
        "createddate": "created",
        "updated": "updated",
        "updateddate": "updated",
    },
    operators={"project": _EQUALITY, "key": _EQUALITY, "summary": frozenset({"~", "!~"})},
    sortable=frozenset({"key", "created", "updated", "summary"}),
)

Handler = Callable[[Request, "Call"], Awaitable[Response]]


class JiraError(Exception):
    """An error answered with Jira's ``{"errorMessages": [...], "errors": {}}`` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


#: The permissions `/mypermissions` knows: key → (id, name, description). The signed-in user
#: may browse everything; the attachment ones follow the runtime config.
PERMISSIONS: dict[str, tuple[str, str, str]] = {
    "BROWSE_PROJECTS": ("10", "Browse Projects", "Ability to browse projects and the issues within them."),
    "CREATE_ATTACHMENTS": ("19", "Create Attachments", "Users with this permission may create attachments."),
    "DELETE_ALL_ATTACHMENTS": (
        "38",
        "Delete All Attachments",
        "Users with this permission may delete all attachments.",
    ),
    "DELETE_OWN_ATTACHMENTS": (
        "39",
        "Delete Own Attachments",
        "Users with this permission may delete own attachments.",
    ),
}


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about the request it answers: version, user, URL builder."""

    version: str
    user: User
    shapes: Shapes


def _int_param(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise JiraError(400, f"The value '{value}' is invalid for the '{name}' parameter.") from None
    if number < 0:
        raise JiraError(400, f"The '{name}' parameter must not be negative.")
    return number


async def _search_params(request: Request) -> dict[str, Any]:
    """GET query parameters or a POST JSON body, as one dict."""
    if request.method == "POST":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JiraError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise JiraError(400, "The request body must be a JSON object.")
        return body
    params: dict[str, Any] = dict(request.query_params)
    params["fields"] = request.query_params.getlist("fields") or None
    return params


class JiraDialect(Dialect):
    """Routes of the Jira REST API over an EmulatorState."""

    name: ClassVar[str] = "jira"
    flavours: ClassVar[tuple[str, ...]] = (BOTH, CLOUD, DATACENTER)
    logged_headers: ClassVar[tuple[str, ...]] = ("x-atlassian-token",)
    switches: ClassVar[dict[str, bool]] = {"login_redirect": False, "rename_uploads": False}

    @staticmethod
    def format_id(kind: Kind, serial: int) -> str:
        """Numeric strings from 10000; one sequence, so no two records share an id."""
        return decimal_ids(kind, serial)

    @staticmethod
    def error_response(status: int, message: str) -> Response:
        """A Jira error body with ``status``."""
        return AsciiJSONResponse({"errorMessages": [message], "errors": {}}, status_code=status)

    @property
    def versions(self) -> tuple[str, ...]:
        """The REST versions this emulator's flavour serves."""
        return VERSIONS[self.state.flavour]

    # -- auth and plumbing ------------------------------------------------------------------
    def authenticate(self, request: Request) -> User | None:
        """Basic with a known user and the token as password, or Bearer with the token."""
        token = bearer_token(request)
        if token is not None:
            return self.state.token_owner if self._is_token(token) else None
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        user = self.state.users.get(credentials[0])
        return user if user is not None and self._is_token(credentials[1]) else None

    def upload_name(self, issue: Issue, requested: str) -> str:
        """The requested name, or with ``rename_uploads`` the name Waldur would store."""
        if not self.switch("rename_uploads"):
            return requested
        taken = {a.filename for a in self.state.store.attachments.values()}
        return stored_file_name(requested, taken)

    def _is_token(self, given: str) -> bool:
        # bytes: compare_digest refuses str with non-ASCII characters
        return hmac.compare_digest(given.encode(), self.state.token.encode())

    def _refusal(self, request: Request) -> JiraError:
        if self.switch("login_redirect"):
            wanted = request.url.path + ("?" + request.url.query if request.url.query else "")
            query = f"permissionViolation=true&os_destination={quote(wanted, safe='')}"
            location = f"{self._base(request)}{LOGIN_PATH}?{query}"
            return JiraError(302, "Authentication required", {"Location": location})
        return JiraError(401, NOT_AUTHENTICATED, {"WWW-Authenticate": 'Basic realm="jira"'})

    def _endpoint(self, handler: Handler, version: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                user = self.authenticate(request)
                if user is None:
                    raise self._refusal(request)
                return await handler(request, Call(version, user, Shapes(self._base(request), version)))
            except JiraError as error:
                if request.method in ("POST", "PUT"):
                    await discard_body(request)
                response = self.error_response(error.status, error.message)
                response.headers.update(error.headers)
                return response

        return endpoint

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def routes(self) -> list[BaseRoute]:
        """The routes of this flavour."""
        table: list[tuple[str, Handler, list[str]]] = [
            ("/serverInfo", self.server_info, ["GET"]),
            ("/myself", self.myself, ["GET"]),
            ("/mypermissions", self.my_permissions, ["GET"]),
            ("/field", self.field_list, ["GET"]),
            ("/project", self.project_list, ["GET"]),
            ("/project/search", self.project_search, ["GET"]),
            ("/project/{key}", self.project_get, ["GET"]),
            ("/search", self.search_legacy, ["GET", "POST"]),
            ("/issue/{key}", self.issue_get, ["GET"]),
            ("/issue/{key}/attachments", self.upload, ["POST"]),
            ("/attachment/meta", self.attachment_meta, ["GET"]),
            ("/attachment/{id}", self.attachment_get, ["GET"]),
            ("/attachment/{id}", self.attachment_delete, ["DELETE"]),
        ]
        cloud_only: list[tuple[str, Handler, list[str]]] = [
            ("/search/jql", self.search_jql, ["GET", "POST"]),
            ("/attachment/content/{id}", self.attachment_content, ["GET"]),
            ("/attachment/thumbnail/{id}", self.attachment_content, ["GET"]),
        ]
        if self.state.flavour != DATACENTER:
            table += cloud_only
        routes: list[BaseRoute] = [
            Route(f"/rest/api/{version}{path}", self._endpoint(handler, version), methods=methods)
            for version in self.versions
            for path, handler, methods in table
        ]
        if "2" in self.versions:
            for kind in ("attachment", "thumbnail"):
                routes.append(
                    Route(
                        f"/secure/{kind}/{{id}}/{{name:{ANY_TEXT}}}",
                        self._endpoint(self.secure_content, "2"),
                        methods=["GET"],
                    )
                )
            routes.append(Route(LOGIN_PATH, self.login_page, methods=["GET"]))
        fallback = self._endpoint(self.not_found, self.versions[-1])
        routes.append(Route("/rest/{rest:path}", fallback, methods=None))
        return routes

    def _issue(self, key: str) -> Issue:
        issue = self.state.store.issue_by_key(key)
        if issue is None:
            raise JiraError(404, NO_ISSUE)
        return issue

    def _attachment(self, ident: str) -> Attachment:
        attachment = self.state.store.attachments.get(ident)
        if attachment is None or attachment.is_external:
            raise JiraError(404, f"The attachment with id '{ident}' does not exist.")
        return attachment

    # -- handlers ---------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        """Where Jira Server sends a client whose credentials it refused (no auth needed)."""
        return HTMLResponse("<html><head><title>Log in - Jira</title></head><body>Log in</body></html>")

    async def not_found(self, request: Request, call: Call) -> Response:
        """Any other /rest path."""
        raise JiraError(404, "null for uri: " + str(request.url.path))

    async def server_info(self, request: Request, call: Call) -> Response:
        """Enough server info for the pycontribs client (it reads versionNumbers, deploymentType)."""
        data_center = self.state.flavour == DATACENTER
        return AsciiJSONResponse(
            {
                "baseUrl": self._base(request),
                "displayUrl": self._base(request),
                "version": "9.12.0" if data_center else "1001.0.0-SNAPSHOT",
                "versionNumbers": [9, 12, 0] if data_center else [1001, 0, 0],
                "deploymentType": "Server" if data_center else "Cloud",
                "buildNumber": 100_000,
                "buildDate": "2026-01-01T00:00:00.000+0000",
                "serverTime": jira_time(datetime.now().astimezone()),
                "scmInfo": "emulator",
                "serverTitle": "trackerfs emulator",
            }
        )

    async def myself(self, request: Request, call: Call) -> Response:
        """The user the credentials belong to."""
        return AsciiJSONResponse(call.shapes.user(call.user))

    async def field_list(self, request: Request, call: Call) -> Response:
        """The system fields this emulator knows (clients map JQL names with them)."""
        kinds = {
            "summary": "string",
            "created": "datetime",
            "updated": "datetime",
            "project": "project",
            "attachment": "array",
        }
        return AsciiJSONResponse(
            [
                {
                    "id": name,
                    "key": name,
                    "name": name.capitalize(),
                    "custom": False,
                    "orderable": name != "attachment",
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [name],
                    "schema": {"type": kind, "system": name},
                }
                for name, kind in kinds.items()
            ]
        )

    async def project_list(self, request: Request, call: Call) -> Response:
        """All projects as a plain array (deprecated on Cloud, the DC way)."""
        return AsciiJSONResponse([call.shapes.project(p) for p in self.state.store.projects.values()])

    async def project_get(self, request: Request, call: Call) -> Response:
        """One project by key or id."""
        ident = request.path_params["key"]
        project = self.state.store.project_by_key(ident)
        if project is None:
            raise JiraError(404, f"No project could be found with key '{ident}'.")
        return AsciiJSONResponse(call.shapes.project(project))

    async def project_search(self, request: Request, call: Call) -> Response:
        """Projects as a PageBean ordered by key."""
        api = call.shapes.api
        params = request.query_params
        start = _int_param(params.get("startAt"), "startAt", 0)
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        projects = sorted(self.state.store.projects.values(), key=lambda p: p.key)
        keys = {k for value in params.getlist("keys") for k in value.split(",") if k}
        if keys:
            projects = [p for p in projects if p.key in keys or p.id in keys]
        query = params.get("query", "").lower()
        if query:
            projects = [p for p in projects if query in p.key.lower() or query in p.name.lower()]
        page = page_of(projects, start, wanted, min(PROJECT_SEARCH_MAX, self.state.config.page_size))
        body: dict[str, Any] = {
            "self": f"{api}/project/search?startAt={start}&maxResults={page.size}",
            "maxResults": page.size,
            "startAt": start,
            "total": page.total,
            "isLast": page.is_last,
            "values": [call.shapes.project(p) for p in page.items],
        }
        if not page.is_last:
            body["nextPage"] = f"{api}/project/search?startAt={page.next_start}&maxResults={page.size}"
        return AsciiJSONResponse(body)

    # -- search -----------------------------------------------------------------------------
    def _jql_values(self, issue: Issue, field: str) -> Collection[str]:
        # Only fields that take an operator in JQL_FIELDS reach here.
        if field == "project":
            project = self.state.store.project_of(issue)
            return (project.key, project.id)
        if field == "key":
            return (issue.key, issue.id, *issue.aliases)
        return (issue.summary,)

    def _matches(self, where: Condition, issue: Issue) -> bool:
        return matches(where, lambda field: self._jql_values(issue, field))

    def _sort_value(self, issue: Issue, field: str) -> tuple[Any, ...]:
        if field == "key":
            return (self.state.store.project_of(issue).key, issue.number)
        if field == "summary":
            return (issue.summary,)
        return (issue.created if field == "created" else issue.updated,)

    def _parse(self, jql: str, *, bounded: bool) -> JqlQuery:
        try:
            query = parse_jql(jql, JQL_FIELDS)
        except JqlError as error:
            raise JiraError(400, str(error)) from None
        if bounded and query.where is None:
            if not jql.strip():
                raise JiraError(400, "The JQL query is empty. Provide a bounded JQL query.")
            raise JiraError(400, UNBOUNDED)
        store = self.state.store
        for clause in query.clauses():
            if clause.field == "project":
                for key in clause.values:
                    if store.project_by_key(key) is None:
                        raise JiraError(400, f"The value '{key}' does not exist for the field 'project'.")
        return query

    def _matching_issues(self, jql: str, *, bounded: bool) -> list[Issue]:
        query = self._parse(jql, bounded=bounded)
        issues = list(self.state.store.issues.values())
        if query.where is not None:
            where = query.where
            issues = [i for i in issues if self._matches(where, i)]
        issues.sort(key=lambda i: self._sort_value(i, "key"))
        # Python's sort is stable: apply the keys from the last to the first.
        for sort_key in reversed(query.order):
            issues.sort(key=lambda i: self._sort_value(i, sort_key.field), reverse=sort_key.descending)
        return issues

    async def search_jql(self, request: Request, call: Call) -> Response:
        """Cloud's enhanced search: token paging, ``nextPageToken`` omitted on the last page."""
        params = await _search_params(request)
        issues = self._matching_issues(str(params.get("jql") or ""), bounded=True)
        token = params.get("nextPageToken")
        try:
            start = decode_token(str(token)) if token else 0
        except BadPageTokenError:
            raise JiraError(400, BAD_TOKEN) from None
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        page = page_of(issues, start, wanted, self.state.config.page_size)
        fields = parse_fields(params.get("fields"), "id")
        body: dict[str, Any] = {
            "issues": [call.shapes.issue(self.state.store, i, fields) for i in page.items],
            "isLast": page.is_last,
        }
        if not page.is_last:
            body["nextPageToken"] = encode_token(page.next_start)
        return AsciiJSONResponse(body)

    async def search_legacy(self, request: Request, call: Call) -> Response:
        """Removed on Cloud (v3: 410); the Data Center search with ``startAt`` on v2."""
        if call.version == "3":
            raise JiraError(410, SEARCH_REMOVED)
        params = await _search_params(request)
        issues = self._matching_issues(str(params.get("jql") or ""), bounded=False)
        start = _int_param(params.get("startAt"), "startAt", 0)
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        page = page_of(issues, start, wanted, self.state.config.page_size)
        fields = parse_fields(params.get("fields"), "*navigable")
        return AsciiJSONResponse(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": page.size,
                "total": page.total,
                "issues": [call.shapes.issue(self.state.store, i, fields) for i in page.items],
            }
        )

    # -- issues and attachments -------------------------------------------------------------
    async def issue_get(self, request: Request, call: Call) -> Response:
        """One issue (default ``fields=*all``); an old key of a moved issue answers with the new."""
        issue = self._issue(request.path_params["key"])
        fields = parse_fields(request.query_params.getlist("fields"), "*all")
        return AsciiJSONResponse(call.shapes.issue(self.state.store, issue, fields))

    async def attachment_meta(self, request: Request, call: Call) -> Response:
        """Attachment settings: enabled and the upload limit."""
        config = self.state.config
        return AsciiJSONResponse({"enabled": config.attachments_enabled, "uploadLimit": config.upload_limit})

    def _granted(self) -> dict[str, bool]:
        config = self.state.config
        return {
            "BROWSE_PROJECTS": True,
            "CREATE_ATTACHMENTS": config.create_attachments,
            "DELETE_ALL_ATTACHMENTS": config.delete_attachments == "all",
            "DELETE_OWN_ATTACHMENTS": config.delete_attachments in ("all", "own"),
        }

    async def my_permissions(self, request: Request, call: Call) -> Response:
        """The signed-in user's permissions (``permissions`` required), optionally for an issue."""
        params = request.query_params
        keys = [key.strip() for key in params.get("permissions", "").split(",") if key.strip()]
        if not keys:
            raise JiraError(400, "The 'permissions' query parameter is required.")
        unknown = [key for key in keys if key not in PERMISSIONS]
        if unknown:
            raise JiraError(400, f"Permission '{unknown[0]}' does not exist.")
        issue = params.get("issueId") or params.get("issueKey")
        if issue:
            self._issue(issue)
        project = params.get("projectId") or params.get("projectKey")
        if project and not any(project in (p.key, p.id) for p in self.state.store.projects.values()):
            raise JiraError(404, f"No project could be found with key '{project}'.")
        granted = self._granted()
        body = {
            key: {
                "id": PERMISSIONS[key][0],
                "key": key,
                "name": PERMISSIONS[key][1],
                "type": "PROJECT",
                "description": PERMISSIONS[key][2],
                "havePermission": granted[key],
            }
            for key in keys
        }
        return AsciiJSONResponse({"permissions": body})

    def _may_delete(self, attachment: Attachment, user: User) -> bool:
        rights = self.state.config.delete_attachments
        return rights == "all" or (rights == "own" and attachment.author == user)

    async def attachment_get(self, request: Request, call: Call) -> Response:
        """AttachmentMetadata (integer id)."""
        attachment = self._attachment(request.path_params["id"])
        return AsciiJSONResponse(call.shapes.attachment(attachment, metadata=True))

    async def attachment_delete(self, request: Request, call: Call) -> Response:
        """Delete an attachment: 204; 403 when the config denies it, 404 when missing."""
        attachment = self._attachment(request.path_params["id"])
        if not self._may_delete(attachment, call.user):
            message = f"You do not have permission to delete attachment with id '{attachment.id}'."
            raise JiraError(403, message)
        self.state.store.delete_attachment(attachment.id)
        return Response(status_code=204)

    async def attachment_content(self, request: Request, call: Call) -> Response:
        """303 to the media origin, or the bytes themselves with ``redirect=false``."""
        attachment = self._attachment(request.path_params["id"])
        if request.query_params.get("redirect", "true").lower() == "false":
            return self.serve_attachment(request, attachment)
        assert attachment.blob_name is not None
        return RedirectResponse(self.state.media_location(attachment.blob_name), status_code=303)

    async def secure_content(self, request: Request, call: Call) -> Response:
        """Data Center's content URL: the bytes, no redirect (the name part is not checked)."""
        return self.serve_attachment(request, self._attachment(request.path_params["id"]))

    async def upload(self, request: Request, call: Call) -> Response:
        """Multipart upload of one or more ``file`` parts: 200 with an array of Attachment."""
        if request.headers.get("x-atlassian-token", "").lower() != "no-check":
            raise JiraError(403, "XSRF check failed")
        issue = self._issue(request.path_params["key"])
        if not self.state.config.attachments_enabled:
            raise JiraError(403, "Attachments are disabled on this site.")
        if not self.state.config.create_attachments:
            raise JiraError(403, "You do not have permission to create attachments for this issue.")
        limit = self.state.config.upload_limit
        try:
            parts = await receive_multipart(request, self.state.upload_dir, limit)
        except UploadError as error:
            raise JiraError(400, str(error)) from None
        except PartTooLargeError:
            raise JiraError(
                413, f"The attachment is larger than the maximum size of {limit} bytes."
            ) from None
        entry = request.scope.get("state", {}).get("log_entry")
        if entry is not None:
            entry["upload"] = [
                {"part": p.name, "filename": p.filename, "size": p.size, "sha256": p.sha256} for p in parts
            ]
        try:
            bad = [p.name for p in parts if p.name != "file" or p.path is None]
            if bad:
                raise JiraError(400, f"Only 'file' parts are accepted, got {bad[0]!r}.")
            if not parts:
                raise JiraError(400, "No file was attached to the request.")
            if len(parts) > MAX_FILES_PER_UPLOAD:
                raise JiraError(413, f"At most {MAX_FILES_PER_UPLOAD} files per request.")
        except JiraError:
            discard_parts(parts)
            raise
        store = self.state.store
        created = []
        for part in parts:
            filename = self.upload_name(issue, part.filename or "")
            mime_type = guess_mime_type(filename, part.content_type)
            created.append(keep_part(store, issue.id, filename, part, author=call.user, mime_type=mime_type))
        return AsciiJSONResponse([call.shapes.attachment(a) for a in created])
