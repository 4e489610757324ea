"""Reliability scenarios through a real mount: a fault soak and kill -9 rounds.

Each scenario drives a mount as applications do (open, write, close, read, list, walk,
rename, unlink), while the emulator fails requests on purpose, or while the daemon is
killed at random points. It then compares what the applications were told with what
reached the tracker and what the spool and recovery folder hold, and returns figures.
`python -m tests.reliability` (`make soak`) runs long versions for every tracker case
and prints the figures; tests/conformance/test_reliability.py runs short ones.

The verdicts, per scenario:
- a read never returns bytes other than the attachment's (sha256 of every whole read);
- a file whose close succeeded is on the tracker exactly once, with its bytes, unless a
  later unlink of it succeeded;
- a file whose writing or close failed is on the tracker at most once, with its bytes,
  or kept in the recovery folder: never lost, never on the tracker twice;
- the daemon is alive at the end, and its token is in no log line and not in its argv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at, status
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import file_sha256, sha256_of, stored
from tests.support.waiting import wait_for

KiB = 1 << 10
MiB = 1 << 20
#: profile keys of a soaked mount: a stall is noticed in 2 s, a call gives up after 8 s
SOAK_PROFILE: dict[str, Any] = {"timeout": 2, "deadline": 8}
#: the kinds of fault a soak deals, each an equal share of the total rate
FAULT_KINDS: dict[str, dict[str, Any]] = {
    "429 Retry-After": {"status": 429, "headers": {"Retry-After": "1"}},
    "429 bare": {"status": 429, "headers": {}},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "504": {"status": 504},
    "reset before headers": {"action": "drop"},
    "reset mid-body": {"action": "truncate"},
    "stall past timeout": {"action": "delay", "delay": 3},
    # Read answers only: a change answered 200 with garbage would be a tracker that lies.
    "malformed JSON": {"status": 200, "body": '{"values": [', "method": "GET"},
    "wrong shape": {"status": 200, "body": {"unexpected": [1, 2, 3]}, "method": "GET"},
}


@dataclasses.dataclass
class Written:
    """A file an application wrote: where, what, and what it was told."""

    issue: str
    name: str
    sha256: str
    size: int
    #: None: open, write and close all succeeded; else the errno of the first failure
    failed: int | None = None
    #: whether any byte was accepted (an open refused at once leaves nothing to keep)
    began: bool = False
    #: an unlink of it succeeded
    removed: bool = False
    #: an unlink of it failed: the tracker may or may not have deleted it
    unlink_failed: bool = False
    #: other names its bytes may be under (a safe save whose rename failed)
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass
class Verdict:
    """What reached the tracker against what the applications were told."""

    confirmed: int = 0
    failed: int = 0
    on_tracker_after_failure: int = 0
    kept_in_recovery: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_bytes: int = 0
    #: an unlink reported success, the attachment is still there
    not_removed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def judge(emulator: EmulatorProcess, recovered: Path, files: list[Written]) -> Verdict:
    """Compare the writes with the store and the recovery folder (`PROJECT/ISSUE/NAME`, the
    project under the name its folder had)."""
    verdict = Verdict()
    for item in files:
        names = (item.name, *item.aliases)
        records = [record for name in names for record in stored(emulator, item.issue, name)]
        shas = [record["sha256"] for record in records]
        where = f"{item.issue}/{item.name}"
        if len(records) > 1:
            verdict.duplicated += 1
            verdict.problems.append(f"{where} is on the tracker {len(records)} times")
        if any(sha != item.sha256 for sha in shas):
            verdict.wrong_bytes += 1
            verdict.problems.append(f"{where} is on the tracker with other bytes")
        if item.removed and records:
            verdict.not_removed += 1
            verdict.problems.append(f"{where}: its unlink succeeded, it is still on the tracker")
        if item.failed is None:
            verdict.confirmed += 1
            if not records and not item.removed and not item.unlink_failed:
                verdict.lost += 1
                verdict.problems.append(f"{where}: its close succeeded, it is not on the tracker")
            continue
        verdict.failed += 1
        if records:
            verdict.on_tracker_after_failure += 1
        elif any(any(recovered.glob(f"*/{glob.escape(item.issue)}/{glob.escape(name)}")) for name in names):
            verdict.kept_in_recovery += 1
        elif item.began and not item.removed:
            verdict.lost += 1
            verdict.problems.append(f"{where} failed with {errno.errorcode.get(item.failed)} and is nowhere")
    return verdict


def payload(rng: random.Random, low: int, high: int) -> bytes:
    """Random bytes of a random size in [low, high]."""
    return rng.randbytes(rng.randint(low, high))


def write_file(path: Path, data: bytes, record: Written, chunk: int = 128 * KiB) -> None:
    """Write `data` to `path` as cp does, recording what the application was told."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        record.failed = exc.errno
        return
    record.began = True
    try:
        for start in range(0, len(data), chunk):
            os.write(fd, data[start : start + chunk])
    except OSError as exc:
        record.failed = exc.errno
    try:
        os.close(fd)
    except OSError as exc:
        record.failed = record.failed or exc.errno


def rss_kib(pid: int) -> int:
    """A process's resident set, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_of(mount: Mount, pid: int) -> tuple[int, int]:
    """The daemon's RSS, and its RSS less what its block cache holds (bounded by a budget), in KiB."""
    resident = rss_kib(pid)
    try:
        cached = int(mount_status(mount).get("block_cache", {}).get("bytes", 0)) // KiB
    except (OSError, ValueError):
        cached = 0
    return resident, resident - cached


def secret_leaks(mount: Mount, token: str) -> int:
    """How often the token shows in the daemon's log and argv."""
    assert mount.process is not None
    argv = Path(f"/proc/{mount.process.pid}/cmdline").read_bytes()
    return mount.log_text().count(token) + argv.count(token.encode())


def mount_status(mount: Mount) -> dict[str, Any]:
    """The mount's own status file."""
    data: dict[str, Any] = json.loads((mount.path / ".trackerfs" / "status.json").read_bytes())
    return data


def settle(mount: Mount) -> None:
    """Wait until the mount has no upload left from an earlier run."""
    wait_for(lambda: "recovering" not in status(mount), "the recovery to finish", timeout=120)


def readable(case: TrackerCase, emulator: EmulatorProcess, mount: Mount) -> dict[Path, str]:
    """Attachments of the rich issue whose listed name is their own, with their sha256."""
    directory = mount.path / case.project / case.rich_issue
    listed = set(os.listdir(directory))
    records = stored(emulator, case.rich_issue)
    names = Counter(record["filename"] for record in records)
    return {
        directory / record["filename"]: record["sha256"]
        for record in records
        if names[record["filename"]] == 1 and record["filename"] in listed
    }


# -- the soak ---------------------------------------------------------------------------


@dataclasses.dataclass
class SoakFigures:
    """What one soak did and found."""

    case: str
    seconds: float
    operations: Counter[str]
    errnos: Counter[str]
    faults: dict[str, int]
    retries: int
    reads_checked: int
    sha_mismatches: int
    verdict: Verdict
    #: (RSS, RSS less the block cache's bytes), in KiB, sampled through the soak
    memory: list[tuple[int, int]]
    token_hits: int
    alive: bool


class Soak:
    """Parallel readers and writers on one mount while the tracker fails some requests."""

    def __init__(self, case: TrackerCase, emulator: EmulatorProcess, mount: Mount, seed: int) -> None:
        self.case = case
        self.emulator = emulator
        self.mount = mount
        self.seed = seed
        self.lock = threading.Lock()
        self.files: list[Written] = []
        self.operations: Counter[str] = Counter()
        self.errnos: Counter[str] = Counter()
        self.reads_checked = 0
        self.mismatches = 0
        self.issues = [case.plain_issue, case.duplicates_issue]
        self.known = readable(case, emulator, mount)

    def _count(self, operation: str, failure: int | None) -> None:
        with self.lock:
            self.operations[operation] += 1
            if failure is not None:
                self.errnos[f"{operation} {errno.errorcode.get(failure, failure)}"] += 1

    def _issue_dir(self, issue: str) -> Path:
        return self.mount.path / self.case.project / issue

    def worker(self, number: int, until: float) -> None:
        rng = random.Random(self.seed * 1000 + number)
        made = 0
        steps: list[tuple[Callable[[random.Random, str], None], int]] = [
            (self.copy_in, 3),
            (self.copy_out, 3),
            (self.listing, 2),
            (self.walk, 1),
            (self.remove, 1),
            (self.safe_save, 1),
        ]
        actions = [step for step, weight in steps for _ in range(weight)]
        while time.monotonic() < until:
            made += 1
            rng.choice(actions)(rng, f"soak-{number}-{made}")

    def copy_in(self, rng: random.Random, stem: str) -> None:
        data = payload(rng, 1, 2 * MiB)
        issue = rng.choice(self.issues)
        record = Written(issue, f"{stem}.bin", sha256_of(data), len(data))
        write_file(self._issue_dir(issue) / record.name, data, record)
        with self.lock:
            self.files.append(record)
        self._count("cp in", record.failed)

    def safe_save(self, rng: random.Random, stem: str) -> None:
        """An editor's save: a temporary name, then a rename to the real one."""
        data = payload(rng, 1, 256 * KiB)
        issue = rng.choice(self.issues)
        record = Written(issue, f"{stem}.txt", sha256_of(data), len(data))
        temporary = self._issue_dir(issue) / f".{stem}.txt.tmp"
        write_file(temporary, data, record)
        if record.failed is None:
            try:
                os.rename(temporary, self._issue_dir(issue) / record.name)
            except OSError as exc:
                # A rename whose upload failed leaves the bytes in the spool under the
                # new name (the next mount uploads them); one refused at once, under the old.
                record.failed = exc.errno
                record.aliases = (temporary.name,)
        else:
            record.name = temporary.name
        with self.lock:
            self.files.append(record)
        self._count("safe-save", record.failed)

    def copy_out(self, rng: random.Random, stem: str) -> None:
        with self.lock:
            mine = [item for item in self.files if item.failed is None and not item.removed]
        choices = [(path, sha) for path, sha in self.known.items()]
        if mine and rng.random() < 0.5:
            item = rng.choice(mine)
            choices = [(self._issue_dir(item.issue) / item.name, item.sha256)]
        path, expected = rng.choice(choices)
        try:
            got = file_sha256(path)
        except OSError as exc:
            self._count("cp out", exc.errno)
            return
        with self.lock:
            self.reads_checked += 1
            if got != expected:
                self.mismatches += 1
        self._count("cp out", None)

    def listing(self, rng: random.Random, stem: str) -> None:
        try:
            os.listdir(self._issue_dir(rng.choice([*self.issues, self.case.rich_issue])))
        except OSError as exc:
            self._count("ls", exc.errno)
            return
        self._count("ls", None)

    def walk(self, rng: random.Random, stem: str) -> None:
        failures: list[OSError] = []
        for _ in os.walk(self.mount.path / self.case.project, onerror=failures.append):
            pass
        self._count("find", failures[0].errno if failures else None)

    def remove(self, rng: random.Random, stem: str) -> None:
        with self.lock:
            mine = [item for item in self.files if item.failed is None and not item.removed]
            if not mine:
                return
            item = rng.choice(mine)
            item.removed = True  # no other worker picks it meanwhile
        try:
            os.unlink(self._issue_dir(item.issue) / item.name)
        except OSError as exc:
            item.removed, item.unlink_failed = False, True
            self._count("rm", exc.errno)
            return
        self._count("rm", None)


def fault_plan(rate: float, seed: int) -> list[dict[str, Any]]:
    """Rules that fail `rate` of all requests, an equal share of each kind."""
    share = 1 - (1 - rate) ** (1 / len(FAULT_KINDS))
    return [
        {"path": ".", "count": -1, "rate": share, "seed": seed + index, "name": name, **rule}
        for index, (name, rule) in enumerate(FAULT_KINDS.items())
    ]


def soak(
    case: TrackerCase,
    emulator: EmulatorProcess,
    workdir: Path,
    *,
    seconds: float,
    workers: int = 4,
    rate: float = 0.10,
    seed: int = 1,
) -> SoakFigures:
    """Run the soak; the mount is remounted without faults afterwards to judge the result."""
    emulator.reset()
    mount = mount_at(workdir, case, emulator, **SOAK_PROFILE).start()
    try:
        worker = Soak(case, emulator, mount, seed)
        assert mount.process is not None
        pid = mount.process.pid
        for rule in fault_plan(rate, seed):
            emulator.fault(**rule)
        started = time.monotonic()
        until = started + seconds
        threads = [threading.Thread(target=worker.worker, args=(n, until)) for n in range(workers)]
        for thread in threads:
            thread.start()
        memory: list[tuple[int, int]] = []
        while any(thread.is_alive() for thread in threads):
            time.sleep(max(seconds / 8, 0.5))
            memory.append(memory_of(mount, pid))
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        faults = {rule["name"]: rule["injected"] for rule in emulator.faults()}
        emulator.clear_faults()
        alive = mount.process.poll() is None
        retries = int(mount_status(mount).get("requests", {}).get("retries", 0))
        leaks = secret_leaks(mount, emulator.token)
        assert mount.unmount(timeout=120) == 0, mount.log_text()[-4000:]
    finally:
        mount.stop()
    # What failed at close waits in the spool: the next mount uploads it.
    with mount_at(workdir, case, emulator, **SOAK_PROFILE) as again:
        settle(again)
        verdict = judge(emulator, mount.state / "recovered", worker.files)
    return SoakFigures(
        case=case.id,
        seconds=elapsed,
        operations=worker.operations,
        errnos=worker.errnos,
        faults=faults,
        retries=retries,
        reads_checked=worker.reads_checked,
        sha_mismatches=worker.mismatches,
        verdict=verdict,
        memory=memory,
        token_hits=leaks,
        alive=alive,
    )


# -- kill -9 rounds -----------------------------------------------------------------------


@dataclasses.dataclass
class CrashFigures:
    """What the kill -9 rounds did and found."""

    case: str
    rounds: int
    killed_while_writing: int
    killed_while_reading: int
    reads_after_restart: int
    wrong_reads: int
    verdict: Verdict


def crash_rounds(
    case: TrackerCase, emulator: EmulatorProcess, workdir: Path, *, rounds: int, seed: int = 1
) -> CrashFigures:
    """kill -9 the daemon at random points of uploads and content-cache fills, `rounds` times.

    Uploads and the big attachment's downloads are slowed (the tracker answers after
    0.3 s and 0.15 s) so that a kill often lands while one is on the wire; half the
    rounds empty the content cache first, so that the kill lands in the middle of
    filling it with the big attachment. Every restart reads that attachment whole and
    checks its sha256.
    """
    emulator.reset()
    emulator.fault(**case.upload.rule(action="delay", delay=0.3, count=-1, name="slow upload"))
    big = stored(emulator, case.rich_issue, case.big_file)[0]
    emulator.fault(**case.content_of(big).rule(action="delay", delay=0.15, count=-1, name="slow content"))
    rng = random.Random(seed)
    files: list[Written] = []
    writing = reading = reads = wrong = 0
    for number in range(rounds):
        mount = mount_at(workdir, case, emulator).start()
        try:
            # What the last round's kill interrupted must read back whole and right.
            path = mount.path / case.project / case.rich_issue / case.big_file
            if number:
                reads += 1
                wrong += file_sha256(path) != big["sha256"]
            data = payload(rng, 64 * KiB, 3 * MiB)
            issue = case.plain_issue
            record = Written(issue, f"crash-{seed}-{number}.bin", sha256_of(data), len(data))
            files.append(record)
            if rng.random() < 0.5:
                mount_control(mount, "flush content")
            target = mount.path / case.project / issue / record.name
            writer = threading.Thread(target=write_file, args=(target, data, record, 64 * KiB), daemon=True)
            reader = threading.Thread(target=_read_quietly, args=(path,), daemon=True)
            writer.start()
            reader.start()
            time.sleep(rng.uniform(0.05, 1.2))
            writing += writer.is_alive()
            reading += reader.is_alive()
            if writer.is_alive():
                record.failed = errno.ECONNABORTED  # nobody was told it is saved
            crash(mount)
            writer.join(timeout=30)
            reader.join(timeout=30)
        finally:
            mount.stop()
    emulator.clear_faults()
    with mount_at(workdir, case, emulator) as last:
        settle(last)
        reads += 1
        wrong += file_sha256(last.path / case.project / case.rich_issue / case.big_file) != big["sha256"]
        verdict = judge(emulator, last.state / "recovered", files)
    return CrashFigures(case.id, rounds, writing, reading, reads, wrong, verdict)


def mount_control(mount: Mount, command: str) -> None:
    """Write a command to the mount's control file."""
    (mount.path / ".trackerfs" / "control").write_text(command + "\n")


def _read_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):  # the daemon was killed under the read
        file_sha256(path)


def failures(figures: SoakFigures | CrashFigures) -> list[str]:
    """What a scenario found that must never happen (empty: it passed)."""
    verdict = figures.verdict
    found = list(verdict.problems)
    if isinstance(figures, SoakFigures):
        if figures.sha_mismatches:
            found.append(f"{figures.sha_mismatches} read(s) returned other bytes")
        if figures.token_hits:
            found.append(f"the token shows {figures.token_hits} time(s) in the log or argv")
        if not figures.alive:
            found.append("the daemon died")
    elif figures.wrong_reads:
        found.append(f"{figures.wrong_reads} read(s) after a restart returned other bytes")
    return found
