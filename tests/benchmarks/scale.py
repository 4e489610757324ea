"""How big the benchmark's data is: the full run and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30
#: Largest page the emulator returns; trackerfs asks for 100 per page by default too.
PAGE_SIZE = 100
#: Above the biggest file uploaded, so the emulator never answers 413.
UPLOAD_LIMIT = 4 * GiB


@dataclass(frozen=True, slots=True)
class Scale:
    """Sizes and counts of one run."""

    name: str
    big_bytes: int
    zip_bytes: int
    zip_members: int
    issue_files: int
    project_issues: int
    files_per_issue: int
    fio_seconds: int
    repeats: int
    #: tasks of the Asana project `find` sweeps, and the Asana plan whose rate limit applies
    asana_tasks: int = 1000
    asana_plan: str = "free"
    #: the big trees: a project of this many issues of so many files, one issue of many files
    tree_issues: int = 10_000
    tree_files_per_issue: int = 3
    wide_issue_files: int = 10_000


FULL = Scale(
    name="full",
    big_bytes=GiB,
    zip_bytes=GiB,
    zip_members=2000,
    issue_files=1000,
    project_issues=1000,
    files_per_issue=3,
    fio_seconds=10,
    repeats=5,
)
QUICK = Scale(
    name="quick",
    big_bytes=128 * MiB,
    zip_bytes=128 * MiB,
    zip_members=250,
    issue_files=200,
    project_issues=200,
    files_per_issue=3,
    fio_seconds=3,
    repeats=1,
    # just over one free minute's budget: the budget waits once, the client meets 429s
    asana_tasks=160,
    tree_issues=2000,
    wide_issue_files=2000,
)
