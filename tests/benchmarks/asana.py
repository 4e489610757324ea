"""6. Asana: a cold read through the pre-signed URL, and `find` over a project of many tasks.

Asana's content comes from a pre-signed `download_url` on its storage, asked for when a
download starts; the emulator's S3-style storage signs it and refuses it once expired, so
the read here outlives several URLs. Asana embeds no attachments in a task listing and
allows a token 150 requests a minute on free plans: `find` over the project costs one
attachment listing per task, and trackerfs's request budget is set against the official
`asana` client's sequential loop over the same tasks, under the emulator's rate limit.
"""

from __future__ import annotations

import logging
import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.bench import Bench
from tests.benchmarks.data import file_sha256, write_random_file
from tests.benchmarks.report import Section, Table, ratio, size_text
from tests.benchmarks.runners import MB, cat, curl_get
from tests.benchmarks.scale import PAGE_SIZE, UPLOAD_LIMIT
from tests.benchmarks.tracker_io import CurlUpload, random_reads, stored_by_name, uploads
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

log = logging.getLogger(__name__)

NAME = "asana"
API = "/api/1.0"
WORKSPACE = "Test workspace"
#: the empty seed's project (store key, and its name in Asana), the big file's task and name
BIG_PROJECT, BIG_PROJECT_NAME = "TEST", "Test project"
BIG_TASK, BIG_NAME = "Big file", "random.bin"
SWEEP_PROJECT, SWEEP_NAME = "SWEEP", "Sweep"
#: Seconds a download_url lives here: short, so that the cold read outlives several.
URL_LIFE = 2
#: requests a minute on each plan, as Asana allows them and as the profile is set
BUDGETS = {"free": 150, "paid": 1500}
#: The uploads' size: within the 100 MB Asana accepts for one attachment.
UPLOAD_SIZE = 96 << 20
#: uploads of the sweep's small files in flight at once (the rate limit is off then)
UPLOADERS = 8


def api(emulator: EmulatorProcess) -> httpx.Client:
    """Asana's API with the emulator's token."""
    return httpx.Client(
        base_url=f"{emulator.base_url}{API}",
        headers={"Authorization": f"Bearer {emulator.token}"},
        timeout=120.0,
    )


def upload_endpoint(emulator: EmulatorProcess, task: str) -> CurlUpload:
    """`POST /attachments` with the task as `parent` and the file, as curl sends it."""
    return CurlUpload(
        f"{emulator.base_url}{API}/attachments",
        {"Authorization": f"Bearer {emulator.token}"},
        form=[f"parent={task}"],
    )


def build(emulator: EmulatorProcess, directory: Path, big_bytes: int, tasks: int) -> dict[str, Any]:
    """The big file in a task of TEST, and a project of `tasks` tasks with one file each."""
    directory.mkdir(parents=True, exist_ok=True)
    big = directory / BIG_NAME
    sha = write_random_file(big, big_bytes, seed=6)
    task = emulator.add_issue(BIG_PROJECT, BIG_TASK)["id"]
    log.info("uploading %s to the Asana emulator with curl -F", size_text(big_bytes))
    upload_endpoint(emulator, task).run(big, BIG_NAME)
    [item] = [a for a in emulator.attachments() if a["issue_id"] == task]
    assert item["sha256"] == sha == file_sha256(big)
    project = emulator.add_project(SWEEP_PROJECT, SWEEP_NAME)
    log.info("making %d tasks with a file each", tasks)
    gids = [emulator.add_issue(SWEEP_PROJECT, f"Task {n:04d}")["id"] for n in range(1, tasks + 1)]
    with api(emulator) as client, ThreadPoolExecutor(UPLOADERS) as pool:

        def attach(gid: str) -> None:
            answer = client.post(
                "/attachments",
                data={"parent": gid},
                files={"file": ("notes.txt", f"notes of {gid}\n".encode())},
            )
            answer.raise_for_status()

        list(pool.map(attach, gids))
    return {"big": item, "big_task": task, "project": project["id"], "tasks": gids}


@contextmanager
def asana_mount(emulator: EmulatorProcess, workdir: Path, **settings: Any) -> Iterator[Mount]:
    """A fresh trackerfs mount of the Asana emulator's Test workspace."""
    mount = Mount(
        workdir,
        url=emulator.base_url,
        token=emulator.token,
        tracker="asana",
        profile={"workspace": WORKSPACE, **settings},
        name="bench-asana",
        debug=False,
    )
    try:
        yield mount.start()
    finally:
        mount.stop()


def fresh_rate_limit(emulator: EmulatorProcess, plan: str) -> None:
    """Turn the emulator's rate limit on with an empty minute behind it."""
    emulator.config(rate_limit=False)
    with api(emulator) as client:
        client.get("/users/me").raise_for_status()  # a request while off forgets the count
    emulator.config(rate_limit=True, paid_plan=plan == "paid")


def refused(requests: list[dict[str, Any]]) -> int:
    """How many API answers were 429."""
    return sum(1 for r in requests if r["origin"] == "api" and r["status"] == 429)


def official_client_sweep(emulator: EmulatorProcess, project: str) -> int:
    """The official client's loop: the project's tasks, then each task's attachments."""
    import asana

    configuration = asana.Configuration()
    configuration.host = f"{emulator.base_url}{API}"
    configuration.access_token = emulator.token
    client = asana.ApiClient(configuration)
    try:
        found = 0
        tasks = asana.TasksApi(client).get_tasks_for_project(project, {"opt_fields": "name"})
        attachments = asana.AttachmentsApi(client)
        for task in tasks:
            found += len(
                list(attachments.get_attachments_for_object(task["gid"], {"opt_fields": "name,size"}))
            )
        return found
    finally:
        client.rest_client.pool_manager.clear()


def cold_read(bench: Bench, emulator: EmulatorProcess, data: dict[str, Any], table: Table) -> None:
    """`cat` of the big file on a fresh mount, against curl of one fresh download_url."""
    item = data["big"]
    emulator.config(media_ttl=URL_LIFE)
    with api(emulator) as client:
        url = client.get(f"/attachments/{item['id']}", params={"opt_fields": "download_url"}).json()["data"]
    curl_seconds = curl_get(url["download_url"])
    path = f"{BIG_PROJECT_NAME}/{BIG_TASK}/{BIG_NAME}"
    with asana_mount(emulator, bench.mount_dir("asana-read"), content_cache_mb=0) as mount:
        target = mount.path / path
        target.stat()
        emulator.clear_requests()
        seconds = cat(target)
        requests = emulator.requests()
    storage = [r for r in requests if r["origin"] == "media"]
    asked = [r for r in requests if r["origin"] == "api" and r["path"].endswith(f"/attachments/{item['id']}")]
    size = item["size"]
    table.add("curl, one fresh download_url", f"{size / curl_seconds / MB:.0f} MB/s", "1.00×", 1, 1, 0)
    table.add(
        f"trackerfs `cat`, URLs living {URL_LIFE} s",
        f"{size / seconds / MB:.0f} MB/s",
        ratio(curl_seconds, seconds),
        len(asked),
        len(storage),
        sum(1 for r in storage if r["status"] == 403),
    )
    if any(r["authorized"] for r in storage):
        raise RuntimeError("a request to the storage carried credentials")


def sweep(bench: Bench, emulator: EmulatorProcess, data: dict[str, Any], table: Table) -> list[str]:
    """`find` over the project against the official client's loop, on the chosen plan."""
    plan = bench.scale.asana_plan
    budget = BUDGETS[plan]
    tasks = len(data["tasks"])
    emulator.config(rate_limit=False)
    with asana_mount(emulator, bench.mount_dir("asana-find"), requests_per_minute=budget) as mount:
        fresh_rate_limit(emulator, plan)
        emulator.clear_requests()
        started = time.perf_counter()
        found = subprocess.run(
            ["find", str(mount.path / SWEEP_NAME)], check=True, capture_output=True, text=True
        ).stdout
        seconds = time.perf_counter() - started
        requests = [r for r in emulator.requests() if r["origin"] == "api"]
    table.add(f"trackerfs `find`, budget {budget}/min", f"{seconds:.1f} s", len(requests), refused(requests))
    fresh_rate_limit(emulator, plan)
    emulator.clear_requests()
    started = time.perf_counter()
    files = official_client_sweep(emulator, data["project"])
    client_seconds = time.perf_counter() - started
    client_requests = [r for r in emulator.requests() if r["origin"] == "api"]
    table.add(
        "official `asana` client, sequential loop",
        f"{client_seconds:.1f} s",
        len(client_requests),
        refused(client_requests),
    )
    emulator.config(rate_limit=False)
    floor = max(0, math.ceil(len(requests) / budget) - 1) * 61
    return [
        f"`find` printed {len(found.splitlines())} paths (expected {1 + 2 * tasks}); the client found"
        f" {files} attachments (expected {tasks}).",
        f"Rate limit: the emulator's {plan} plan ({budget} requests a minute, 429 with Retry-After"
        f" beyond it). {len(requests)} requests within such a budget need at least about {floor} s"
        " of waiting (whole windows of 61 s after the first).",
        f"Pages of {PAGE_SIZE}; one attachment listing per task (Asana embeds none in a task listing).",
    ]


def run(bench: Bench) -> Section:
    """The Asana emulator, its data, the cold read and the sweep."""
    workdir = bench.workdir / "asana"
    with EmulatorProcess(
        "--seed",
        "empty",
        "--data-dir",
        str(workdir / "emu"),
        "--upload-limit",
        str(UPLOAD_LIMIT),
        "--page-size",
        str(PAGE_SIZE),
        tracker="asana",
    ) as emulator:
        data = build(emulator, workdir / "data", bench.scale.big_bytes, bench.scale.asana_tasks)
        reads = Table(["reader", "throughput", "vs curl", "download_url asked", "storage requests", "403s"])
        cold_read(bench, emulator, data, reads)
        task_dir = f"{BIG_PROJECT_NAME}/{BIG_TASK}"
        big = data["big"]
        with asana_mount(emulator, bench.mount_dir("asana-random")) as mount:
            path = mount.path / task_dir / BIG_NAME
            fio = random_reads(None, mount.path, path, big["size"], bench.scale.fio_seconds)
        with asana_mount(emulator, bench.mount_dir("asana-upload")) as mount:
            stored = stored_by_name(emulator.attachments, data["big_task"], key="issue_id")
            endpoint = upload_endpoint(emulator, data["big_task"])
            sample = workdir / "data" / "upload.bin"
            sha = write_random_file(sample, min(bench.scale.big_bytes, UPLOAD_SIZE), seed=7)
            sent = uploads(sample, sha, endpoint, mount.path / task_dir, stored)
        finds = Table(["sweep", "wall time", "API requests", "429s seen"])
        notes = sweep(bench, emulator, data, finds)
    return Section(
        NAME,
        "6. Asana",
        [reads, fio, sent, finds],
        [
            f"Cold read of {size_text(data['big']['size'])} from the emulator's S3-style storage (Python,"
            " about 0.2 GB/s at best); every trackerfs mount is fresh and its disk cache off.",
            "fio and the uploads: the same measures as sections 2 and 4, on this dialect (the"
            " download_url living as long as Asana's; uploads, of at most the 100 MB Asana takes, to"
            " `POST /attachments` with the task as `parent`).",
            *notes,
        ],
    )
