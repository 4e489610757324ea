"""The programs that do the reading and writing, each timed by wall clock."""

from __future__ import annotations

import json
import mmap
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

MB = 1_000_000
#: The kernel's free page reporting setting (a VM guest's; see `page_reporting_held`), and
#: the longest a freed page may be kept from the host that the kernel takes (5 minutes).
REPORTING = Path("/sys/module/page_reporting/parameters/min_free_ms")
HOLD_MS = 300_000


def settle() -> None:
    """Write back what earlier steps left dirty, before a measured step: a set-up that has
    just written a GiB would otherwise have the kernel writing it back (for up to 30 s)
    during the first runs of a series, and only theirs."""
    os.sync()


def timed(command: list[str]) -> float:
    """Run a command (output discarded, failure raised); its wall time in seconds."""
    settle()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def cat(path: Path) -> float:
    """``cat FILE > /dev/null``."""
    return timed(["cat", str(path)])


def dd(path: Path) -> float:
    """``dd if=FILE of=/dev/null bs=1M``."""
    return timed(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])


def curl_get(url: str) -> float:
    """``curl -s -o /dev/null URL``: the physical limit of a loopback download."""
    return timed(["curl", "-s", "-S", "-f", "-o", "/dev/null", url])


def httpx_get(url: str) -> float:
    """One streamed GET with httpx under trio (``aiter_raw``): the ceiling for Python."""

    async def download() -> int:
        received = 0
        async with httpx.AsyncClient(timeout=60.0) as client, client.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                received += len(chunk)
        return received

    settle()
    started = time.perf_counter()
    trio.run(download)
    return time.perf_counter() - started


def write_then_close(source: Path, target: Path, chunk: int = 1 << 20) -> tuple[float, float]:
    """Copy `source` to `target` in `chunk`-sized writes: seconds in open + write, then in close."""
    settle()
    started = time.perf_counter()
    with source.open("rb") as reader, target.open("wb", buffering=0) as writer:
        while data := reader.read(chunk):
            writer.write(data)
        written = time.perf_counter()
    return written - started, time.perf_counter() - written


def unzip_list(path: Path) -> float:
    """``unzip -l ARCHIVE``: reads the end of the file and the central directory only."""
    return timed(["unzip", "-l", str(path)])


def touch_memory(size: int) -> float:
    """Write one byte per page of `size` bytes of fresh anonymous memory; the seconds taken.

    On a virtual machine whose host backs guest memory lazily, memory the guest has never
    used costs a host page fault per page: several times what memory used before costs.
    A cold read through any FUSE mount fills page cache, so the first reads of a run on
    such a machine pay that too unless the memory was touched first.
    """
    page = mmap.PAGESIZE
    with mmap.mmap(-1, size) as memory:
        started = time.perf_counter()
        for offset in range(0, size, page):
            memory[offset] = 1
        return time.perf_counter() - started


@contextmanager
def page_reporting_held() -> Iterator[dict[str, str]]:
    """Keep the memory freed during a run backed by the host for as long as the kernel
    allows (HOLD_MS); the setting found is put back afterwards.

    A VM guest with free page reporting hands memory it freed back to the host; with
    `min_free_ms 0` within seconds, and every page of it used again is a host page fault
    (about 2 s per GiB on the machine of docs/benchmarks.md, the warm-up's first pass
    against its second). A cold read through FUSE fills the kernel's page cache with a
    GiB of such pages per GiB read, and unmounting frees them, where a raw download reuses
    a few buffers: run to run, the figures would measure the host. Held, the run measures
    the software, as one pins a CPU governor for a benchmark. Yields the machine table's
    row saying what was done.
    """
    what = "free page reporting during the run"
    try:
        found = REPORTING.read_text(encoding="utf-8").strip()
    except OSError:
        yield {}
        return
    try:
        REPORTING.write_text(str(HOLD_MS), encoding="utf-8")
    except OSError as exc:
        yield {what: f"left at min_free_ms {found} ({exc.strerror or exc})"}
        return
    try:
        yield {what: f"held back: min_free_ms {HOLD_MS} for the run (was {found}), restored after"}
    finally:
        REPORTING.write_text(found, encoding="utf-8")


def mb_per_s(size: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes per second)."""
    return size / MB / seconds


def median(values: list[float]) -> float:
    """The median; the one value of a single run."""
    return statistics.median(values)


@dataclass(frozen=True, slots=True)
class FioResult:
    """IOPS and throughput of one fio job."""

    iops: float
    bytes_per_s: float
    bytes_read: int


def fio_random_read(path: Path, block_size: str, seconds: int, size: int) -> FioResult:
    """Time-based random reads of `block_size` over the whole file (psync, read-only)."""
    result = subprocess.run(
        [
            "fio",
            "--name=randread",
            f"--filename={path}",
            "--readonly",
            "--rw=randread",
            f"--bs={block_size}",
            "--ioengine=psync",
            "--time_based",
            f"--runtime={seconds}",
            f"--size={size}",
            "--randrepeat=1",
            "--output-format=json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    job = json.loads(result.stdout)["jobs"][0]["read"]
    return FioResult(float(job["iops"]), float(job["bw_bytes"]), int(job["io_bytes"]))
