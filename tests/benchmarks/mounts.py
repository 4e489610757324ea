"""Fresh mounts of the same data: trackerfs (through the emulator) and rclone (on nginx).

Each measurement of a cold read takes a fresh mount: unmounting drops the FUSE inodes and
with them every page the kernel cached, while nginx's files stay in the page cache as a
media host's would stay in its RAM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount, force_unmount, wait_mounted

#: The profile every trackerfs mount uses: Jira Cloud, content through the 303 to nginx.
PROFILE: dict[str, Any] = {"user": "bench@example.com", "flavour": "cloud", "download": "redirect"}
STOP_TIMEOUT = 30.0
#: rclone at its best for one big sequential reader: the kernel readahead trackerfs sets
#: for itself, and chunks and buffers large enough that it streams rather than asks.
RCLONE_TUNED_FLAGS = ["--max-read-ahead", "1M", "--buffer-size", "64M", "--vfs-read-chunk-size", "64M"]


@contextmanager
def trackerfs_mount(emulator: EmulatorProcess, workdir: Path, **settings: Any) -> Iterator[Mount]:
    """A fresh trackerfs mount of the emulator; unmounted on the way out, whatever happened."""
    mount = Mount(
        workdir,
        url=emulator.base_url,
        token=emulator.token,
        tracker="jira",
        profile={**PROFILE, **settings},
        name="bench",
        debug=False,
    )
    try:
        yield mount.start()
    finally:
        mount.stop()


@contextmanager
def rclone_mount(url: str, workdir: Path, cache_mode: str, *, tuned: bool = False) -> Iterator[Path]:
    """``rclone mount :http:`` of `url`, read-only, with a fresh VFS cache directory
    (`tuned`: with `RCLONE_TUNED_FLAGS`, else rclone's defaults)."""
    mountpoint = workdir / "mnt"
    cache = workdir / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    config = workdir / "rclone.conf"
    config.touch()
    log = workdir / "rclone.log"
    command = [
        "rclone",
        "mount",
        ":http:",
        str(mountpoint),
        "--http-url",
        url,
        "--read-only",
        "--vfs-cache-mode",
        cache_mode,
        "--cache-dir",
        str(cache),
        "--config",
        str(config),
        "--log-file",
        str(log),
        *(RCLONE_TUNED_FLAGS if tuned else []),
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_mounted(mountpoint, process, log)
        yield mountpoint
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, check=False)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        force_unmount(mountpoint)
        shutil.rmtree(cache, ignore_errors=True)


def memory_status(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of /proc/PID/status, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def peak_rss(mount: Mount) -> int:
    """The daemon's peak resident set size so far (VmHWM), in bytes."""
    assert mount.process is not None
    return memory_status(mount.process.pid)["VmHWM"]


def unmount_everything_under(directory: Path) -> None:
    """Lazily unmount every mount point below `directory` (left by an interrupted run)."""
    root = str(directory.resolve())
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in reversed(points):
        decoded = point.encode().decode("unicode_escape")
        if decoded == root or decoded.startswith(root + "/"):
            force_unmount(Path(decoded))
