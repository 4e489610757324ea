"""2. Random reads: `unzip -l` of the ZIP and fio random reads, trackerfs against rclone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from tests.benchmarks.bench import RCLONE_OFF, TRACKERFS, Bench
from tests.benchmarks.data import Blob
from tests.benchmarks.report import Chart, Section, Table, ratio, size_text
from tests.benchmarks.runners import MB, fio_random_read, unzip_list
from tests.benchmarks.services import Traffic

log = logging.getLogger(__name__)

NAME = "random"
KINDS = {TRACKERFS: "trackerfs", RCLONE_OFF: "rclone (cache off)"}
BLOCK_SIZES = {"4k": "4 KiB", "128k": "128 KiB"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Served:
    """What one measured command cost the servers: API requests (the 303s), nginx traffic."""

    api_requests: int
    nginx: Traffic

    def requests(self) -> str:
        """``API + nginx`` request counts."""
        return f"{self.api_requests} + {self.nginx.requests}"


def through(bench: Bench, kind: str, blob: Blob, label: str, action: Callable[[Path], T]) -> tuple[T, Served]:
    """`action(path of blob)` on a fresh mount of `kind`, the path looked up beforehand."""
    with bench.mounted(kind, label) as root:
        path = bench.path_in(kind, root, blob)
        path.stat()
        mark = bench.nginx.mark()
        bench.emulator.clear_requests()
        result = action(path)
        api = len(bench.api_requests())
    return result, Served(api, bench.nginx.traffic(mark))


def unzip_table(bench: Bench) -> Table:
    """`unzip -l`: wall time and what was fetched, with the local file as the floor."""
    archive = bench.data.archive
    table = Table(["unzip -l", "wall time", "requests: API + nginx", "bytes fetched", "of the archive"])
    table.add("local file", f"{unzip_list(archive.local) * 1000:.0f} ms", "—", "—", "—")
    measured = {kind: through(bench, kind, archive, "unzip", unzip_list) for kind in KINDS}
    for kind, (seconds, served) in measured.items():
        table.add(
            KINDS[kind],
            f"{seconds * 1000:.0f} ms",
            served.requests(),
            size_text(served.nginx.bytes_sent),
            f"{served.nginx.bytes_sent / archive.size:.2%}",
        )
    (ours, our_cost), (theirs, their_cost) = measured[TRACKERFS], measured[RCLONE_OFF]
    table.add(
        "trackerfs / rclone",
        ratio(ours, theirs),
        "",
        ratio(our_cost.nginx.bytes_sent, their_cost.nginx.bytes_sent),
        "",
    )
    return table


def run(bench: Bench) -> Section:
    """unzip -l and fio 4 KiB / 128 KiB random reads, each through fresh mounts."""
    unzip = unzip_table(bench)
    big = bench.data.big
    fio = Table(
        [
            "fio randread",
            "IOPS",
            "MB/s",
            "requests: API + nginx",
            "fetched from nginx",
            "fetched / read",
            "IOPS vs rclone",
        ]
    )
    iops: dict[str, list[float]] = {name: [] for name in KINDS.values()}
    for block_size, block_label in BLOCK_SIZES.items():
        random_reads = partial(
            fio_random_read, block_size=block_size, seconds=bench.scale.fio_seconds, size=big.size
        )
        results = {kind: through(bench, kind, big, f"fio-{block_size}", random_reads) for kind in KINDS}
        for kind, (result, served) in results.items():
            log.info("fio %s %s: %.0f IOPS", kind, block_size, result.iops)
            iops[KINDS[kind]].append(result.iops)
            fio.add(
                f"{block_label}, {KINDS[kind]}",
                f"{result.iops:.0f}",
                f"{result.bytes_per_s / MB:.1f}",
                served.requests(),
                size_text(served.nginx.bytes_sent),
                f"{served.nginx.bytes_sent / max(result.bytes_read, 1):.1f}×",
                ratio(result.iops, results[RCLONE_OFF][0].iops) if kind == TRACKERFS else "",
            )
    chart = Chart(
        "fio.png", "fio random reads, psync, one job (IOPS)", "IOPS", list(BLOCK_SIZES.values()), iops
    )
    return Section(
        NAME,
        "2. Random reads",
        [unzip, fio],
        [
            f"`unzip -l` of a {size_text(bench.data.archive.size)} ZIP_STORED archive of"
            f" {bench.scale.zip_members} members: only its end and central directory need reading.",
            "fio: `--rw=randread --ioengine=psync --readonly --time_based"
            f" --runtime={bench.scale.fio_seconds}`"
            f" over the whole {size_text(bench.data.big.size)} file, page cache cold at the start (fresh"
            " mount). fetched / read > 1× is read amplification (block size, readahead).",
        ],
        [chart],
    )
