"""The directory tree: inodes, names, lookup counts and the metadata cache.

    /                      Kind.ROOT        the mount point
    PROJ/                  Kind.PROJECT     one per project the account sees
    PROJ/PROJ-1/           Kind.ISSUE       one per issue listed (or looked up by key)
    PROJ/PROJ-1/a.png      Kind.ATTACHMENT  one per attachment

Inode numbers are keyed by what they name (a project key, an issue key, an attachment
id) and never reused while the filesystem is mounted. Listings are cached in TTL caches;
a project listing that embeds attachments fills the attachment listings of all its
issues at once. A name looked up and not found is remembered in a negative cache, so
desktop probes (`.directory`, `Thumbs.db`, …) cost no request while listings are fresh.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import trio
from cachetools import TTLCache

from trackerfs.backends.base import Tracker
from trackerfs.config import CacheSettings
from trackerfs.core.cache import SingleFlight
from trackerfs.core.names import assign_names, numbered, sanitize
from trackerfs.core.spool import LocalFile
from trackerfs.errors import NotFoundError, TrackerError
from trackerfs.model import Attachment, Issue, Permissions, Project

log = logging.getLogger(__name__)

ROOT_INODE = 1
#: How long the tracker's answer about what the account may do on an issue is trusted
#: (at most the metadata TTL): one question per issue for a burst of writes.
PERMISSIONS_TTL = 30.0
T = TypeVar("T")


class Kind(enum.Enum):
    """What a node is."""

    ROOT = "root"
    PROJECT = "project"
    ISSUE = "issue"
    ATTACHMENT = "attachment"
    LOCAL = "local"


@dataclass(slots=True, eq=False)
class Node:
    """One inode: what it names, where it sits, and how many lookups the kernel holds."""

    inode: int
    kind: Kind
    parent: int
    name: str
    project: Project | None = None
    issue: Issue | None = None
    attachment: Attachment | None = None
    local: LocalFile | None = None
    lookups: int = 0
    key: tuple[str, ...] = ()
    #: open file handles of this node (kept by the FUSE layer)
    opens: int = 0
    #: an attachment unlinked while open: its name is gone, it is deleted at the last close
    delete_at_close: Attachment | None = None
    #: attachments to delete once this file is uploaded, besides the one it `replaces`
    #: (what a rename of an overwritten file onto another name left behind)
    supersedes: tuple[Attachment, ...] = ()
    #: serializes turning an attachment into a local file (first writes race)
    change_lock: trio.Lock | None = None

    @property
    def is_dir(self) -> bool:
        """Whether the node is a directory."""
        return self.kind not in (Kind.ATTACHMENT, Kind.LOCAL)

    @property
    def unlinked(self) -> bool:
        """Whether the node lost its name while open (its descriptors still work)."""
        return self.delete_at_close is not None or (self.local is not None and self.local.unlinked)


@dataclass(slots=True)
class NamespaceStatistics:
    """Counters of what the namespace has served."""

    nodes: int
    lookups: int
    negative_hits: int
    listings_fetched: int


class Namespace:
    """Inodes and names over a tracker, with cached listings."""

    def __init__(
        self,
        tracker: Tracker,
        settings: CacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = settings or CacheSettings()
        self._tracker = tracker
        ttl = settings.metadata_ttl
        self._projects: TTLCache[str, dict[str, Project]] = TTLCache(1, ttl, timer=clock)
        self._issues: TTLCache[str, dict[str, Issue]] = TTLCache(4096, ttl, timer=clock)
        self._files: TTLCache[tuple[str, str], dict[str, Attachment]] = TTLCache(65536, ttl, timer=clock)
        self._direct: TTLCache[tuple[str, str], Issue] = TTLCache(4096, ttl, timer=clock)
        self._negative: TTLCache[tuple[int, str], bool] = TTLCache(
            100_000, settings.negative_ttl, timer=clock
        )
        self._project_flights: SingleFlight[str, dict[str, Project]] = SingleFlight()
        self._issue_flights: SingleFlight[str, dict[str, Issue]] = SingleFlight()
        self._file_flights: SingleFlight[tuple[str, str], dict[str, Attachment]] = SingleFlight()
        self._direct_flights: SingleFlight[tuple[str, str], Issue] = SingleFlight()
        self._permissions: TTLCache[tuple[str, str], Permissions] = TTLCache(
            4096, min(PERMISSIONS_TTL, ttl), timer=clock
        )
        self._permission_flights: SingleFlight[tuple[str, str], Permissions] = SingleFlight()
        #: attachments unlinked while open: gone from listings and lookups until deleted
        self._hidden: set[str] = set()
        self._locals: dict[int, dict[str, Node]] = {}
        # Counts uploads and deletes made through the mount: a listing that was asked for
        # before one of them may not show it, and must not replace a newer cached one.
        self._changes = 0
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, Kind.ROOT, ROOT_INODE, "")}
        self._inodes: dict[tuple[str, ...], int] = {}
        self._next_inode = ROOT_INODE + 1
        self._lookups = 0
        self._negative_hits = 0
        self._listings = 0

    # -- nodes and lookup counts ------------------------------------------------------

    def node(self, inode: int) -> Node:
        """The node for an inode the kernel knows; NotFoundError otherwise."""
        try:
            return self._nodes[inode]
        except KeyError:
            raise NotFoundError(f"inode {inode} is not known") from None

    def remember(self, node: Node) -> None:
        """The kernel took one more reference (lookup, create, readdirplus entry)."""
        if node.inode != ROOT_INODE:
            node.lookups += 1

    def forget(self, inode: int, count: int) -> None:
        """The kernel dropped `count` references to `inode`."""
        node = self._nodes.get(inode)
        if node is None or inode == ROOT_INODE:
            return
        node.lookups = max(0, node.lookups - count)
        if node.lookups == 0 and node.kind is Kind.LOCAL and node.local is not None and node.local.unlinked:
            self._drop(node)

    def statistics(self) -> NamespaceStatistics:
        """Counters since the mount."""
        return NamespaceStatistics(len(self._nodes), self._lookups, self._negative_hits, self._listings)

    # -- lookups and listings ---------------------------------------------------------

    async def lookup(self, parent: int, name: str) -> Node:
        """The child `name` of directory `parent`, counted as a kernel reference."""
        self._lookups += 1
        directory = self.node(parent)
        if not directory.is_dir:
            raise NotFoundError(f"{directory.name} is not a directory")
        if (parent, name) in self._negative:
            self._negative_hits += 1
            raise NotFoundError(name)
        try:
            child = await self._find(directory, name)
        except NotFoundError:
            self._negative[(parent, name)] = True
            raise
        self.remember(child)
        return child

    async def find(self, directory: Node, name: str) -> Node | None:
        """The child `name` of `directory` without taking a kernel reference, or None."""
        try:
            return await self._find(directory, name)
        except NotFoundError:
            return None

    async def list_dir(self, inode: int) -> list[Node]:
        """The children of a directory, in a stable order."""
        directory = self.node(inode)
        if directory.kind is Kind.ROOT:
            projects = await self._project_map()
            return [self._project_node(name, project) for name, project in projects.items()]
        if directory.kind is Kind.PROJECT:
            assert directory.project is not None
            issues = await self._issue_map(directory.project)
            return [self._issue_node(directory, name, issue) for name, issue in issues.items()]
        if directory.kind is Kind.ISSUE:
            files = await self._file_map(directory)
            local = self._locals.get(directory.inode, {})
            listed = [
                self._attachment_node(directory, name, item)
                for name, item in files.items()
                if name not in local and item.id not in self._hidden
            ]
            return listed + list(local.values())
        raise NotFoundError(f"{directory.name} is not a directory")

    async def _find(self, directory: Node, name: str) -> Node:
        if directory.kind is Kind.ROOT:
            project = (await self._project_map()).get(name)
            if project is None:
                raise NotFoundError(name)
            return self._project_node(name, project)
        if directory.kind is Kind.PROJECT:
            return await self._find_issue(directory, name)
        local = self._locals.get(directory.inode, {}).get(name)
        if local is not None:
            return local
        files = await self._file_map(directory)
        if name not in files or files[name].id in self._hidden:
            raise NotFoundError(name)
        return self._attachment_node(directory, name, files[name])

    async def _find_issue(self, directory: Node, name: str) -> Node:
        project = directory.project
        assert project is not None
        listed = self._issues.get(project.key)
        if listed is not None and name in listed:
            return self._issue_node(directory, name, listed[name])
        if not self._tracker.is_issue_key(project, name):
            if listed is None:
                listed = await self._issue_map(project)
                if name in listed:
                    return self._issue_node(directory, name, listed[name])
            raise NotFoundError(name)
        # An issue the listing does not show (filtered, or past a count limit) can still
        # be opened by its key.
        issue = self._direct.get((project.key, name))
        if issue is None:
            changes = self._changes
            issue = await self._direct_flights.run(
                (project.key, name), lambda: self._tracker.get_issue(project, name)
            )
            self._direct[(project.key, name)] = issue
            if issue.attachments is not None and changes == self._changes:
                self._store_files(project.key, issue)
        return self._issue_node(directory, name, issue)

    async def _project_map(self) -> dict[str, Project]:
        cached = self._projects.get("all")
        if cached is not None:
            return cached
        return await self._project_flights.run("all", self._fetch_projects)

    async def _fetch_projects(self) -> dict[str, Project]:
        self._listings += 1
        projects = await self._tracker.list_projects()
        mapping = unique_names((sanitize(p.key), p) for p in sorted(projects, key=lambda p: p.key))
        self._projects["all"] = mapping
        self._forget_misses(ROOT_INODE, mapping)
        return mapping

    async def _issue_map(self, project: Project) -> dict[str, Issue]:
        cached = self._issues.get(project.key)
        if cached is not None:
            return cached
        return await self._issue_flights.run(project.key, lambda: self._fetch_issues(project))

    async def _fetch_issues(self, project: Project) -> dict[str, Issue]:
        self._listings += 1
        changes = self._changes
        issues = await self._tracker.list_issues(project)
        mapping = unique_names((sanitize(issue.key), issue) for issue in issues)
        for issue in issues:
            if issue.attachments is not None and changes == self._changes:
                self._store_files(project.key, issue)
        self._issues[project.key] = mapping
        inode = self._inodes.get(("project", project.key))
        if inode is not None:
            self._forget_misses(inode, mapping)
        return mapping

    async def _file_map(self, directory: Node) -> dict[str, Attachment]:
        issue = directory.issue
        assert issue is not None
        key = (issue.project_key, issue.key)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        return await self._file_flights.run(key, lambda: self._fetch_files(issue))

    async def _fetch_files(self, issue: Issue) -> dict[str, Attachment]:
        for _ in range(2):
            self._listings += 1
            changes = self._changes
            attachments = await self._tracker.list_attachments(issue)
            if changes == self._changes:
                break
            # Something was uploaded or deleted meanwhile: this answer may predate it.
        return self._store_files(issue.project_key, issue, attachments)

    def _store_files(
        self, project_key: str, issue: Issue, attachments: Iterable[Attachment] | None = None
    ) -> dict[str, Attachment]:
        inode = self._inodes.get(("issue", project_key, issue.key))
        local = self._locals.get(inode, {}) if inode is not None else {}
        # A local file keeps its name; an attachment of that name uploaded meanwhile by
        # someone else shows under a dated name instead of hiding behind it. The one the
        # local file is overwriting stays out: the user's bytes are replacing it.
        replaced = {node.local.replaced_id for node in local.values() if node.local is not None}
        listed = issue.attachments or () if attachments is None else attachments
        mapping = assign_names((item for item in listed if item.id not in replaced), taken=local)
        self._files[(project_key, issue.key)] = mapping
        if inode is not None:
            self._forget_misses(inode, mapping)
        return mapping

    def _forget_misses(self, inode: int, names: Iterable[str]) -> None:
        """A fresh listing shows these names: earlier misses of them no longer hold."""
        for name in names:
            self._negative.pop((inode, name), None)

    # -- node construction --------------------------------------------------------------

    def _node(self, key: tuple[str, ...], kind: Kind, parent: int, name: str) -> Node:
        inode = self._inodes.get(key)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._inodes[key] = inode
            self._nodes[inode] = Node(inode, kind, parent, name, key=key)
        node = self._nodes[inode]
        node.parent, node.name = parent, name
        return node

    def _project_node(self, name: str, project: Project) -> Node:
        node = self._node(("project", project.key), Kind.PROJECT, ROOT_INODE, name)
        node.project = project
        return node

    def _issue_node(self, directory: Node, name: str, issue: Issue) -> Node:
        node = self._node(("issue", issue.project_key, issue.key), Kind.ISSUE, directory.inode, name)
        node.project, node.issue = directory.project, issue
        return node

    def _attachment_node(self, directory: Node, name: str, attachment: Attachment) -> Node:
        node = self._node(("attachment", attachment.id), Kind.ATTACHMENT, directory.inode, name)
        node.project, node.issue, node.attachment = directory.project, directory.issue, attachment
        return node

    # -- local files --------------------------------------------------------------------

    def add_local(self, directory: Node, name: str, local: LocalFile) -> Node:
        """A new local file `name` in an issue directory (shadowing an attachment of that name)."""
        node = self._node(("local", local.spooled.ident), Kind.LOCAL, directory.inode, name)
        node.project, node.issue, node.local = directory.project, directory.issue, local
        self._locals.setdefault(directory.inode, {})[name] = node
        self._negative.pop((directory.inode, name), None)
        return node

    def make_local(self, node: Node, local: LocalFile) -> None:
        """Turn an attachment's node into a local file in place (an overwrite began).

        The node stops naming the attachment: a later listing that still shows it gets a
        node of its own, and never renames this one back. A node unlinked while open stays
        without a name.
        """
        if self._inodes.get(node.key) == node.inode:
            del self._inodes[node.key]
        node.key = ("local", local.spooled.ident)
        self._inodes[node.key] = node.inode
        node.kind, node.local, node.attachment = Kind.LOCAL, local, None
        if node.delete_at_close is None:
            self._locals.setdefault(node.parent, {})[node.name] = node

    def hide(self, node: Node, attachment: Attachment) -> None:
        """An open attachment was unlinked: its name goes now, the DELETE waits for the last close."""
        node.delete_at_close = attachment
        self.hide_attachment(attachment.id)

    def hide_attachment(self, attachment_id: str) -> None:
        """List an attachment no more: it is deleted as soon as the bytes replacing it are uploaded."""
        self._hidden.add(attachment_id)

    def unhide(self, node: Node) -> None:
        """The delete of an attachment unlinked while open failed: it is listed again."""
        if node.delete_at_close is not None:
            self.show_attachment(node.delete_at_close.id)
            node.delete_at_close = None

    def show_attachment(self, attachment_id: str) -> None:
        """List a hidden attachment again (the tracker refused to delete it)."""
        self._hidden.discard(attachment_id)

    def remove_local(self, node: Node) -> None:
        """Take a local file out of its directory (unlink, or replaced by a rename)."""
        siblings = self._locals.get(node.parent, {})
        if siblings.get(node.name) is node:
            del siblings[node.name]
        if node.lookups == 0:
            self._drop(node)

    def move_local(self, node: Node, directory: Node, name: str) -> None:
        """Rename a local file (within or across issue directories)."""
        siblings = self._locals.get(node.parent, {})
        if siblings.get(node.name) is node:
            del siblings[node.name]
        node.parent, node.name = directory.inode, name
        node.project, node.issue = directory.project, directory.issue
        self._locals.setdefault(directory.inode, {})[name] = node
        self._negative.pop((directory.inode, name), None)

    def uploaded(self, node: Node, attachment: Attachment) -> None:
        """A local file became `attachment` on the tracker: the node now names it."""
        siblings = self._locals.get(node.parent, {})
        if siblings.get(node.name) is node:
            del siblings[node.name]
        if self._inodes.get(node.key) == node.inode:
            del self._inodes[node.key]
        node.key = ("attachment", attachment.id)
        self._inodes[node.key] = node.inode
        node.kind, node.attachment, node.local = Kind.ATTACHMENT, attachment, None
        self._changes += 1
        issue = node.issue
        if issue is not None:
            files = self._files.get((issue.project_key, issue.key))
            if files is not None:
                files[node.name] = attachment

    def deleted(self, directory: Node, attachment_id: str) -> None:
        """An attachment of `directory` was deleted: drop it from the cached listing."""
        self._changes += 1
        self._hidden.discard(attachment_id)
        issue = directory.issue
        if issue is None:
            return
        files = self._files.get((issue.project_key, issue.key))
        if files is not None:
            for name, item in list(files.items()):
                if item.id == attachment_id:
                    del files[name]

    def _drop(self, node: Node) -> None:
        self._nodes.pop(node.inode, None)
        if self._inodes.get(node.key) == node.inode:
            del self._inodes[node.key]

    async def permissions(self, issue: Issue) -> Permissions:
        """What the account may do with the attachments of `issue`, cached briefly.

        A failed question counts as "cannot tell" (the tracker still decides at upload).
        """
        key = (issue.project_key, issue.key)
        cached = self._permissions.get(key)
        if cached is not None:
            return cached
        return await self._permission_flights.run(key, lambda: self._fetch_permissions(issue))

    async def _fetch_permissions(self, issue: Issue) -> Permissions:
        try:
            permissions = await self._tracker.permissions(issue)
        except TrackerError as exc:
            log.warning("cannot tell what this account may do on %s: %s", issue.key, exc)
            permissions = Permissions()
        self._permissions[(issue.project_key, issue.key)] = permissions
        return permissions

    def cached_files(self, inode: int) -> dict[str, Attachment]:
        """The cached attachment listing of an issue directory (empty if none is cached)."""
        node = self._nodes.get(inode)
        if node is None or node.issue is None:
            return {}
        return dict(self._files.get((node.issue.project_key, node.issue.key)) or {})

    def local_nodes(self) -> list[Node]:
        """Every local file currently in the tree."""
        return [node for siblings in self._locals.values() for node in siblings.values()]

    # -- metadata ---------------------------------------------------------------------

    def metadata(self, node: Node) -> dict[str, str]:
        """What `user.trackerfs.*` extended attributes show for a node."""
        if node.kind is Kind.ATTACHMENT and node.attachment is not None:
            item = node.attachment
            values = {
                "id": item.id,
                "url": item.web_url,
                "mime_type": item.mime_type,
                "author": item.author,
                "created": iso_time(item.created),
                "size": str(item.size),
                "original_name": item.filename,
                "issue": node.issue.key if node.issue else "",
                "checksum": item.checksum,
            }
        elif node.kind is Kind.LOCAL and node.local is not None:
            local = node.local
            state = "temporary" if local.temporary else "not uploaded" if local.dirty else "local"
            values = {"state": state, "size": str(local.size), "issue": node.issue.key if node.issue else ""}
        elif node.kind is Kind.ISSUE and node.issue is not None:
            issue = node.issue
            values = {
                "id": issue.id,
                "key": issue.key,
                "url": issue.web_url,
                "summary": issue.summary,
                "created": iso_time(issue.created) if issue.created else "",
            }
        elif node.kind is Kind.PROJECT and node.project is not None:
            project = node.project
            values = {"id": project.id, "key": project.key, "name": project.name, "url": project.web_url}
        else:
            values = {"tracker": self._tracker.name}
        return {key: value for key, value in values.items() if value}


def unique_names(pairs: Iterable[tuple[str, T]]) -> dict[str, T]:
    """A name → item map where a repeated name gets ` (2)`, ` (3)`, … in order."""
    result: dict[str, T] = {}
    for name, item in pairs:
        final, number = name, 2
        while final in result:
            final = numbered(name, number)
            number += 1
        result[final] = item
    return result


def iso_time(timestamp: float) -> str:
    """An ISO 8601 UTC time with seconds, e.g. `2026-01-05T10:00:00Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
