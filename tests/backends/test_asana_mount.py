"""What only Asana has, through a real mount: workspaces, names without keys, a task in
two projects, subtasks by gid, links as shortcuts, download URLs that expire mid-read,
completed tasks, the fixed upload limit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import ASANA_NAMES, CASES, TrackerCase
from tests.support.commands import mount_at, one_line_error, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, Mount, force_unmount, write_config
from tests.support.store import attachment, deletes, file_sha256, stored, uploads

pytestmark = pytest.mark.mount

MiB = 1 << 20
PROJECT = "Demo project"
#: the second project called Operations: the one with the links and the shared task
TWIN = ASANA_NAMES["LINKS"]


@pytest.fixture(scope="module")
def case() -> TrackerCase:
    return next(c for c in CASES if c.id == "asana")


@pytest.fixture(scope="module")
def server(case: TrackerCase) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(*case.emulator_args, "--page-size", "5", names=case.names) as running:
        yield running


@pytest.fixture
def emulator(server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def mount(case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Mount]:
    started = mount_at(tmp_path / "w", case, emulator).start()
    yield started
    started.stop()


def task_gid(case: TrackerCase, emulator: EmulatorProcess, summary: str) -> str:
    """The gid of a task (a subtask too) by its name, from Asana's API."""
    with case.api_client(emulator) as api:
        spaces = api.get("/workspaces").json()["data"]
        for space in spaces:
            for project in api.get(f"/workspaces/{space['gid']}/projects").json()["data"]:
                for task in api.get(f"/projects/{project['gid']}/tasks").json()["data"]:
                    if task["name"] == summary:
                        return str(task["gid"])
                    subtasks = api.get(f"/tasks/{task['gid']}/subtasks").json()["data"]
                    for sub in subtasks:
                        if sub["name"] == summary:
                            return str(sub["gid"])
    raise LookupError(summary)


def test_a_token_with_two_workspaces_and_none_named_fails_in_one_line(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        "work",
        {
            "tracker": "asana",
            "url": emulator.base_url,
            "token_env": TOKEN_ENV,
            "spool_dir": str(tmp_path / "s"),
        },
    )
    try:
        done = trackerfs(
            "mount",
            "--config",
            str(config),
            "work",
            str(mountpoint),
            env=dict(os.environ, **{TOKEN_ENV: emulator.token}),
        )
    finally:
        force_unmount(mountpoint)
    assert done.returncode != 0 and not os.path.ismount(mountpoint)
    line = one_line_error(done)
    assert '"Demo workspace"' in line and '"Other workspace"' in line and "workspace" in line
    assert emulator.token not in done.stderr


def test_projects_of_one_name_are_told_apart_by_gid(mount: Mount, emulator: EmulatorProcess) -> None:
    listed = sorted(os.listdir(mount.path))
    assert listed == sorted(["Demo project", "Operations", TWIN])
    twin_id = os.getxattr(mount.path / TWIN, "user.trackerfs.id").decode()
    assert f"Operations ({twin_id})" == TWIN
    assert os.getxattr(mount.path / TWIN, "user.trackerfs.url").decode().endswith(f"/project/{twin_id}")


def test_a_task_in_two_projects_shows_the_same_bytes_in_both(mount: Mount, emulator: EmulatorProcess) -> None:
    here = mount.path / PROJECT / "Demo issue 4"
    there = mount.path / TWIN / "Demo issue 4"
    assert sorted(os.listdir(here)) == sorted(os.listdir(there)) != []
    assert os.getxattr(here, "user.trackerfs.id") == os.getxattr(there, "user.trackerfs.id")
    for name in os.listdir(here):
        assert os.getxattr(here / name, "user.trackerfs.id") == os.getxattr(there / name, "user.trackerfs.id")
        assert file_sha256(here / name) == file_sha256(there / name)
        item = attachment(emulator, "Demo issue 4", name)
        assert file_sha256(here / name) == item["sha256"]


def test_a_subtask_opens_by_gid_though_no_listing_shows_it(
    mount: Mount, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    gid = task_gid(case, emulator, "Check the diagram")
    project = mount.path / PROJECT
    assert gid not in os.listdir(project) and "Check the diagram" not in os.listdir(project)
    assert os.listdir(project / gid) == ["checklist.txt"]
    assert (project / gid / "checklist.txt").read_bytes().startswith(b"1. diagram.png opens")
    assert os.getxattr(project / gid / "checklist.txt", "user.trackerfs.issue").decode() == gid
    with pytest.raises(FileNotFoundError):
        os.stat(project / "1200000000999999")


def test_links_are_read_only_internet_shortcuts(
    mount: Mount, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    links = mount.path / TWIN / "Links to other services"
    names = sorted(os.listdir(links))
    assert names == sorted(
        f"{name}.url"
        for name in ("Budget.xlsx", "Roadmap", "Contract.pdf", "Slides.pptx", "Walkthrough", "Status page")
    )
    shortcut = links / "Budget.xlsx.url"
    data = shortcut.read_bytes()
    assert data == b"[InternetShortcut]\r\nURL=https://www.dropbox.com/s/abc123/Budget.xlsx?dl=0\r\n"
    info = shortcut.stat()
    assert info.st_size == len(data) and stat.S_IMODE(info.st_mode) == 0o444
    assert os.getxattr(shortcut, "user.trackerfs.host") == b"dropbox"
    emulator.clear_requests()
    with pytest.raises(PermissionError) as caught:
        shortcut.unlink()
    assert caught.value.errno == errno.EPERM
    with pytest.raises(PermissionError):
        shortcut.write_bytes(b"[InternetShortcut]\r\nURL=https://elsewhere.example/\r\n")
    assert shortcut.read_bytes() == data
    assert deletes(emulator, case) == [] and uploads(emulator, case) == []


def test_completed_tasks_are_listed_unless_the_profile_says_since_when(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    every = mount_at(tmp_path / "a", case, emulator).start()
    recent = mount_at(tmp_path / "b", case, emulator, completed_since="now").start()
    try:
        assert sorted(os.listdir(every.path / "Operations")) == ["Nothing attached", "Runbook"]
        assert os.listdir(recent.path / "Operations") == ["Runbook"]
    finally:
        every.stop()
        recent.stop()


def test_a_read_longer_than_the_download_urls_life_comes_out_whole(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # URLs live one second; every storage request takes a third of one, so the read of
    # big.bin outlives the URL it started with several times.
    emulator.config(media_ttl=1)
    emulator.fault(origin="media", path="/assets/", action="delay", delay=0.35, count=-1)
    item = attachment(emulator, "Demo issue 1", "big.bin")
    with mount_at(tmp_path / "w", case, emulator, content_cache_mb=0, readahead_max_mb=1) as mount:
        big = mount.path / PROJECT / "Demo issue 1" / "big.bin"
        os.stat(big)
        emulator.clear_requests()
        assert file_sha256(big) == item["sha256"]
    storage = [r for r in emulator.requests() if r["origin"] == "media"]
    assert any(r["status"] == 403 for r in storage), "the read never outlived a URL"
    assert not any(r["authorized"] for r in storage)
    asked = [r for r in emulator.requests() if r["origin"] == "api" and r["path"].endswith(item["id"])]
    assert len(asked) >= 2, "a fresh download_url was asked for"


def test_a_file_over_the_upload_limit_fails_before_any_upload(
    mount: Mount, case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / "huge.bin"
    with source.open("wb") as handle:
        handle.truncate(100 * MiB + 1)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    emulator.clear_requests()
    done = subprocess.run(
        ["cp", str(source), str(mount.path / PROJECT / "Demo issue 5")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "too large" in done.stderr.lower()
    assert uploads(emulator, case) == []
    assert stored(emulator, "Demo issue 5") == []
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


def test_find_costs_task_pages_and_one_attachment_listing_per_task(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    listing = case.attachment_listing
    assert listing is not None
    with mount_at(tmp_path / "w", case, emulator) as mount:
        project = mount.path / PROJECT
        emulator.clear_requests()
        assert len(os.listdir(project)) == 12
        assert not any(listing.matches(r) for r in emulator.requests()), "ls stays lazy"
        found = subprocess.run(["find", str(project)], capture_output=True, text=True, check=True).stdout
        requests = emulator.requests()
    assert f"{PROJECT}/Demo issue 1/big.bin" in found
    listings = [
        r for r in requests if case.attachment_listing is not None and case.attachment_listing.matches(r)
    ]
    first_pages = [r["query"]["parent"] for r in listings if "offset" not in r["query"]]
    assert len(first_pages) == len(set(first_pages)) == 12, "one listing per task, none twice"
    assert all(r["query"].get("limit") for r in listings)
    assert [r for r in requests if case.issue_lookup.matches(r) or r["origin"] == "media"] == []
    assert not any(r["status"] == 429 for r in requests)
