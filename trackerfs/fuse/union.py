"""One mount for every profile: `MOUNTPOINT/NAME/PROJECT/ISSUE/file` for each profile.

`trackerfs mount --all MOUNTPOINT` gives each profile of the config file a top-level
folder. Each keeps its own backend, caches, spool and lock, and its own `Operations`;
this layer only renumbers. A profile's inode and file-handle numbers are moved into a
range of their own (the profile's index above `SHIFT` bits), so that the kernel sees one
filesystem while each profile sees only its own numbers. Numbers below `1 << SHIFT`
belong to this layer: the root, its `.trackerfs` folder and the folders of profiles
that are not mounted.

A profile that could not sign in is an empty folder nothing can be written to; the
reason is in `MOUNTPOINT/.trackerfs/status.json`, which `trackerfs status MOUNTPOINT`
prints together with every mounted profile's own status.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
from pyfuse3 import FileHandleT, FileInfo, InodeT, RequestContext

from trackerfs.core.names import sanitize
from trackerfs.core.namespace import ROOT_INODE
from trackerfs.errors import ConfigError, NotPermittedError
from trackerfs.fuse.control import FOLDER_INODE, Command, ControlFiles
from trackerfs.fuse.operations import DOT_NAMES, Operations, handler
from trackerfs.fuse.status import MountStatus

#: a profile's own numbers stay below this many bits
SHIFT = 44
MASK = (1 << SHIFT) - 1
#: the folder of a profile that is not mounted: read and list only
UNMOUNTED_MODE = stat.S_IFDIR | 0o555
ROOT_MODE = stat.S_IFDIR | 0o755


def check_folder_name(name: str) -> None:
    """A profile name must be usable as a folder name as it is, or `--all` cannot show it."""
    if not name or name.startswith(".") or sanitize(name) != name:
        raise ConfigError(
            f"profile {name!r} cannot be a folder of `mount --all`: rename it in the config file"
        )


@dataclass(slots=True)
class Folder:
    """A profile's top-level folder: its operations, or why it is not mounted."""

    name: str
    operations: Operations | None = None
    status: MountStatus | None = None
    reason: str = ""


class ProfileFolders(pyfuse3.Operations):
    """The root of `mount --all`: profile folders in front of each profile's operations."""

    supports_dot_lookup = True

    def __init__(self, folders: Sequence[Folder], mountpoint: Path, *, uid: int, gid: int) -> None:
        super().__init__()
        self.folders = list(folders)
        self.mountpoint = mountpoint
        self.uid, self.gid = uid, gid
        self.started = time.time()
        self.mounted_at = time.time_ns()
        self._by_name = {folder.name: index for index, folder in enumerate(self.folders)}
        self._handles = itertools.count(1)
        self._dirs: dict[int, list[tuple[pyfuse3.FileNameT, pyfuse3.EntryAttributes]]] = {}
        for index, folder in enumerate(self.folders):
            if folder.operations is not None:
                folder.operations.reply = self._replier(index)
        self.control = ControlFiles(
            self.snapshot,
            {"flush metadata": self._each("flush metadata"), "flush content": self._each("flush content")},
            uid=uid,
            gid=gid,
        )

    # -- numbers --------------------------------------------------------------------------

    @staticmethod
    def outer(index: int, number: int) -> int:
        """A profile's inode or handle number as the kernel sees it."""
        return ((index + 1) << SHIFT) | number

    def _split(self, number: int) -> tuple[int, Operations | None, int]:
        """(profile index, its operations, its own number); index -1: this layer's own."""
        index = (number >> SHIFT) - 1
        if index < 0:
            return -1, None, number
        if index >= len(self.folders):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return index, self.folders[index].operations, number & MASK

    def _route(self, number: int) -> tuple[Operations | None, int]:
        """The operations a number belongs to (None: this layer's own) and its own number."""
        _, operations, inner = self._split(number)
        return operations, inner

    def _child(self, number: int) -> tuple[int, Operations, int]:
        """The mounted profile a number belongs to; EPERM for this layer's own folders."""
        index, operations, inner = self._split(number)
        if operations is None:
            raise NotPermittedError("the top level of `mount --all` holds one folder per profile")
        return index, operations, inner

    def _shifted(self, index: int, entry: pyfuse3.EntryAttributes) -> pyfuse3.EntryAttributes:
        if entry.st_ino:  # 0: a negative entry
            entry.st_ino = InodeT(self.outer(index, entry.st_ino))
        return entry

    def _replier(
        self, index: int
    ) -> Callable[[pyfuse3.ReaddirToken, bytes, pyfuse3.EntryAttributes, int], bool]:
        def reply(
            token: pyfuse3.ReaddirToken, name: bytes, entry: pyfuse3.EntryAttributes, next_id: int
        ) -> bool:
            return pyfuse3.readdir_reply(token, name, self._shifted(index, entry), next_id)

        return reply

    def _handle(self, index: int, info: FileInfo) -> FileInfo:
        info.fh = FileHandleT(self.outer(index, info.fh))
        return info

    # -- this layer's own folders ---------------------------------------------------------

    def _folder_attributes(self, index: int | None) -> pyfuse3.EntryAttributes:
        """The root (index None) or an unmounted profile's folder."""
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = InodeT(ROOT_INODE if index is None else self.outer(index, ROOT_INODE))
        entry.generation = 0
        entry.entry_timeout = entry.attr_timeout = 1.0
        entry.st_mode = pyfuse3.ModeT(ROOT_MODE if index is None else UNMOUNTED_MODE)
        entry.st_nlink = 2
        entry.st_uid, entry.st_gid = self.uid, self.gid
        entry.st_blksize = 4096
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = self.mounted_at
        return entry

    async def _profile_root(self, index: int, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        operations = self.folders[index].operations
        if operations is None:
            return self._folder_attributes(index)
        return self._shifted(index, await operations.getattr(InodeT(ROOT_INODE), ctx))

    # -- lookups and directories ----------------------------------------------------------

    @handler
    async def lookup(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        index, operations, inner = self._split(parent_inode)
        if index < 0:
            found = self.control.lookup(parent_inode, text, ROOT_INODE)
            if found is not None:
                return found
            if text in (".", ".."):
                return self._folder_attributes(None)
            if text in self._by_name:
                return await self._profile_root(self._by_name[text], ctx)
            return self._missing()
        if text == ".." and inner == ROOT_INODE:
            return self._folder_attributes(None)
        if operations is None:
            return self._folder_attributes(index) if text == "." else self._missing()
        return self._shifted(index, await operations.lookup(InodeT(inner), name, ctx))

    @staticmethod
    def _missing() -> pyfuse3.EntryAttributes:
        missing = pyfuse3.EntryAttributes()
        missing.st_ino = InodeT(0)
        missing.entry_timeout = 1.0
        return missing

    @handler
    async def getattr(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._split(inode)
        if index < 0:
            if self.control.owns_inode(inode):
                return self.control.attributes(inode)
            return self._folder_attributes(None)
        if operations is None:
            return self._folder_attributes(index)
        return self._shifted(index, await operations.getattr(InodeT(inner), ctx))

    @handler
    async def setattr(
        self,
        inode: InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandleT | None,
        ctx: RequestContext,
    ) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._split(inode)
        if operations is None:
            return await self.getattr(inode, ctx)
        inner_fh = None if fh is None else FileHandleT(fh & MASK)
        return self._shifted(index, await operations.setattr(InodeT(inner), attr, fields, inner_fh, ctx))

    @handler
    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        by_profile: dict[int, list[tuple[InodeT, int]]] = {}
        for inode, count in inode_list:
            index, operations, inner = self._split(inode)
            if operations is not None:
                by_profile.setdefault(index, []).append((InodeT(inner), count))
        for index, forgotten in by_profile.items():
            operations = self.folders[index].operations
            assert operations is not None
            await operations.forget(forgotten)

    @handler
    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        index, operations, inner = self._split(inode)
        if operations is not None:
            return FileHandleT(self.outer(index, await operations.opendir(InodeT(inner), ctx)))
        if index < 0 and self.control.owns_inode(inode):
            entries = [
                (DOT_NAMES[0], self.control.attributes(FOLDER_INODE)),
                (DOT_NAMES[1], self._folder_attributes(None)),
                *((pyfuse3.FileNameT(os.fsencode(name)), attrs) for name, attrs in self.control.listing()),
            ]
        elif index < 0:
            entries = [(name, self._folder_attributes(None)) for name in DOT_NAMES]
            for number, folder in enumerate(self.folders):
                entries.append(
                    (pyfuse3.FileNameT(os.fsencode(folder.name)), await self._profile_root(number, ctx))
                )
        else:
            entries = [
                (DOT_NAMES[0], self._folder_attributes(index)),
                (DOT_NAMES[1], self._folder_attributes(None)),
            ]
        fh = next(self._handles)
        self._dirs[fh] = entries
        return FileHandleT(fh)

    @handler
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        operations, inner = self._route(fh)
        if operations is not None:
            await operations.readdir(FileHandleT(inner), start_id, token)
            return
        entries = self._dirs.get(fh, [])
        for number in range(start_id, len(entries)):
            name, attributes = entries[number]
            if not pyfuse3.readdir_reply(token, name, attributes, number + 1):
                break

    @handler
    async def releasedir(self, fh: FileHandleT) -> None:
        operations, inner = self._route(fh)
        if operations is not None:
            await operations.releasedir(FileHandleT(inner))
        else:
            self._dirs.pop(fh, None)

    # -- files ----------------------------------------------------------------------------

    @handler
    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> FileInfo:
        index, operations, inner = self._split(inode)
        if index < 0 and self.control.owns_inode(inode):
            return self.control.open(inode, flags)
        if operations is None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return self._handle(index, await operations.open(InodeT(inner), flags, ctx))

    @handler
    async def create(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, pyfuse3.EntryAttributes]:
        index, operations, inner = self._child(parent_inode)
        info, entry = await operations.create(InodeT(inner), name, mode, flags, ctx)
        return self._handle(index, info), self._shifted(index, entry)

    @handler
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        operations, inner = self._route(fh)
        if operations is None:
            return self.control.read(fh, off, size)
        return await operations.read(FileHandleT(inner), off, size)

    @handler
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        operations, inner = self._route(fh)
        if operations is None:
            return await self.control.write(fh, off, buf)
        return await operations.write(FileHandleT(inner), off, buf)

    @handler
    async def flush(self, fh: FileHandleT) -> None:
        operations, inner = self._route(fh)
        if operations is None:
            await self.control.flush(fh)
        else:
            await operations.flush(FileHandleT(inner))

    @handler
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        operations, inner = self._route(fh)
        if operations is not None:
            await operations.fsync(FileHandleT(inner), datasync)

    @handler
    async def release(self, fh: FileHandleT) -> None:
        operations, inner = self._route(fh)
        if operations is None:
            self.control.release(fh)
        else:
            await operations.release(FileHandleT(inner))

    # -- names ----------------------------------------------------------------------------

    @handler
    async def unlink(self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext) -> None:
        _, operations, inner = self._child(parent_inode)
        await operations.unlink(InodeT(inner), name, ctx)

    @handler
    async def rename(
        self,
        parent_inode_old: InodeT,
        name_old: pyfuse3.FileNameT,
        parent_inode_new: InodeT,
        name_new: pyfuse3.FileNameT,
        flags: int,
        ctx: RequestContext,
    ) -> None:
        index, operations, old = self._child(parent_inode_old)
        other, _, new = self._child(parent_inode_new)
        if other != index:
            # Another profile is another tracker: mv copies and deletes, as across filesystems.
            raise pyfuse3.FUSEError(errno.EXDEV)
        await operations.rename(InodeT(old), name_old, InodeT(new), name_new, flags, ctx)

    @handler
    async def mkdir(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._child(parent_inode)
        return self._shifted(index, await operations.mkdir(InodeT(inner), name, mode, ctx))

    @handler
    async def rmdir(self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext) -> None:
        _, operations, inner = self._child(parent_inode)
        await operations.rmdir(InodeT(inner), name, ctx)

    @handler
    async def symlink(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, target: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._child(parent_inode)
        return self._shifted(index, await operations.symlink(InodeT(inner), name, target, ctx))

    @handler
    async def link(
        self, inode: InodeT, new_parent_inode: InodeT, new_name: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._child(new_parent_inode)
        _, _, target = self._child(inode)
        return self._shifted(index, await operations.link(InodeT(target), InodeT(inner), new_name, ctx))

    @handler
    async def mknod(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, rdev: int, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        index, operations, inner = self._child(parent_inode)
        return self._shifted(index, await operations.mknod(InodeT(inner), name, mode, rdev, ctx))

    # -- extended attributes and the filesystem as a whole ----------------------------------

    @handler
    async def getxattr(self, inode: InodeT, name: pyfuse3.XAttrNameT, ctx: RequestContext) -> bytes:
        operations, inner = self._route(inode)
        if operations is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return await operations.getxattr(InodeT(inner), name, ctx)

    @handler
    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[pyfuse3.XAttrNameT]:
        operations, inner = self._route(inode)
        if operations is None:
            return []
        return await operations.listxattr(InodeT(inner), ctx)

    @handler
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        # Spools on one disk are the usual case: the first mounted profile speaks for all.
        for folder in self.folders:
            if folder.operations is not None:
                return await folder.operations.statfs(ctx)
        raise pyfuse3.FUSEError(errno.ENOSYS)

    # -- status and commands ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The root status file: the mount, then each profile's own status or its reason."""
        profiles: dict[str, Mapping[str, Any]] = {}
        for folder in self.folders:
            if folder.status is not None:
                profiles[folder.name] = folder.status.snapshot()
            else:
                profiles[folder.name] = {"profile": folder.name, "error": folder.reason}
        return {
            "mountpoint": str(self.mountpoint),
            "pid": os.getpid(),
            "mounted_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "profiles": profiles,
        }

    def _each(self, command: str) -> Command:
        async def run() -> str:
            done = []
            for folder in self.folders:
                if folder.status is not None:
                    done.append(f"{folder.name}: {await folder.status.commands()[command]()}")
            return "; ".join(done)

        return run
