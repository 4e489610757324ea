"""Backend-neutral records: what every tracker is reduced to.

Backends build these from vendor JSON; the core and the FUSE layer read them. They carry
no I/O and no vendor knowledge beyond opaque ids and URLs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Project:
    """A project (Jira project, Asana project, Yandex queue, …): a top-level directory."""

    key: str
    name: str
    id: str
    web_url: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment: immutable bytes named by `id`.

    `created` is seconds since the epoch. `content_url` is whatever the backend needs to
    fetch the bytes; the core treats it as opaque.
    """

    id: str
    filename: str
    size: int
    created: float
    mime_type: str = "application/octet-stream"
    author: str = ""
    web_url: str = ""
    content_url: str = ""
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class Issue:
    """An issue (Jira issue, Asana task, …): a directory of attachments.

    `attachments` is None when the listing that produced the issue did not embed them
    (the core then asks the backend for them separately).
    """

    key: str
    id: str
    project_key: str
    summary: str = ""
    created: float = 0.0
    updated: float = 0.0
    web_url: str = ""
    attachments: tuple[Attachment, ...] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What the tracker allows for attachments."""

    enabled: bool = True
    upload_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """Who the credentials belong to (checked once at mount time)."""

    id: str
    name: str
