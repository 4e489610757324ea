"""OpenProject (API v3, HAL+JSON): projects → work packages → attachments.

Everything OpenProject-specific lives here: URLs under `/api/v3`, HAL collections and
links, the `_type: "Error"` bodies, the multipart upload with its JSON `metadata` part.

- Collections are paged by page NUMBER (`offset` from 1) and `pageSize`; the next page is
  the one `_links.nextByOffset` names, which carries the page size the server really
  uses (it caps what a client asks for).
- A work package listing never embeds attachments, so each work package costs one
  `/work_packages/{id}/attachments` when its directory is opened; the listing sends
  `filters=[]` (or the profile's filter), since OpenProject's default shows open work
  packages only.
- Content is `/attachments/{id}/content`: the bytes (local storage) or a 302 to a signed
  URL of the object store, which the HTTP client follows without credentials and reuses
  for `REDIRECT_REUSE` seconds (an expired one is asked for again).
- Only attachments whose `status` says the bytes may be read (`READABLE`) are listed: a
  file pending a virus scan or quarantined has no bytes to offer.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from trackerfs.backends.base import Tracker, UploadSource
from trackerfs.backends.http import Answer, Credentials, HttpClient, decode_json, describe_generic_error
from trackerfs.backends.multipart import FieldPart, FilePart, MultipartBody
from trackerfs.backends.records import attachment_size, expect_dict, expect_list, iso_time, records
from trackerfs.config import BackendOptions, Profile, ProfileKey
from trackerfs.errors import BadResponseError, ConfigError, NotFoundError, TooLargeError, TrackerError
from trackerfs.model import Account, Attachment, Issue, Limits, Permissions, Project

log = logging.getLogger(__name__)

API = "/api/v3"
#: The user name of Basic auth with an API token: literally `apikey`.
APIKEY_USER = "apikey"
DEFAULT_PAGE_SIZE = 100
#: A bound on pages per listing, against a server whose `nextByOffset` never ends.
MAX_PAGES = 10_000
#: Seconds a signed storage URL from a 302 serves further ranges of its download: well
#: inside the lifetime OpenProject gives it; an expired one is asked for again anyway.
REDIRECT_REUSE = 30.0
#: Attachment statuses whose bytes can be read: `uploaded`, and `scanned` (a virus scan
#: found nothing). `prepared` (a direct upload not finished), `quarantined` and `rescan`
#: have nothing to offer yet, or never will.
READABLE = frozenset({"uploaded", "scanned"})
ERROR_URN = "urn:openproject-org:api:v3:errors:"
#: How OpenProject words a 422 for a file over `maximumAttachmentFileSize`.
TOO_LARGE = re.compile(r"too large", re.IGNORECASE)
#: A semantic work package id (`DEMO-42`) or a numeric one: what a directory lookup takes.
WORK_PACKAGE_REF = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[1-9][0-9]*|[1-9][0-9]*")


class OpenProjectTracker(Tracker):
    """An OpenProject instance as projects → work packages → attachments."""

    name: ClassVar[str] = "openproject"
    issue_noun: ClassVar[str] = "work package"
    profile_keys: ClassVar[Mapping[str, ProfileKey]] = {
        "auth": ProfileKey(
            str,
            "basic",
            "basic: `apikey` and the API token; bearer: `Authorization: Bearer` with the token",
            choices=("basic", "bearer"),
        ),
        "filters": ProfileKey(
            str, "", "an OpenProject filter array (JSON) for every work package listing; empty: all"
        ),
        "page_size": ProfileKey(int, DEFAULT_PAGE_SIZE, "pageSize of each listing page", low=1, high=1000),
        "range_requests": ProfileKey(
            bool,
            True,
            "whether the instance honours Range on content; false: each attachment is downloaded once, whole",
        ),
    }

    def __init__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.filters = listing_filters(profile.name, options.text("filters"))
        self.page_size = options.whole("page_size")
        self.range_requests = options.flag("range_requests")
        self.max_issues = profile.max_issues
        self.site = profile.url.rstrip("/")
        self.http = HttpClient.for_profile(
            profile,
            credentials=Credentials.from_secret(profile.secret, partial(authorization, options.text("auth"))),
            headers={"Accept": "application/hal+json, application/json"},
            describe_error=describe_error,
            classify=classify_answer,
            location_ttl=REDIRECT_REUSE,
            transport=transport,
        )
        #: project id → identifier, for work packages found without their project
        self._identifiers: dict[str, str] = {}
        #: the signed-in user's id, as attachment author links name it (set by check_account)
        self.account_id = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def check_account(self) -> Account:
        body = expect_dict(await self.http.get_json(f"{API}/users/me"), "users/me")
        self.account_id = str(body.get("id", ""))
        return Account(id=self.account_id, name=str(body.get("name") or body.get("login") or ""))

    async def list_projects(self) -> list[Project]:
        projects: list[Project] = []
        async for batch in self._pages(f"{API}/projects", {"sortBy": '[["id","asc"]]'}):
            projects.extend(self._project(item) for item in records(batch, "project", ("id", "identifier")))
        return projects

    async def list_issues(self, project: Project) -> list[Issue]:
        params = {"filters": self.filters, "sortBy": '[["id","asc"]]'}
        path = f"{API}/projects/{quote(project.id, safe='')}/work_packages"
        issues: list[Issue] = []
        async for batch in self._pages(path, params):
            for item in records(batch, "work package", ("id",)):
                issues.append(self._issue(item, project.key))
                if self.max_issues and len(issues) >= self.max_issues:
                    return issues
        return issues

    async def _pages(self, path: str, params: dict[str, Any]) -> AsyncIterator[list[Any]]:
        """The elements of each page of a collection, following `nextByOffset`."""
        url: str = path
        query: dict[str, Any] | None = {**params, "offset": 1, "pageSize": self.page_size}
        for _ in range(MAX_PAGES):
            page = expect_dict(await self.http.get_json(url, params=query), "collection page")
            batch = expect_list(embedded(page).get("elements", []), "collection elements")
            yield batch
            following = link_href(page, "nextByOffset")
            if not batch or following is None:
                return
            url, query = self.http.on_own_origin(following), None

    async def get_issue(self, project: Project, key: str) -> Issue:
        body = await self._work_package(key)
        # A semantic id of a work package moved away answers under the new project.
        if project.id and link_id(body, "project") != project.id:
            raise NotFoundError(f"{key} belongs to another project")
        return self._issue(body, project.key)

    async def get_issue_by_reference(self, reference: str) -> Issue:
        """The work package by its numeric id (what `locator` keeps) or its semantic id."""
        body = await self._work_package(reference)
        return self._issue(body, await self._identifier(link_id(body, "project")))

    async def _work_package(self, reference: str) -> dict[str, Any]:
        path = f"{API}/work_packages/{quote(reference, safe='')}"
        return expect_dict(await self.http.get_json(path), "work package")

    async def _identifier(self, project_id: str) -> str:
        """A project's identifier by its id (one request the first time)."""
        if not project_id:
            return ""
        known = self._identifiers.get(project_id)
        if known is None:
            body = expect_dict(
                await self.http.get_json(f"{API}/projects/{quote(project_id, safe='')}"), "project"
            )
            known = self._identifiers[project_id] = str(body.get("identifier") or project_id)
        return known

    def locator(self, issue: Issue) -> str:
        """The numeric id: it never changes, a semantic id does when the package moves."""
        return issue.id or issue.key

    def issue_reference(self, project: Project, name: str) -> str | None:
        """`DEMO-42` (semantic id) or `42` (numeric id); anything else costs no request."""
        return name if WORK_PACKAGE_REF.fullmatch(name) else None

    def project_reference(self, name: str) -> str | None:
        """An identifier in any case (`DEMO` finds `demo`: identifiers are lower case) or an id."""
        return name.lower()

    async def list_attachments(self, issue: Issue) -> list[Attachment]:
        path = f"{API}/work_packages/{quote(issue.id, safe='')}/attachments"
        body = expect_dict(await self.http.get_json(path), "attachments")
        return self._attachments(body, issue.key)

    def open_range(
        self, attachment: Attachment, start: int, stop: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.http.stream_range(content_path(attachment), start, stop, total=attachment.size)

    def honours_range(self, attachment: Attachment) -> bool:
        # Local storage may or may not honour Range (the web server in front decides): the
        # profile can say so up front, else the first answer that comes back whole does.
        return self.range_requests and self.http.honours_range(content_path(attachment))

    async def limits(self) -> Limits:
        body = expect_dict(await self.http.get_json(f"{API}/configuration"), "configuration")
        limit = body.get("maximumAttachmentFileSize")
        valid = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
        return Limits(upload_limit=limit if valid else None)

    async def permissions(self, issue: Issue) -> Permissions:
        """What the work package's links say: OpenProject renders `addAttachment` only where
        the user may add, and an attachment's `delete` only where the user may delete it."""
        body = await self._work_package(issue.id)
        attached = embedded(body).get("attachments")
        elements = embedded(attached).get("elements", []) if isinstance(attached, dict) else []
        own: list[bool] = []
        others: list[bool] = []
        for item in records(expect_list(elements, "attachments"), f"attachment of {issue.key}", ("id",)):
            mine = bool(self.account_id) and link_id(item, "author") == self.account_id
            (own if mine else others).append(link_href(item, "delete") is not None)
        return Permissions(
            create=link_href(body, "addAttachment") is not None,
            delete_own=all(own) if own else None,
            delete_any=all(others) if others else None,
            account=self.account_id,
        )

    async def upload(self, issue: Issue, filename: str, size: int, source: UploadSource) -> Attachment:
        """One multipart POST: the `metadata` JSON part first, then `file` (as documented)."""
        metadata = json.dumps({"fileName": filename}, ensure_ascii=False).encode("utf-8", "surrogateescape")
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        response = await self.http.request(
            "POST",
            f"{API}/work_packages/{quote(issue.id, safe='')}/attachments",
            body=MultipartBody(
                [
                    FieldPart("metadata", metadata, "application/json"),
                    FilePart("file", filename, size, source, mime),
                ]
            ),
            idempotent=False,
        )
        body = expect_dict(decode_json(response), "upload response")
        if body.get("id") in (None, ""):
            raise BadResponseError(f"upload of {filename!r} to {issue.key}: no attachment id in the answer")
        return self._attachment(body)

    async def delete(self, issue: Issue, attachment: Attachment) -> None:
        await self.http.request("DELETE", f"{API}/attachments/{quote(attachment.id, safe='')}")

    # -- records ------------------------------------------------------------------------

    def _project(self, item: dict[str, Any]) -> Project:
        ident, identifier = str(item["id"]), str(item["identifier"])
        self._identifiers[ident] = identifier
        return Project(
            key=identifier,
            name=str(item.get("name") or identifier),
            id=ident,
            web_url=f"{self.site}/projects/{quote(identifier)}",
            label=identifier,
        )

    def _issue(self, item: dict[str, Any], project_key: str) -> Issue:
        ident = str(item["id"])
        display = str(item.get("displayId") or ident)
        attached = embedded(item).get("attachments")
        return Issue(
            key=display,
            id=ident,
            project_key=project_key,
            summary=str(item.get("subject") or ""),
            created=iso_time(item.get("createdAt")),
            updated=iso_time(item.get("updatedAt")),
            web_url=f"{self.site}/work_packages/{quote(display)}",
            attachments=tuple(self._attachments(attached, display)) if isinstance(attached, dict) else None,
            label=display,
        )

    def _attachments(self, collection: dict[str, Any], issue_key: str) -> list[Attachment]:
        raw = expect_list(embedded(collection).get("elements", []), f"attachments of {issue_key}")
        kept = []
        for item in records(raw, f"attachment of {issue_key}", ("id",)):
            status = str(item.get("status") or "uploaded")
            if status not in READABLE:
                log.info("%s: attachment %s is %s, not readable; left out", issue_key, item["id"], status)
                continue
            try:
                kept.append(self._attachment(item))
            except BadResponseError as exc:
                log.warning("skipping an attachment of %s: %s", issue_key, exc)
        return kept

    def _attachment(self, item: dict[str, Any]) -> Attachment:
        ident = str(item["id"])
        # The spec's example says `filesize`; its schema and the servers say `fileSize`.
        size = attachment_size(item.get("fileSize", item.get("filesize", 0)), f"attachment {ident}: fileSize")
        author = links(item).get("author")
        checksum = checksum_of(item.get("digest"))
        return Attachment(
            id=ident,
            filename=str(item.get("fileName") or item.get("title") or ""),
            size=size,
            created=iso_time(item.get("createdAt")),
            mime_type=str(item.get("contentType") or "application/octet-stream"),
            author=str(author.get("title") or "") if isinstance(author, dict) else "",
            author_id=link_id(item, "author"),
            web_url=f"{self.site}{API}/attachments/{quote(ident)}/content",
            content_url=link_href(item, "staticDownloadLocation") or "",
            checksum=checksum,
            attributes=(("md5", checksum.removeprefix("md5:")),) if checksum else (),
        )


def listing_filters(profile: str, text: str) -> str:
    """The `filters` parameter of every listing: the profile's array, else `[]` (all)."""
    if not text.strip():
        return "[]"
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"profile {profile!r}: filters is not JSON ({exc})") from None
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise ConfigError(f'profile {profile!r}: filters must be a JSON array like [{{"status": …}}]')
    return json.dumps(parsed, separators=(",", ":"))


def content_path(attachment: Attachment) -> str:
    """The attachment's content path on the instance (its `staticDownloadLocation`)."""
    return f"{API}/attachments/{quote(attachment.id, safe='')}/content"


def embedded(resource: dict[str, Any]) -> dict[str, Any]:
    """A HAL resource's `_embedded` object ({} when absent or malformed)."""
    value = resource.get("_embedded")
    return value if isinstance(value, dict) else {}


def links(resource: dict[str, Any]) -> dict[str, Any]:
    """A HAL resource's `_links` object ({} when absent or malformed)."""
    value = resource.get("_links")
    return value if isinstance(value, dict) else {}


def link_href(resource: dict[str, Any], name: str) -> str | None:
    """The `href` of the link `name`, or None when there is none (HAL writes null)."""
    found = links(resource).get(name)
    href = found.get("href") if isinstance(found, dict) else None
    return href if isinstance(href, str) and href else None


def link_id(resource: dict[str, Any], name: str) -> str:
    """The id at the end of the link `name` (`/api/v3/projects/7` → `7`), "" without one."""
    href = link_href(resource, name)
    return href.rstrip("/").rpartition("/")[2] if href else ""


def checksum_of(digest: Any) -> str:
    """`md5:HEX` from `{"algorithm": "md5", "hash": HEX}` (or a bare hex md5 string)."""
    if isinstance(digest, dict):
        algorithm, value = str(digest.get("algorithm") or "").lower(), digest.get("hash")
    elif isinstance(digest, str):
        algorithm, value = "md5", digest
    else:
        return ""
    if algorithm != "md5" or not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return ""
    return f"md5:{value.lower()}"


def authorization(scheme: str, token: str) -> dict[str, str]:
    """Basic `apikey:TOKEN`, or Bearer TOKEN."""
    if scheme == "basic":
        pair = base64.b64encode(f"{APIKEY_USER}:{token}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    return {"Authorization": f"Bearer {token}"}


def error_identifier(body: Any) -> str:
    """The short name of an error body's `errorIdentifier` (`MissingPermission`), or ""."""
    if not isinstance(body, dict):
        return ""
    value = str(body.get("errorIdentifier") or "")
    return value[len(ERROR_URN) :] if value.startswith(ERROR_URN) else value


def describe_error(response: httpx.Response) -> str:
    """The message of an `_type: Error` body (every message of a `MultipleErrors` one)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return describe_generic_error(response)
    if not isinstance(body, dict) or body.get("_type") != "Error":
        return describe_generic_error(response)
    nested = embedded(body).get("errors")
    if isinstance(nested, list):
        messages = [str(item["message"]) for item in nested if isinstance(item, dict) and item.get("message")]
        if messages:
            return "; ".join(messages)
    return str(body.get("message") or response.reason_phrase)


def classify_answer(answer: Answer) -> TrackerError | None:
    """A 422 saying the file is too large is EFBIG; the status table covers the rest."""
    if answer.status == 422:
        body = answer.json()
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
        if TOO_LARGE.search(message) or TOO_LARGE.search(answer.message):
            return TooLargeError(f"{answer.message} (over the instance's attachment size limit)", status=422)
    return None
