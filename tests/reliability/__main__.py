"""`make soak`: the fault soak and the kill -9 rounds for every tracker case, with figures.

    python -m tests.reliability [--seconds 60] [--rounds 20] [--rate 0.1] [--workers 4]
                                [--case ID ...]

Prints, per case, what the soak did (operations, faults dealt by kind, retries, the errnos
the applications saw), what it found (sha mismatches, lost, duplicated and undeleted
uploads: each must be 0), the daemon's RSS through the run, and the same for the kill -9
rounds. Exits 1 when any scenario found something that must never happen.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.scenarios import CrashFigures, SoakFigures, crash_rounds, failures, soak
from tests.support.cases import CASES
from tests.support.emulator import EmulatorProcess


def machine() -> str:
    """The machine the figures belong to."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores, {model}, {memory:.0f} GiB, Linux {platform.release()}"


def print_soak(figures: SoakFigures) -> None:
    ops = sum(figures.operations.values())
    print(f"  soak {figures.seconds:.0f} s: {ops} operations ({_counted(figures.operations)})")
    print(f"    faults dealt: {sum(figures.faults.values())} ({_counted(figures.faults)})")
    print(
        f"    retries: {figures.retries}; errnos the applications saw: {_counted(figures.errnos) or 'none'}"
    )
    verdict = figures.verdict
    print(
        f"    reads checked {figures.reads_checked}, sha mismatches {figures.sha_mismatches};"
        f" writes confirmed {verdict.confirmed}, failed {verdict.failed}"
        f" (of which on the tracker after a remount {verdict.on_tracker_after_failure},"
        f" kept in recovery {verdict.kept_in_recovery})"
    )
    print(
        f"    lost {verdict.lost}, duplicated {verdict.duplicated}, wrong bytes {verdict.wrong_bytes},"
        f" undeleted {verdict.not_removed}; token in log/argv {figures.token_hits};"
        f" daemon {'alive' if figures.alive else 'DEAD'}"
    )
    samples = figures.memory
    if samples:
        quarter = samples[max(len(samples) // 4 - 1, 0)]
        print(
            f"    RSS at a quarter {quarter[0] // 1024} MiB, at the end {samples[-1][0] // 1024} MiB;"
            f" less the block cache {quarter[1] // 1024} → {samples[-1][1] // 1024} MiB"
        )


def print_crashes(figures: CrashFigures) -> None:
    verdict = figures.verdict
    print(
        f"  kill -9 × {figures.rounds}: killed while writing {figures.killed_while_writing},"
        f" while reading {figures.killed_while_reading}; writes confirmed {verdict.confirmed},"
        f" cut off {verdict.failed} (finished by the next mount {verdict.on_tracker_after_failure},"
        f" kept in recovery {verdict.kept_in_recovery})"
    )
    print(
        f"    lost {verdict.lost}, duplicated {verdict.duplicated}, wrong bytes {verdict.wrong_bytes};"
        f" reads after a restart {figures.reads_after_restart}, wrong {figures.wrong_reads}"
    )


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()) if count)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="soak length per case")
    parser.add_argument("--rounds", type=int, default=20, help="kill -9 rounds per case")
    parser.add_argument("--rate", type=float, default=0.10, help="share of requests faulted in the soak")
    parser.add_argument("--workers", type=int, default=4, help="parallel applications in the soak")
    parser.add_argument("--case", action="append", choices=[case.id for case in CASES], help="only these")
    args = parser.parse_args()
    cases = [case for case in CASES if not args.case or case.id in args.case]
    print(f"trackerfs reliability run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}")
    print(f"soak: {args.seconds:g} s, {args.workers} workers, {args.rate:.0%} of requests faulted;")
    print(f"kill -9: {args.rounds} rounds per case\n")
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="trackerfs-soak-") as scratch:
        for case in cases:
            print(f"{case.id}", flush=True)
            with EmulatorProcess(*case.emulator_args, names=case.names) as emulator:
                soaked = soak(
                    case,
                    emulator,
                    Path(scratch) / case.id / "soak",
                    seconds=args.seconds,
                    workers=args.workers,
                    rate=args.rate,
                )
                print_soak(soaked)
                crashed = crash_rounds(case, emulator, Path(scratch) / case.id / "crash", rounds=args.rounds)
                print_crashes(crashed)
            found[case.id] = failures(soaked) + failures(crashed)
            for problem in found[case.id]:
                print(f"    FOUND: {problem}")
            print(flush=True)
    bad = {case: problems for case, problems in found.items() if problems}
    print(
        "verdict:", "nothing lost, duplicated or served wrong" if not bad else f"problems in {', '.join(bad)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
