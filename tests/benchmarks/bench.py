"""One benchmark run's set-up: nginx, the emulator, the data, and fresh mounts of it."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.benchmarks.data import Blob, Dataset, build_dataset
from tests.benchmarks.mounts import peak_rss, rclone_mount, trackerfs_mount, unmount_everything_under
from tests.benchmarks.runners import cat
from tests.benchmarks.scale import Scale
from tests.benchmarks.services import Nginx, start_emulator
from tests.support.emulator import EmulatorProcess

log = logging.getLogger(__name__)

TRACKERFS = "trackerfs"
#: trackerfs with the on-disk content cache off: what writing behind to it costs a cold read
TRACKERFS_NO_DISK = "trackerfs-no-disk-cache"
RCLONE_OFF = "rclone-off"
#: rclone (cache off) given what trackerfs gives itself: a 1 MiB kernel readahead, and big
#: buffers and chunks of its own (`mounts.RCLONE_TUNED_FLAGS`)
RCLONE_TUNED = "rclone-tuned"
RCLONE_FULL = "rclone-full"
#: nginx serves hard links to the files under test here, for rclone's :http: remote.
RCLONE_DIR = "rclone"
RUN_DIRS = ("emu", "nginx", "mounts", RCLONE_DIR, "report")


@dataclass(slots=True)
class Bench:
    """The running servers, the data, and fresh mounts on demand."""

    workdir: Path
    scale: Scale
    emulator: EmulatorProcess
    nginx: Nginx
    data: Dataset
    #: (mount label, VmHWM) of every trackerfs daemon that served reads, just before its unmount.
    read_peaks: list[tuple[str, int]] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def api_requests(self) -> list[dict[str, Any]]:
        """What reached the emulator's API since the request log was last cleared."""
        return [request for request in self.emulator.requests() if request["origin"] == "api"]

    def media_url(self, blob: Blob) -> str:
        """The blob on nginx, where Jira's 303 sends trackerfs."""
        return f"{self.nginx.url}/{blob.blob_name}"

    def mount_dir(self, label: str) -> Path:
        """A new directory for one mount's mount point, config and log."""
        return self.workdir / "mounts" / f"{next(self._numbers):03d}-{label}"

    @contextmanager
    def trackerfs(self, label: str, **settings: Any) -> Iterator[Path]:
        """A fresh trackerfs mount (with its own content cache unless `cache_dir` is given);
        its peak RSS is recorded when the block ends."""
        workdir = self.mount_dir(label)
        with trackerfs_mount(self.emulator, workdir, **settings) as mount:
            yield mount.path
            self.read_peaks.append((label, peak_rss(mount)))
        if "cache_dir" not in settings:
            # Its own cache is of no further use, and its page cache would pin a file's worth
            # of memory per mount: the next mount's page cache would land on memory never
            # used before (see `runners.touch_memory`), and each run would cost more.
            shutil.rmtree(workdir / "cache", ignore_errors=True)

    @contextmanager
    def mounted(self, kind: str, label: str) -> Iterator[Path]:
        """A fresh mount of kind `TRACKERFS`, `TRACKERFS_NO_DISK`, `RCLONE_OFF`, `RCLONE_TUNED`
        or `RCLONE_FULL`."""
        if kind in (TRACKERFS, TRACKERFS_NO_DISK):
            settings = {"content_cache_mb": 0} if kind == TRACKERFS_NO_DISK else {}
            with self.trackerfs(f"{label}-{kind}", **settings) as root:
                yield root
        else:
            mode = {RCLONE_OFF: "off", RCLONE_TUNED: "off", RCLONE_FULL: "full"}[kind]
            with rclone_mount(
                f"{self.nginx.url}/{RCLONE_DIR}/",
                self.mount_dir(f"{label}-{kind}"),
                mode,
                tuned=kind == RCLONE_TUNED,
            ) as root:
                yield root

    @staticmethod
    def path_in(kind: str, root: Path, blob: Blob) -> Path:
        """Where `blob` is on a mount of `kind` rooted at `root`."""
        return root / (blob.mount_path if kind in (TRACKERFS, TRACKERFS_NO_DISK) else blob.filename)


def clean(workdir: Path) -> None:
    """Remove what an earlier run left (after unmounting anything still mounted there)."""
    unmount_everything_under(workdir)
    for name in RUN_DIRS:
        shutil.rmtree(workdir / name, ignore_errors=True)


@contextmanager
def open_bench(workdir: Path, scale: Scale) -> Iterator[Bench]:
    """Start nginx and the emulator, create the data; stop and unmount everything after."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    clean(workdir)
    blobs = workdir / "emu" / "blobs"
    blobs.mkdir(parents=True)
    view = workdir / RCLONE_DIR
    view.mkdir()
    nginx = Nginx(workdir / "nginx", blobs, {RCLONE_DIR: view})
    with ExitStack() as stack:
        stack.callback(nginx.stop)
        nginx.start()
        log.info("nginx on %s serves %s", nginx.url, blobs)
        emulator = stack.enter_context(start_emulator(workdir / "emu", nginx.url))
        log.info("emulator on %s", emulator.base_url)
        # Runs first on the way out: nothing may stay mounted once the servers are gone.
        stack.callback(unmount_everything_under, workdir)
        data = build_dataset(emulator, workdir / "data", scale)
        for blob in (data.big, data.archive):
            os.link(blobs / blob.blob_name, view / blob.filename)
            cat(blobs / blob.blob_name)  # in nginx's page cache, as in a media host's RAM
        yield Bench(workdir, scale, emulator, nginx, data)
