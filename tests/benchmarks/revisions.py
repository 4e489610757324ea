"""Cold reads through other revisions of trackerfs, interleaved in one run.

    python -m tests.benchmarks.revisions [--runs N] [--quick] REV [REV ...]

Whether a change left cold sequential reads at least as fast as they were can only be
told in one run on one machine: figures of two runs differ by more than most changes do.
Each REV (anything `git rev-parse` takes) is checked out into a temporary worktree; the
working tree itself comes last, as `working tree`. Each run `cat`s the big file (1 GiB,
or 128 MiB with `--quick`) through a fresh mount of one revision, whose daemon starts in
that revision's tree (so `python -m trackerfs` imports that revision), with the profile
every revision knows (Jira Cloud, content through the 303 to nginx) and its content
cache, where it has one, in a fresh XDG cache directory. The revisions take turns, run
after run. Printed: a markdown table of the medians, every run, and each revision's speed
against the first's.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.benchmarks.__main__ import memory_warm_up
from tests.benchmarks.bench import Bench, open_bench
from tests.benchmarks.mounts import PROFILE
from tests.benchmarks.report import Table, ratio, size_text
from tests.benchmarks.runners import cat, mb_per_s, median, page_reporting_held
from tests.benchmarks.scale import FULL, QUICK, MiB
from tests.support.emulator import REPO_ROOT
from tests.support.mount import TOKEN_ENV, Mount, write_config

log = logging.getLogger("tests.benchmarks.revisions")

WORKING_TREE = "working tree"


@contextmanager
def worktrees(revisions: list[str], directory: Path) -> Iterator[dict[str, Path]]:
    """label → source tree: a detached worktree per revision, then the working tree."""
    trees: dict[str, Path] = {}
    try:
        for revision in revisions:
            commit = git("rev-parse", "--short", f"{revision}^{{commit}}")
            tree = directory / commit
            git("worktree", "add", "--detach", "--quiet", str(tree), commit)
            trees[f"{revision} ({commit})" if revision != commit else commit] = tree
        trees[WORKING_TREE] = REPO_ROOT
        yield trees
    finally:
        for label, tree in trees.items():
            if label != WORKING_TREE:
                git("worktree", "remove", "--force", str(tree))


def git(*arguments: str) -> str:
    done = subprocess.run(["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def cold_cat(bench: Bench, tree: Path, label: str) -> float:
    """One cold `cat` of the big file through a fresh mount of the revision in `tree`."""
    workdir = bench.mount_dir(re.sub(r"[^\w.-]+", "_", label))
    mount = Mount(
        workdir,
        url=bench.emulator.base_url,
        token=bench.emulator.token,
        tracker="jira",
        profile={},
        name="bench",
        debug=False,
    )
    # Only keys every revision knows: the content cache goes where XDG puts it.
    table = {"tracker": "jira", "url": bench.emulator.base_url, "token_env": TOKEN_ENV, **PROFILE}
    write_config(mount.config, "bench", {**table, "spool_dir": str(workdir / "state")})
    mount.env["XDG_CACHE_HOME"] = str(workdir / "xdg-cache")
    mount.cwd = tree
    try:
        mount.start()
        path = mount.path / bench.data.big.mount_path
        path.stat()
        return cat(path)
    finally:
        mount.stop()
        shutil.rmtree(workdir / "xdg-cache", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.revisions", description=__doc__)
    parser.add_argument("revisions", nargs="+", metavar="REV", help="git revisions to set against the tree")
    parser.add_argument("--runs", type=int, default=5, help="runs per revision (default 5)")
    parser.add_argument("--quick", action="store_true", help="a 128 MiB file instead of 1 GiB")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/trackerfs-revisions"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # Only the big file matters here: the rest of the data set is kept small.
    scale = dataclasses.replace(
        QUICK if args.quick else FULL, zip_bytes=8 * MiB, zip_members=10, issue_files=5, project_issues=5
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    seconds: dict[str, list[float]] = {}
    with ExitStack() as stack:
        for what, state in stack.enter_context(page_reporting_held()).items():
            log.info("%s: %s", what, state)
        memory_warm_up(scale)  # as a full bench run does: the first runs count like the rest
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trackerfs-revisions-")))
        trees = stack.enter_context(worktrees(args.revisions, directory))
        bench = stack.enter_context(open_bench(args.workdir, scale))
        for run in range(1, args.runs + 1):
            for label, tree in trees.items():
                taken = cold_cat(bench, tree, label)
                seconds.setdefault(label, []).append(taken)
                log.info("run %d, %s: %.2f s", run, label, taken)
    size = scale.big_bytes
    first = median(next(iter(seconds.values())))
    table = Table(["revision", "MB/s (median)", "runs (s)", "speed against the first"])
    for label, runs in seconds.items():
        table.add(
            label,
            f"{mb_per_s(size, median(runs)):.0f}",
            ", ".join(f"{value:.2f}" for value in runs),
            ratio(first, median(runs)),
        )
    print(f"\nCold `cat` of {size_text(size)}, a fresh mount per run, the revisions taking turns:\n")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
