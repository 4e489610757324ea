"""How far an upload has come: bytes read from the spool by the tracker's upload, and when.

The backend reads an upload's bytes through the file its `UploadSource` opens; counting
what that file hands out tells progress without the backend knowing. Long uploads log a
line every PROGRESS_INTERVAL seconds, and the status file lists every upload in flight.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

#: Seconds between the progress lines of one long upload.
PROGRESS_INTERVAL = 10.0


@dataclass(slots=True)
class UploadProgress:
    """One upload in flight (the current attempt's bytes; a retry starts again from 0)."""

    issue: str
    name: str
    size: int
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    attempts: int = 0
    _logged: float = 0.0

    def source(self, open_data: Callable[[], BinaryIO]) -> Callable[[], BinaryIO]:
        """An upload source like `open_data` whose files count what they hand out."""

        def open_counted() -> BinaryIO:
            handle = open_data()
            self.attempts += 1
            self.sent = 0
            return io.BufferedReader(_Counted(handle, self))

        return open_counted

    def count(self, amount: int) -> None:
        """`amount` more bytes went out (called from the thread that reads them)."""
        self.sent += amount
        now = time.monotonic()
        if now - max(self.started, self._logged) >= PROGRESS_INTERVAL:
            self._logged = now
            log.info(
                "uploading %s/%s: %d of %d MiB (%.1f MB/s)",
                self.issue,
                self.name,
                self.sent >> 20,
                self.size >> 20,
                self.rate() / 1e6,
            )

    def rate(self) -> float:
        """Bytes per second since the upload started."""
        return self.sent / max(time.monotonic() - self.started, 1e-3)

    def describe(self) -> dict[str, Any]:
        """For the status file."""
        return {
            "issue": self.issue,
            "name": self.name,
            "size": self.size,
            "sent": self.sent,
            "attempts": self.attempts,
            "seconds": round(time.monotonic() - self.started, 1),
            "bytes_per_second": round(self.rate()),
        }


class _Counted(io.RawIOBase):
    """A read-only raw file over another that counts the bytes read from it."""

    def __init__(self, inner: BinaryIO, progress: UploadProgress) -> None:
        super().__init__()
        self._inner = inner
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._progress.count(len(data))
        return len(data)

    def seekable(self) -> bool:
        return self._inner.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def fileno(self) -> int:
        return self._inner.fileno()

    def close(self) -> None:
        self._inner.close()
        super().close()
