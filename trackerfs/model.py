"""Backend-neutral records: what every tracker is reduced to.

Backends build these from vendor JSON; the core and the FUSE layer read them. They carry
no I/O and no vendor knowledge beyond opaque ids and URLs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Project:
    """A project (Jira project, Asana project, Yandex queue, …): a top-level directory.

    `id` is the vendor's stable id (what the mount keys the directory by); `key` the
    vendor's short reference where it has one; `label` the directory's name before
    sanitising and de-duplication ("": the key).
    """

    key: str
    name: str
    id: str
    web_url: str = ""
    label: str = ""

    @property
    def display(self) -> str:
        """What the directory is called (before sanitising): the label, else the key."""
        return self.label or self.key


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
    #: the author's account id as `Account.id` writes it ("" when the tracker does not say)
    author_id: str = ""
    #: the tracker says this attachment cannot be deleted (so not replaced either)
    read_only: bool = False
    #: vendor facts shown as extended attributes, `(name, value)`: `("md5", HEX)` shows as
    #: `user.trackerfs.md5`; names the core shows itself (`id`, `size`, …) are not replaced
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Issue:
    """An issue (Jira issue, Asana task, …): a directory of attachments.

    `attachments` is None when the listing that produced the issue did not embed them
    (the core then asks the backend for them separately). `id` is the vendor's stable id
    (a moved Jira issue changes its key, not its id); `label` the directory's name before
    sanitising and de-duplication ("": the key).
    """

    key: str
    id: str
    project_key: str
    summary: str = ""
    created: float = 0.0
    updated: float = 0.0
    web_url: str = ""
    attachments: tuple[Attachment, ...] | None = None
    label: str = ""

    @property
    def display(self) -> str:
        """What the directory is called (before sanitising): the label, else the key."""
        return self.label or self.key


@dataclass(frozen=True, slots=True)
class Limits:
    """What the tracker allows for attachments."""

    enabled: bool = True
    upload_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Permissions:
    """What the account may do with the attachments of one issue; None: cannot tell.

    Trackers grant deleting one's own attachments and deleting anyone's separately;
    `account` (the signed-in account's id) tells the account's own attachments apart.
    """

    create: bool | None = None
    delete_own: bool | None = None
    delete_any: bool | None = None
    account: str = ""

    def may_delete(self, attachment: Attachment) -> bool | None:
        """Whether the account may delete `attachment` (None: the tracker cannot tell)."""
        if self.delete_any:
            return True
        own = attachment.author_id == self.account if attachment.author_id and self.account else None
        if self.delete_own and own:
            return True
        if self.delete_any is False and (self.delete_own is False or own is False):
            return False
        return None


@dataclass(frozen=True, slots=True)
class Account:
    """Who the credentials belong to (checked once at mount time)."""

    id: str
    name: str
