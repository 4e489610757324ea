"""5. Re-read through the same mount: served from the kernel page cache, no request."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import CHUNK
from tests.benchmarks.report import Section, Table, size_text
from tests.benchmarks.runners import cat, mb_per_s

NAME = "reread"


def sha256_of(path: Path) -> str:
    """The sha256 of a file read through the mount."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run(bench: Bench) -> Section:
    """A cold read, a re-read in the same mount and one after a remount, counted at nginx
    and at the emulator, then a content check."""
    big = bench.data.big
    table = Table(
        [
            "read of " + size_text(big.size),
            "wall time",
            "MB/s",
            "emulator requests",
            "nginx requests",
            "bytes fetched",
        ]
    )

    def measure(label: str, path: Path) -> None:
        mark = bench.nginx.mark()
        bench.emulator.clear_requests()
        started = time.perf_counter()
        cat(path)
        seconds = time.perf_counter() - started
        traffic = bench.nginx.traffic(mark)
        table.add(
            label,
            f"{seconds:.2f} s",
            f"{mb_per_s(big.size, seconds):.0f}",
            len(bench.emulator.requests()),
            traffic.requests,
            size_text(traffic.bytes_sent),
        )

    # Both mounts share one content cache folder, as two mounts of one profile would.
    cache = bench.workdir / "reread-cache"
    shutil.rmtree(cache, ignore_errors=True)
    with bench.trackerfs(NAME, cache_dir=str(cache)) as root:
        path = root / big.mount_path
        path.stat()
        measure("first read (cold)", path)
        measure("re-read, same mount", path)
    with bench.trackerfs(f"{NAME}-remount", cache_dir=str(cache)) as root:
        path = root / big.mount_path
        path.stat()
        measure("re-read after a remount", path)
        intact = sha256_of(path) == big.sha256
    return Section(
        NAME,
        "5. Re-reads: the same mount, and after a remount",
        [table],
        [
            "Attachments are immutable, so trackerfs opens them with keep_cache: a second open"
            " is served by the kernel page cache. After a remount the bytes come from the on-disk"
            " content cache. The goal is 0 content requests in both (the remount's one listing"
            " request is the only API request).",
            f"sha256 of the bytes read through trackerfs {'matches' if intact else 'DOES NOT MATCH'} the"
            " uploaded file.",
        ],
    )
