"""6. Yandex Tracker: a cold read from the API's content URL, and `find` over a big queue.

Tracker serves content itself (no redirect to a media host), so the cold read is as fast
as the emulator's own server allows; the figure to watch is that `find` over a queue costs
its search pages (issues embed their attachments), not one request per issue.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import small_file, write_random_file
from tests.benchmarks.metadata import command
from tests.benchmarks.report import Section, Table, size_text
from tests.benchmarks.runners import cat, mb_per_s
from tests.benchmarks.scale import PAGE_SIZE, UPLOAD_LIMIT, Scale
from tests.benchmarks.tracker_io import CurlUpload, random_reads, stored_by_name, uploads
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

NAME = "yandex"
ORG = "12345"
QUEUE = "PERF"
FILE_QUEUE = "READ"
FILE_NAME = "cold.bin"
SEARCH = "/v2/issues/_search"


def headers(emulator: EmulatorProcess) -> dict[str, str]:
    """What every request to Tracker carries: the token and the organisation."""
    return {"Authorization": f"OAuth {emulator.token}", "X-Org-ID": ORG}


@contextmanager
def yandex_emulator(data_dir: Path) -> Iterator[EmulatorProcess]:
    """The Yandex emulator, empty, with the benchmark's page size and upload limit."""
    with EmulatorProcess(
        "--seed",
        "empty",
        "--data-dir",
        str(data_dir),
        "--org-id",
        ORG,
        "--page-size",
        str(PAGE_SIZE),
        "--upload-limit",
        str(UPLOAD_LIMIT),
        tracker="yandex",
    ) as emulator:
        yield emulator


def attach(client: httpx.Client, issue: str, name: str, data: Any) -> dict[str, Any]:
    """One upload through Tracker's API: the name in `?filename=`, the bytes in part `file`."""
    response = client.post(
        f"/v2/issues/{issue}/attachments/", params={"filename": name}, files={"file": ("file", data)}
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def build_queue(emulator: EmulatorProcess, scale: Scale) -> None:
    """A queue of `project_issues` issues with `files_per_issue` small files each."""
    emulator.add_project(QUEUE, "Performance")
    keys = [emulator.add_issue(QUEUE, f"Issue {n}")["key"] for n in range(scale.project_issues)]
    with (
        httpx.Client(base_url=emulator.base_url, headers=headers(emulator), timeout=120.0) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        jobs = [
            pool.submit(attach, client, key, *small_file(key, index))
            for key in keys
            for index in range(scale.files_per_issue)
        ]
        for job in jobs:
            job.result()


def build_file(emulator: EmulatorProcess, directory: Path, size: int) -> str:
    """One file of `size` random bytes in its own queue; its sha256."""
    local = directory / FILE_NAME
    sha = write_random_file(local, size, seed=6)
    emulator.add_project(FILE_QUEUE, "Reads")
    issue = emulator.add_issue(FILE_QUEUE, "A big file")["key"]
    with (
        httpx.Client(base_url=emulator.base_url, headers=headers(emulator), timeout=600.0) as client,
        local.open("rb") as source,
    ):
        attach(client, issue, FILE_NAME, source)
    return sha


def sha256_of(path: Path) -> str:
    """The sha256 of a file read through the mount."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def api_requests(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["origin"] == "api"]


def run(bench: Bench) -> Section:
    """A cold `cat` of one file, then `find` over a queue, cold and warm, each on fresh mounts."""
    scale = bench.scale
    size = max(scale.big_bytes // 4, 1 << 20)
    table = Table(["operation", "wall time", "MB/s", "API requests", "search pages", "what was asked"])
    workdir = bench.workdir / NAME
    with yandex_emulator(workdir / "emu") as emulator:
        sha = build_file(emulator, workdir, size)
        build_queue(emulator, scale)

        def mount(label: str) -> Mount:
            return Mount(
                bench.mount_dir(f"{NAME}-{label}"),
                url=emulator.base_url,
                token=emulator.token,
                tracker="yandex",
                profile={"org_id": ORG},
                name="bench",
                debug=False,
            )

        with mount("read") as mounted:
            issue = next((mounted.path / FILE_QUEUE).iterdir())
            path = issue / FILE_NAME
            path.stat()
            emulator.clear_requests()
            seconds = cat(path)
            requests = api_requests(emulator)
            table.add(
                f"cold `cat` of {size_text(size)}",
                f"{seconds * 1000:.0f} ms",
                f"{mb_per_s(size, seconds):.0f}",
                len(requests),
                "",
                paths(requests),
            )
            intact = sha256_of(path) == sha

        with mount("random") as mounted:
            issue = next((mounted.path / FILE_QUEUE).iterdir())
            fio = random_reads(None, mounted.path, issue / FILE_NAME, size, scale.fio_seconds)

        with mount("upload") as mounted:
            issue = next((mounted.path / FILE_QUEUE).iterdir())
            curl = CurlUpload(
                f"{emulator.base_url}/v2/issues/{issue.name}/attachments/",
                headers(emulator),
                name_parameter="filename",
            )
            upload = uploads(
                workdir / FILE_NAME, sha, curl, issue, stored_by_name(emulator.attachments, issue.name)
            )

        expected = math.ceil(scale.project_issues / PAGE_SIZE)
        with mount("find") as mounted:
            for state in ("cold", "warm"):
                emulator.clear_requests()
                started = time.perf_counter()
                output = command("find", str(mounted.path / QUEUE))()
                seconds = time.perf_counter() - started
                requests = api_requests(emulator)
                pages = sum(1 for r in requests if r["path"] == SEARCH)
                table.add(
                    f"`find` over a queue of {scale.project_issues} issues, {state}",
                    f"{seconds * 1000:.0f} ms",
                    "",
                    len(requests),
                    f"{pages} (expected ≤ {expected})",
                    paths(requests),
                )
            found = len(output.splitlines())

    return Section(
        NAME,
        "6. Yandex Tracker",
        [table, fio, upload],
        [
            "Content comes from Tracker's own `content` URL (the emulator's hypercorn server, not"
            " nginx), with the token and `X-Org-ID`: the cold read is bounded by that server."
            f" The bytes read back {'matched' if intact else 'did NOT match'} the upload's sha256.",
            f"Emulator page size {PAGE_SIZE}: `find` over N issues should cost ceil(N / {PAGE_SIZE})"
            " `POST _search` pages (attachments embedded with `expand=attachments`) and nothing per"
            " issue, beside the one `GET /v2/queues/` a fresh mount makes to find the queue; issues"
            " without comments need no comment lookups.",
            "fio and the uploads: the same measures as sections 2 and 4, on this dialect (fetched"
            " counts what the daemon fetched; the uploads go to `POST /v2/issues/KEY/attachments/`,"
            " curl's and trackerfs's alike).",
            f"`find` printed {found} paths (expected"
            f" {1 + scale.project_issues * (1 + scale.files_per_issue)}).",
        ],
    )


def paths(requests: list[dict[str, Any]]) -> str:
    """The request methods and paths with their counts (content paths folded together)."""
    counts: dict[str, int] = {}
    for request in requests:
        path = request["path"]
        if "/attachments/" in path:
            path = "/v2/issues/KEY/attachments/ID/NAME"
        label = f"{request['method']} {path}"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}× `{label}`" for label, n in counts.items()) or "—"
