"""Local bytes of files written through the mount, kept on disk until a tracker has them.

Each local file is a pair in the spool directory: `ID.data` (the bytes) and `ID.json`
(what it is: project, issue, name, the attachment it replaces, its state). The manifest
is replaced atomically at every state change, so after a crash the next mount knows
what every data file was meant to become. A data file is removed only after the tracker
confirmed the upload (or for temporary files, which are never uploaded).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

from trackerfs.errors import TrackerError

log = logging.getLogger(__name__)

#: Manifest states: being written; closed and waiting for (or in) an upload.
OPEN = "open"
PENDING = "pending"


@dataclass(slots=True)
class Manifest:
    """What a spooled file is for."""

    project: str
    issue: str
    name: str
    temporary: bool = False
    replaces: str | None = None
    state: str = OPEN
    created: float = field(default_factory=time.time)
    upload_started: float | None = None
    size: int = 0
    #: attachments of that name the issue had when the upload started (not this upload)
    known: list[str] = field(default_factory=list)


class SpoolFile:
    """One spooled file: a data file on disk and its manifest."""

    def __init__(self, spool: Spool, ident: str, manifest: Manifest) -> None:
        self.spool = spool
        self.ident = ident
        self.manifest = manifest
        self.data_path = spool.directory / f"{ident}.data"
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        """A read-write descriptor of the data file, opened on first use."""
        if self._fd is None:
            self._fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def size(self) -> int:
        """Bytes in the data file now."""
        return os.fstat(self.fd).st_size

    def pwrite(self, data: bytes, offset: int) -> int:
        """Write at `offset` (OSError such as ENOSPC passes to the caller)."""
        return os.pwrite(self.fd, data, offset)

    def pread(self, size: int, offset: int) -> bytes:
        """Read up to `size` bytes at `offset`."""
        return os.pread(self.fd, size, offset)

    def open_for_upload(self) -> BinaryIO:
        """A fresh read-only file object of the data (the uploader closes it)."""
        return self.data_path.open("rb")

    def truncate(self, size: int) -> None:
        """Cut or extend the data to `size` bytes."""
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        """Make the bytes durable."""
        os.fsync(self.fd)

    def save(self, **changes: Any) -> None:
        """Update the manifest on disk atomically."""
        for key, value in changes.items():
            setattr(self.manifest, key, value)
        self.spool.write_manifest(self.ident, self.manifest)

    def close(self) -> None:
        """Close the descriptor (the files stay)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Remove the manifest, then the data (a crash between leaves only ignored data)."""
        self.close()
        for path in (self.spool.manifest_path(self.ident), self.data_path):
            path.unlink(missing_ok=True)


@dataclass(eq=False)
class LocalFile:
    """A file that exists only on the local disk for now: written, temporary, or failed.

    `replaces` is the attachment this file will replace once uploaded (an overwrite or a
    safe-save rename); `dirty` says the bytes differ from anything the tracker has.
    """

    spooled: SpoolFile
    temporary: bool
    replaces: str | None = None
    dirty: bool = True
    written: bool = False
    handles: int = 0
    unlinked: bool = False
    #: why the file is incomplete and must never be uploaded (a refused write)
    refused: TrackerError | None = None
    mtime: float = field(default_factory=time.time)
    #: one upload at a time per file: a second close waits and finds nothing to do
    upload_lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.spooled.size()


class Spool:
    """The spool directory of one profile."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, manifest: Manifest) -> SpoolFile:
        """A new, empty spooled file."""
        ident = uuid.uuid4().hex
        spooled = SpoolFile(self, ident, manifest)
        spooled.fd  # noqa: B018 - create the data file now, so ENOSPC shows at create
        self.write_manifest(ident, manifest)
        return spooled

    def manifest_path(self, ident: str) -> Path:
        """Where the manifest of `ident` lives."""
        return self.directory / f"{ident}.json"

    def write_manifest(self, ident: str, manifest: Manifest) -> None:
        """Write a manifest with write-to-temp-then-rename."""
        path = self.manifest_path(ident)
        temp = path.with_suffix(".json.tmp")
        temp.write_text(json.dumps(asdict(manifest)), encoding="utf-8")
        os.replace(temp, path)

    def leftovers(self) -> list[SpoolFile]:
        """Spooled files a previous run left behind (unreadable manifests are skipped)."""
        found = []
        for path in sorted(self.directory.glob("*.json")):
            ident = path.stem
            try:
                manifest = Manifest(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ignoring unreadable spool manifest %s: %s", path.name, exc)
                continue
            spooled = SpoolFile(self, ident, manifest)
            if not spooled.data_path.exists():
                log.warning("spool manifest %s has no data; dropping it", path.name)
                path.unlink(missing_ok=True)
                continue
            found.append(spooled)
        return found


def recovery_path(state_dir: Path, manifest: Manifest) -> Path:
    """Where a file that could not be uploaded is kept for the user, without clobbering."""
    folder = state_dir / "recovered" / _safe(manifest.project) / _safe(manifest.issue)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _safe(manifest.name)
    number = 2
    while target.exists():
        target = folder / f"{_safe(manifest.name)}.{number}"
        number += 1
    return target


def move_to_recovery(state_dir: Path, spooled: SpoolFile) -> Path:
    """Move a spooled file's bytes into the recovery folder and drop its manifest."""
    target = recovery_path(state_dir, spooled.manifest)
    spooled.close()
    shutil.move(spooled.data_path, target)
    spooled.spool.manifest_path(spooled.ident).unlink(missing_ok=True)
    return target


def _safe(name: str) -> str:
    cleaned = name.replace("/", "_").replace("\0", "_")
    return cleaned if cleaned not in ("", ".", "..") else "_"


def describe_state(state_dir: Path) -> list[str]:
    """Lines for `trackerfs status`: spooled files waiting for upload, and recovered files."""
    lines: list[str] = []
    spool_dir = state_dir / "spool"
    if spool_dir.is_dir():
        for spooled in Spool(spool_dir).leftovers():
            manifest = spooled.manifest
            if manifest.temporary:
                continue
            size = spooled.data_path.stat().st_size if spooled.data_path.exists() else 0
            what = "waiting for upload" if manifest.state == PENDING else "being written"
            lines.append(
                f"spool      {manifest.project}/{manifest.issue}/{manifest.name}  {size} bytes  ({what})"
            )
    recovered = state_dir / "recovered"
    if recovered.is_dir():
        for path in sorted(p for p in recovered.rglob("*") if p.is_file()):
            lines.append(f"recovered  {path}  {path.stat().st_size} bytes")
    return lines
