"""A real trackerfs mount in a child process, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOKEN_ENV = "TRACKERFS_TEST_TOKEN"
MOUNT_TIMEOUT = 30.0
#: What the daemon logs once it is mounted and its first request was answered.
ANNOUNCED = b"trackerfs.fuse.mount: mounted "


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool or number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_config(path: Path, profile: str, table: dict[str, Any]) -> Path:
    """Write a one-profile config file, private to its owner."""
    return write_profiles(path, {profile: table})


def write_profiles(path: Path, profiles: dict[str, dict[str, Any]]) -> Path:
    """Write a config file of several profiles, private to its owner."""
    lines = []
    for profile, table in profiles.items():
        lines += [f"[profiles.{profile}]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def wait_mounted(
    path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = MOUNT_TIMEOUT
) -> None:
    """Poll until `path` is a mount point; fail at once if the daemon exits."""
    deadline = time.monotonic() + timeout
    while not os.path.ismount(path):
        if process.poll() is not None:
            raise RuntimeError(
                f"trackerfs exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"not mounted after {timeout}s:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)


def wait_announced(
    process: subprocess.Popen[bytes], log: Path, since: int, timeout: float = MOUNT_TIMEOUT
) -> None:
    """Poll until the daemon logged that it is mounted (after byte `since` of its log): the
    moment a background mount returns and systemd hears READY=1, when the mount has had
    its first answer from the kernel and its readahead is set."""
    deadline = time.monotonic() + timeout
    while ANNOUNCED not in _tail(log, since):
        if process.poll() is not None:
            raise RuntimeError(
                f"trackerfs exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"mounted but not announced after {timeout}s:\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.02)


def _tail(path: Path, since: int) -> bytes:
    with path.open("rb") as log:
        log.seek(since)
        return log.read()


def force_unmount(path: Path) -> None:
    """Lazy unmount, ignoring errors (cleanup after a failed test)."""
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, check=False)


class Mount:
    """`trackerfs mount --foreground` of a profile against an emulator, in a child process."""

    def __init__(
        self,
        workdir: Path,
        *,
        url: str,
        token: str,
        tracker: str,
        profile: dict[str, Any],
        name: str = "test",
        debug: bool = True,
    ) -> None:
        self.workdir = workdir
        #: log every request and FUSE operation (the tests read those lines; benchmarks
        #: mount as a user does, without)
        self.debug = debug
        self.path = workdir / "mnt"
        self.path.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "trackerfs.log"
        self.state = workdir / "state"
        table = {
            "tracker": tracker,
            "url": url,
            "token_env": TOKEN_ENV,
            "spool_dir": str(self.state),
            "cache_dir": str(workdir / "cache"),
            **profile,
        }
        self.config = write_config(workdir / "config.toml", name, table)
        self.name = name
        self.env = dict(os.environ, **{TOKEN_ENV: token})
        #: the daemon's working directory (`python -m trackerfs` imports the trackerfs found
        #: there first): another revision's source tree, or None for this process's own
        self.cwd: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mount:
        """Mount and wait until the mount point is live."""
        with self.log.open("ab") as log:
            since = log.tell()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trackerfs",
                    "mount",
                    "--foreground",
                    *(["--debug"] if self.debug else []),
                    "--config",
                    str(self.config),
                    self.name,
                    str(self.path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
            )
        wait_mounted(self.path, self.process, self.log)
        wait_announced(self.process, self.log, since)
        return self

    def unmount(self, timeout: float = 30.0) -> int:
        """`fusermount3 -u`, then the daemon's exit code."""
        assert self.process is not None
        subprocess.run(["fusermount3", "-u", str(self.path)], check=True, capture_output=True)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure nothing is left mounted or running, whatever state the test left."""
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True, check=False)
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        force_unmount(self.path)

    def log_text(self) -> str:
        """What the daemon logged so far."""
        return self.log.read_text(errors="replace")

    def __enter__(self) -> Mount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
