"""Results as markdown: tables per section, the machine they ran on, results.md."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import trackerfs
from tests.benchmarks.scale import Scale
from tests.support.emulator import REPO_ROOT


@dataclass(slots=True)
class Table:
    """A markdown table."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row."""
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """The table in GitHub markdown."""
        lines = [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join("---" for _ in self.headers) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart: one group of bars per category, one bar per series."""

    filename: str
    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float]]
    #: With one series: bars whose category contains this text get the accent colour.
    highlight: str = ""


@dataclass(slots=True)
class Section:
    """The figures of one benchmark: tables, notes under them, charts."""

    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)

    def markdown(self) -> str:
        """The section as markdown (charts are linked by file name)."""
        parts = [f"## {self.title}"]
        parts += [table.markdown() for table in self.tables]
        parts += [f"![{chart.title}]({chart.filename})" for chart in self.charts]
        if self.notes:
            parts.append("\n".join(f"- {note}" for note in self.notes))
        return "\n\n".join(parts)


def ratio(value: float, reference: float) -> str:
    """`value / reference` as a factor, two decimals."""
    return f"{value / reference:.2f}×" if reference else "n/a"


def size_text(size: float) -> str:
    """A byte count for people: ``1.0 GiB``, ``160 KiB``, ``12 B``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if size < 10 * scale else f"{size / scale:.0f} {unit}"
    return f"{size:.0f} B"


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def source_state() -> str:
    """The trackerfs source a mount would run now: version, commit, a digest of local changes.

    Every mount starts a new daemon, so a source edited during a run mixes versions; taken
    at the start and at the end, this shows whether that happened.
    """
    commit = _first_line(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    diff = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "diff", "HEAD", "--", "trackerfs"], capture_output=True, check=False
    ).stdout
    changes = f", local changes {hashlib.sha256(diff).hexdigest()[:8]}" if diff else ""
    return f"{trackerfs.__version__} (git {commit}{changes})"


def environment(load_at_start: float, source_at_start: str) -> dict[str, str]:
    """Where and with what the figures were measured."""
    source_now = source_state()
    if source_now != source_at_start:
        source_now = f"CHANGED DURING THE RUN: {source_at_start} at the start, {source_now} at the end"
    return {
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load average (1 min) at the start": f"{load_at_start:.2f}",
        "kernel (uname -r)": platform.release(),
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "Python": platform.python_version(),
        "trackerfs": source_now,
        "httpx": importlib.metadata.version("httpx"),
        "pyfuse3": importlib.metadata.version("pyfuse3"),
        "trio": importlib.metadata.version("trio"),
        "rclone": _first_line(["rclone", "version"]),
        "nginx": _first_line(["nginx", "-v"]).rpartition(": ")[2],
        "curl": " ".join(_first_line(["curl", "--version"]).split()[:2]),
        "fio": _first_line(["fio", "--version"]),
        "free page reporting (freed memory back to the host)": _page_reporting(),
    }


def _page_reporting() -> str:
    """What the kernel's free page reporting says of itself: its parameters, and how much
    freed memory it has handed back to the host since boot (memory that costs a host page
    fault when used again)."""
    parameters = Path("/sys/module/page_reporting/parameters")
    if not parameters.is_dir():
        return "not in this kernel"
    values = {}
    for item in sorted(parameters.iterdir()):
        with contextlib.suppress(OSError):
            values[item.name] = item.read_text(encoding="utf-8").strip()
    reported = values.pop("reported_kib", "")
    for counter in ("passes", "walked"):
        values.pop(counter, None)
    shown = ", ".join(f"{name} {value}" for name, value in values.items())
    if reported.isdigit():
        shown += f"; {int(reported) / (1 << 20):.1f} GiB reported since boot"
    return shown


def scale_text(scale: Scale) -> str:
    """One line describing the data of a run."""
    return (
        f"{scale.name} run: a {size_text(scale.big_bytes)} random file, a {size_text(scale.zip_bytes)} ZIP"
        f" of {scale.zip_members} members, an issue of {scale.issue_files} files, a project of"
        f" {scale.project_issues} issues × {scale.files_per_issue} files; {scale.repeats} run(s) per"
        f" sequential figure (median), fio {scale.fio_seconds} s per job"
    )


def document(sections: list[Section], env: dict[str, str], scale: Scale) -> str:
    """results.md: the machine, the scale, then every section."""
    machine = Table(["", ""])
    for name, value in env.items():
        machine.add(name, value)
    parts = [
        "# trackerfs benchmark results",
        "Written by `python -m tests.benchmarks`; how to read them: [../benchmarks.md](../benchmarks.md).",
        scale_text(scale) + ".",
        machine.markdown(),
        *(section.markdown() for section in sections),
    ]
    return "\n\n".join(parts) + "\n"
