"""OpenProject's HAL+JSON shapes: resources, collections, page links and error bodies.

Everything here is pure rendering of store records; the routes and their rules are in
``openproject.py``. Links are paths below the instance (``/api/v3/…``) as OpenProject
writes them, except a remote-storage ``downloadLocation``, which is an absolute URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from trackerfs.emulator.responses import AsciiJSONResponse
from trackerfs.emulator.store import Attachment, AttachmentState, Issue, Project, Store, User

API = "/api/v3"
HAL_JSON = "application/hal+json"
ERROR_URN = "urn:openproject-org:api:v3:errors:"

#: The error identifier OpenProject uses for each status it answers with.
IDENTIFIERS: Mapping[int, str] = {
    400: "InvalidRequestBody",
    401: "Unauthenticated",
    403: "MissingPermission",
    404: "NotFound",
    405: "NotFound",
    406: "MissingContentType",
    409: "UpdateConflict",
    415: "TypeNotSupported",
    422: "PropertyConstraintViolation",
    429: "TooManyRequests",
}

#: Statuses a work package can have here: id, name, closed. OpenProject's seeded ids.
OPEN_STATUS = (1, "New", False)
CLOSED_STATUS = (12, "Closed", True)
TASK_TYPE = (1, "Task")
NORMAL_PRIORITY = (8, "Normal")


class HalResponse(AsciiJSONResponse):
    """A HAL+JSON body, the media type of every OpenProject answer."""

    media_type = HAL_JSON


def error_body(
    status: int, message: str, *, identifier: str | None = None, attribute: str | None = None
) -> Response:
    """OpenProject's ``_type: Error`` body."""
    name = identifier or IDENTIFIERS.get(status, "InternalServerError" if status >= 500 else "BadRequest")
    body: dict[str, Any] = {"_type": "Error", "errorIdentifier": ERROR_URN + name, "message": message}
    if attribute is not None:
        body["_embedded"] = {"details": {"attribute": attribute}}
    return HalResponse(body, status_code=status)


def op_time(moment: datetime) -> str:
    """OpenProject's timestamps: UTC with milliseconds and ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def user_number(user: User) -> int:
    """A stable integer id for a user (OpenProject user ids are integers)."""
    return int(hashlib.sha256(user.account_id.encode()).hexdigest()[:7], 16) + 1


def link(href: str | None, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """A HAL link; resource links carry the resource's title, as OpenProject's do."""
    made: dict[str, Any] = {"href": href}
    if title is not None:
        made["title"] = title
    made.update(extra)
    return made


def user_link(user: User) -> dict[str, Any]:
    """The link to a user, titled with the user's name."""
    return link(f"{API}/users/{user_number(user)}", user.display_name)


def user(user: User, created: datetime) -> dict[str, Any]:
    """A User resource."""
    first, _, last = user.display_name.partition(" ")
    return {
        "_type": "User",
        "id": user_number(user),
        "name": user.display_name,
        "login": user.email,
        "firstName": first,
        "lastName": last,
        "email": user.email,
        "admin": False,
        "status": "active",
        "language": "en",
        "createdAt": op_time(created),
        "updatedAt": op_time(created),
        "_links": {"self": user_link(user), "showUser": link(f"/users/{user_number(user)}")},
    }


def project(item: Project, created: datetime) -> dict[str, Any]:
    """A Project resource; its ``identifier`` is the store key in lower case."""
    path = f"{API}/projects/{item.id}"
    return {
        "_type": "Project",
        "id": int(item.id),
        "identifier": item.key.lower(),
        "name": item.name,
        "active": True,
        "public": False,
        "description": {"format": "markdown", "raw": "", "html": ""},
        "statusExplanation": {"format": "markdown", "raw": "", "html": ""},
        "createdAt": op_time(created),
        "updatedAt": op_time(created),
        "_links": {
            "self": link(path, item.name),
            "categories": link(f"{path}/categories"),
            "types": link(f"{path}/types"),
            "versions": link(f"{path}/versions"),
            "memberships": link(f"{API}/memberships?filters=" + _project_filter(item.id)),
            "workPackages": link(f"{path}/work_packages"),
            "parent": link(None),
            "ancestors": [],
        },
    }


def _project_filter(project_id: str) -> str:
    return f'[{{"project":{{"operator":"=","values":["{project_id}"]}}}}]'


@dataclass(frozen=True, slots=True)
class Renderer:
    """Renders the store for one request: knows the id mode and where content is served."""

    store: Store
    semantic_ids: bool
    author: User
    #: the absolute, signed storage URL of an attachment (remote storage), else None
    storage_url: Callable[[Attachment], str | None] | None = None
    may_add: bool = True
    #: whether the signed-in user may delete an attachment: its ``delete`` link is there
    #: only then, as OpenProject renders it (``cache_if: deletable?(current_user)``)
    may_delete: Callable[[Attachment], bool] = lambda attachment: True

    def display_id(self, issue: Issue) -> str:
        """``PROJ-42`` in semantic mode, the numeric id in classic mode."""
        return issue.key if self.semantic_ids and issue.key else issue.id

    def work_package(self, issue: Issue, *, embed: bool) -> dict[str, Any]:
        """A WorkPackage; the single-resource form embeds its attachments."""
        path = f"{API}/work_packages/{issue.id}"
        home = self.store.project_of(issue)
        status = CLOSED_STATUS if issue.closed else OPEN_STATUS
        links: dict[str, Any] = {
            "self": link(path, issue.summary),
            "schema": link(f"{API}/work_packages/schemas/{home.id}-{TASK_TYPE[0]}"),
            "ancestors": [],
            "attachments": link(f"{path}/attachments"),
            "author": user_link(self.author),
            "assignee": link(None),
            "responsible": link(None),
            "project": link(f"{API}/projects/{home.id}", home.name),
            "status": link(f"{API}/statuses/{status[0]}", status[1]),
            "type": link(f"{API}/types/{TASK_TYPE[0]}", TASK_TYPE[1]),
            "priority": link(f"{API}/priorities/{NORMAL_PRIORITY[0]}", NORMAL_PRIORITY[1]),
            "parent": link(None),
        }
        if issue.parent is not None:
            parent = self.store.issues[issue.parent]
            links["parent"] = link(f"{API}/work_packages/{parent.id}", parent.summary)
            links["ancestors"] = [links["parent"]]
        if self.may_add:
            links["addAttachment"] = link(f"{path}/attachments", method="post")
        body: dict[str, Any] = {
            "_type": "WorkPackage",
            "id": int(issue.id),
            "displayId": self.display_id(issue),
            "lockVersion": 0,
            "subject": issue.summary,
            "description": {"format": "markdown", "raw": "", "html": ""},
            "scheduleManually": True,
            "startDate": None,
            "dueDate": None,
            "derivedStartDate": None,
            "derivedDueDate": None,
            "estimatedTime": None,
            "derivedEstimatedTime": None,
            "percentageDone": None,
            "createdAt": op_time(issue.created),
            "updatedAt": op_time(issue.updated),
            "_links": links,
        }
        if embed:
            body["_embedded"] = {"attachments": self.attachments(issue)}
        return body

    def attachment(self, item: Attachment) -> dict[str, Any]:
        """An Attachment with its md5 digest and its status."""
        issue = self.store.issues[item.issue]
        path = f"{API}/attachments/{item.id}"
        content = f"{path}/content"
        remote = self.storage_url(item) if self.storage_url is not None else None
        quarantined = item.state is AttachmentState.QUARANTINED
        links = {
            "self": link(path, item.filename),
            "author": user_link(item.author),
            "container": link(f"{API}/work_packages/{issue.id}", issue.summary),
            "staticDownloadLocation": link(content),
            "downloadLocation": link(remote or content),
        }
        if self.may_delete(item):
            links["delete"] = link(path, method="delete")
        return {
            "_type": "Attachment",
            "id": int(item.id),
            "title": item.filename,
            "fileName": item.filename,
            "fileSize": item.size,
            "description": {"format": "plain", "raw": "", "html": ""},
            "status": "quarantined" if quarantined else "uploaded",
            "contentType": item.mime_type,
            "digest": {"algorithm": "md5", "hash": item.md5},
            "createdAt": op_time(item.created),
            "_links": links,
        }

    def attachments(self, issue: Issue) -> dict[str, Any]:
        """The unpaged attachment Collection of a work package."""
        items = [self.attachment(a) for a in self.store.attachments_of(issue.id) if not a.is_external]
        return {
            "_type": "Collection",
            "total": len(items),
            "count": len(items),
            "_embedded": {"elements": items},
            "_links": {"self": link(f"{API}/work_packages/{issue.id}/attachments")},
        }


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The paging of one listing request: page number from 1 and the page size in force."""

    page: int
    size: int
    #: the other query parameters, echoed in every page link (filters, sortBy, select)
    query: Mapping[str, str]

    def href(self, path: str, page: int | str, size: int | str) -> str:
        """A page link; parameters sorted and form-encoded as Rails' ``to_query`` does."""
        params = {**self.query, "offset": str(page), "pageSize": str(size)}
        return f"{path}?{urlencode(sorted(params.items()))}"


def paged_collection(
    path: str, kind: str, elements: list[dict[str, Any]], total: int, paging: PageRequest
) -> dict[str, Any]:
    """An offset-paginated Collection: ``nextByOffset`` only while elements follow."""
    links: dict[str, Any] = {
        "self": link(paging.href(path, paging.page, paging.size)),
        "jumpTo": link(paging.href(path, "{offset}", paging.size), templated=True),
        "changeSize": link(paging.href(path, paging.page, "{size}"), templated=True),
    }
    if paging.page > 1:
        links["previousByOffset"] = link(paging.href(path, paging.page - 1, paging.size))
    if paging.page * paging.size < total:
        links["nextByOffset"] = link(paging.href(path, paging.page + 1, paging.size))
    return {
        "_type": kind,
        "total": total,
        "count": len(elements),
        "pageSize": paging.size,
        "offset": paging.page,
        "_embedded": {"elements": elements},
        "_links": links,
    }
