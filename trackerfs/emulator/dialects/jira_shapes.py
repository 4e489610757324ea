"""Jira's JSON shapes: users, projects, issues and attachments as REST v2/v3 render them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from trackerfs.emulator.store import Attachment, Issue, Project, Store, User

ALL_FIELDS = frozenset({"summary", "created", "updated", "project", "attachment"})
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: ``2026-01-05T10:00:00.000+0000``."""
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}"
        + (moment.strftime("%z") or "+0000")
    )


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


def secure_name(attachment: Attachment) -> str:
    """The file name as a path segment of Data Center's ``/secure/attachment/{id}/{name}``."""
    return quote(attachment.filename, safe="", errors="surrogateescape")


@dataclass(frozen=True, slots=True)
class Shapes:
    """Renders store records for one request: the base URL the client used, the API version."""

    base: str
    version: str

    @property
    def api(self) -> str:
        """The REST root of this version."""
        return f"{self.base}/rest/api/{self.version}"

    @property
    def data_center(self) -> bool:
        """REST v2 is what Data Center speaks; its URLs differ from Cloud's."""
        return self.version == "2"

    def avatars(self, kind: str, ident: str) -> dict[str, str]:
        """avatarUrls in the four sizes Jira lists."""
        return {
            f"{n}x{n}": f"{self.base}/secure/{kind}avatar?size={n}&id={quote(ident)}"
            for n in (48, 24, 16, 32)
        }

    def user(self, user: User) -> dict[str, Any]:
        """A User (Cloud's accountId; Data Center's name and key too)."""
        body: dict[str, Any] = {
            "self": f"{self.api}/user?accountId={quote(user.account_id)}",
            "accountId": user.account_id,
            "emailAddress": user.email,
            "avatarUrls": self.avatars("user", user.account_id),
            "displayName": user.display_name,
            "active": True,
            "timeZone": "UTC",
            "accountType": "atlassian",
        }
        if self.data_center:
            body["name"] = body["key"] = user.email
        return body

    def project(self, project: Project) -> dict[str, Any]:
        """A Project."""
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
        """Cloud's content endpoint, or Data Center's ``/secure/attachment`` URL."""
        if self.data_center:
            return f"{self.base}/secure/attachment/{attachment.id}/{secure_name(attachment)}"
        return f"{self.api}/attachment/content/{attachment.id}"

    def thumbnail_url(self, attachment: Attachment) -> str:
        """Where the thumbnail of an image is."""
        if self.data_center:
            return f"{self.base}/secure/thumbnail/{attachment.id}/{secure_name(attachment)}"
        return f"{self.api}/attachment/thumbnail/{attachment.id}"

    def attachment(self, attachment: Attachment, *, metadata: bool = False) -> dict[str, Any]:
        """An Attachment (in search and upload answers) or, with ``metadata``, AttachmentMetadata."""
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
            body["thumbnail"] = self.thumbnail_url(attachment)
        if metadata:
            body["properties"] = {}
        return body

    def issue(self, store: Store, issue: Issue, fields: frozenset[str]) -> dict[str, Any]:
        """An IssueBean with the requested ``fields``."""
        values: dict[str, Any] = {}
        if "summary" in fields:
            values["summary"] = issue.summary
        if "created" in fields:
            values["created"] = jira_time(issue.created)
        if "updated" in fields:
            values["updated"] = jira_time(issue.updated)
        if "project" in fields:
            values["project"] = self.project(store.project_of(issue))
        if "attachment" in fields:
            # Jira has no link attachments; every attachment of an issue has bytes.
            values["attachment"] = [
                self.attachment(a) for a in store.attachments_of(issue.id) if not a.is_external
            ]
        return {
            "expand": ISSUE_EXPAND,
            "id": issue.id,
            "self": f"{self.api}/issue/{issue.id}",
            "key": issue.key,
            "fields": values,
        }
