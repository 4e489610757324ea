"""6. OpenProject: a cold read in both content modes; `find` over many work packages.

OpenProject keeps files on its own disk (`local`: the emulator sends the bytes) or in an
object store (`remote`: a 302 to a signed URL, here nginx). Its work package listing
never embeds attachments, so a `find` costs one attachment listing per work package on
top of the listing pages; the table sets that against a plain sequential client that
asks the same questions one after the other.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import CHUNK, small_file
from tests.benchmarks.report import Section, Table, ratio, size_text
from tests.benchmarks.runners import cat, mb_per_s
from tests.benchmarks.scale import PAGE_SIZE, UPLOAD_LIMIT
from tests.benchmarks.tracker_io import CurlUpload, random_reads, stored_by_name, uploads
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

NAME = "openproject"
API = "/api/v3"
PROJECT = "PERF"
#: the file read cold: an eighth of the big file (the local mode is served by Python)
READ_SHARE = 8


def start(workdir: Path, flavour: str, media_base: str) -> EmulatorProcess:
    """An OpenProject emulator of `flavour`; remote content redirects to nginx's blobs."""
    return EmulatorProcess(
        "--flavour",
        flavour,
        "--seed",
        "empty",
        "--data-dir",
        str(workdir),
        "--media-base",
        media_base,
        "--upload-limit",
        str(UPLOAD_LIMIT),
        "--page-size",
        str(PAGE_SIZE),
        tracker="openproject",
    )


def client(emulator: EmulatorProcess) -> httpx.Client:
    """The API as the token's user (Basic `apikey`)."""
    return httpx.Client(base_url=emulator.base_url, auth=("apikey", emulator.token), timeout=300.0)


def upload(http: httpx.Client, work_package: str, name: str, data: bytes | BinaryIO) -> dict[str, Any]:
    """The documented upload: `metadata` first, then `file`."""
    answer = http.post(
        f"{API}/work_packages/{work_package}/attachments",
        files=[
            ("metadata", (None, json.dumps({"fileName": name}), "application/json")),
            ("file", (name, data, "application/octet-stream")),
        ],
    )
    answer.raise_for_status()
    created: dict[str, Any] = answer.json()
    return created


def write_sample(path: Path, size: int) -> str:
    """A file of `size` pseudo-random bytes; its sha256."""
    digest = hashlib.sha256()
    block = hashlib.sha256(b"openproject").digest() * (CHUNK // 32)
    with path.open("wb") as out:
        left = size
        while left > 0:
            piece = block[: min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


@contextmanager
def mounted(bench: Bench, emulator: EmulatorProcess, label: str) -> Iterator[Path]:
    """A fresh mount of an OpenProject emulator."""
    mount = Mount(
        bench.mount_dir(f"openproject-{label}"),
        url=emulator.base_url,
        token=emulator.token,
        tracker="openproject",
        profile={},
        name="bench",
        debug=False,
    )
    try:
        yield mount.start().path
    finally:
        mount.stop()


def sha256_of(path: Path) -> str:
    """The sha256 of a file read through the mount."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cold_reads(bench: Bench, table: Table) -> list[Table]:
    """`cat` of one file on a fresh mount, in each content mode, checked by sha256; fio
    random reads of it in each mode; an upload of it against curl's (the last mode)."""
    size = max(bench.scale.big_bytes // READ_SHARE, 1 << 20)
    sample = bench.workdir / "emu" / "openproject-sample.bin"
    sha = write_sample(sample, size)
    fio: Table | None = None
    sent: Table | None = None
    for flavour in ("local", "remote"):
        with start(bench.workdir / "emu", flavour, bench.nginx.url) as emulator:
            emulator.add_project(PROJECT, "Performance")
            key = emulator.add_issue(PROJECT, "Cold read")["key"]
            with client(emulator) as http, sample.open("rb") as source:
                upload(http, key, sample.name, source)
            with mounted(bench, emulator, f"read-{flavour}") as root:
                path = root / PROJECT.lower() / key / sample.name
                path.stat()
                emulator.clear_requests()
                mark = bench.nginx.mark()
                seconds = cat(path)
                api = [r for r in emulator.requests() if r["origin"] == "api"]
                media = len(bench.nginx.since(mark))
                intact = "yes" if sha256_of(path) == sha else "NO"
            table.add(
                f"`cat` of {size_text(size)}, {flavour} storage",
                f"{seconds:.2f} s",
                f"{mb_per_s(size, seconds):.0f}",
                len(api),
                media,
                intact,
            )
            with mounted(bench, emulator, f"random-{flavour}") as root:
                path = root / PROJECT.lower() / key / sample.name
                fio = random_reads(fio, root, path, size, bench.scale.fio_seconds, f"{flavour} storage")
            if flavour != "remote":
                continue  # uploads go to the API either way: one measure is enough
            with mounted(bench, emulator, f"upload-{flavour}") as root:
                curl = CurlUpload(
                    f"{emulator.base_url}{API}/work_packages/{key}/attachments",
                    {
                        "Authorization": "Basic "
                        + base64.b64encode(f"apikey:{emulator.token}".encode()).decode()
                    },
                    form=['metadata={{"fileName": "{filename}"}};type=application/json'],
                )
                sent = uploads(
                    sample, sha, curl, root / PROJECT.lower() / key, stored_by_name(emulator.attachments, key)
                )
    assert fio is not None and sent is not None
    return [fio, sent]


def seed_work_packages(emulator: EmulatorProcess, count: int, files: int) -> list[str]:
    """A project of `count` work packages with `files` small attachments each."""
    emulator.add_project(PROJECT, "Performance")
    keys = [emulator.add_issue(PROJECT, f"Work package {n}")["key"] for n in range(count)]
    with client(emulator) as http, ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(upload, http, key, *small_file(key, index)) for key in keys for index in range(files)
        ]
        for job in jobs:
            job.result()
    return keys


def client_loop(emulator: EmulatorProcess) -> tuple[float, int, int]:
    """What a sequential client does for the same answer: every listing page, then each
    work package's attachments, one request after the other; (seconds, requests, files)."""
    requests = files = 0
    started = time.perf_counter()
    with client(emulator) as http:
        project = http.get(f"{API}/projects/{PROJECT.lower()}").json()["id"]
        ids: list[int] = []
        page = 1
        while True:
            answer = http.get(
                f"{API}/projects/{project}/work_packages",
                params={"filters": "[]", "offset": page, "pageSize": PAGE_SIZE},
            ).json()
            requests += 1
            ids += [element["id"] for element in answer["_embedded"]["elements"]]
            if "nextByOffset" not in answer["_links"]:
                break
            page += 1
        for ident in ids:
            listed = http.get(f"{API}/work_packages/{ident}/attachments").json()
            requests += 1
            files += len(listed["_embedded"]["elements"])
    return time.perf_counter() - started, requests + 1, files


def find_cost(bench: Bench, table: Table) -> list[str]:
    """`find` on a fresh mount against the sequential client loop, over the same project."""
    count, per = bench.scale.project_issues, bench.scale.files_per_issue
    with start(bench.workdir / "emu", "local", bench.nginx.url) as emulator:
        seed_work_packages(emulator, count, per)
        loop_seconds, loop_requests, loop_files = client_loop(emulator)
        with mounted(bench, emulator, "find") as root:
            emulator.clear_requests()
            started = time.perf_counter()
            found = subprocess_find(root / PROJECT.lower())
            seconds = time.perf_counter() - started
            api = [r for r in emulator.requests() if r["origin"] == "api"]
    pages = sum(1 for r in api if r["path"].endswith("/work_packages"))
    listings = sum(1 for r in api if r["path"].endswith("/attachments"))
    table.add(
        f"`find` over {count} work packages, cold mount",
        f"{seconds:.2f} s",
        len(api),
        f"{pages} pages + {listings} attachment listings",
        ratio(seconds, loop_seconds),
    )
    table.add(
        "sequential client loop (httpx, the same questions)",
        f"{loop_seconds:.2f} s",
        loop_requests,
        f"{loop_requests - count - 1} pages + {count} attachment listings",
        "1.00×",
    )
    return [
        f"`find` printed {found} paths (expected {1 + count * (1 + per)}); the loop saw {loop_files}"
        f" attachments (expected {count * per}).",
    ]


def subprocess_find(path: Path) -> int:
    """Run `find` on `path`; the number of paths it printed."""
    done = subprocess.run(["find", str(path)], check=True, capture_output=True, text=True)
    return len(done.stdout.splitlines())


def run(bench: Bench) -> Section:
    """Cold reads in both content modes, then `find` against a client loop."""
    reads = Table(["operation", "wall time", "MB/s", "API requests", "nginx requests", "bytes intact"])
    io = cold_reads(bench, reads)
    finds = Table(["operation", "wall time", "API requests", "what was asked", "time vs the loop"])
    notes = find_cost(bench, finds)
    return Section(
        NAME,
        "6. OpenProject",
        [reads, *io, finds],
        [
            "local: the emulator (hypercorn + starlette, about 0.2 GB/s) sends the bytes; remote: its"
            " 302 sends trackerfs to nginx without credentials, as OpenProject on S3 does.",
            "fio and the uploads: the same measures as sections 2 and 4, on this dialect, in each"
            " content mode (the upload, `POST …/work_packages/ID/attachments` with its `metadata`"
            " part first, in the last one).",
            *notes,
            "The listing embeds no attachments, so both pay one request per work package; the"
            " mount's are concurrent only as far as `find` asks for directories one by one.",
        ],
    )
