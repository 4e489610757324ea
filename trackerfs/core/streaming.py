"""Uploads sent while their file is still being written.

A large file written from its first byte to its last, in order (`cp`, a download, an
export), is sent to a tracker that takes bodies of unknown length while it is written:
one request whose body follows the writer through the spool, so that its close only
waits for the rest and the answer instead of for the whole upload. The bytes are in the
spool before they are sent, and stay there until the tracker confirmed, as for any upload.

Anything else gives the streamed upload up: a write anywhere but at the end, a
truncate, a rename, an unlink, a refused write. Its request is then cut before the body
ended (no closing boundary: the tracker stores nothing) and the close uploads the file
as before, with its length. So does a failure of the request before the body's end.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import BinaryIO

import trio

from trackerfs.backends.base import GrowingSource
from trackerfs.core.progress import UploadProgress
from trackerfs.core.spool import SpoolFile
from trackerfs.model import Attachment

log = logging.getLogger(__name__)

#: A file is streamed once this many bytes were written in order from its first byte:
#: smaller files gain nothing from it.
STREAM_AFTER = 8 << 20


class StreamedUpload(GrowingSource):
    """One upload whose body follows a file's writer; `finish` fixes its size at close.

    The request runs in a task of the writer's (`run`); `done` is set when it ended, with
    `result` (the attachment) or `error`, or given up (`given_up` says why).
    """

    def __init__(self, spooled: SpoolFile, progress: UploadProgress) -> None:
        self.progress = progress
        #: wall-clock start, for telling the upload apart on the tracker after a lost answer
        self.started = time.time()
        #: bytes written in order so far; the body never reads past them
        self.written = spooled.size()
        #: the size at close: the body ends there
        self.final: int | None = None
        self.given_up: str | None = None
        #: the body's last file byte was read for the request: the tracker may have it all
        self.sent_all = False
        self.result: Attachment | None = None
        self.error: Exception | None = None
        self.done = trio.Event()
        self.scope = trio.CancelScope()
        self._open = progress.source(spooled.open_for_upload)
        self._changed = trio.Event()

    def __call__(self) -> BinaryIO:
        self.sent_all = False  # a new attempt starts from the first byte
        return self._open()

    async def ready(self, position: int, want: int) -> int:
        while True:
            if self.given_up is not None:
                raise OSError(errno.ECANCELED, f"the upload was given up: {self.given_up}")
            end = self.written if self.final is None else self.final
            if self.final is not None or end - position >= want:
                ready = max(0, min(want, end - position))
                self.sent_all = ready == 0
                return ready
            self._changed = trio.Event()
            await self._changed.wait()

    @property
    def following(self) -> bool:
        """Whether the upload still follows its writer (not finished, not given up)."""
        return self.final is None and self.given_up is None and not self.done.is_set()

    def wrote(self, offset: int, size: int) -> None:
        """`size` bytes were written at `offset`: the body may go on, or it is given up."""
        if not self.following:
            return
        if offset != self.written:
            self.give_up(f"a write at byte {offset}, not at the end ({self.written})")
            return
        self.written += size
        self.progress.size = self.written
        self._changed.set()

    def finish(self, size: int) -> None:
        """The file was closed at `size` bytes: the body ends there."""
        self.final = size
        self.progress.size = size
        self._changed.set()

    def give_up(self, why: str) -> None:
        """Cut the request before its body ends (nothing is stored); the close uploads."""
        if not self.following:
            return
        self.given_up = why
        self.scope.cancel()
        self._changed.set()
        log.info("%s/%s: the upload sent while it was written was given up (%s)", *self.where, why)

    def cancel(self) -> None:
        """Cut the request whatever its state (its caller was cancelled)."""
        self.given_up = self.given_up or "cancelled"
        self.scope.cancel()
        self._changed.set()

    @property
    def where(self) -> tuple[str, str]:
        return self.progress.issue, self.progress.name
