"""3. Metadata: listings cost pages, not items; warm listings and misses cost nothing."""

from __future__ import annotations

import errno
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import PROJECT
from tests.benchmarks.report import Section, Table
from tests.benchmarks.scale import PAGE_SIZE

NAME = "metadata"
SEARCH = "/search/jql"


@dataclass(frozen=True, slots=True)
class Counted:
    """One operation: wall time, the API requests it caused, and what it printed."""

    seconds: float
    requests: list[dict[str, Any]]
    output: str

    @property
    def pages(self) -> int:
        """How many of the requests were search pages."""
        return sum(1 for request in self.requests if request["path"].endswith(SEARCH))

    def paths(self) -> str:
        """The request paths with their counts."""
        counts: dict[str, int] = {}
        for request in self.requests:
            counts[request["path"]] = counts.get(request["path"], 0) + 1
        return ", ".join(f"{n}× `{path}`" for path, n in counts.items()) or "—"


def counted(bench: Bench, action: Callable[[], str]) -> Counted:
    """Run `action` with a cleared request log; what reached the emulator's API."""
    bench.emulator.clear_requests()
    started = time.perf_counter()
    output = action()
    seconds = time.perf_counter() - started
    return Counted(seconds, bench.api_requests(), output)


def command(*argv: str) -> Callable[[], str]:
    """An action running a command; returns its standard output."""
    return lambda: subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def missing(path: Path) -> Callable[[], str]:
    """An action that stats a name that must not exist."""

    def stat() -> str:
        try:
            path.stat()
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise RuntimeError(f"{path} exists")

    return stat


def run(bench: Bench) -> Section:
    """ls -l of a big issue, find over a big project, stat of missing names; each cold then warm."""
    data = bench.data
    table = Table(["operation", "wall time", "API requests", "search pages", "what was asked"])

    def add(label: str, measured: Counted, pages: str = "") -> None:
        table.add(label, f"{measured.seconds * 1000:.0f} ms", len(measured.requests), pages, measured.paths())

    with bench.trackerfs("ls") as root:
        issue = root / PROJECT / data.files_issue
        for state in ("cold", "warm"):
            listed = counted(bench, command("ls", "-l", str(issue)))
            add(f"`ls -l` of an issue with {data.files_count} files, {state}", listed)
        entries = len(listed.output.splitlines()) - 1

    expected_pages = math.ceil(data.project_issues / PAGE_SIZE)
    with bench.trackerfs("find") as root:
        for state in ("cold", "warm"):
            found = counted(bench, command("find", str(root / data.project)))
            add(
                f"`find` over a project of {data.project_issues} issues, {state}",
                found,
                f"{found.pages} (expected ≤ {expected_pages})",
            )
        found_entries = len(found.output.splitlines())

    with bench.trackerfs("stat") as root:
        for target, label in (
            (root / PROJECT / data.files_issue / "no-such-file.txt", "a missing file name"),
            (root / PROJECT / f"{PROJECT}-99999", "a missing issue key"),
        ):
            for attempt in ("first", "second"):
                result = counted(bench, missing(target))
                add(f"`stat` of {label}, {attempt} ({result.output})", result)

    return Section(
        NAME,
        "3. Metadata",
        [table],
        [
            f"Emulator page size {PAGE_SIZE}: a listing of N issues should cost ceil(N / {PAGE_SIZE})"
            " search pages, whatever the number of attachments (they come embedded).",
            f"`ls -l` showed {entries} entries; `find` printed {found_entries} paths"
            f" (expected {1 + data.project_issues * (1 + bench.scale.files_per_issue)}).",
            "Warm = the same command right after the cold one (within the metadata TTL). Every"
            " operation starts on a fresh mount; the mount's own start-up requests are not counted.",
        ],
    )
