"""3b. Big trees: `find` over a project of many issues, `ls -l` of an issue of many files.

Requests, wall time and the daemon's RSS, cold, warm, and after the metadata TTL expired
three times (the caches are refilled, not grown).
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from tests.benchmarks.bench import Bench
from tests.benchmarks.metadata import Counted, command, counted
from tests.benchmarks.mounts import memory_status, trackerfs_mount
from tests.benchmarks.report import Section, Table, size_text
from tests.benchmarks.scale import PAGE_SIZE

NAME = "trees"
TREE, WIDE = "TREE", "WIDE"
#: seconds the metadata caches of this mount keep a listing (the default is 60), so that it
#: expires three times in the run; still longer than a warm walk of the whole tree
TTL = 30.0
RSS_GOAL = 200 * 1000 * 1000


def build(bench: Bench) -> tuple[int, int, int, str]:
    """The two trees on the emulator: (issues, files per issue, files of the wide issue, its key)."""
    scale = bench.scale
    emulator = bench.emulator
    emulator.add_project(TREE, "Big tree")
    for start in range(0, scale.tree_issues, 1000):
        emulator.add_issues(TREE, min(1000, scale.tree_issues - start), scale.tree_files_per_issue)
    emulator.add_project(WIDE, "Wide issue")
    [wide] = emulator.add_issues(WIDE, 1, 0)
    emulator.add_many_attachments(wide, scale.wide_issue_files, "file-")
    return scale.tree_issues, scale.tree_files_per_issue, scale.wide_issue_files, wide


def run(bench: Bench) -> Section:
    """find and ls -l on one fresh mount: cold, warm, then three times after the TTL expired."""
    issues, per_issue, wide_files, wide = build(bench)
    table = Table(["operation", "wall time", "API requests", "daemon RSS after", "entries"])
    expected_find = 1 + issues * (1 + per_issue)
    rss: list[int] = []
    with trackerfs_mount(
        bench.emulator, bench.mount_dir("trees"), metadata_ttl=TTL, negative_ttl=TTL
    ) as mount:
        assert mount.process is not None
        pid = mount.process.pid
        rounds = [("cold", False), ("warm", False)] + [(f"TTL expired ({n})", True) for n in (1, 2, 3)]
        last = time.monotonic()
        for label, expire in rounds:
            if expire:
                time.sleep(max(0.0, last + TTL + 1 - time.monotonic()))
            found = counted(bench, command("find", str(mount.path / TREE)))
            if label == "cold":
                cold_listing = found.requests
            listed = counted(bench, command("ls", "-l", str(mount.path / WIDE / wide)))
            last = time.monotonic()  # every listing of the round is older than this
            rss.append(memory_status(pid)["VmRSS"])
            _row(table, f"`find` over {issues} issues × {per_issue} files, {label}", found, rss[-1], 0)
            _row(table, f"`ls -l` of an issue of {wide_files} files, {label}", listed, rss[-1], 1)
        peak = memory_status(pid)["VmHWM"]
    replay_seconds = replay(bench, cold_listing)
    table.add(
        f"the cold `find`'s {len(cold_listing)} requests replayed by raw httpx, one after the other",
        f"{replay_seconds * 1000:.0f} ms",
        len(cold_listing),
        "",
        "",
    )
    growth = rss[-1] - rss[-2]
    pages = math.ceil(issues / PAGE_SIZE)
    return Section(
        NAME,
        "3b. Big trees",
        [table],
        [
            f"One fresh mount with `metadata_ttl = {TTL:g}` (so that the listings expire three times within"
            f" the run; each expired round starts {TTL + 1:g} s after the one before ended); emulator page"
            f" size {PAGE_SIZE}: a cold `find` should cost about {pages} search pages (the"
            " attachments come embedded), an `ls -l` the issue and its attachments, a warm one"
            " nothing. The replay row is the time the emulator needs for the cold `find`'s requests"
            " alone: the rest of the cold `find` is trackerfs and FUSE.",
            f"`find` should print {expected_find} paths; `ls -l` should show {wide_files} entries.",
            f"Daemon peak RSS over the section (VmHWM): {size_text(peak)}"
            f" (goal < {RSS_GOAL // 1_000_000} MB); RSS change between the last two rounds after the"
            f" TTL expired: {growth / 2**20:+.1f} MiB (goal: no growth). A refresh builds the new"
            " listing while the old one is still in use, so the first one raises the RSS once.",
        ],
    )


def replay(bench: Bench, requests: list[dict[str, Any]]) -> float:
    """Send `requests` (from the log) again with raw httpx, in order; the seconds it took."""
    emulator = bench.emulator
    with httpx.Client(base_url=emulator.base_url, auth=emulator.auth, timeout=120.0) as client:
        started = time.perf_counter()
        for request in requests:
            client.request(request["method"], request["path"], params=request["query"]).raise_for_status()
        return time.perf_counter() - started


def _row(table: Table, label: str, measured: Counted, rss: int, heading_lines: int) -> None:
    entries = len(measured.output.splitlines()) - heading_lines
    table.add(label, f"{measured.seconds * 1000:.0f} ms", len(measured.requests), size_text(rss), entries)
