"""4. Upload: `cp` into an issue through trackerfs against `curl -F`; the daemon's memory."""

from __future__ import annotations

import logging
import time

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import PROJECT, curl_upload
from tests.benchmarks.mounts import peak_rss, trackerfs_mount
from tests.benchmarks.report import Chart, Section, Table, ratio, size_text
from tests.benchmarks.runners import cat, mb_per_s, settle, timed, write_then_close

log = logging.getLogger(__name__)

NAME = "upload"
RSS_GOAL = 200 * 1000 * 1000


def stored_sha256(bench: Bench, issue: str, filename: str) -> str:
    """The sha256 the emulator stored for an attachment ("missing" if there is none)."""
    for item in bench.emulator.attachments():
        if item["issue"] == issue and item["filename"] == filename:
            return str(item["sha256"])
    return "missing"


def run(bench: Bench) -> Section:
    """curl -F, then read + cp through one trackerfs mount, sampling its VmHWM along the way."""
    big = bench.data.big
    issue = bench.data.upload_issue
    settle()
    started = time.perf_counter()
    curl_upload(bench.emulator, issue, big.local, "curl-upload.bin")
    curl_seconds = time.perf_counter() - started
    log.info("curl -F: %.2f s", curl_seconds)

    with trackerfs_mount(bench.emulator, bench.mount_dir("upload")) as mount:
        after_mount = peak_rss(mount)
        cat(mount.path / big.mount_path)
        after_read = peak_rss(mount)
        cp_seconds = timed(["cp", str(big.local), str(mount.path / PROJECT / issue / "cp-upload.bin")])
        after_upload = peak_rss(mount)
        log.info("cp: %.2f s", cp_seconds)
        writing, closing = write_then_close(big.local, mount.path / PROJECT / issue / "split-upload.bin")
        after_second = peak_rss(mount)
    log.info("write: %.2f s, close: %.2f s", writing, closing)

    curl_rate = mb_per_s(big.size, curl_seconds)
    uploads = Table(
        ["upload of " + size_text(big.size), "wall time", "MB/s", "ratio to curl", "stored intact"]
    )
    for label, seconds, filename in (
        ("`curl -F file=@FILE` to the emulator", curl_seconds, "curl-upload.bin"),
        ("`cp FILE` into the issue through trackerfs", cp_seconds, "cp-upload.bin"),
        ("1 MiB write() calls + close() through trackerfs", writing + closing, "split-upload.bin"),
        ("… of which the write() calls (spooled; the upload follows them)", writing, ""),
        ("… of which close() (the rest of the POST and its answer)", closing, ""),
    ):
        rate = mb_per_s(big.size, seconds)
        intact = (
            "" if not filename else "yes" if stored_sha256(bench, issue, filename) == big.sha256 else "NO"
        )
        uploads.add(label, f"{seconds:.2f} s", f"{rate:.0f}", ratio(rate, curl_rate), intact)

    memory = Table(["trackerfs daemon", "peak RSS (VmHWM)", "goal"])
    memory.add("just mounted", size_text(after_mount), "")
    if bench.read_peaks:
        label, largest = max(bench.read_peaks, key=lambda peak: peak[1])
        memory.add(
            f"largest over the {len(bench.read_peaks)} earlier mounts (`{label}`)",
            size_text(largest),
            f"< {RSS_GOAL // 1_000_000} MB",
        )
    memory.add(f"after reading {size_text(big.size)}", size_text(after_read), f"< {RSS_GOAL // 1_000_000} MB")
    memory.add(f"after uploading {size_text(big.size)} (cp)", size_text(after_upload), "flat")
    memory.add(f"after uploading {size_text(big.size)} again (1 MiB writes)", size_text(after_second), "flat")

    chart = Chart(
        "upload.png",
        f"Upload of {size_text(big.size)} to the emulator (MB/s)",
        "MB/s",
        ["curl -F", "trackerfs: cp", "trackerfs: writes", "trackerfs: close"],
        {"MB/s": [mb_per_s(big.size, s) for s in (curl_seconds, cp_seconds, writing, closing)]},
        highlight="trackerfs",
    )
    return Section(
        NAME,
        f"4. Upload of {size_text(big.size)} and daemon memory",
        [uploads, memory],
        [
            "Both uploads end at the same emulator endpoint (a streamed multipart parser in Python),"
            " which bounds both. `cp` returns when close() does, after the tracker confirmed the"
            " upload. A file written in order is sent while it is written (one chunked POST that"
            " follows the writer through the spool), so the spooling and the POST overlap.",
            "`stored intact` compares the sha256 the emulator stored with the local file's.",
            "The last three rows are a second upload of the same file by a Python writer that times"
            " its write() calls and its close() separately.",
        ],
        [chart],
    )
