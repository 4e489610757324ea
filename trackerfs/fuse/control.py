"""The mount's control folder: `/.trackerfs/status.json` to read, `/.trackerfs/control` to write.

    MOUNT/.trackerfs/status.json   what the mount is doing now, as JSON (a snapshot per open)
    MOUNT/.trackerfs/control       write `flush metadata` or `flush content` (one per line)

The folder is in no listing of the root (so `find`, `rsync` and indexers never walk it)
but answers a lookup by name, like any dot-folder a user knows to ask for. It needs no
network port: `trackerfs status MOUNTPOINT` reads the file, and only the mount's owner
can (the mount is private to its user). Its inode numbers are the top of the range, which
the namespace, counting up from the root, never reaches (below 2**40, so that `mount --all`
can move a profile's numbers into a range of their own).
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyfuse3

log = logging.getLogger(__name__)

FOLDER = ".trackerfs"
STATUS = "status.json"
CONTROL = "control"
FOLDER_INODE = (1 << 40) - 3
STATUS_INODE = (1 << 40) - 2
CONTROL_INODE = (1 << 40) - 1
#: file handles of the control files: apart from the operations' own, which count from 1
HANDLE_BASE = 1 << 40
#: a command file longer than this is not a command
MAX_COMMAND_BYTES = 4096

#: A command's action: what it did, for the log.
Command = Callable[[], Awaitable[str]]


@dataclass(slots=True)
class _Open:
    inode: int
    data: bytes = b""
    written: bytearray = field(default_factory=bytearray)


class ControlFiles:
    """The control folder's lookups, attributes, listing and file handles."""

    def __init__(
        self,
        status: Callable[[], Mapping[str, Any]],
        commands: Mapping[str, Command],
        *,
        uid: int,
        gid: int,
    ) -> None:
        self._status = status
        self._commands = commands
        self._since = time.time_ns()
        self._uid, self._gid = uid, gid
        self._handles = itertools.count(HANDLE_BASE)
        self._open: dict[int, _Open] = {}

    @staticmethod
    def owns_inode(inode: int) -> bool:
        """Whether `inode` is one of the control folder's."""
        return inode in (FOLDER_INODE, STATUS_INODE, CONTROL_INODE)

    def owns_handle(self, fh: int) -> bool:
        """Whether `fh` is an open control file."""
        return fh in self._open

    def lookup(self, parent: int, name: str, root: int) -> pyfuse3.EntryAttributes | None:
        """The entry of `name` in `parent` if it is a control one; None: not ours."""
        if parent == root and name == FOLDER:
            return self.attributes(FOLDER_INODE)
        if parent == FOLDER_INODE:
            inode = {STATUS: STATUS_INODE, CONTROL: CONTROL_INODE}.get(name)
            if inode is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self.attributes(inode)
        return None

    def attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        """Stat data: the folder 0500, status.json 0400, control 0200 (its owner's only)."""
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = pyfuse3.InodeT(inode)
        entry.generation = 0
        # Never cached by the kernel: status.json's size changes with every snapshot.
        entry.entry_timeout = 0
        entry.attr_timeout = 0
        entry.st_uid, entry.st_gid = self._uid, self._gid
        entry.st_blksize = 4096
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = self._since
        if inode == FOLDER_INODE:
            entry.st_mode = pyfuse3.ModeT(stat.S_IFDIR | 0o500)
            entry.st_nlink = 2
        else:
            entry.st_mode = pyfuse3.ModeT(stat.S_IFREG | (0o400 if inode == STATUS_INODE else 0o200))
            entry.st_nlink = 1
            # A size the kernel reads up to; the snapshot is cut to what it holds.
            entry.st_size = 1 << 20 if inode == STATUS_INODE else 0
        return entry

    def listing(self) -> list[tuple[str, pyfuse3.EntryAttributes]]:
        """The folder's entries."""
        return [(STATUS, self.attributes(STATUS_INODE)), (CONTROL, self.attributes(CONTROL_INODE))]

    def open(self, inode: int, flags: int) -> pyfuse3.FileInfo:
        """A handle: status.json holds its snapshot from now on; control collects commands."""
        if inode == FOLDER_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        fh = next(self._handles)
        if inode == STATUS_INODE:
            if writing:
                raise pyfuse3.FUSEError(errno.EACCES)
            snapshot = json.dumps(self._status(), indent=2, sort_keys=False, default=str) + "\n"
            self._open[fh] = _Open(inode, snapshot.encode("utf-8"))
        else:
            self._open[fh] = _Open(inode)
        # direct_io: reads return what the snapshot holds, not the size stat said.
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=True)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        """Part of the snapshot (the control file reads as empty)."""
        return self._open[fh].data[offset : offset + size]

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        """Take command text; each whole line runs at once, so `echo` hears of a bad one.

        EINVAL for a line that is no command (the write fails: `echo` says so); the
        rest of a line without its newline runs at close.
        """
        handle = self._open[fh]
        if handle.inode != CONTROL_INODE:
            raise pyfuse3.FUSEError(errno.EBADF)
        if len(handle.written) + len(data) > MAX_COMMAND_BYTES:
            raise pyfuse3.FUSEError(errno.EFBIG)
        handle.written += data
        whole, newline, rest = bytes(handle.written).rpartition(b"\n")
        if newline:
            handle.written = bytearray(rest)
            await self._run(whole)
        return len(data)

    async def flush(self, fh: int) -> None:
        """Run what was written after the last newline (at close, which hears of a bad one)."""
        handle = self._open.get(fh)
        if handle is None or handle.inode != CONTROL_INODE or not handle.written:
            return
        text, handle.written = bytes(handle.written), bytearray()
        await self._run(text)

    async def _run(self, text: bytes) -> None:
        lines = [" ".join(line.split()) for line in text.decode("utf-8", "replace").splitlines()]
        wanted = [line for line in lines if line]
        unknown = [line for line in wanted if line not in self._commands]
        if unknown:
            known = ", ".join(sorted(self._commands))
            log.warning("control: unknown command %r (known: %s)", unknown[0][:80], known)
            raise pyfuse3.FUSEError(errno.EINVAL)
        for line in wanted:
            done = await self._commands[line]()
            log.info("control: %s: %s", line, done)

    def release(self, fh: int) -> None:
        """Forget a handle."""
        self._open.pop(fh, None)
