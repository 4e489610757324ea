"""Local bytes of files written through the mount, kept on disk until a tracker has them.

Each local file is a pair in the spool directory: `ID.data` (the bytes) and `ID.json`
(what it is: project, issue, name, the attachment it replaces, its state). The manifest
is replaced atomically and durably at every state change (temp file, fsync, rename,
fsync of the directory), so after a crash or a power loss the next mount knows what
every data file was meant to become. A data file is removed only after the tracker
confirmed the upload, or when it holds no bytes a user wrote; bytes whose manifest is
missing or cut short go to the recovery folder, never away.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import trio

from trackerfs.core.statedir import (
    PRIVATE_FILE,
    make_private_dir,
    mount_holder,
    open_private_file,
    read_recovering,
)
from trackerfs.errors import TrackerError
from trackerfs.model import Attachment

if TYPE_CHECKING:
    from trackerfs.core.streaming import StreamedUpload

log = logging.getLogger(__name__)

#: Manifest states, what a later run needs of `LocalState`: "open" (not to be uploaded as
#: it is) and "pending" (its upload began: UPLOADING or FAILED; the next mount finishes it).
OPEN = "open"
PENDING = "pending"
MANIFEST = ".json"
DATA = ".data"
MANIFEST_TEMP = ".json.tmp"


@dataclass(slots=True)
class Manifest:
    """What a spooled file is for."""

    project: str
    issue: str
    name: str
    temporary: bool = False
    #: the id of the attachment this file replaces (recovery finds it by listing the issue)
    replaces: str | None = None
    state: str = OPEN
    created: float = field(default_factory=time.time)
    upload_started: float | None = None
    size: int = 0
    #: attachments of that name the issue had when the upload started (not this upload)
    known: list[str] = field(default_factory=list)
    #: removed by the user while still open: its bytes are wanted by nobody
    unlinked: bool = False
    #: what finds the issue again (`Tracker.locator`); "" in manifests written
    #: before it was kept, whose issue key is then the reference
    issue_ref: str = ""
    #: the project and issue directories the file was written in, as the mount named
    #: them (a task tracker's issue key is a gid; recovery keeps files under these names)
    folders: list[str] = field(default_factory=list)


class SpoolFile:
    """One spooled file: a data file on disk and its manifest.

    Once discarded it stays gone: its size is 0, reads give nothing, and writes fail
    with ENOENT; nothing re-creates its data file (only `Spool.create` creates one).
    """

    def __init__(self, spool: Spool, ident: str, manifest: Manifest) -> None:
        self.spool = spool
        self.ident = ident
        self.manifest = manifest
        self.data_path = spool.directory / f"{ident}{DATA}"
        self.discarded = False
        self._fd: int | None = None
        # Manifest versions: made in order on the trio thread, written in order by threads.
        self._made = 0
        self._written = 0
        self._disk = threading.Lock()

    @property
    def fd(self) -> int:
        """A read-write descriptor of the data file, opened on first use."""
        if self.discarded:
            raise FileNotFoundError(errno.ENOENT, "the spooled file was discarded", str(self.data_path))
        if self._fd is None:
            self._fd = os.open(self.data_path, os.O_RDWR | os.O_CLOEXEC)
        return self._fd

    def create_data(self) -> None:
        """Create the empty data file (it must not exist yet)."""
        self._fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)

    def size(self) -> int:
        """Bytes in the data file now (0 once discarded)."""
        return 0 if self.discarded else os.fstat(self.fd).st_size

    def pwrite(self, data: bytes, offset: int) -> int:
        """Write at `offset` (OSError such as ENOSPC passes to the caller)."""
        return os.pwrite(self.fd, data, offset)

    def pread(self, size: int, offset: int) -> bytes:
        """Read up to `size` bytes at `offset` (nothing once discarded)."""
        return b"" if self.discarded else os.pread(self.fd, size, offset)

    def open_for_upload(self) -> BinaryIO:
        """A fresh read-only file object of the data (the uploader closes it)."""
        if self.discarded:
            raise FileNotFoundError(errno.ENOENT, "the spooled file was discarded", str(self.data_path))
        return self.data_path.open("rb")

    def truncate(self, size: int) -> None:
        """Cut or extend the data to `size` bytes."""
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        """Make the bytes durable (blocks: call it from a worker thread)."""
        with self._disk:  # a discard meanwhile must not close the descriptor under fsync
            if not self.discarded:
                os.fsync(self.fd)

    def save(self, **changes: Any) -> None:
        """Update the manifest on disk atomically and durably (blocks on fsync)."""
        self._write(*self._change(changes))

    async def asave(self, **changes: Any) -> None:
        """`save` with the disk work in a worker thread; the manifest changes at once."""
        version, payload = self._change(changes)
        await trio.to_thread.run_sync(self._write, version, payload)

    def _change(self, changes: dict[str, Any]) -> tuple[int, bytes]:
        for key, value in changes.items():
            setattr(self.manifest, key, value)
        self._made += 1
        return self._made, json.dumps(asdict(self.manifest)).encode("utf-8")

    def _write(self, version: int, payload: bytes) -> None:
        with self._disk:
            # A newer version already on disk, or the file discarded meanwhile: nothing to do.
            if self.discarded or version <= self._written:
                return
            self.spool.write_manifest(self.ident, payload)
            self._written = version

    def close(self) -> None:
        """Close the descriptor (the files stay)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Remove the data, then the manifest (a crash between leaves a lone manifest,
        which the next mount removes: discarded bytes never come back as a leftover)."""
        with self._disk:
            self.discarded = True
            self.close()
            for path in (self.data_path, self.spool.manifest_path(self.ident)):
                path.unlink(missing_ok=True)

    def move_data(self, target: Path) -> None:
        """Move the bytes to `target` (as a 0600 file), then drop the manifest."""
        with self._disk:
            self.discarded = True
            self.close()
            shutil.move(self.data_path, target)
            os.chmod(target, PRIVATE_FILE)
            self.spool.manifest_path(self.ident).unlink(missing_ok=True)


class LocalState(enum.Enum):
    """Where a local file is in its life (the allowed moves are `TRANSITIONS`)."""

    #: created, or emptied by O_TRUNC, with nothing written since: a close now may be a
    #: shell's `>` before the writes, so only the last close uploads it
    NEW = "new"
    #: a copy of the attachment it replaces (opened read-write): nothing to upload
    UNCHANGED = "unchanged"
    #: written: its bytes are on no tracker; the next close uploads them
    WRITING = "writing"
    #: its upload is running
    UPLOADING = "uploading"
    #: the tracker confirmed the upload: the node names the attachment, the spool pair is gone
    UPLOADED = "uploaded"
    #: the upload failed: the bytes stay (manifest `pending`); the next close or mount tries again
    FAILED = "failed"
    #: a write was refused (over the upload limit, spool disk full): the bytes are
    #: incomplete and never uploaded, until the file is emptied
    REFUSED = "refused"
    #: unlinked, or replaced by a rename: nobody wants its bytes; never uploaded
    DISCARDED = "discarded"


class Change(enum.Enum):
    """What happened to a local file."""

    COPY = "copy"  # the attachment it replaces was copied in
    WRITE = "write"
    TRUNCATE = "truncate"  # its size set, not to 0
    EMPTY = "empty"  # truncated to 0
    REFUSE = "refuse"  # a write was refused
    UPLOAD = "upload"  # an upload began
    CONFIRM = "confirm"  # the tracker confirmed the upload
    FAIL = "fail"  # the upload failed
    DISCARD = "discard"  # unlinked or replaced


_S = LocalState
#: Every allowed move: change → {state before: state after}. A change of the bytes while
#: an upload runs leaves UPLOADING at once, so when the upload ends (CONFIRM, FAIL) a file
#: still WRITING or REFUSED was changed meanwhile and stays local.
TRANSITIONS: dict[Change, dict[LocalState, LocalState]] = {
    Change.COPY: {_S.NEW: _S.UNCHANGED, _S.DISCARDED: _S.DISCARDED},
    Change.WRITE: {
        _S.NEW: _S.WRITING,
        _S.UNCHANGED: _S.WRITING,
        _S.WRITING: _S.WRITING,
        _S.UPLOADING: _S.WRITING,
        _S.FAILED: _S.WRITING,
        _S.REFUSED: _S.REFUSED,
        _S.DISCARDED: _S.DISCARDED,
    },
    Change.TRUNCATE: {
        _S.NEW: _S.NEW,
        _S.UNCHANGED: _S.NEW,
        _S.WRITING: _S.WRITING,
        _S.UPLOADING: _S.WRITING,
        _S.FAILED: _S.WRITING,
        _S.REFUSED: _S.REFUSED,
        _S.DISCARDED: _S.DISCARDED,
    },
    # Emptying forgives a refused write: nothing incomplete is left.
    Change.EMPTY: {
        _S.NEW: _S.NEW,
        _S.UNCHANGED: _S.NEW,
        _S.WRITING: _S.WRITING,
        _S.UPLOADING: _S.WRITING,
        _S.FAILED: _S.WRITING,
        _S.REFUSED: _S.WRITING,
        _S.DISCARDED: _S.DISCARDED,
    },
    Change.REFUSE: {
        _S.NEW: _S.REFUSED,
        _S.UNCHANGED: _S.REFUSED,
        _S.WRITING: _S.REFUSED,
        _S.UPLOADING: _S.REFUSED,
        _S.FAILED: _S.REFUSED,
        _S.REFUSED: _S.REFUSED,
        _S.DISCARDED: _S.DISCARDED,
    },
    Change.UPLOAD: {_S.NEW: _S.UPLOADING, _S.WRITING: _S.UPLOADING, _S.FAILED: _S.UPLOADING},
    Change.CONFIRM: {_S.UPLOADING: _S.UPLOADED, _S.WRITING: _S.WRITING, _S.REFUSED: _S.REFUSED},
    Change.FAIL: {_S.UPLOADING: _S.FAILED, _S.WRITING: _S.WRITING, _S.REFUSED: _S.REFUSED},
    Change.DISCARD: {
        _S.NEW: _S.DISCARDED,
        _S.UNCHANGED: _S.DISCARDED,
        _S.WRITING: _S.DISCARDED,
        _S.FAILED: _S.DISCARDED,
        _S.REFUSED: _S.DISCARDED,
        _S.DISCARDED: _S.DISCARDED,
    },
}
#: States whose bytes differ from anything the tracker has, with no upload of them running.
CHANGED = frozenset({_S.NEW, _S.WRITING, _S.FAILED, _S.REFUSED})


class LocalStateError(RuntimeError):
    """A change a local file in its state cannot take: a bug in the writer, not a user error."""


@dataclass(eq=False)
class LocalFile:
    """A file that exists only on the local disk for now: written, temporary, or failed.

    Its life is one `state`, moved only by `change` along `TRANSITIONS`. `replaces` is
    the attachment this file will replace once uploaded (an overwrite or a safe-save
    rename); `temporary` says its current name is one that is never uploaded.
    """

    spooled: SpoolFile
    temporary: bool
    replaces: Attachment | None = None
    state: LocalState = LocalState.NEW
    handles: int = 0
    #: why the file is REFUSED (raised again at the close that would upload it)
    refusal: TrackerError | None = None
    mtime: float = field(default_factory=time.time)
    #: one upload at a time per file: a second close waits and finds nothing to do
    upload_lock: trio.Lock = field(default_factory=trio.Lock)
    #: bytes written in order from the first byte, while the file holds nothing else
    #: (None after a write elsewhere): such a file may be uploaded while it is written
    in_order: int | None = 0
    #: the upload sent while the file is written (`core.streaming`), if one runs
    streamed: StreamedUpload | None = None

    def change(self, what: Change) -> LocalState:
        """Move to the state `what` leads to; LocalStateError if it is not allowed here."""
        after = TRANSITIONS[what].get(self.state)
        if after is None:
            raise LocalStateError(
                f"local file {self.spooled.ident} ({self.spooled.manifest.name!r}): "
                f"{what.value} is not allowed when {self.state.value}"
            )
        self.state = after
        if after is not LocalState.REFUSED:
            self.refusal = None
        if after in (LocalState.REFUSED, LocalState.DISCARDED) and self.streamed is not None:
            self.streamed.give_up(f"the file was {after.value}")
        return after

    def refuse(self, why: TrackerError) -> TrackerError:
        """A write was refused: remember why (the file is incomplete); returns `why`."""
        self.change(Change.REFUSE)
        if self.state is LocalState.REFUSED:
            self.refusal = why
        return why

    @property
    def dirty(self) -> bool:
        """Whether its bytes are on no tracker and no upload of them is running."""
        return self.state in CHANGED

    @property
    def unlinked(self) -> bool:
        """Whether it was unlinked or replaced (its descriptors still work)."""
        return self.state is LocalState.DISCARDED

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.spooled.size()

    @property
    def replaced_id(self) -> str | None:
        """The id of the attachment this file replaces, as the manifest keeps it."""
        return self.replaces.id if self.replaces else None


@dataclass(frozen=True, slots=True)
class Orphan:
    """A data file without a readable manifest: bytes whose purpose is (partly) unknown."""

    data_path: Path
    why: str
    #: what an uncommitted temp manifest says the file was, when there is one
    manifest: Manifest | None = None


@dataclass(slots=True)
class Leftovers:
    """What a previous run left in the spool directory."""

    files: list[SpoolFile] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    #: files with no bytes worth keeping: temp manifests, manifests without data
    strays: list[Path] = field(default_factory=list)


class Spool:
    """The spool directory of one profile (created 0700 unless only looked at)."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.directory = directory
        if create:
            make_private_dir(directory)

    def create(self, manifest: Manifest) -> SpoolFile:
        """A new, empty spooled file."""
        ident = uuid.uuid4().hex
        spooled = SpoolFile(self, ident, manifest)
        spooled.create_data()  # now, so that ENOSPC shows at create
        spooled.save()
        return spooled

    def manifest_path(self, ident: str) -> Path:
        """Where the manifest of `ident` lives."""
        return self.directory / f"{ident}{MANIFEST}"

    def write_manifest(self, ident: str, payload: bytes) -> None:
        """Replace a manifest so that a power loss leaves the old one or the new one, whole."""
        path = self.manifest_path(ident)
        temp = self.directory / f"{ident}{MANIFEST_TEMP}"
        fd = open_private_file(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        self.sync_directory()

    def sync_directory(self) -> None:
        """Make renames and removals in the spool directory durable."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def leftovers(self) -> Leftovers:
        """What a previous run left behind; only reads (`keep_orphans` acts on it)."""
        found = Leftovers()
        if not self.directory.is_dir():
            return found
        names = {path.name for path in self.directory.iterdir()}
        for name in sorted(names):
            self._classify(name, names, found)
        return found

    def _classify(self, name: str, names: set[str], found: Leftovers) -> None:
        ident, suffix = _split(name)
        path = self.directory / name
        data = self.directory / f"{ident}{DATA}"
        if suffix == MANIFEST_TEMP:
            found.strays.append(path)
        elif suffix == MANIFEST:
            try:
                manifest = _read_manifest(path)
            except (OSError, ValueError, TypeError) as exc:
                found.strays.append(path)
                if data.name in names:
                    why = f"its manifest is unreadable (cut short by a crash?): {exc}"
                    found.orphans.append(Orphan(data, why, self._temp_manifest(ident)))
                return
            if data.name in names:
                found.files.append(SpoolFile(self, ident, manifest))
            else:
                found.strays.append(path)
        elif suffix == DATA and f"{ident}{MANIFEST}" not in names:
            found.orphans.append(Orphan(data, "it has no manifest", self._temp_manifest(ident)))

    def _temp_manifest(self, ident: str) -> Manifest | None:
        """What an uncommitted manifest says, if one was written whole."""
        try:
            return _read_manifest(self.directory / f"{ident}{MANIFEST_TEMP}")
        except (OSError, ValueError, TypeError):
            return None


def _read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads(path.read_text(encoding="utf-8")))


def _split(name: str) -> tuple[str, str]:
    for suffix in (MANIFEST_TEMP, MANIFEST, DATA):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def keep_orphans(state_dir: Path, leftovers: Leftovers) -> list[Path]:
    """Move orphaned bytes to the recovery folder and remove stray files; the places kept."""
    kept = []
    for orphan in leftovers.orphans:
        try:
            size = orphan.data_path.stat().st_size
            if not size:
                orphan.data_path.unlink()
                log.info("removed the empty spool file %s (%s)", orphan.data_path.name, orphan.why)
                continue
            target = _recovery_target(state_dir, orphan)
            shutil.move(orphan.data_path, target)
            os.chmod(target, PRIVATE_FILE)
        except OSError as exc:
            log.error("could not keep the spool file %s: %s", orphan.data_path, exc)
            continue
        log.warning(
            "spool file %s: %s; its %d bytes are kept at %s", orphan.data_path.name, orphan.why, size, target
        )
        kept.append(target)
    for stray in leftovers.strays:
        log.info("removing %s left in the spool by an earlier run", stray.name)
        stray.unlink(missing_ok=True)
    return kept


def _recovery_target(state_dir: Path, orphan: Orphan) -> Path:
    if orphan.manifest is not None:
        return recovery_path(state_dir, orphan.manifest)
    return recovery_path(state_dir, Manifest("unidentified", "", orphan.data_path.name))


def recovery_path(state_dir: Path, manifest: Manifest) -> Path:
    """Where a file that could not be uploaded is kept for the user, without clobbering."""
    folder = make_private_dir(state_dir / "recovered")
    parts = manifest.folders or ([manifest.project, manifest.issue] if manifest.issue else [manifest.project])
    for part in parts:
        folder = make_private_dir(folder / _safe(part))
    target = folder / _safe(manifest.name)
    number = 2
    while target.exists():
        target = folder / f"{_safe(manifest.name)}.{number}"
        number += 1
    return target


def move_to_recovery(state_dir: Path, spooled: SpoolFile) -> Path:
    """Move a spooled file's bytes into the recovery folder and drop its manifest."""
    target = recovery_path(state_dir, spooled.manifest)
    spooled.move_data(target)
    return target


def _safe(name: str) -> str:
    cleaned = name.replace("/", "_").replace("\0", "_")
    return cleaned if cleaned not in ("", ".", "..") else "_"


def describe_mount(state_dir: Path) -> list[str]:
    """Lines for `trackerfs status` about the running mount, if any (reads, takes no lock)."""
    holder = mount_holder(state_dir)
    if holder is None:
        return ["not mounted"]
    lines = [f"mounted at {holder.mountpoint or '?'} by pid {holder.pid or '?'}"]
    left = read_recovering(state_dir, holder)
    if left:
        lines.append(f"recovering: {left} left (uploads an earlier run did not finish)")
    return lines


def describe_state(state_dir: Path) -> list[str]:
    """Lines for `trackerfs status`: files in the spool, and files kept in recovery.

    It only reads: it works while the profile is mounted and takes no lock.
    """
    lines: list[str] = []
    found = Spool(state_dir / "spool", create=False).leftovers()
    for spooled in found.files:
        manifest = spooled.manifest
        if manifest.unlinked:
            continue
        size = _size(spooled.data_path)
        if manifest.temporary:
            what = "temporary name: never uploaded"
        else:
            what = "waiting for upload" if manifest.state == PENDING else "being written"
        folders = manifest.folders or [manifest.project, manifest.issue]
        lines.append(f"spool      {'/'.join([*folders, manifest.name])}  {size} bytes  ({what})")
    for orphan in found.orphans:
        lines.append(f"spool      {orphan.data_path}  {_size(orphan.data_path)} bytes  ({orphan.why})")
    recovered = state_dir / "recovered"
    if recovered.is_dir():
        for path in sorted(p for p in recovered.rglob("*") if p.is_file()):
            lines.append(f"recovered  {path}  {_size(path)} bytes")
    return lines


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
