"""Run the benchmark suite (docs/benchmarks.md): ``python -m tests.benchmarks [--quick] [--only NAME …]``."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tests.benchmarks import (
    asana,
    metadata,
    openproject,
    parallel,
    random_reads,
    reread,
    sequential,
    trees,
    upload,
    waldur,
    yandex,
)
from tests.benchmarks.bench import Bench, open_bench
from tests.benchmarks.plots import draw
from tests.benchmarks.report import Section, document, environment, scale_text, size_text, source_state
from tests.benchmarks.runners import page_reporting_held, touch_memory
from tests.benchmarks.scale import FULL, QUICK, GiB, Scale
from tests.support.emulator import REPO_ROOT

log = logging.getLogger("tests.benchmarks")

#: In report order. Upload comes after the reads so that it can show their peak RSS.
SECTIONS: dict[str, Callable[[Bench], Section]] = {
    sequential.NAME: sequential.run,
    random_reads.NAME: random_reads.run,
    metadata.NAME: metadata.run,
    trees.NAME: trees.run,
    upload.NAME: upload.run,
    reread.NAME: reread.run,
    parallel.NAME: parallel.run,
    openproject.NAME: openproject.run,
    yandex.NAME: yandex.run,
    asana.NAME: asana.run,
    waldur.NAME: waldur.run,
}
TOOLS = ("nginx", "rclone", "fio", "curl", "unzip", "fusermount3", "cat", "dd", "find")
RESULTS = REPO_ROOT / "docs" / "benchmarks"
#: A 1-minute load average above this at the start means the machine is not quiet.
BUSY = 0.5
#: The share of the available memory touched before a full run: the page cache of every
#: read, of nginx and of the content caches behind the reads will be there.
PREFAULT_SHARE = 0.6


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data: a smoke run of a minute or two")
    parser.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), metavar="NAME", help="run only these sections"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("/tmp/trackerfs-bench"), help="scratch directory"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where results.md and the charts go (default: {RESULTS.relative_to(REPO_ROOT)} for a full run"
        " of every section, WORKDIR/report otherwise)",
    )
    return parser.parse_args(argv)


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so that every mount and server is cleaned up."""
    raise KeyboardInterrupt(f"signal {signum}")


def memory_warm_up(scale: Scale) -> dict[str, str]:
    """Touch the memory the page cache of a full run will use, twice, and say what it cost.

    The first pass is what memory the machine never used costs (on a VM with lazily backed
    memory, several times the second pass); afterwards the first measured read of a series
    costs what the others do, so every run counts alike, as long as the freed memory stays
    backed (`page_reporting_held`: at most 5 minutes, so each section starts with a warm-up).
    """
    size = int(available_memory() * PREFAULT_SHARE) // GiB * GiB if scale.big_bytes >= GiB else 0
    if size <= 0:
        return {}
    first, again = touch_memory(size), touch_memory(size)
    log.info("memory warm-up: %s touched in %.2f s, then in %.2f s", size_text(size), first, again)
    figures = f"first pass {size / first / GiB:.2f} GiB/s, second {size / again / GiB:.2f} GiB/s"
    return {f"memory warm-up ({size_text(size)}, one write per page)": figures}


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"missing programs: {' '.join(missing)} (make bench installs them)", file=sys.stderr)
        return 2
    scale = QUICK if args.quick else FULL
    names = args.only or list(SECTIONS)
    output = args.output or (RESULTS if not args.quick and not args.only else args.workdir / "report")
    signal.signal(signal.SIGTERM, terminate)
    log.info("%s", scale_text(scale))
    source = source_state()
    load = os.getloadavg()[0]
    if load > BUSY:
        log.warning("load average %.2f: something else is running, the figures will suffer", load)

    sections: list[Section] = []
    with page_reporting_held() as held:
        for what, state in held.items():
            log.info("%s: %s", what, state)
        warm_up: dict[str, str] = {}
        with open_bench(args.workdir, scale) as bench:
            for name in (name for name in SECTIONS if name in names):
                # Before each section: no writeback of what the set-up or the last section
                # wrote left to compete with it, and memory backed again (the hold is 5 min).
                os.sync()
                figures = memory_warm_up(scale)
                warm_up = warm_up or figures  # the table shows the first, from the coldest memory
                log.info("running %s", name)
                section = SECTIONS[name](bench)
                sections.append(section)
                print("\n" + section.markdown() + "\n", flush=True)

    output.mkdir(parents=True, exist_ok=True)
    machine = {**environment(load, source), **held, **warm_up}
    (output / "results.md").write_text(document(sections, machine, scale), encoding="utf-8")
    for section in sections:
        for chart in section.charts:
            draw(chart, output)
    log.info("results in %s", output / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
