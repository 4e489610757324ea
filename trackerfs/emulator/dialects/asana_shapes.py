"""Asana's JSON records and the ``opt_fields`` selection over them.

Every resource is built whole (every field the emulator knows), then cut down: to the
compact fields Asana sends by default, or with ``opt_fields`` to ``gid`` plus the fields
asked for, dotted paths (``parent.name``) reaching into nested records as Asana allows.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from trackerfs.emulator.store import Attachment, Issue, Project, Space, User

#: where the real service's web pages live (``permalink_url``, ``permanent_url``)
APP_URL = "https://app.asana.com"
#: the fields a record has when ``opt_fields`` is not given
COMPACT: dict[str, tuple[str, ...]] = {
    "workspace": ("gid", "resource_type", "name"),
    "project": ("gid", "resource_type", "name"),
    "task": ("gid", "resource_type", "name", "resource_subtype"),
    "attachment": ("gid", "resource_type", "name", "resource_subtype"),
    "user": ("gid", "resource_type", "name"),
}
#: every top-level field a record of each kind may have (``opt_fields`` may name only these;
#: one a record lacks, like an external attachment's ``size``, is left out, as Asana does)
KNOWN: dict[str, frozenset[str]] = {
    "workspace": frozenset({"gid", "resource_type", "name", "is_organization", "email_domains"}),
    "user": frozenset({"gid", "resource_type", "name", "email", "workspaces"}),
    "project": frozenset({"gid", "resource_type", "name", "archived", "notes", "permalink_url", "workspace"}),
    "task": frozenset(
        {
            "gid",
            "resource_type",
            "name",
            "resource_subtype",
            "created_at",
            "modified_at",
            "completed",
            "completed_at",
            "notes",
            "num_subtasks",
            "parent",
            "projects",
            "workspace",
            "permalink_url",
        }
    ),
    "attachment": frozenset(
        {
            "gid",
            "resource_type",
            "name",
            "resource_subtype",
            "created_at",
            "download_url",
            "permanent_url",
            "host",
            "parent",
            "size",
            "view_url",
            "connected_to_app",
        }
    ),
}
#: ``opt_fields`` names that select parts of ``next_page`` rather than of a record
PAGING_FIELDS = frozenset({"offset", "path", "uri"})
#: the host an external attachment's URL belongs to → Asana's ``host`` and subtype
HOSTS = {
    "dropbox.com": "dropbox",
    "www.dropbox.com": "dropbox",
    "drive.google.com": "gdrive",
    "docs.google.com": "gdrive",
    "onedrive.live.com": "onedrive",
    "1drv.ms": "onedrive",
    "app.box.com": "box",
    "box.com": "box",
    "vimeo.com": "vimeo",
}
#: hosts whose attachments Asana gives no ``download_url`` (the spec: Box, Vimeo)
NO_DOWNLOAD = frozenset({"box", "vimeo"})

Record = dict[str, Any]


class OptFieldsError(ValueError):
    """An ``opt_fields`` entry names no field of the resource."""


def asana_time(moment: datetime) -> str:
    """``2012-02-22T02:06:58.147Z``: UTC with milliseconds, as Asana writes times."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def user_gid(user: User) -> str:
    """A stable numeric gid for a store user (the store's account ids are Jira's)."""
    digest = int(hashlib.sha256(user.account_id.encode()).hexdigest()[:12], 16)
    return str(1_100_000_000_000_000 + digest % 100_000_000_000_000)


def external_host(url: str) -> str:
    """Asana's ``host`` for an external attachment's URL (``external`` when unknown)."""
    return HOSTS.get((urlsplit(url).hostname or "").lower(), "external")


def workspace_record(space: Space) -> Record:
    """A workspace."""
    return {
        "gid": space.id,
        "resource_type": "workspace",
        "name": space.name,
        "is_organization": False,
        "email_domains": ["example.com"],
    }


def user_record(user: User, workspaces: list[Space]) -> Record:
    """A user, with the workspaces the token sees."""
    return {
        "gid": user_gid(user),
        "resource_type": "user",
        "name": user.display_name,
        "email": user.email,
        "workspaces": [select(workspace_record(w), "workspace") for w in workspaces],
    }


def project_record(project: Project, workspace: Space) -> Record:
    """A project of ``workspace``."""
    return {
        "gid": project.id,
        "resource_type": "project",
        "name": project.name,
        "archived": False,
        "notes": "",
        "permalink_url": f"{APP_URL}/1/{workspace.id}/project/{project.id}",
        "workspace": select(workspace_record(workspace), "workspace"),
    }


def task_record(
    issue: Issue,
    *,
    projects: list[Project],
    workspace: Space,
    parent: Issue | None,
    subtasks: int,
) -> Record:
    """A task; ``projects`` are the ones it is in (none for a plain subtask)."""
    home = projects[0].id if projects else None
    page = f"/project/{home}/task/{issue.id}" if home else f"/task/{issue.id}"
    return {
        "gid": issue.id,
        "resource_type": "task",
        "name": issue.summary,
        "resource_subtype": "default_task",
        "created_at": asana_time(issue.created),
        "modified_at": asana_time(issue.updated),
        "completed": issue.completed is not None,
        "completed_at": asana_time(issue.completed) if issue.completed else None,
        "notes": "",
        "num_subtasks": subtasks,
        "parent": None if parent is None else task_compact(parent),
        "projects": [{"gid": p.id, "resource_type": "project", "name": p.name} for p in projects],
        "workspace": select(workspace_record(workspace), "workspace"),
        "permalink_url": f"{APP_URL}/1/{workspace.id}{page}",
    }


def task_compact(issue: Issue) -> Record:
    """The compact task nested in other records (an attachment's or a subtask's parent)."""
    return {
        "gid": issue.id,
        "resource_type": "task",
        "name": issue.summary,
        "resource_subtype": "default_task",
    }


def attachment_record(attachment: Attachment, parent: Issue, download_url: str | None) -> Record:
    """An attachment: a file held by Asana (``asana``) or a link to another service."""
    asset = f"{APP_URL}/app/asana/-/get_asset?asset_id={attachment.id}"
    record: Record = {
        "gid": attachment.id,
        "resource_type": "attachment",
        "name": attachment.filename,
        "created_at": asana_time(attachment.created),
        "parent": task_compact(parent),
        "connected_to_app": False,
    }
    if attachment.external_url is None:
        record |= {
            "resource_subtype": "asana",
            "host": "asana",
            "size": attachment.size,
            "download_url": download_url,
            "permanent_url": asset,
            "view_url": download_url,
        }
    else:
        host = external_host(attachment.external_url)
        record |= {
            "resource_subtype": host,
            "host": host,
            "download_url": None if host in NO_DOWNLOAD else attachment.external_url,
            "permanent_url": attachment.external_url,
            "view_url": attachment.external_url,
        }
    return record


def parse_opt_fields(value: str | None) -> list[str] | None:
    """The fields of an ``opt_fields`` parameter; ``None`` when absent or empty."""
    if value is None:
        return None
    fields = [name.strip() for name in value.split(",") if name.strip()]
    return fields or None


def select(record: Record, kind: str, fields: list[str] | None = None) -> Record:
    """The compact form of ``record``, or ``gid`` plus ``fields``; raises OptFieldsError."""
    if fields is None:
        return {name: record[name] for name in COMPACT[kind] if name in record}
    chosen: Record = {"gid": record["gid"]}
    for name in fields:
        if name in PAGING_FIELDS:
            continue
        if name.partition(".")[0] not in KNOWN[kind]:
            raise OptFieldsError(name)
        _pick(record, chosen, name.split("."), name)
    return chosen


def _pick(source: Record, target: Record, path: list[str], field: str) -> None:
    head, rest = path[0], path[1:]
    if head not in source:
        return
    value = source[head]
    if not rest or value is None:
        target[head] = value
        return
    if isinstance(value, list):
        items = target.setdefault(head, [{"gid": item["gid"]} for item in value])
        for item, chosen in zip(value, items, strict=True):
            _pick(item, chosen, rest, field)
    elif isinstance(value, dict):
        _pick(value, target.setdefault(head, {"gid": value["gid"]}), rest, field)
    else:
        raise OptFieldsError(field)
