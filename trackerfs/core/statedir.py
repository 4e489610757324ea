"""The state directory of a profile: private modes, the mount lock, the mount's status file.

Everything in it names projects, issues and files, so directories are 0700 and files
0600 whatever the umask (created so, and existing ones are set so).

One profile has one spool, so only one mount of a profile may run at a time. The mount
holds an exclusive open-file-description lock (`F_OFD_SETLK`) on `mount.lock` for its
whole life; the kernel drops it when the process ends in any way (kill -9 included), so
a lock is never stale. The file records the holder's pid and mount point, for the one
line that refuses a second mount and for `trackerfs status`, which only tests the lock
(`F_OFD_GETLK`) and never takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trackerfs.errors import ConfigError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
LOCK_NAME = "mount.lock"
STATUS_NAME = "status.json"
#: struct flock: l_type, l_whence, l_start, l_len, l_pid (padded to the kernel's size)
_FLOCK = "@hhqqi"
_FLOCK_PAD = b"\0" * 8


def make_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700; set an existing `path` to 0700."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR)
        os.chmod(directory, PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def open_private_file(path: Path, flags: int) -> int:
    """A descriptor of `path` opened with `flags`, the file (new or not) set to 0600."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (temp + rename), as a 0600 file."""
    temp = path.with_name(f"{path.name}.tmp")
    fd = open_private_file(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)


def prepare_state_dir(state_dir: Path) -> None:
    """Make the state directory usable and private, or raise one clear ConfigError.

    What an earlier version left readable by others (0755 folders, 0644 files) is made
    private too.
    """
    try:
        make_private_dir(state_dir)
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        _make_tree_private(state_dir)
    except OSError as exc:
        raise ConfigError(f"cannot use the state directory {state_dir}: {exc.strerror or exc}") from None


def _make_tree_private(root: Path) -> None:
    for folder, directories, files in os.walk(root):
        for name in directories:
            path = Path(folder, name)
            if not path.is_symlink():
                os.chmod(path, PRIVATE_DIR)
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                os.chmod(path, PRIVATE_FILE)


@dataclass(frozen=True, slots=True)
class Holder:
    """The mount that holds a profile's lock."""

    pid: int | None
    mountpoint: str | None

    def describe(self, profile: str) -> str:
        """The line that says where the profile is mounted."""
        where = f" at {self.mountpoint}" if self.mountpoint else ""
        by = f" by pid {self.pid}" if self.pid is not None else ""
        return f"profile {profile} is already mounted{where}{by}"


def _flock(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0) + _FLOCK_PAD


def _read_holder(path: Path) -> Holder:
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        pid, mountpoint = recorded.get("pid"), recorded.get("mountpoint")
    except (OSError, ValueError, AttributeError):
        return Holder(None, None)
    return Holder(pid if isinstance(pid, int) else None, mountpoint if isinstance(mountpoint, str) else None)


@contextlib.contextmanager
def hold_profile_lock(state_dir: Path, profile: str, mountpoint: Path) -> Iterator[None]:
    """Hold the profile's mount lock while the block runs; ConfigError if another mount has it."""
    path = state_dir / LOCK_NAME
    try:
        fd = open_private_file(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        except (BlockingIOError, PermissionError):
            raise ConfigError(_read_holder(path).describe(profile)) from None
        except OSError as exc:
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from None
        record = json.dumps({"pid": os.getpid(), "mountpoint": str(mountpoint)})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
        yield
    finally:
        # Closing the only descriptor of the open file releases the lock.
        os.close(fd)


def mount_holder(state_dir: Path) -> Holder | None:
    """The mount holding the profile's lock now, or None; tests the lock without taking it."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK))
    except OSError:
        return None
    finally:
        os.close(fd)
    kind = struct.unpack(_FLOCK, answer[: struct.calcsize(_FLOCK)])[0]
    return None if kind == fcntl.F_UNLCK else _read_holder(path)


def write_status(state_dir: Path, *, recovering: int) -> None:
    """Record what the running mount is doing, for `trackerfs status`."""
    write_private_text(state_dir / STATUS_NAME, json.dumps({"pid": os.getpid(), "recovering": recovering}))


def clear_status(state_dir: Path) -> None:
    """The mount has nothing to report any more."""
    (state_dir / STATUS_NAME).unlink(missing_ok=True)


def read_recovering(state_dir: Path, holder: Holder) -> int:
    """How many files the mount `holder` still has to recover (0 when it is not recovering)."""
    try:
        recorded = json.loads((state_dir / STATUS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(recorded, dict) or recorded.get("pid") != holder.pid:
        return 0  # left by an earlier mount that ended without clearing it
    left = recorded.get("recovering")
    return left if isinstance(left, int) else 0
