"""6. Waldur: whole-file media (nginx with `max_ranges 0`) read through the content cache.

Waldur's media endpoint sends the whole file and ignores Range. Here a Waldur emulator
names nginx as the attachments' `file` URL, and nginx, told `max_ranges 0`, answers every
Range with 200 and the whole body, as Waldur does. Measured in one run:

- a cold `cat` of the big file through trackerfs against one raw httpx download of the
  same URL (the goal is at least 0.8 times its speed);
- a read at 90% of the file right after a mount: one download, which is never started
  again from byte 0;
- a re-read after a remount: 0 requests, the bytes come from the on-disk content cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import CHUNK, Blob
from tests.benchmarks.report import Section, Table, ratio, size_text
from tests.benchmarks.runners import cat, httpx_get, mb_per_s, median
from tests.benchmarks.services import Access, Nginx, start_emulator
from tests.benchmarks.tracker_io import CurlUpload, random_reads, stored_by_name, uploads
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

log = logging.getLogger(__name__)

NAME = "waldur"
#: The empty seed's project and the issue the big file is attached to, as Waldur names them.
PROJECT_DIR = "Test project"
ISSUE = "TEST-1"
#: How far into the file the read right after a mount starts.
FAR = 0.9
GOAL = 0.8
#: Seconds a whole download may take before the run gives up on it.
ANSWER_WAIT = 300.0


@dataclass(frozen=True, slots=True)
class Site:
    """The Waldur emulator, the nginx that serves its media without ranges, the big file."""

    emulator: EmulatorProcess
    nginx: Nginx
    big: Blob
    url: str

    @property
    def mount_path(self) -> str:
        """The big file's path relative to a trackerfs mount point."""
        return f"{PROJECT_DIR}/{ISSUE}/{self.big.filename}"


def issue_url(emulator: EmulatorProcess) -> str:
    """The API URL of the benchmark's issue: what an upload names it by."""
    answer = httpx.get(
        f"{emulator.base_url}/api/support-issues/",
        params={"key": ISSUE},
        headers=token_header(emulator),
        timeout=30.0,
    )
    answer.raise_for_status()
    return str(answer.json()[0]["url"])


def token_header(emulator: EmulatorProcess) -> dict[str, str]:
    return {"Authorization": f"Token {emulator.token}"}


def upload_endpoint(emulator: EmulatorProcess) -> CurlUpload:
    """`POST /api/support-attachments/` with the issue's URL and the file, as curl sends it."""
    return CurlUpload(
        f"{emulator.base_url}/api/support-attachments/",
        token_header(emulator),
        form=[f"issue={issue_url(emulator)}"],
    )


def waldur_upload(emulator: EmulatorProcess, path: Path, name: str) -> dict[str, Any]:
    """POST a file to `/api/support-attachments/` with curl -F, streamed from disk."""
    _, record = upload_endpoint(emulator).run(path, name)
    assert isinstance(record, dict)
    return record


@contextmanager
def open_site(bench: Bench) -> Iterator[Site]:
    """A Waldur emulator whose media nginx serves whole files, holding the run's big file."""
    root = bench.workdir / NAME
    shutil.rmtree(root, ignore_errors=True)
    blobs = root / "emu" / "blobs"
    blobs.mkdir(parents=True)
    nginx = Nginx(root / "nginx", blobs, {}, max_ranges=0)
    with ExitStack() as stack:
        stack.callback(nginx.stop)
        nginx.start()
        emulator = stack.enter_context(start_emulator(root / "emu", nginx.url, tracker="waldur"))
        local = bench.data.big
        log.info("uploading %s to the Waldur emulator", size_text(local.size))
        record = waldur_upload(emulator, local.local, local.filename)
        [stored] = [a for a in emulator.attachments() if a["id"] == record["uuid"]]
        if stored["sha256"] != local.sha256 or record["file_name"] != local.filename:
            raise RuntimeError(f"the big file did not arrive intact: {record}")
        big = Blob(
            local.local, ISSUE, local.filename, record["uuid"], stored["blob_name"], local.size, local.sha256
        )
        cat(blobs / big.blob_name)  # in nginx's page cache, as in a media host's RAM
        yield Site(emulator, nginx, big, str(record["file"]))


@contextmanager
def waldur_mount(site: Site, workdir: Path, cache: Path) -> Iterator[Path]:
    """A fresh trackerfs mount of the Waldur emulator with the content cache in `cache`."""
    mount = Mount(
        workdir,
        url=site.emulator.base_url,
        token=site.emulator.token,
        tracker="waldur",
        profile={"cache_dir": str(cache)},
        name="bench",
        debug=False,
    )
    try:
        yield mount.start().path
    finally:
        mount.stop()


def answers_after(nginx: Nginx, mark: int) -> list[Access]:
    """The answers nginx logs after `mark`, once at least one has ended and the log is still."""
    deadline = time.monotonic() + ANSWER_WAIT
    while not nginx.since(mark):
        if time.monotonic() > deadline:
            raise RuntimeError("nginx logged no answer: the download never ended")
        time.sleep(0.1)
    nginx.mark()
    return nginx.since(mark)


def far_read(path: Path, offset: int) -> tuple[float, bytes]:
    """Seconds until 64 KiB at `offset` arrived (the file opened and looked up before)."""
    with path.open("rb", buffering=0) as handle:
        started = time.perf_counter()
        data = os.pread(handle.fileno(), 1 << 16, offset)
    return time.perf_counter() - started, data


def expected_at(site: Site, offset: int) -> bytes:
    with site.big.local.open("rb") as source:
        source.seek(offset)
        return source.read(1 << 16)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(entries: list[Access]) -> str:
    """What nginx served, one item per request: status and bytes."""
    return ", ".join(f"{e.status} {size_text(e.bytes_sent)}" for e in entries) or "nothing"


def run(bench: Bench) -> Section:
    """Cold cat against raw httpx, a far read right after a mount, a re-read after a remount."""
    with open_site(bench) as site:
        size = site.big.size
        raw: list[float] = []
        ours: list[float] = []
        for number in range(bench.scale.repeats):
            raw.append(httpx_get(site.url))
            cache = bench.workdir / NAME / f"cache-cold-{number}"
            with waldur_mount(site, bench.mount_dir(f"{NAME}-cold"), cache) as root:
                path = root / site.mount_path
                path.stat()
                mark = site.nginx.mark()
                ours.append(cat(path))
                cold = site.nginx.since(mark)
            log.info("run %d: httpx %.2f s, trackerfs cat %.2f s", number + 1, raw[-1], ours[-1])

        speed = Table(["reader", "MB/s (median)", "runs (s)", "nginx answers per run"])
        speed.add("httpx stream under trio", f"{mb_per_s(size, median(raw)):.0f}", _runs(raw), "1 × 200")
        speed.add("trackerfs: cat", f"{mb_per_s(size, median(ours)):.0f}", _runs(ours), describe(cold))
        achieved = mb_per_s(size, median(ours)) / mb_per_s(size, median(raw))

        cache = bench.workdir / NAME / "cache-far"
        offset = int(size * FAR)
        reads = Table(["read", "wall time", "nginx answers", "emulator media requests", "bytes right"])
        with waldur_mount(site, bench.mount_dir(f"{NAME}-far"), cache) as root:
            path = root / site.mount_path
            path.stat()
            mark = site.nginx.mark()
            seconds, data = far_read(path, offset)
            # The download goes on into the content cache: its answer is logged at its end.
            served = answers_after(site.nginx, mark)
            reads.add(
                f"64 KiB at {FAR:.0%} right after a mount",
                f"{seconds:.2f} s",
                describe(served),
                "—",
                "yes" if data == expected_at(site, offset) else "NO",
            )
        with waldur_mount(site, bench.mount_dir(f"{NAME}-remount"), cache) as root:
            path = root / site.mount_path
            path.stat()
            site.emulator.clear_requests()
            mark = site.nginx.mark()
            started = time.perf_counter()
            intact = sha256_of(path) == site.big.sha256
            seconds = time.perf_counter() - started
            again = site.nginx.since(mark)
            media = [r for r in site.emulator.requests() if r["path"].startswith("/api/media/")]
            reads.add(
                "whole file after a remount",
                f"{seconds:.2f} s",
                describe(again),
                len(media),
                "yes" if intact else "NO",
            )
        cache = bench.workdir / NAME / "cache-random"
        with waldur_mount(site, bench.mount_dir(f"{NAME}-random"), cache) as root:
            fio = random_reads(None, root, root / site.mount_path, size, bench.scale.fio_seconds)
        cache = bench.workdir / NAME / "cache-upload"
        with waldur_mount(site, bench.mount_dir(f"{NAME}-upload"), cache) as root:
            stored = stored_by_name(site.emulator.attachments, ISSUE)
            upload = uploads(
                site.big.local,
                site.big.sha256,
                upload_endpoint(site.emulator),
                root / PROJECT_DIR / ISSUE,
                stored,
            )
    return Section(
        NAME,
        f"6. Waldur: {size_text(size)} from a media host that ignores Range",
        [speed, reads, fio, upload],
        [
            "nginx serves the Waldur emulator's media with `max_ranges 0`: every answer is 200 with"
            " the whole file, as Waldur's `/api/media/{uuid}/` sends it. Each trackerfs run is a fresh"
            " mount with an empty content cache; httpx downloads the same URL once per run, interleaved.",
            f"trackerfs / httpx: {ratio(mb_per_s(size, median(ours)), mb_per_s(size, median(raw)))}"
            f" (goal ≥ {GOAL}×: {'met' if achieved >= GOAL else 'NOT met'}).",
            f"The read at {FAR:.0%} waits for the one whole download to reach it; the download is"
            " not started again from byte 0 (one 200 answer of the whole size). After a remount the"
            " bytes come from the on-disk content cache: the goal is no request at all.",
            "fio and the uploads: the same measures as sections 2 and 4, on this dialect. Without"
            " Range, random reads wait for the one whole download to reach them, so fetched / read"
            " is the file over what fio read in its time (the goal of 4× is for servers that honour"
            " Range). Uploads go to `POST /api/support-attachments/` with the issue's URL.",
        ],
    )


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)
