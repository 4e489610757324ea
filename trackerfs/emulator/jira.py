"""The Jira dialect: Cloud REST v3 and Data Center REST v2 routes and JSON shapes.

Both versions are served at once. ``/rest/api/3/search`` answers 410 like Cloud since
its removal; ``/rest/api/2/search`` keeps the Data Center behaviour (``startAt`` paging)
so that a DC client can be tested against the same emulator. Attachment ``content``
links point at ``/rest/api/3/attachment/content/{id}`` on v3 and at Data Center's
``/secure/attachment/{id}/{name}`` on v2.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.content import blob_response
from trackerfs.emulator.responses import AsciiJSONResponse, discard_body
from trackerfs.emulator.state import EmulatorState
from trackerfs.emulator.store import (
    EMULATOR_USER,
    Attachment,
    Issue,
    Project,
    User,
    guess_mime_type,
)
from trackerfs.emulator.uploads import (
    PartTooLargeError,
    UploadError,
    discard_parts,
    receive_multipart,
)

VERSIONS = ("2", "3")
MAX_FILES_PER_UPLOAD = 60
PROJECT_SEARCH_MAX = 100
DEFAULT_MAX_RESULTS = 50
ALL_FIELDS = frozenset({"summary", "created", "updated", "project", "attachment"})
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
NO_ISSUE = "Issue does not exist or you do not have permission to see it."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)

#: The permissions `/mypermissions` knows: key → (id, name, description). The emulator's
#: user may browse everything; the attachment ones follow the runtime config.
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

_JQL_VALUE = r'"[^"]*"|\'[^\']*\'|[\w.-]+'
_JQL_CLAUSE = r"\b{field}\s*(?:=\s*(?P<one>{value})|\bin\s*\((?P<many>[^)]*)\))"
_JQL_PROJECT = re.compile(_JQL_CLAUSE.format(field="project", value=_JQL_VALUE), re.IGNORECASE)
_JQL_KEY = re.compile(_JQL_CLAUSE.format(field="(?:key|issuekey|issue|id)", value=_JQL_VALUE), re.IGNORECASE)
_JQL_ORDER = re.compile(r"\border\s+by\b(?P<order>.*)$", re.IGNORECASE | re.DOTALL)

Handler = Callable[[Request, str], Awaitable[Response]]


class _AnyTextConvertor(Convertor[str]):
    """A path segment that may hold any character, newlines included (a file name)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anything", _AnyTextConvertor())


class JiraError(Exception):
    """An error answered with Jira's ``{"errorMessages": [...], "errors": {}}`` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str) -> Response:
    """A Jira error body with ``status``."""
    return AsciiJSONResponse({"errorMessages": [message], "errors": {}}, status_code=status)


# -- JSON shapes -----------------------------------------------------------------------------


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: ``2026-01-05T10:00:00.000+0000``."""
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}"
        + (moment.strftime("%z") or "+0000")
    )


@dataclass(frozen=True, slots=True)
class _Links:
    """URL builder for one request: the base URL the client used and the API version."""

    base: str
    version: str

    @property
    def api(self) -> str:
        return f"{self.base}/rest/api/{self.version}"

    def avatars(self, kind: str, ident: str) -> dict[str, str]:
        return {
            f"{n}x{n}": f"{self.base}/secure/{kind}avatar?size={n}&id={quote(ident)}"
            for n in (48, 24, 16, 32)
        }

    def user(self, user: User) -> dict[str, Any]:
        return {
            "self": f"{self.api}/user?accountId={quote(user.account_id)}",
            "accountId": user.account_id,
            "emailAddress": user.email,
            "avatarUrls": self.avatars("user", user.account_id),
            "displayName": user.display_name,
            "active": True,
            "timeZone": "UTC",
            "accountType": "atlassian",
        }

    def project(self, project: Project) -> dict[str, Any]:
        return {
            "self": f"{self.api}/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "avatarUrls": self.avatars("project", project.id),
            "projectTypeKey": "software",
            "simplified": False,
        }

    def content_url(self, attachment: Attachment) -> str:
        if self.version == "2":
            name = quote(attachment.filename, safe="", errors="surrogateescape")
            return f"{self.base}/secure/attachment/{attachment.id}/{name}"
        return f"{self.api}/attachment/content/{attachment.id}"

    def attachment(self, attachment: Attachment, *, metadata: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "self": f"{self.api}/attachment/{attachment.id}",
            # The search/upload schema has a string id, AttachmentMetadata an integer.
            "id": int(attachment.id) if metadata else attachment.id,
            "filename": attachment.filename,
            "author": self.user(attachment.author),
            "created": jira_time(attachment.created),
            "size": attachment.size,
            "mimeType": attachment.mime_type,
            "content": self.content_url(attachment),
        }
        if attachment.mime_type.startswith("image/"):
            body["thumbnail"] = f"{self.api}/attachment/thumbnail/{attachment.id}"
        if metadata:
            body["properties"] = {}
        return body

    def issue(self, state: EmulatorState, issue: Issue, fields: frozenset[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "summary" in fields:
            values["summary"] = issue.summary
        if "created" in fields:
            values["created"] = jira_time(issue.created)
        if "updated" in fields:
            values["updated"] = jira_time(issue.updated)
        if "project" in fields:
            values["project"] = self.project(state.store.projects[issue.project])
        if "attachment" in fields:
            values["attachment"] = [self.attachment(a) for a in state.store.attachments_of(issue.key)]
        return {
            "expand": ISSUE_EXPAND,
            "id": issue.id,
            "self": f"{self.api}/issue/{issue.id}",
            "key": issue.key,
            "fields": values,
        }


# -- request parsing -------------------------------------------------------------------------


def parse_fields(raw: list[str] | str | None, default: str) -> frozenset[str]:
    """The issue fields a request asked for (``*all``/``*navigable`` mean every field here)."""
    if not raw:
        raw = default
    items = raw.split(",") if isinstance(raw, str) else [f for r in raw for f in r.split(",")]
    names = {item.strip() for item in items if item.strip()}
    if names & {"*all", "*navigable"}:
        names |= ALL_FIELDS
    return frozenset(name for name in names if not name.startswith("-")) - {
        f[1:] for f in names if f.startswith("-")
    }


def _jql_values(match: re.Match[str]) -> list[str]:
    if match.group("one") is not None:
        values = [match.group("one")]
    else:
        values = re.findall(_JQL_VALUE, match.group("many"))
    return [value.strip("\"'") for value in values]


@dataclass(frozen=True, slots=True)
class JqlQuery:
    """The part of a JQL query the emulator understands; other clauses are ignored."""

    projects: tuple[str, ...]
    keys: tuple[str, ...]
    descending: bool


def parse_jql(jql: str) -> JqlQuery:
    """Understand ``project = KEY [AND key = X] [ORDER BY key ASC|DESC]``.

    Raises JiraError(400) for an empty or unbounded query, as Jira Cloud does.
    """
    if not jql.strip():
        raise JiraError(400, "The JQL query is empty. Provide a bounded JQL query.")
    order = _JQL_ORDER.search(jql)
    where = jql[: order.start()] if order else jql
    descending = bool(order and re.search(r"\bdesc\b", order.group("order"), re.IGNORECASE))
    projects = [v for m in _JQL_PROJECT.finditer(where) for v in _jql_values(m)]
    keys = [v for m in _JQL_KEY.finditer(where) for v in _jql_values(m)]
    if not projects and not keys:
        raise JiraError(
            400,
            "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.",
        )
    return JqlQuery(tuple(projects), tuple(keys), descending)


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


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = decoded["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise JiraError(400, "The provided next page token is invalid or expired.") from None
    if not isinstance(offset, int) or offset < 0:
        raise JiraError(400, "The provided next page token is invalid or expired.")
    return offset


# -- the dialect -----------------------------------------------------------------------------


class JiraDialect:
    """Routes of the Jira REST API over an EmulatorState."""

    name = "jira"

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    # auth and plumbing
    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip() == self.state.token
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            _, _, password = decoded.partition(":")
            return password == self.state.token
        return False

    def _endpoint(self, handler: Handler, version: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if not self._authenticated(request):
                    raise JiraError(401, NOT_AUTHENTICATED, {"WWW-Authenticate": 'Basic realm="jira"'})
                return await handler(request, version)
            except JiraError as error:
                if request.method in ("POST", "PUT"):
                    await discard_body(request)
                response = error_response(error.status, error.message)
                response.headers.update(error.headers)
                return response

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """Every Jira route, for both API versions."""
        table: list[tuple[str, Handler, list[str]]] = [
            ("/serverInfo", self.server_info, ["GET"]),
            ("/myself", self.myself, ["GET"]),
            ("/field", self.field_list, ["GET"]),
            ("/project", self.project_list, ["GET"]),
            ("/project/search", self.project_search, ["GET"]),
            ("/project/{key}", self.project_get, ["GET"]),
            ("/search/jql", self.search_jql, ["GET", "POST"]),
            ("/search", self.search_legacy, ["GET", "POST"]),
            ("/issue/{key}", self.issue_get, ["GET"]),
            ("/issue/{key}/attachments", self.upload, ["POST"]),
            ("/mypermissions", self.my_permissions, ["GET"]),
            ("/attachment/meta", self.attachment_meta, ["GET"]),
            ("/attachment/content/{id}", self.attachment_content, ["GET"]),
            ("/attachment/thumbnail/{id}", self.attachment_content, ["GET"]),
            ("/attachment/{id}", self.attachment_get, ["GET"]),
            ("/attachment/{id}", self.attachment_delete, ["DELETE"]),
        ]
        routes: list[BaseRoute] = [
            Route(f"/rest/api/{version}{path}", self._endpoint(handler, version), methods=methods)
            for version in VERSIONS
            for path, handler, methods in table
        ]
        routes.append(
            Route(
                "/secure/attachment/{id}/{name:anything}",
                self._endpoint(self.secure_content, "2"),
                methods=["GET"],
            )
        )
        routes.append(Route("/rest/{rest:path}", self._endpoint(self.not_found, "3"), methods=None))
        return routes

    def _links(self, request: Request, version: str) -> _Links:
        return _Links(str(request.base_url).rstrip("/"), version)

    def _issue(self, key: str) -> Issue:
        issue = self.state.store.issue_by_key_or_id(key)
        if issue is None:
            raise JiraError(404, NO_ISSUE)
        return issue

    def _attachment(self, ident: str) -> Attachment:
        attachment = self.state.store.attachments.get(ident)
        if attachment is None:
            raise JiraError(404, f"The attachment with id '{ident}' does not exist.")
        return attachment

    # handlers
    async def not_found(self, request: Request, version: str) -> Response:
        """Any other /rest path."""
        raise JiraError(404, "null for uri: " + str(request.url.path))

    async def server_info(self, request: Request, version: str) -> Response:
        """Enough server info for the pycontribs client (it reads versionNumbers, deploymentType)."""
        return AsciiJSONResponse(
            {
                "baseUrl": str(request.base_url).rstrip("/"),
                "displayUrl": str(request.base_url).rstrip("/"),
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": "Cloud",
                "buildNumber": 100_000,
                "buildDate": "2026-01-01T00:00:00.000+0000",
                "serverTime": jira_time(datetime.now().astimezone()),
                "scmInfo": "emulator",
                "serverTitle": "trackerfs emulator",
            }
        )

    async def myself(self, request: Request, version: str) -> Response:
        """The token's user."""
        return AsciiJSONResponse(self._links(request, version).user(EMULATOR_USER))

    async def field_list(self, request: Request, version: str) -> Response:
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

    async def project_list(self, request: Request, version: str) -> Response:
        """All projects as a plain array (deprecated on Cloud, the DC way)."""
        links = self._links(request, version)
        return AsciiJSONResponse([links.project(p) for p in self.state.store.projects.values()])

    async def project_get(self, request: Request, version: str) -> Response:
        """One project by key or id."""
        ident = request.path_params["key"]
        for project in self.state.store.projects.values():
            if ident in (project.key, project.id):
                return AsciiJSONResponse(self._links(request, version).project(project))
        raise JiraError(404, f"No project could be found with key '{ident}'.")

    async def project_search(self, request: Request, version: str) -> Response:
        """Projects as a PageBean ordered by key."""
        links = self._links(request, version)
        params = request.query_params
        start = _int_param(params.get("startAt"), "startAt", 0)
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        size = max(1, min(wanted, PROJECT_SEARCH_MAX, self.state.config.page_size))
        projects = sorted(self.state.store.projects.values(), key=lambda p: p.key)
        keys = {k for value in params.getlist("keys") for k in value.split(",") if k}
        if keys:
            projects = [p for p in projects if p.key in keys or p.id in keys]
        query = params.get("query", "").lower()
        if query:
            projects = [p for p in projects if query in p.key.lower() or query in p.name.lower()]
        page = projects[start : start + size]
        is_last = start + size >= len(projects)
        body: dict[str, Any] = {
            "self": f"{links.api}/project/search?startAt={start}&maxResults={size}",
            "maxResults": size,
            "startAt": start,
            "total": len(projects),
            "isLast": is_last,
            "values": [links.project(p) for p in page],
        }
        if not is_last:
            body["nextPage"] = f"{links.api}/project/search?startAt={start + size}&maxResults={size}"
        return AsciiJSONResponse(body)

    def _matching_issues(self, jql: str) -> list[Issue]:
        query = parse_jql(jql)
        store = self.state.store
        for key in query.projects:
            if key not in store.projects:
                raise JiraError(400, f"The value '{key}' does not exist for the field 'project'.")
        issues = (
            [i for p in query.projects for i in store.issues_of(p)]
            if query.projects
            else sorted(store.issues.values(), key=lambda i: (i.project, i.number))
        )
        if query.keys:
            issues = [i for i in issues if i.key in query.keys or i.id in query.keys]
        if query.descending:
            issues.reverse()
        return issues

    async def search_jql(self, request: Request, version: str) -> Response:
        """Cloud's enhanced search: token paging, ``nextPageToken`` omitted on the last page."""
        params = await _search_params(request)
        issues = self._matching_issues(str(params.get("jql") or ""))
        token = params.get("nextPageToken")
        start = _decode_token(str(token)) if token else 0
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        size = max(1, min(wanted, self.state.config.page_size))
        fields = parse_fields(params.get("fields"), "id")
        links = self._links(request, version)
        page = issues[start : start + size]
        is_last = start + size >= len(issues)
        body: dict[str, Any] = {
            "issues": [links.issue(self.state, i, fields) for i in page],
            "isLast": is_last,
        }
        if not is_last:
            body["nextPageToken"] = _encode_token(start + size)
        return AsciiJSONResponse(body)

    async def search_legacy(self, request: Request, version: str) -> Response:
        """Removed on Cloud (v3: 410); the Data Center search with ``startAt`` on v2."""
        if version == "3":
            raise JiraError(410, SEARCH_REMOVED)
        params = await _search_params(request)
        issues = self._matching_issues(str(params.get("jql") or ""))
        start = _int_param(params.get("startAt"), "startAt", 0)
        wanted = _int_param(params.get("maxResults"), "maxResults", DEFAULT_MAX_RESULTS)
        size = max(1, min(wanted, self.state.config.page_size))
        fields = parse_fields(params.get("fields"), "*navigable")
        links = self._links(request, version)
        return AsciiJSONResponse(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(issues),
                "issues": [links.issue(self.state, i, fields) for i in issues[start : start + size]],
            }
        )

    async def issue_get(self, request: Request, version: str) -> Response:
        """One issue (default ``fields=*all``)."""
        issue = self._issue(request.path_params["key"])
        fields = parse_fields(request.query_params.getlist("fields"), "*all")
        return AsciiJSONResponse(self._links(request, version).issue(self.state, issue, fields))

    async def attachment_meta(self, request: Request, version: str) -> Response:
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

    async def my_permissions(self, request: Request, version: str) -> Response:
        """The token's user's permissions (``permissions`` required), optionally for an issue."""
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

    def _may_delete(self, attachment: Attachment) -> bool:
        rights = self.state.config.delete_attachments
        return rights == "all" or (rights == "own" and attachment.author == EMULATOR_USER)

    async def attachment_get(self, request: Request, version: str) -> Response:
        """AttachmentMetadata (integer id)."""
        attachment = self._attachment(request.path_params["id"])
        links = self._links(request, version)
        return AsciiJSONResponse(links.attachment(attachment, metadata=True))

    async def attachment_delete(self, request: Request, version: str) -> Response:
        """Delete an attachment: 204; 403 when the config denies it, 404 when missing."""
        ident = request.path_params["id"]
        if not self._may_delete(self._attachment(ident)):
            raise JiraError(403, f"You do not have permission to delete attachment with id '{ident}'.")
        self.state.store.delete_attachment(ident)
        return Response(status_code=204)

    def _serve_bytes(self, request: Request, attachment: Attachment) -> Response:
        return blob_response(
            request,
            self.state.store.blob_path(attachment),
            size=attachment.size,
            media_type=attachment.mime_type,
            range_support=self.state.config.range_support,
            error=error_response,
        )

    async def attachment_content(self, request: Request, version: str) -> Response:
        """303 to the media origin, or the bytes themselves with ``redirect=false``."""
        attachment = self._attachment(request.path_params["id"])
        if request.query_params.get("redirect", "true").lower() == "false":
            return self._serve_bytes(request, attachment)
        return RedirectResponse(self.state.media_location(attachment.blob_name), status_code=303)

    async def secure_content(self, request: Request, version: str) -> Response:
        """Data Center's content URL: the bytes, no redirect."""
        return self._serve_bytes(request, self._attachment(request.path_params["id"]))

    async def upload(self, request: Request, version: str) -> Response:
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
            assert part.path is not None
            blob_name, blob_path = store.new_blob_path()
            part.path.replace(blob_path)
            created.append(
                store.register_blob(
                    issue.key,
                    part.filename or "",
                    blob_name,
                    size=part.size,
                    sha256=part.sha256,
                    author=EMULATOR_USER,
                    mime_type=guess_mime_type(part.filename or "", part.content_type),
                )
            )
        links = self._links(request, version)
        return AsciiJSONResponse([links.attachment(a) for a in created])
