"""Many readers: 8 parallel cold reads of 8 different big files, against 8 parallel downloads.

The files are one local file uploaded 8 times under 8 names: 8 attachments with 8 blobs,
so each reader of the mount fetches its own content. trackerfs runs with its on-disk
content cache off here (section 1 prices the cache; 8 files' worth written behind on top
of 8 files' worth of page cache would measure the disk instead), rclone tuned beside it.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.benchmarks.bench import RCLONE_DIR, RCLONE_TUNED, Bench
from tests.benchmarks.data import BIG_ISSUE, PROJECT, curl_upload
from tests.benchmarks.mounts import memory_status
from tests.benchmarks.report import Section, Table, ratio, size_text
from tests.benchmarks.runners import MB, cat, settle
from tests.support.emulator import REPO_ROOT

log = logging.getLogger(__name__)

NAME = "parallel"
READERS = 8
#: trackerfs's RSS goal with every reader at full speed
RSS_GOAL = 200_000_000
HTTPX_SCRIPT = "import sys; from tests.benchmarks.runners import httpx_get; httpx_get(sys.argv[1])"


def parallel(commands: list[list[str]]) -> tuple[float, list[float]]:
    """Start every command at once; the wall time until the last ends, and each one's time."""
    settle()
    started = time.perf_counter()
    running = [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=REPO_ROOT)
        for command in commands
    ]
    each = []
    for process in running:
        if process.wait() != 0:
            raise RuntimeError(f"{process.args} failed with {process.returncode}")
        each.append(time.perf_counter() - started)
    return time.perf_counter() - started, each


def run(bench: Bench) -> Section:
    """Upload the copies, then time the direct downloads, trackerfs and rclone, each once."""
    big = bench.data.big
    names = [f"parallel-{index}.bin" for index in range(READERS)]
    log.info("uploading %d copies of %s", READERS, size_text(big.size))
    for name in names:
        curl_upload(bench.emulator, BIG_ISSUE, big.local, name)
    stored = {a["filename"]: a for a in bench.emulator.attachments() if a["issue"] == BIG_ISSUE}
    blob_names = [str(stored[name]["blob_name"]) for name in names]
    view = bench.workdir / RCLONE_DIR
    for name, blob in zip(names, blob_names, strict=True):
        os.link(bench.workdir / "emu" / "blobs" / blob, view / name)
        cat(view / name)  # in nginx's page cache, as in a media host's RAM
    urls = [f"{bench.nginx.url}/{blob}" for blob in blob_names]
    total = READERS * big.size

    table = Table(
        ["8 readers at once", "wall time", "MB/s (all)", "fastest / slowest reader", "fetched", "peak RSS"]
    )

    def add(label: str, wall: float, each: list[float], fetched: str, rss: str) -> float:
        rate = total / MB / wall
        spread = f"{min(each):.2f} s / {max(each):.2f} s"
        table.add(label, f"{wall:.2f} s", f"{rate:.0f}", spread, fetched, rss)
        return rate

    wall, each = parallel([[sys.executable, "-c", HTTPX_SCRIPT, url] for url in urls])
    httpx_rate = add("8 httpx downloads (8 processes)", wall, each, "—", "—")
    wall, each = parallel([["curl", "-s", "-S", "-f", "-o", "/dev/null", url] for url in urls])
    add("8 curl downloads", wall, each, "—", "—")

    with bench.trackerfs(NAME, content_cache_mb=0) as root:
        paths = [root / PROJECT / BIG_ISSUE / name for name in names]
        for path in paths:
            path.stat()
        mount = bench_mount_pid(root)
        before = memory_status(mount)["VmHWM"] if mount else 0
        mark = bench.nginx.mark()
        wall, each = parallel([["cat", str(path)] for path in paths])
        traffic = bench.nginx.traffic(mark)
    peak = bench.read_peaks[-1][1]
    ours = add(
        "trackerfs: 8 × cat (content cache off)",
        wall,
        each,
        size_text(traffic.bytes_sent),
        f"{peak / MB:.0f} MB (at mount {before / MB:.0f} MB)",
    )
    with bench.mounted(RCLONE_TUNED, NAME) as root:
        paths = [root / name for name in names]
        for path in paths:
            path.stat()
        mark = bench.nginx.mark()
        wall, each = parallel([["cat", str(path)] for path in paths])
        traffic = bench.nginx.traffic(mark)
    rclone_rate = add("rclone (cache off, tuned): 8 × cat", wall, each, size_text(traffic.bytes_sent), "—")
    spread = statistics.pstdev(each)
    return Section(
        NAME,
        f"5b. Many readers: {READERS} cold reads of {READERS} different {size_text(big.size)} files at once",
        [table],
        [
            f"trackerfs / 8 httpx downloads: {ratio(ours, httpx_rate)}; trackerfs / rclone tuned:"
            f" {ratio(ours, rclone_rate)}. Peak RSS goal: under {RSS_GOAL / MB:.0f} MB"
            f" ({'met' if peak < RSS_GOAL else 'NOT met'}): every reader's readahead shares one"
            " prefetch budget per mount.",
            "fastest / slowest reader: when the first and the last of the 8 readers finished, from"
            " the common start; no reader is starved when the two are close."
            f" (rclone's readers: spread {spread:.2f} s.)",
            "The 8 files are 8 uploads of one local file: 8 attachments, 8 blobs on nginx. The direct"
            " downloads run in 8 processes, as the 8 cats do.",
        ],
    )


def bench_mount_pid(root: Path) -> int | None:
    """The pid of the trackerfs daemon serving `root`."""
    found = subprocess.run(
        ["pgrep", "-n", "-f", f"trackerfs mount .* {root}"], capture_output=True, text=True, check=False
    )
    return int(found.stdout.split()[0]) if found.stdout.strip() else None
