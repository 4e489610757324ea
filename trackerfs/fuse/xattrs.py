"""What `user.trackerfs.*` extended attributes show: the presentation of a node's records.

Files show their attachment's metadata (or a local file's state), issue and project
directories their tracker ids, keys and links, and the root the tracker's name and how
many nodes the mount holds in memory (`nodes`, which falls back as the kernel forgets).
"""

from __future__ import annotations

from datetime import UTC, datetime

from trackerfs.core.namespace import (
    AttachmentEntry,
    IssueEntry,
    LocalEntry,
    Namespace,
    Node,
    ProjectEntry,
    RootEntry,
)
from trackerfs.core.spool import LocalFile
from trackerfs.model import Attachment, Issue, Project

PREFIX = "user.trackerfs."


def values(namespace: Namespace, node: Node) -> dict[str, str]:
    """The attribute values of a node by short name (`id`, `url`, …); empty ones left out."""
    entry = node.entry
    if isinstance(entry, AttachmentEntry):
        shown = attachment_values(entry.attachment, entry.issue)
    elif isinstance(entry, LocalEntry):
        shown = local_values(entry.local, entry.issue)
    elif isinstance(entry, IssueEntry):
        shown = issue_values(entry.issue)
    elif isinstance(entry, ProjectEntry):
        shown = project_values(entry.project)
    else:
        assert isinstance(entry, RootEntry)
        shown = {"tracker": namespace.tracker_name, "nodes": str(namespace.statistics().nodes)}
    return {key: value for key, value in shown.items() if value}


def attachment_values(item: Attachment, issue: Issue) -> dict[str, str]:
    """An attachment's metadata, as the tracker gave it, then the vendor's own facts."""
    shown = {
        "id": item.id,
        "url": item.web_url,
        "mime_type": item.mime_type,
        "author": item.author,
        "created": iso_time(item.created),
        "size": str(item.size),
        "original_name": item.filename,
        "issue": issue.key,
        "checksum": item.checksum,
    }
    for name, value in item.attributes:
        shown.setdefault(name, value)
    return shown


def local_values(local: LocalFile, issue: Issue) -> dict[str, str]:
    """A local file: whether it will be uploaded, and its size."""
    state = "temporary" if local.temporary else "not uploaded" if local.dirty else "local"
    return {"state": state, "size": str(local.size), "issue": issue.key}


def issue_values(issue: Issue) -> dict[str, str]:
    """An issue directory: its ids, link and summary."""
    return {
        "id": issue.id,
        "key": issue.key,
        "url": issue.web_url,
        "summary": issue.summary,
        "created": iso_time(issue.created) if issue.created else "",
    }


def project_values(project: Project) -> dict[str, str]:
    """A project directory: its ids, name and link."""
    return {"id": project.id, "key": project.key, "name": project.name, "url": project.web_url}


def iso_time(timestamp: float) -> str:
    """An ISO 8601 UTC time with seconds, e.g. `2026-01-05T10:00:00Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
