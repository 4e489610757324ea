"""Writing and hashing big files around the page cache (O_DIRECT), where the filesystem allows.

The content cache writes every block a cold read fetches. Through the page cache that
costs a fresh page per 4 KiB written, on top of the pages the reader's own file takes,
and on a virtual machine whose freed memory goes back to its host (free page reporting)
each of them is a fault on the host as well: on the 2-core Intel Xeon VM this was
measured on, 1 GiB written in 128 KiB blocks through the page cache took 2.4 s of
system time, written directly 0.1 s. A direct write copies the bytes once into one
reused, page-aligned buffer and hands that to the device.

Direct I/O needs the buffer, the file offset and the length aligned to the device's
logical block; `ALIGN` (a page) covers every common device. What is not aligned (an
attachment's last partial block, a run that starts mid-page) goes through the page cache
as before, and so does everything on a filesystem that refuses O_DIRECT (tmpfs before
Linux 6.6, some FUSE and network filesystems): the first refusal turns direct I/O off
for the writer's life.

A `DiskWriter` is used by one thread at a time (the content cache's write lock).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: Offsets and lengths of direct I/O are multiples of this (and the buffer is page-aligned).
ALIGN = 4096
#: The reused buffer direct writes are copied through: 16 system calls per 64 MiB.
BUFFER_BYTES = 4 << 20
#: Only Linux (and a few others) have it; without it everything is buffered.
O_DIRECT: int = getattr(os, "O_DIRECT", 0)


class DiskWriter:
    """Writes runs of blocks to files, direct where it can; hashes files the same way."""

    def __init__(self, *, direct: bool = True) -> None:
        self.direct = direct and O_DIRECT != 0
        #: made on the first direct write and kept for the writer's life (4 MiB)
        self._buffer: mmap.mmap | None = None

    def write(self, fd: int, path: str, offset: int, blocks: Sequence[bytes]) -> None:
        """Write `blocks` back to back at `offset` of the file open as `fd` (buffered) at `path`.

        Raises OSError(ENOSPC) when the disk took only part of them: the rest would be a
        hole that reads back as zeros.
        """
        total = sum(len(block) for block in blocks)
        if self.direct and offset % ALIGN == 0 and total >= ALIGN:
            done = self._write_direct(path, offset, blocks)
            if done == total:
                return
            if done:
                # What is left is the unaligned tail of the run.
                _write_all(fd, offset + done, _from(blocks, done))
                return
        _write_all(fd, offset, blocks)

    def _write_direct(self, path: str, offset: int, blocks: Sequence[bytes]) -> int:
        """Write the aligned part of the run directly; bytes written (0: use the page cache)."""
        direct = self._open_direct(path, os.O_WRONLY)
        if direct is None:
            return 0
        filled = written = 0
        try:
            buffer = self._view()
            for block in blocks:
                piece = memoryview(block)
                while piece:
                    take = min(len(piece), BUFFER_BYTES - filled)
                    buffer[filled : filled + take] = piece[:take]
                    filled += take
                    piece = piece[take:]
                    if filled == BUFFER_BYTES:
                        written += self._flush(direct, buffer, filled, offset + written)
                        filled = 0
            aligned = filled - filled % ALIGN
            if aligned:
                written += self._flush(direct, buffer, aligned, offset + written)
            return written
        except OSError as exc:
            if exc.errno != errno.EINVAL or written:
                raise
            # Opened, but the device wants a larger alignment: the page cache it is.
            self._give_up(path, exc)
            return 0
        finally:
            os.close(direct)

    def _flush(self, fd: int, buffer: memoryview, length: int, offset: int) -> int:
        done = os.pwrite(fd, buffer[:length], offset)
        if done != length:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return done

    def digest(self, path: str, algorithm: str) -> str:
        """The hex digest of the file at `path`, read directly where it can."""
        fd = self._open_direct(path, os.O_RDONLY) if self.direct else None
        if fd is not None:
            try:
                return self._digest_direct(fd, algorithm)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._give_up(path, exc)
            finally:
                os.close(fd)
        hasher = hashlib.new(algorithm)
        with open(path, "rb") as data:
            while chunk := data.read(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    def _digest_direct(self, fd: int, algorithm: str) -> str:
        hasher = hashlib.new(algorithm)
        buffer = self._view()
        position = 0
        while count := os.preadv(fd, [buffer], position):
            hasher.update(buffer[:count])
            position += count
            if count < BUFFER_BYTES:
                break  # the end of the file
        return hasher.hexdigest()

    def _open_direct(self, path: str, flags: int) -> int | None:
        """`path` opened with O_DIRECT; None (and direct I/O off from now on) if refused."""
        try:
            return os.open(path, flags | os.O_CLOEXEC | O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._give_up(path, exc)
            return None

    def _view(self) -> memoryview:
        if self._buffer is None:
            self._buffer = mmap.mmap(-1, BUFFER_BYTES)
        return memoryview(self._buffer)

    def _give_up(self, path: str, exc: OSError) -> None:
        log.info("direct I/O refused for %s (%s): writing through the page cache", path, exc.strerror)
        self.direct = False


def _write_all(fd: int, offset: int, blocks: Sequence[bytes | memoryview]) -> None:
    """One pwritev of the blocks; a short count is a full disk."""
    written = os.pwritev(fd, blocks, offset)
    if written != sum(len(block) for block in blocks):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _from(blocks: Sequence[bytes], start: int) -> list[memoryview]:
    """The bytes of `blocks` (back to back) from position `start` on, without copying."""
    out = []
    position = 0
    for block in blocks:
        end = position + len(block)
        if end > start:
            out.append(memoryview(block)[max(0, start - position) :])
        position = end
    return out
