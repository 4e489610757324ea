"""The benchmark's data, created through the emulator's real Jira upload API.

Big files go up with ``curl -F`` (it streams from disk); small ones in multipart batches
from httpx; projects and issues through the control API.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.scale import MiB, Scale
from tests.benchmarks.tracker_io import CurlUpload
from tests.support.emulator import EmulatorProcess

log = logging.getLogger(__name__)

PROJECT = "TEST"
BIG_ISSUE = "TEST-1"
FILES_ISSUE = "TEST-2"
UPLOAD_ISSUE = "TEST-3"
MANY_PROJECT = "PERF"
BIG_NAME = "random.bin"
ZIP_NAME = "archive.zip"
#: Jira takes at most 60 `file` parts per upload request.
PARTS_PER_REQUEST = 50
CHUNK = 8 * MiB


@dataclass(frozen=True, slots=True)
class Blob:
    """A file uploaded to the emulator: where it is locally, in the store and on the mount."""

    local: Path
    issue: str
    filename: str
    attachment_id: str
    blob_name: str
    size: int
    sha256: str

    @property
    def mount_path(self) -> str:
        """The file's path relative to a trackerfs mount point."""
        return f"{PROJECT}/{self.issue}/{self.filename}"


@dataclass(frozen=True, slots=True)
class Dataset:
    """Everything the benchmarks read, list or upload to."""

    big: Blob
    archive: Blob
    files_issue: str
    files_count: int
    project: str
    project_issues: int
    upload_issue: str


def write_random_file(path: Path, size: int, seed: int) -> str:
    """`size` pseudo-random bytes (incompressible, reproducible); returns their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = rng.randbytes(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def member_data(rng: random.Random, index: int, size: int) -> bytes:
    """A ZIP member: random bytes for odd indices, repetitive text for even ones."""
    if index % 2:
        return rng.randbytes(size)
    line = f"member {index}: the quick brown fox jumps over the lazy dog\n".encode()
    return (line * (size // len(line) + 1))[:size]


def write_zip(path: Path, size: int, members: int, seed: int) -> str:
    """A ZIP_STORED archive of about `size` bytes in `members` members; returns its sha256."""
    rng = random.Random(seed)
    each = size // members
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(members):
            archive.writestr(f"dir{index % 20:02d}/member-{index:05d}.dat", member_data(rng, index, each))
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """The sha256 of a local file."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def upload_url(emulator: EmulatorProcess, issue: str) -> str:
    """Jira Cloud's attachment upload endpoint of an issue."""
    return f"{emulator.base_url}/rest/api/3/issue/{issue}/attachments"


def curl_upload(emulator: EmulatorProcess, issue: str, path: Path, filename: str) -> list[dict[str, Any]]:
    """POST a file as Jira's multipart `file` part with curl, streamed from disk."""
    user, token = emulator.auth
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    endpoint = CurlUpload(
        upload_url(emulator, issue), {"Authorization": f"Basic {basic}", "X-Atlassian-Token": "no-check"}
    )
    _, created = endpoint.run(path, filename)
    assert isinstance(created, list)
    return created


def upload_parts(
    client: httpx.Client, emulator: EmulatorProcess, issue: str, files: list[tuple[str, bytes]]
) -> None:
    """One multipart POST with a `file` part per (name, bytes)."""
    response = client.post(
        upload_url(emulator, issue),
        headers={"X-Atlassian-Token": "no-check"},
        files=[("file", (name, data, "application/octet-stream")) for name, data in files],
    )
    response.raise_for_status()


def small_file(issue: str, index: int) -> tuple[str, bytes]:
    """A small text attachment of 1 to 4 KiB."""
    line = f"{issue} file {index}\n".encode()
    return f"note-{index:04d}.txt", line * (1024 * (1 + index % 4) // len(line))


def batches(items: list[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    """`items` in lists of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def blob_of(emulator: EmulatorProcess, issue: str, filename: str, local: Path, sha256: str) -> Blob:
    """The stored attachment `filename` of `issue`, checked against the local file."""
    found = [a for a in emulator.attachments() if a["issue"] == issue and a["filename"] == filename]
    if len(found) != 1 or found[0]["sha256"] != sha256:
        raise RuntimeError(f"{issue}/{filename} did not arrive intact: {found}")
    item = found[0]
    return Blob(local, issue, filename, str(item["id"]), str(item["blob_name"]), int(item["size"]), sha256)


def build_dataset(emulator: EmulatorProcess, directory: Path, scale: Scale) -> Dataset:
    """Create the local files, upload them, and build the 1,000-issue project."""
    directory.mkdir(parents=True, exist_ok=True)
    big_local, zip_local = directory / BIG_NAME, directory / ZIP_NAME
    log.info("writing %s and %s", big_local, zip_local)
    big_sha = write_random_file(big_local, scale.big_bytes, seed=1)
    zip_sha = write_zip(zip_local, scale.zip_bytes, scale.zip_members, seed=2)
    log.info("uploading them with curl -F")
    curl_upload(emulator, BIG_ISSUE, big_local, BIG_NAME)
    curl_upload(emulator, BIG_ISSUE, zip_local, ZIP_NAME)
    big = blob_of(emulator, BIG_ISSUE, BIG_NAME, big_local, big_sha)
    archive = blob_of(emulator, BIG_ISSUE, ZIP_NAME, zip_local, zip_sha)

    log.info("uploading %d small files to %s", scale.issue_files, FILES_ISSUE)
    with httpx.Client(auth=emulator.auth, timeout=120.0) as client:
        files = [small_file(FILES_ISSUE, index) for index in range(scale.issue_files)]
        for batch in batches(files, PARTS_PER_REQUEST):
            upload_parts(client, emulator, FILES_ISSUE, batch)

    log.info("creating project %s with %d issues", MANY_PROJECT, scale.project_issues)
    emulator.add_project(MANY_PROJECT, "Performance")
    keys = [emulator.add_issue(MANY_PROJECT, f"Issue {n}")["key"] for n in range(scale.project_issues)]
    with httpx.Client(auth=emulator.auth, timeout=120.0) as client, ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(
                upload_parts,
                client,
                emulator,
                key,
                [small_file(key, index) for index in range(scale.files_per_issue)],
            )
            for key in keys
        ]
        for job in jobs:
            job.result()
    return Dataset(
        big=big,
        archive=archive,
        files_issue=FILES_ISSUE,
        files_count=scale.issue_files,
        project=MANY_PROJECT,
        project_issues=scale.project_issues,
        upload_issue=UPLOAD_ISSUE,
    )
