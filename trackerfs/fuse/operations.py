"""pyfuse3 request handlers: translate FUSE operations into namespace and reader calls.

Every handler is wrapped by `handler`: a TrackerError becomes its errno, trio.Cancelled
passes through, anything unexpected is logged with its traceback and becomes EIO, so
the daemon never dies from a request.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3
import trio
from pyfuse3 import FileHandleT, FileInfo, InodeT, RequestContext

from trackerfs.config import CacheSettings
from trackerfs.core.names import MAX_NAME_BYTES, sanitize
from trackerfs.core.namespace import ROOT_INODE, AttachmentEntry, IssueEntry, LocalEntry, Namespace, Node
from trackerfs.core.reader import BLOCK_SIZE, Reader, ReadState
from trackerfs.core.spool import LocalFile
from trackerfs.core.writer import Writer
from trackerfs.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    NotPermittedError,
    PermissionDeniedError,
    TrackerError,
)
from trackerfs.fuse import xattrs
from trackerfs.fuse.control import FOLDER_INODE, ControlFiles

log = logging.getLogger(__name__)

DIR_MODE = stat.S_IFDIR | 0o755
#: The "preferred I/O size" (st_blksize) that cp and stdio size their buffers by. Files
#: being written get 1 MiB (an eighth of the round trips of 128 KiB writes); attachments
#: keep the reader's block size, so buffered random readers do not fetch a MiB each.
WRITE_SIZE = 1 << 20
#: readdir offsets 0 and 1 are `.` and `..`; children follow from offset 2.
DOT_NAMES = (pyfuse3.FileNameT(b"."), pyfuse3.FileNameT(b".."))
FILE_MODE = stat.S_IFREG | 0o644
#: an attachment the tracker will not let anyone delete or replace
READ_ONLY_MODE = stat.S_IFREG | 0o444

P = ParamSpec("P")
R = TypeVar("R")
Ops = TypeVar("Ops", bound=pyfuse3.Operations)


def handler(
    fn: Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]]:
    """Turn every failure of a FUSE handler into a FUSEError with the right errno."""

    @functools.wraps(fn)
    async def wrapper(self: Ops, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except NotFoundError as exc:
            log.debug("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except (AuthenticationError, PermissionDeniedError) as exc:
            log.error("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except TrackerError as exc:
            log.warning("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except OSError as exc:
            # The spool's own disk: ENOSPC, EIO, … reach the caller as they are.
            log.warning("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s%r", fn.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def new_name(raw: bytes) -> str:
    """The name of a file being created or renamed, if the tracker can show it back as written.

    Longer than 255 bytes: ENAMETOOLONG. Not UTF-8, or anything the listing would show
    differently (control characters such as a newline): EINVAL. Accepted otherwise, the
    file would come back under another name.
    """
    if len(raw) > MAX_NAME_BYTES:
        log.warning("refused a name of %d bytes (at most %d)", len(raw), MAX_NAME_BYTES)
        raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError(f"{raw!r} is not UTF-8; the tracker could not show it back") from None
    if sanitize(text) != text:
        raise BadRequestError(f"{text!r} would not come back as written (control characters, / or dots)")
    return text


@dataclass(slots=True)
class OpenFile:
    """An open file: the node, its reader state, and whether it may write."""

    node: Node
    reading: ReadState | None
    writable: bool
    #: the local file whose `handles` count includes this handle (versions change)
    local: LocalFile | None = None


class Operations(pyfuse3.Operations):
    """The trackerfs filesystem as pyfuse3 sees it."""

    supports_dot_lookup = True

    def __init__(
        self,
        namespace: Namespace,
        reader: Reader,
        writer: Writer,
        settings: CacheSettings,
        *,
        state_dir: Path,
        control: ControlFiles | None = None,
    ) -> None:
        super().__init__()
        #: the hidden `.trackerfs` folder (status and commands); None: no such folder
        self.control = control
        self.namespace = namespace
        self.reader = reader
        self.writer = writer
        self.timeout = settings.attr_timeout
        self.state_dir = state_dir
        self.uid, self.gid = os.getuid(), os.getgid()
        self.mounted_at = time.time_ns()
        self._handles = itertools.count(1)
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, list[Node]] = {}
        self._control_dirs: set[int] = set()
        #: how a directory entry reaches the kernel (`mount --all` renumbers it on the way)
        self.reply: Callable[[pyfuse3.ReaddirToken, bytes, pyfuse3.EntryAttributes, int], bool] = (
            pyfuse3.readdir_reply
        )

    # -- attributes -------------------------------------------------------------------

    def attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        """The stat data of a node."""
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = InodeT(node.inode)
        entry.generation = 0
        entry.entry_timeout = self.timeout
        entry.attr_timeout = self.timeout
        entry.st_uid, entry.st_gid = self.uid, self.gid
        entry.st_blksize = BLOCK_SIZE
        when = self.mounted_at
        item = node.entry
        if isinstance(item, AttachmentEntry):
            entry.st_mode = pyfuse3.ModeT(READ_ONLY_MODE if item.attachment.read_only else FILE_MODE)
            entry.st_nlink = 0 if node.unlinked else 1
            entry.st_size = item.attachment.size
            when = int(item.attachment.created * 1e9) or when
        elif isinstance(item, LocalEntry):
            entry.st_blksize = WRITE_SIZE
            entry.st_mode = pyfuse3.ModeT(FILE_MODE)
            entry.st_nlink = 0 if node.unlinked else 1
            entry.st_size = item.local.size
            when = int(item.local.mtime * 1e9)
        else:
            entry.st_mode = pyfuse3.ModeT(DIR_MODE)
            entry.st_nlink = 2
            entry.st_size = 0
            if isinstance(item, IssueEntry):
                when = int((item.issue.updated or item.issue.created) * 1e9) or when
        entry.st_blocks = (entry.st_size + 511) // 512
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = when
        return entry

    # -- lookups and directories ----------------------------------------------------------

    @handler
    async def lookup(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        log.debug("lookup(%d, %r)", parent_inode, text)
        if len(name) > MAX_NAME_BYTES:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        if self.control is not None:
            found = self.control.lookup(parent_inode, text, ROOT_INODE)
            if found is not None:
                return found
        if text in (".", ".."):
            node = self.namespace.node(parent_inode)
            node = self.namespace.node(node.parent) if text == ".." else node
            self.namespace.remember(node)
            return self.attributes(node)
        try:
            node = await self.namespace.lookup(parent_inode, text)
        except NotFoundError:
            # A negative entry the kernel may cache: repeated probes never reach us.
            missing = pyfuse3.EntryAttributes()
            missing.st_ino = InodeT(0)
            missing.entry_timeout = self.timeout
            return missing
        return self.attributes(node)

    @handler
    async def getattr(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        if self.control is not None and self.control.owns_inode(inode):
            return self.control.attributes(inode)
        return self.attributes(self.namespace.node(inode))

    @handler
    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        for inode, count in inode_list:
            self.namespace.forget(inode, count)

    @handler
    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        log.debug("opendir(%d)", inode)
        if self.control is not None and inode == FOLDER_INODE:
            fh = next(self._handles)
            self._control_dirs.add(fh)
            return FileHandleT(fh)
        directory = self.namespace.node(inode)
        children = await self.namespace.list_dir(inode)
        fh = next(self._handles)
        # The handle's nodes stay in the table until releasedir, replied or not.
        entries = [directory, self.namespace.node(directory.parent), *children]
        self.namespace.pin(entries)
        self._dirs[fh] = entries
        return FileHandleT(fh)

    @handler
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        if self.control is not None and fh in self._control_dirs:
            self._readdir_control(start_id, token)
            return
        entries = self._dirs.get(fh, [])
        for index in range(start_id, len(entries)):
            node = entries[index]
            name = DOT_NAMES[index] if index < len(DOT_NAMES) else os.fsencode(node.name)
            if not self.reply(token, name, self.attributes(node), index + 1):
                break
            if index >= len(DOT_NAMES):  # the kernel takes no reference for . and ..
                self.namespace.remember(node)

    def _readdir_control(self, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        assert self.control is not None
        root = self.attributes(self.namespace.node(ROOT_INODE))
        entries = [
            (DOT_NAMES[0], self.control.attributes(FOLDER_INODE)),
            (DOT_NAMES[1], root),
            *((pyfuse3.FileNameT(os.fsencode(name)), attrs) for name, attrs in self.control.listing()),
        ]
        for index in range(start_id, len(entries)):
            name, attributes = entries[index]
            if not self.reply(token, name, attributes, index + 1):
                break

    @handler
    async def releasedir(self, fh: FileHandleT) -> None:
        self._control_dirs.discard(fh)
        self.namespace.unpin(self._dirs.pop(fh, []))

    # -- files ----------------------------------------------------------------------------

    @handler
    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> FileInfo:
        if self.control is not None and self.control.owns_inode(inode):
            return self.control.open(inode, flags)
        node = self.namespace.node(inode)
        log.debug("open(%d, %s, 0o%o)", inode, node.name, flags)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        writable = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if flags & os.O_TRUNC and writable:
            await self.writer.begin_overwrite(node, truncate=True)
        return self._open_handle(node, writable)

    @handler
    async def create(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, pyfuse3.EntryAttributes]:
        log.debug("create(%d, %r, 0o%o)", parent_inode, os.fsdecode(name), flags)
        text = new_name(name)
        if not stat.S_ISREG(mode):
            raise NotPermittedError(f"{text}: only regular files can be attached")
        node = await self.writer.create(self.namespace.node(parent_inode), text)
        self.namespace.remember(node)
        return self._open_handle(node, True), self.attributes(node)

    def _open_handle(self, node: Node, writable: bool) -> FileInfo:
        fh = next(self._handles)
        entry = node.entry
        if isinstance(entry, LocalEntry):
            node.opens += 1
            entry.local.handles += 1
            self._files[fh] = OpenFile(node, None, writable, local=entry.local)
            return FileInfo(fh=FileHandleT(fh), keep_cache=False)
        if not isinstance(entry, AttachmentEntry):
            raise pyfuse3.FUSEError(errno.EISDIR)
        node.opens += 1
        self._files[fh] = OpenFile(node, self.reader.open(entry.attachment), writable)
        # Attachments never change under an id: the kernel may keep cached pages.
        return FileInfo(fh=FileHandleT(fh), keep_cache=True)

    def _handle(self, fh: FileHandleT) -> OpenFile:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    @handler
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        if self.control is not None and self.control.owns_handle(fh):
            return self.control.read(fh, off, size)
        handle = self._handle(fh)
        entry = handle.node.entry
        if isinstance(entry, LocalEntry):
            return entry.local.spooled.pread(size, off)
        if not isinstance(entry, AttachmentEntry):
            raise pyfuse3.FUSEError(errno.EISDIR)
        attachment = entry.attachment
        # A listing refresh gives the node an equal, new record: the reader state (and its
        # readahead window) stays as long as the attachment is the same one.
        if handle.reading is None or handle.reading.attachment.id != attachment.id:
            handle.reading = self.reader.open(attachment)
        return await self.reader.read(handle.reading, off, size)

    @handler
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        if self.control is not None and self.control.owns_handle(fh):
            return await self.control.write(fh, off, buf)
        handle = self._handle(fh)
        if not handle.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        local = await self._local_for_change(handle)
        return self.writer.write(local, off, buf, node=handle.node)

    async def _local_for_change(self, handle: OpenFile) -> LocalFile:
        local = await self.writer.begin_overwrite(handle.node, truncate=False)
        if handle.local is not local:
            if handle.local is not None:
                await self.writer.release(handle.node, handle.local, writable=handle.writable)
            local.handles += 1
            handle.local = local
        return local

    @handler
    async def flush(self, fh: FileHandleT) -> None:
        if self.control is not None and self.control.owns_handle(fh):
            await self.control.flush(fh)
            return
        handle = self._handle(fh)
        if handle.writable:
            await self.writer.flush(handle.node)

    @handler
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        entry = self._handle(fh).node.entry
        if isinstance(entry, LocalEntry):
            # fsync can take long on a busy disk: never on the thread that serves everyone.
            await trio.to_thread.run_sync(entry.local.spooled.sync)

    @handler
    async def release(self, fh: FileHandleT) -> None:
        if self.control is not None and self.control.owns_handle(fh):
            self.control.release(fh)
            return
        handle = self._files.pop(fh, None)
        if handle is None:
            return
        node = handle.node
        node.opens = max(0, node.opens - 1)
        if handle.local is not None:
            await self.writer.release(node, handle.local, writable=handle.writable)
        if not node.opens and node.unlinked:
            await self.writer.last_close(node)
        self.namespace.settle(node)

    @handler
    async def setattr(
        self,
        inode: InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandleT | None,
        ctx: RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if self.control is not None and self.control.owns_inode(inode):
            return self.control.attributes(inode)  # `echo >` truncates: nothing to cut
        node = self.namespace.node(inode)
        if fields.update_size:
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if fh is not None and fh in self._files:
                local = await self._local_for_change(self._files[fh])
                self.writer.truncate(local, attr.st_size)
            else:
                local = await self.writer.begin_overwrite(node, truncate=attr.st_size == 0)
                self.writer.truncate(local, attr.st_size)
                # No close will follow a path truncate(2): upload now.
                await self.writer.flush(node, last=True)
        if fields.update_mtime and isinstance(node.entry, LocalEntry):
            node.entry.local.mtime = attr.st_mtime_ns / 1e9
        # Modes, owners and times of attachments are the tracker's: accepted, not stored,
        # so that cp -p, rsync -a and tar succeed.
        return self.attributes(node)

    # -- names ------------------------------------------------------------------------------

    @handler
    async def unlink(self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext) -> None:
        text = os.fsdecode(name)
        log.debug("unlink(%d, %r)", parent_inode, text)
        await self.writer.unlink(self.namespace.node(parent_inode), text)

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
        old = os.fsdecode(name_old)
        log.debug(
            "rename(%d, %r, %d, %r, %d)",
            parent_inode_old,
            old,
            parent_inode_new,
            os.fsdecode(name_new),
            flags,
        )
        new = new_name(name_new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        await self.writer.rename(
            self.namespace.node(parent_inode_old),
            old,
            self.namespace.node(parent_inode_new),
            new,
            no_replace=bool(flags & pyfuse3.RENAME_NOREPLACE),
        )

    @handler
    async def mkdir(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise NotPermittedError(f"mkdir {os.fsdecode(name)!r}: a tracker has no folders in an issue")

    @handler
    async def rmdir(self, parent_inode: InodeT, name: pyfuse3.FileNameT, ctx: RequestContext) -> None:
        raise NotPermittedError(f"rmdir {os.fsdecode(name)!r}: projects and issues are not removed here")

    @handler
    async def symlink(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, target: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise NotPermittedError("a tracker has no symbolic links")

    @handler
    async def link(
        self, inode: InodeT, new_parent_inode: InodeT, new_name: pyfuse3.FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise NotPermittedError("a tracker has no hard links")

    @handler
    async def mknod(
        self, parent_inode: InodeT, name: pyfuse3.FileNameT, mode: int, rdev: int, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise NotPermittedError("a tracker holds only regular files")

    # -- extended attributes ------------------------------------------------------------

    @handler
    async def getxattr(self, inode: InodeT, name: pyfuse3.XAttrNameT, ctx: RequestContext) -> bytes:
        if self.control is not None and self.control.owns_inode(inode):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        text = os.fsdecode(name)
        values = xattrs.values(self.namespace, self.namespace.node(inode))
        if text.startswith(xattrs.PREFIX) and text[len(xattrs.PREFIX) :] in values:
            return values[text[len(xattrs.PREFIX) :]].encode("utf-8", "surrogateescape")
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @handler
    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[pyfuse3.XAttrNameT]:
        if self.control is not None and self.control.owns_inode(inode):
            return []
        values = xattrs.values(self.namespace, self.namespace.node(inode))
        return [pyfuse3.XAttrNameT(os.fsencode(xattrs.PREFIX + key)) for key in values]

    # -- the filesystem as a whole --------------------------------------------------------

    @handler
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        self.state_dir.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.state_dir)
        data.f_blocks = usage.total // data.f_frsize
        data.f_bfree = data.f_bavail = usage.free // data.f_frsize
        nodes = self.namespace.statistics().nodes
        data.f_files = nodes + 1_000_000
        data.f_ffree = data.f_favail = 1_000_000
        data.f_namemax = 255
        return data
