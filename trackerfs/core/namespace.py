"""The directory tree: inodes, names, lookup counts and the metadata cache.

    /                      RootEntry        the mount point
    PROJ/                  ProjectEntry     one per project the account sees
    PROJ/PROJ-1/           IssueEntry       one per issue listed (or looked up by reference)
    PROJ/PROJ-1/a.png      AttachmentEntry  one per attachment
    PROJ/PROJ-1/new.txt    LocalEntry       a file written through the mount, not yet (or
                                            never to be) an attachment

A node is one inode; what it names is its `entry`, one record per kind carrying exactly
what that kind has. Directories are named by the labels their backend gives projects and
issues (`names.label_names`); a name no listing shows is handed to the backend
(`Tracker.issue_reference`, `Tracker.project_reference`), never parsed here.

Inode numbers are keyed by the vendor ids of what they name (project id; project and issue
id; project, issue and attachment id: an issue may sit in several projects, and a moved
issue keeps its id) and never reused while the filesystem is mounted. A node the kernel has
forgotten and no handle uses is freed; only its key → inode number pair stays, so that a
later lookup gets the same number. Listings are cached in TTL caches; a project listing
that embeds attachments fills the attachment listings of all its issues at once, and one
that does not keeps those of issues whose `updated` time did not change. A name looked up
and not found is remembered in a negative cache, so desktop probes (`.directory`,
`Thumbs.db`, …) cost no request while listings are fresh.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import trio
from cachetools import LRUCache, TTLCache

from trackerfs.backends.base import Tracker
from trackerfs.config import CacheSettings
from trackerfs.core.cache import SingleFlight
from trackerfs.core.names import assign_names, label_names, sanitize
from trackerfs.core.spool import LocalFile
from trackerfs.errors import NotFoundError, TrackerError
from trackerfs.model import Attachment, Issue, Permissions, Project

log = logging.getLogger(__name__)

ROOT_INODE = 1
#: How long the tracker's answer about what the account may do on an issue is trusted
#: (at most the metadata TTL): one question per issue for a burst of writes.
PERMISSIONS_TTL = 30.0
#: Attachment listings kept past their TTL, for issues a refreshed listing shows unchanged.
KEPT_LISTINGS = 65536
#: Attachment listings asked of the tracker at once, where each issue costs one (a file
#: manager opening many issue directories): the rest queue instead of crowding out reads.
ATTACHMENT_LISTINGS = 8
#: Uploads and deletes remembered per issue to correct listings answered while they landed.
JOURNAL_LENGTH = 256


class Kind(enum.Enum):
    """What a node is."""

    ROOT = "root"
    PROJECT = "project"
    ISSUE = "issue"
    ATTACHMENT = "attachment"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class RootEntry:
    """The mount point."""

    kind: ClassVar[Kind] = Kind.ROOT


@dataclass(frozen=True, slots=True)
class ProjectEntry:
    """A project directory."""

    project: Project
    kind: ClassVar[Kind] = Kind.PROJECT


@dataclass(frozen=True, slots=True)
class IssueEntry:
    """An issue directory, in the project it was listed in."""

    project: Project
    issue: Issue
    kind: ClassVar[Kind] = Kind.ISSUE


@dataclass(frozen=True, slots=True)
class AttachmentEntry:
    """An attachment of an issue: immutable bytes on the tracker."""

    project: Project
    issue: Issue
    attachment: Attachment
    kind: ClassVar[Kind] = Kind.ATTACHMENT


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A file in an issue directory whose bytes are in the spool."""

    project: Project
    issue: Issue
    local: LocalFile
    kind: ClassVar[Kind] = Kind.LOCAL


Entry = RootEntry | ProjectEntry | IssueEntry | AttachmentEntry | LocalEntry
#: The entries of nodes inside an issue directory.
FileEntry = AttachmentEntry | LocalEntry


@dataclass(slots=True, eq=False)
class Node:
    """One inode: what it names (`entry`), where it sits, and who still refers to it."""

    inode: int
    parent: int
    name: str
    entry: Entry
    key: tuple[str, ...] = ()
    #: references the kernel holds (lookup, create, readdirplus entry)
    lookups: int = 0
    #: open file handles of this node (kept by the FUSE layer)
    opens: int = 0
    #: open directory handles listing this node (`pin`/`unpin`)
    pins: int = 0
    #: child nodes in the node table: a directory is not freed before its children
    children: int = 0
    #: an attachment unlinked while open: its name is gone, it is deleted at the last close
    delete_at_close: Attachment | None = None
    #: attachments to delete once this file is uploaded, besides the one it `replaces`
    #: (what a rename of an overwritten file onto another name left behind)
    supersedes: tuple[Attachment, ...] = ()
    #: serializes turning an attachment into a local file (first writes race)
    change_lock: trio.Lock | None = None

    @property
    def kind(self) -> Kind:
        """What the node is (its entry's kind)."""
        return self.entry.kind

    @property
    def is_dir(self) -> bool:
        """Whether the node is a directory."""
        return not isinstance(self.entry, AttachmentEntry | LocalEntry)

    @property
    def unlinked(self) -> bool:
        """Whether the node lost its name while open (its descriptors still work)."""
        entry = self.entry
        return self.delete_at_close is not None or (isinstance(entry, LocalEntry) and entry.local.unlinked)


def local_of(node: Node) -> LocalFile | None:
    """The local file a node is now; None once it names an attachment (an upload finished)."""
    return node.entry.local if isinstance(node.entry, LocalEntry) else None


@dataclass(slots=True)
class NamespaceStatistics:
    """Counters of what the namespace has served."""

    #: nodes in the node table now (the root included)
    nodes: int
    lookups: int
    negative_hits: int
    listings_fetched: int
    #: inode numbers handed out since the mount (freed nodes keep theirs)
    inodes: int


def project_key(project: Project) -> str:
    """What identifies a project in the namespace: its vendor id (its key if it has none)."""
    return project.id or project.key


def issue_key(project: Project, issue: Issue) -> tuple[str, str]:
    """What identifies an issue directory: its project's and its own vendor id."""
    return (project_key(project), issue.id or issue.key)


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
        #: attachment listings fetched on their own, with the `updated` time of the issue
        #: record they were fetched for: reused while a refreshed listing shows that time
        self._kept: LRUCache[tuple[str, str], tuple[float, list[Attachment]]] = LRUCache(KEPT_LISTINGS)
        self._direct: TTLCache[tuple[str, str], Issue] = TTLCache(4096, ttl, timer=clock)
        self._direct_projects: TTLCache[str, Project] = TTLCache(256, ttl, timer=clock)
        self._negative: TTLCache[tuple[int, str], bool] = TTLCache(
            100_000, settings.negative_ttl, timer=clock
        )
        self._project_flights: SingleFlight[str, dict[str, Project]] = SingleFlight()
        self._issue_flights: SingleFlight[str, dict[str, Issue]] = SingleFlight()
        self._file_flights: SingleFlight[tuple[str, str], dict[str, Attachment]] = SingleFlight()
        self._listing_places = trio.CapacityLimiter(ATTACHMENT_LISTINGS)
        self._direct_flights: SingleFlight[tuple[str, str], Issue] = SingleFlight()
        self._direct_project_flights: SingleFlight[str, Project] = SingleFlight()
        self._permissions: TTLCache[tuple[str, str], Permissions] = TTLCache(
            4096, min(PERMISSIONS_TTL, ttl), timer=clock
        )
        self._permission_flights: SingleFlight[tuple[str, str], Permissions] = SingleFlight()
        #: attachments unlinked while open: gone from listings and lookups until deleted
        self._hidden: set[str] = set()
        self._locals: dict[int, dict[str, Node]] = {}
        #: per issue directory: names users gave uploads the tracker renamed → attachment id
        self._aliases: dict[int, dict[str, str]] = {}
        # Counts uploads and deletes made through the mount: a listing that was asked for
        # before one of them may not show it, and must not replace a newer cached one.
        self._changes = 0
        #: per issue, the latest uploads and deletes through the mount by change number:
        #: they correct a listing the tracker answered while they were landing. Kept only
        #: while a listing asked before them is in flight (`_asking`).
        self._journal: dict[tuple[str, str], deque[tuple[int, str, Attachment | None]]] = {}
        #: listings in flight, by the change number they were asked at
        self._in_flight: Counter[int] = Counter()
        self._nodes: dict[int, Node] = {ROOT_INODE: Node(ROOT_INODE, ROOT_INODE, "", RootEntry())}
        #: every key ever given an inode: numbers stay stable while nodes come and go
        self._inodes: dict[tuple[str, ...], int] = {}
        self._next_inode = ROOT_INODE + 1
        self._lookups = 0
        self._negative_hits = 0
        self._listings = 0

    @property
    def tracker_name(self) -> str:
        """The configured name of the tracker the tree shows (`jira`, …)."""
        return self._tracker.name

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
        self.settle(node)

    def pin(self, nodes: Iterable[Node]) -> None:
        """A directory handle lists these nodes: keep them until `unpin`."""
        for node in nodes:
            node.pins += 1

    def unpin(self, nodes: Iterable[Node]) -> None:
        """A directory handle closed: its nodes may be freed."""
        for node in nodes:
            node.pins = max(0, node.pins - 1)
            self.settle(node)

    def settle(self, node: Node) -> None:
        """Free `node` if nothing refers to it any more (its inode number stays reserved).

        Kept: the root; a node the kernel still knows, open in a handle or listed in a
        directory handle; a directory with child nodes; an attachment waiting to be
        deleted at its last close; a local file still in its directory (its bytes and
        state live there). A local file unlinked goes with its inode number too: its key
        (its spool file) never comes back.
        """
        if node.inode == ROOT_INODE or node.lookups or node.opens or node.pins or node.children:
            return
        entry = node.entry
        if node.delete_at_close is not None or (isinstance(entry, LocalEntry) and not entry.local.unlinked):
            return
        if self._nodes.get(node.inode) is not node:
            return
        del self._nodes[node.inode]
        if isinstance(entry, LocalEntry) and self._inodes.get(node.key) == node.inode:
            del self._inodes[node.key]
        parent = self._nodes.get(node.parent)
        if parent is not None and parent is not node:
            parent.children = max(0, parent.children - 1)
            self.settle(parent)

    def flush(self) -> None:
        """Forget every cached listing, lookup and miss: the next ones ask the tracker.

        Nodes stay (the kernel still refers to them); their records are refreshed as the
        listings come back.
        """
        self._changes += 1
        for cache in (
            self._projects,
            self._issues,
            self._files,
            self._direct,
            self._direct_projects,
            self._negative,
            self._permissions,
        ):
            cache.clear()
        self._kept.clear()

    def statistics(self) -> NamespaceStatistics:
        """Counters since the mount."""
        return NamespaceStatistics(
            len(self._nodes),
            self._lookups,
            self._negative_hits,
            self._listings,
            self._next_inode - ROOT_INODE,
        )

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
        entry = directory.entry
        if isinstance(entry, RootEntry):
            projects = await self._project_map()
            return [self._project_node(name, project) for name, project in projects.items()]
        if isinstance(entry, ProjectEntry):
            issues = await self._issue_map(entry.project)
            return [self._issue_node(directory, entry, name, issue) for name, issue in issues.items()]
        if isinstance(entry, IssueEntry):
            files = await self._file_map(entry)
            local = self._locals.get(directory.inode, {})
            listed = [
                self._attachment_node(directory, entry, name, item)
                for name, item in files.items()
                if name not in local and item.id not in self._hidden
            ]
            return listed + list(local.values())
        raise NotFoundError(f"{directory.name} is not a directory")

    async def _find(self, directory: Node, name: str) -> Node:
        entry = directory.entry
        if isinstance(entry, RootEntry):
            return await self._find_project(name)
        if isinstance(entry, ProjectEntry):
            return await self._find_issue(directory, entry, name)
        if not isinstance(entry, IssueEntry):
            raise NotFoundError(f"{directory.name} is not a directory")
        local = self._locals.get(directory.inode, {}).get(name)
        if local is not None:
            return local
        files = await self._file_map(entry)
        found = files.get(name)
        if found is None:
            found = self._aliased(directory.inode, name, files)
            name = next((listed for listed, item in files.items() if item is found), name)
        if found is None or found.id in self._hidden:
            raise NotFoundError(name)
        return self._attachment_node(directory, entry, name, found)

    def _aliased(self, inode: int, name: str, files: dict[str, Attachment]) -> Attachment | None:
        """The attachment uploaded as `name` that the tracker listed under another name."""
        ident = self._aliases.get(inode, {}).get(name)
        if ident is None:
            return None
        return next((item for item in files.values() if item.id == ident), None)

    async def _find_project(self, name: str) -> Node:
        projects = await self._project_map()
        project = projects.get(name)
        if project is None:
            # The vendor's own key or id always works, whatever the label is.
            reference = self._tracker.project_reference(name)
            if reference is None:
                raise NotFoundError(name)
            match = [p for p in projects.values() if reference in (p.key, p.id)]
            if not match:
                # Not listed (archived, filtered out) but the vendor's own reference.
                return self._project_node(name, await self._unlisted_project(reference))
            project = match[0]
            name = next(listed for listed, item in projects.items() if item is project)
        return self._project_node(name, project)

    async def _unlisted_project(self, reference: str) -> Project:
        project = self._direct_projects.get(reference)
        if project is None:
            project = await self._direct_project_flights.run(
                reference, lambda: self._tracker.get_project(reference)
            )
            self._direct_projects[reference] = project
        return project

    async def _find_issue(self, directory: Node, entry: ProjectEntry, name: str) -> Node:
        project = entry.project
        listed = self._issues.get(project_key(project))
        if listed is not None and name in listed:
            return self._issue_node(directory, entry, name, listed[name])
        reference = self._tracker.issue_reference(project, name)
        if reference is None:
            if listed is None:
                listed = await self._issue_map(project)
                if name in listed:
                    return self._issue_node(directory, entry, name, listed[name])
            raise NotFoundError(name)
        # An issue the listing does not show (filtered, or past a count limit) can still
        # be opened by the vendor's reference; one the listing does show is its node.
        for shown, item in (listed or {}).items():
            if reference in (item.key, item.id):
                return self._issue_node(directory, entry, shown, item)
        key = (project_key(project), reference)
        issue = self._direct.get(key)
        if issue is None:
            with self._asking() as changes:
                issue = await self._direct_flights.run(
                    key, lambda: self._tracker.get_issue(project, reference)
                )
                self._direct[key] = issue
                if issue.attachments is not None:
                    self._refill_files(project, issue, changes)
        return self._issue_node(directory, entry, name, issue)

    async def _project_map(self) -> dict[str, Project]:
        cached = self._projects.get("all")
        if cached is not None:
            return cached
        return await self._project_flights.run("all", self._fetch_projects)

    async def _fetch_projects(self) -> dict[str, Project]:
        self._listings += 1
        projects = await self._tracker.list_projects()
        mapping = dict(sorted(label_names((p.display, 0.0, project_key(p), p) for p in projects).items()))
        self._projects["all"] = mapping
        self._forget_misses(ROOT_INODE, mapping)
        return mapping

    async def _issue_map(self, project: Project) -> dict[str, Issue]:
        cached = self._issues.get(project_key(project))
        if cached is not None:
            return cached
        return await self._issue_flights.run(project_key(project), lambda: self._fetch_issues(project))

    async def _fetch_issues(self, project: Project) -> dict[str, Issue]:
        self._listings += 1
        with self._asking() as changes:
            issues = await self._tracker.list_issues(project)
            named = label_names((issue.display, issue.created, issue.id, issue) for issue in issues)
            # The backend's order (Jira: by key), not the naming order.
            order = {id(issue): index for index, issue in enumerate(issues)}
            mapping = dict(sorted(named.items(), key=lambda pair: order[id(pair[1])]))
            for issue in issues:
                self._refill_files(project, issue, changes)
        self._issues[project_key(project)] = mapping
        inode = self._inodes.get(("project", project_key(project)))
        if inode is not None:
            self._forget_misses(inode, mapping)
        return mapping

    def _refill_files(self, project: Project, issue: Issue, changes: int) -> None:
        """Fill an issue's attachment listing from a project listing, where it can be.

        From the attachments the listing embeds; else from the last one fetched for that
        issue, if the issue's `updated` time says nothing changed since.
        """
        key = issue_key(project, issue)
        if issue.attachments is not None:
            self._store_files(project, issue, self._since(key, changes, issue.attachments))
            return
        if changes != self._changes:
            return  # the kept listing may predate what the mount changed meanwhile
        kept = self._kept.get(key)
        if kept is not None and issue.updated and kept[0] == issue.updated:
            self._store_files(project, issue, kept[1])

    async def _file_map(self, entry: IssueEntry) -> dict[str, Attachment]:
        key = issue_key(entry.project, entry.issue)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        return await self._file_flights.run(key, lambda: self._fetch_files(entry.project, entry.issue))

    async def _fetch_files(self, project: Project, issue: Issue) -> dict[str, Attachment]:
        self._listings += 1
        with self._asking() as changes:
            async with self._listing_places:
                attachments = await self._tracker.list_attachments(issue)
            if changes == self._changes:
                self._kept[issue_key(project, issue)] = (issue.updated, attachments)
            else:
                # Something was uploaded or deleted meanwhile: the answer may predate it.
                attachments = self._since(issue_key(project, issue), changes, attachments)
            return self._store_files(project, issue, attachments)

    @contextmanager
    def _asking(self) -> Iterator[int]:
        """A listing in flight, asked at the change number this yields.

        While one is in flight the journal keeps the mount's uploads and deletes made
        after it was asked, so that `_since` can correct its answer; entries no listing
        in flight can need are dropped as each one ends.
        """
        changes = self._changes
        self._in_flight[changes] += 1
        try:
            yield changes
        finally:
            self._in_flight[changes] -= 1
            if not self._in_flight[changes]:
                del self._in_flight[changes]
            oldest = min(self._in_flight, default=self._changes)
            for key in list(self._journal):
                entries = self._journal[key]
                while entries and entries[0][0] <= oldest:
                    entries.popleft()
                if not entries:
                    del self._journal[key]

    def _since(
        self, key: tuple[str, str], changes: int, attachments: Iterable[Attachment]
    ) -> list[Attachment]:
        """A listing asked for at change `changes`, with what the mount did since applied."""
        items = {item.id: item for item in attachments}
        for number, ident, uploaded in self._journal.get(key, ()):
            if number <= changes:
                continue
            if uploaded is None:
                items.pop(ident, None)
            else:
                items.setdefault(ident, uploaded)
        return list(items.values())

    def _note(self, key: tuple[str, str], ident: str, uploaded: Attachment | None) -> None:
        self._changes += 1
        if self._in_flight:  # else no answer in flight predates it
            self._journal.setdefault(key, deque(maxlen=JOURNAL_LENGTH)).append(
                (self._changes, ident, uploaded)
            )

    def _store_files(
        self, project: Project, issue: Issue, attachments: Iterable[Attachment] | None = None
    ) -> dict[str, Attachment]:
        key = issue_key(project, issue)
        inode = self._inodes.get(("issue", *key))
        listed = issue.attachments or () if attachments is None else attachments
        mapping = self._name_files(inode, listed)
        self._files[key] = mapping
        if inode is not None:
            self._forget_misses(inode, mapping)
        return mapping

    def _name_files(self, inode: int | None, attachments: Iterable[Attachment]) -> dict[str, Attachment]:
        """The names of an issue directory's attachments, around its local files.

        A local file keeps its name; an attachment of that name uploaded meanwhile by
        someone else shows under a dated name instead of hiding behind it. The one the
        local file is overwriting stays out: the user's bytes are replacing it.
        """
        local = self._locals.get(inode, {}) if inode is not None else {}
        replaced = {
            node.entry.local.replaced_id for node in local.values() if isinstance(node.entry, LocalEntry)
        }
        return assign_names((item for item in attachments if item.id not in replaced), taken=local)

    def _forget_misses(self, inode: int, names: Iterable[str]) -> None:
        """A fresh listing shows these names: earlier misses of them no longer hold."""
        for name in names:
            self._negative.pop((inode, name), None)

    # -- node construction --------------------------------------------------------------

    def _node(self, key: tuple[str, ...], parent: int, name: str, entry: Entry) -> Node:
        inode = self._inodes.get(key)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._inodes[key] = inode
        node = self._nodes.get(inode)
        if node is None:
            node = self._nodes[inode] = Node(inode, parent, name, entry, key=key)
            self._adopt(node, parent)
        self._move(node, parent)
        node.name, node.entry = name, entry
        return node

    def _adopt(self, node: Node, parent: int) -> None:
        directory = self._nodes.get(parent)
        if directory is not None and directory is not node:
            directory.children += 1

    def _move(self, node: Node, parent: int) -> None:
        """Re-parent a node, keeping both directories' child counts right."""
        if node.parent == parent:
            return
        old = self._nodes.get(node.parent)
        self._adopt(node, parent)
        node.parent = parent
        if old is not None:
            old.children = max(0, old.children - 1)
            self.settle(old)

    def _project_node(self, name: str, project: Project) -> Node:
        return self._node(("project", project_key(project)), ROOT_INODE, name, ProjectEntry(project))

    def _issue_node(self, directory: Node, entry: ProjectEntry, name: str, issue: Issue) -> Node:
        key = ("issue", *issue_key(entry.project, issue))
        return self._node(key, directory.inode, name, IssueEntry(entry.project, issue))

    def _attachment_node(self, directory: Node, entry: IssueEntry, name: str, attachment: Attachment) -> Node:
        key = ("attachment", *issue_key(entry.project, entry.issue), attachment.id)
        return self._node(key, directory.inode, name, AttachmentEntry(entry.project, entry.issue, attachment))

    # -- local files --------------------------------------------------------------------

    def add_local(self, directory: Node, name: str, local: LocalFile) -> Node:
        """A new local file `name` in an issue directory (shadowing an attachment of that name)."""
        entry = directory.entry
        if not isinstance(entry, IssueEntry):
            raise NotFoundError(f"{directory.name} is not an issue directory")
        node = self._node(
            ("local", local.spooled.ident),
            directory.inode,
            name,
            LocalEntry(entry.project, entry.issue, local),
        )
        self._locals.setdefault(directory.inode, {})[name] = node
        self._negative.pop((directory.inode, name), None)
        self._aliases.get(directory.inode, {}).pop(name, None)
        return node

    def make_local(self, node: Node, local: LocalFile) -> None:
        """Turn an attachment's node into a local file in place (an overwrite began).

        The node stops naming the attachment: a later listing that still shows it gets a
        node of its own, and never renames this one back. A node unlinked while open stays
        without a name.
        """
        entry = node.entry
        if not isinstance(entry, AttachmentEntry):
            raise NotFoundError(f"{node.name} is not an attachment")
        self._rekey(node, ("local", local.spooled.ident))
        node.entry = LocalEntry(entry.project, entry.issue, local)
        if node.delete_at_close is None:
            self._locals.setdefault(node.parent, {})[node.name] = node

    def _rekey(self, node: Node, key: tuple[str, ...]) -> None:
        """The node names something else now: the old key gets a new node when it is seen again."""
        if self._inodes.get(node.key) == node.inode:
            del self._inodes[node.key]
        node.key = key
        self._inodes[key] = node.inode

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
        self.settle(node)

    def move_local(self, node: Node, directory: Node, name: str) -> None:
        """Rename a local file (within or across issue directories)."""
        entry, target = node.entry, directory.entry
        if not isinstance(entry, LocalEntry) or not isinstance(target, IssueEntry):
            raise NotFoundError(f"{node.name} is not a local file in an issue directory")
        siblings = self._locals.get(node.parent, {})
        if siblings.get(node.name) is node:
            del siblings[node.name]
        self._move(node, directory.inode)
        node.name = name
        node.entry = LocalEntry(target.project, target.issue, entry.local)
        self._locals.setdefault(directory.inode, {})[name] = node
        self._negative.pop((directory.inode, name), None)
        self._aliases.get(directory.inode, {}).pop(name, None)

    def uploaded(self, node: Node, attachment: Attachment, *, asked_name: str | None = None) -> None:
        """A local file became `attachment` on the tracker: the node now names it.

        The node takes the name the listing gives the attachment (the tracker may have
        changed the file name). The name the user gave (`asked_name`, default the node's
        name) stays an alias for the rest of the mount: lookups find the file under it,
        listings show it once, under the tracker's name.
        """
        entry = node.entry
        if not isinstance(entry, LocalEntry):
            raise NotFoundError(f"{node.name} is not a local file")
        asked = node.name if asked_name is None else asked_name
        siblings = self._locals.get(node.parent, {})
        if siblings.get(node.name) is node:
            del siblings[node.name]
        key = issue_key(entry.project, entry.issue)
        self._rekey(node, ("attachment", *key, attachment.id))
        node.entry = AttachmentEntry(entry.project, entry.issue, attachment)
        self._note(key, attachment.id, attachment)
        self._kept.pop(key, None)
        files = self._files.get(key)
        if files is not None:
            mapping = self._name_files(
                node.parent, [*(i for i in files.values() if i.id != attachment.id), attachment]
            )
            files.clear()
            files.update(mapping)
            node.name = next(name for name, item in mapping.items() if item is attachment)
        else:
            node.name = sanitize(attachment.filename)
        if node.name != asked:
            self._aliases.setdefault(node.parent, {})[asked] = attachment.id
            log.info("the tracker named %r %r; %r keeps working too", asked, node.name, asked)

    def deleted(self, directory: Node, attachment_id: str) -> None:
        """An attachment of `directory` was deleted: drop it from the cached listing."""
        self._hidden.discard(attachment_id)
        aliases = self._aliases.get(directory.inode, {})
        for name in [name for name, ident in aliases.items() if ident == attachment_id]:
            del aliases[name]
        entry = directory.entry
        if not isinstance(entry, IssueEntry):
            self._changes += 1
            return
        key = issue_key(entry.project, entry.issue)
        self._note(key, attachment_id, None)
        self._kept.pop(key, None)
        files = self._files.get(key)
        if files is not None:
            for name, item in list(files.items()):
                if item.id == attachment_id:
                    del files[name]

    async def permissions(self, issue: Issue) -> Permissions:
        """What the account may do with the attachments of `issue`, cached briefly.

        A failed question counts as "cannot tell" (the tracker still decides at upload).
        """
        key = (issue.project_key, issue.id or issue.key)
        cached = self._permissions.get(key)
        if cached is not None:
            return cached
        return await self._permission_flights.run(key, lambda: self._fetch_permissions(key, issue))

    async def _fetch_permissions(self, key: tuple[str, str], issue: Issue) -> Permissions:
        try:
            permissions = await self._tracker.permissions(issue)
        except TrackerError as exc:
            log.warning("cannot tell what this account may do on %s: %s", issue.key, exc)
            permissions = Permissions()
        self._permissions[key] = permissions
        return permissions

    def cached_files(self, inode: int) -> dict[str, Attachment]:
        """The cached attachment listing of an issue directory (empty if none is cached)."""
        node = self._nodes.get(inode)
        if node is None or not isinstance(node.entry, IssueEntry):
            return {}
        return dict(self._files.get(issue_key(node.entry.project, node.entry.issue)) or {})

    def local_nodes(self) -> list[Node]:
        """Every local file currently in the tree."""
        return [node for siblings in self._locals.values() for node in siblings.values()]
