"""1. Cold sequential read of the big file: trackerfs against curl, httpx and rclone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.bench import RCLONE_FULL, RCLONE_OFF, RCLONE_TUNED, TRACKERFS, TRACKERFS_NO_DISK, Bench
from tests.benchmarks.mounts import RCLONE_TUNED_FLAGS
from tests.benchmarks.report import Chart, Section, Table, ratio, size_text
from tests.benchmarks.runners import cat, curl_get, dd, httpx_get, mb_per_s, median
from tests.benchmarks.services import Traffic

log = logging.getLogger(__name__)

NAME = "sequential"
READERS: dict[str, Callable[[Path], float]] = {"cat": cat, "dd": dd}
#: One measurement: seconds, and what nginx served for it (None: not through a mount).
Measure = Callable[[], tuple[float, Traffic | None]]
CURL = "curl from nginx"
HTTPX = "httpx stream under trio"
KINDS = {
    TRACKERFS: "trackerfs",
    TRACKERFS_NO_DISK: "trackerfs (disk cache off)",
    RCLONE_TUNED: "rclone (cache off, tuned)",
    RCLONE_OFF: "rclone (cache off, defaults)",
    RCLONE_FULL: "rclone (cache full)",
}


@dataclass(frozen=True, slots=True)
class Measured:
    """The runs of one reader: seconds each, and what nginx served for them."""

    seconds: list[float]
    fetched: list[int]

    def mb_per_s(self, size: int) -> float:
        """Median throughput."""
        return mb_per_s(size, median(self.seconds))

    def slowest_mb_per_s(self, size: int) -> float:
        """Throughput of the slowest run."""
        return mb_per_s(size, max(self.seconds))


def cold_read(bench: Bench, kind: str, reader: Callable[[Path], float]) -> tuple[float, Traffic]:
    """Read the big file once through a fresh mount; the path is looked up before timing."""
    with bench.mounted(kind, NAME) as root:
        path = bench.path_in(kind, root, bench.data.big)
        path.stat()
        mark = bench.nginx.mark()
        seconds = reader(path)
    return seconds, bench.nginx.traffic(mark)


def direct(download: Callable[[str], float], url: str) -> Measure:
    """A measurement of a direct download from nginx."""
    return lambda: (download(url), None)


def mounted_read(bench: Bench, kind: str, reader: str) -> Measure:
    """A measurement of a cold read through a fresh mount."""
    return lambda: cold_read(bench, kind, READERS[reader])


def measure_all(measures: dict[str, Measure], runs: int) -> dict[str, Measured]:
    """Every measurement `runs` times, interleaved so that drift on the machine hits all alike."""
    results = {name: Measured([], []) for name in measures}
    for run in range(1, runs + 1):
        for name, measure in measures.items():
            seconds, traffic = measure()
            results[name].seconds.append(seconds)
            if traffic is not None:
                results[name].fetched.append(traffic.bytes_sent)
            log.info("run %d, %s: %.2f s", run, name, seconds)
    return results


def label(kind: str, reader: str) -> str:
    """How a reader through a mount is named in the tables."""
    return f"{KINDS[kind]}: {reader}"


def run(bench: Bench) -> Section:
    """Measure every reader; tabulate MB/s and the ratios of trackerfs to each reference."""
    big = bench.data.big
    url = bench.media_url(big)
    measures: dict[str, Measure] = {CURL: direct(curl_get, url), HTTPX: direct(httpx_get, url)}
    for kind in KINDS:
        for reader in READERS:
            measures[label(kind, reader)] = mounted_read(bench, kind, reader)
    results = measure_all(measures, bench.scale.repeats)

    def rate(name: str) -> float:
        return results[name].mb_per_s(big.size)

    figures = Table(["reader", "MB/s (median)", "runs (s)", "fetched from nginx per run"])
    for name, measured in results.items():
        fetched = size_text(median([float(f) for f in measured.fetched])) if measured.fetched else "—"
        runs_text = ", ".join(f"{s:.2f}" for s in measured.seconds)
        figures.add(name, f"{rate(name):.0f}", runs_text, fetched)

    references = {
        "/ httpx": lambda reader: rate(HTTPX),
        "/ rclone tuned": lambda reader: rate(label(RCLONE_TUNED, reader)),
        "/ rclone defaults": lambda reader: rate(label(RCLONE_OFF, reader)),
        "/ rclone full": lambda reader: rate(label(RCLONE_FULL, reader)),
        "/ curl": lambda reader: rate(CURL),
        "/ disk cache off": lambda reader: rate(label(TRACKERFS_NO_DISK, reader)),
    }
    ratios = Table(["trackerfs", *references])
    for reader in READERS:
        ours = results[label(TRACKERFS, reader)]
        slowest = ours.slowest_mb_per_s(big.size)
        rows = ((reader, ours.mb_per_s(big.size)), (f"{reader}, slowest run", slowest))
        for row, figure in rows:
            ratios.add(row, *(ratio(figure, reference(reader)) for reference in references.values()))
    chart = Chart(
        "sequential.png",
        f"Cold sequential read of {size_text(big.size)} (median MB/s)",
        "MB/s",
        [name.replace(": ", "\n") for name in results],
        {"MB/s": [rate(name) for name in results]},
        highlight="trackerfs",
    )
    return Section(
        NAME,
        f"1. Cold sequential read of {size_text(big.size)}",
        [figures, ratios],
        [
            "Each mounted run is a fresh mount (no page cache); the path is looked up before the"
            " clock starts. curl and httpx read the same blob from nginx directly. The runs of all"
            " readers are interleaved; the figure is their median.",
            "Ratios compare trackerfs (on-disk content cache on, as by default) with the same reader"
            " (cat or dd) through rclone, each median against median; >1× means trackerfs is faster."
            " The slowest-run rows put the slowest trackerfs run against the same medians, so that"
            " every run counts. rclone tuned has `"
            + " ".join(RCLONE_TUNED_FLAGS)
            + "` (trackerfs sets a 1 MiB kernel readahead for itself); rclone defaults has none."
            " The last column is what writing every fetched block behind to the on-disk content"
            " cache costs a cold read.",
        ],
        [chart],
    )
