"""5. Re-read through the same mount: served from the kernel page cache, no request."""

from __future__ import annotations

import hashlib
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
    """A cold read, then a re-read counted at nginx and at the emulator, then a content check."""
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
    with bench.trackerfs(NAME) as root:
        path = root / big.mount_path
        path.stat()
        for label in ("first read (cold)", "re-read, same mount"):
            mark = bench.nginx.mark()
            bench.emulator.clear_requests()
            started = time.perf_counter()
            cat(path)
            seconds = time.perf_counter() - started
            api = len(bench.emulator.requests())
            traffic = bench.nginx.traffic(mark)
            table.add(
                label,
                f"{seconds:.2f} s",
                f"{mb_per_s(big.size, seconds):.0f}",
                api,
                traffic.requests,
                size_text(traffic.bytes_sent),
            )
        intact = sha256_of(path) == big.sha256
    return Section(
        NAME,
        "5. Re-read through the same mount",
        [table],
        [
            "Attachments are immutable, so trackerfs opens them with keep_cache: a second open"
            " is served by the kernel page cache. The goal is 0 requests.",
            f"sha256 of the bytes read through trackerfs {'matches' if intact else 'DOES NOT MATCH'} the"
            " uploaded file.",
        ],
    )
