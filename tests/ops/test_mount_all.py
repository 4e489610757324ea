"""`trackerfs mount --all` and `trackerfs demo --all`: every profile a folder of one mount.

Two trackers (Jira and Yandex Tracker emulators) and two profiles that cannot be
mounted (a wrong token; a misspelt key) in one config file. The mount must show all
four folders, serve each working profile from its own tracker, keep writes apart,
show the broken ones empty with their reasons in `trackerfs status`, and unmount as a
whole.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import CASES, TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import force_unmount, wait_mounted, write_profiles
from tests.support.store import file_sha256, stored
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

JIRA = CASES[0]
YANDEX = next(case for case in CASES if case.id == "yandex")
FOLDERS = ["broken", "mistyped", "work-jira", "yandex"]


@pytest.fixture(scope="module")
def jira() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(*JIRA.emulator_args, names=JIRA.names) as running:
        yield running


@pytest.fixture(scope="module")
def yandex() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(*YANDEX.emulator_args, names=YANDEX.names) as running:
        yield running


def profile(
    case: TrackerCase, emulator: EmulatorProcess, workdir: Path, name: str, token: str
) -> dict[str, object]:
    secret = workdir / f"{name}.token"
    secret.write_text(token + "\n")
    secret.chmod(0o600)
    return {
        "tracker": case.tracker,
        "url": emulator.base_url,
        "token_file": str(secret),
        "spool_dir": str(workdir / "state" / name),
        "cache_dir": str(workdir / "cache" / name),
        **case.profile,
    }


@pytest.fixture(scope="module")
def config(jira: EmulatorProcess, yandex: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("all")
    profiles = {
        "work-jira": profile(JIRA, jira, workdir, "work-jira", jira.token),
        "yandex": profile(YANDEX, yandex, workdir, "yandex", yandex.token),
        "broken": profile(JIRA, jira, workdir, "broken", "not-the-token"),
        "mistyped": {**profile(YANDEX, yandex, workdir, "mistyped", yandex.token), "org_idd": "1"},
    }
    return write_profiles(workdir / "config.toml", profiles)


def trackerfs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackerfs", *argv], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def mount(config: Path) -> Iterator[Path]:
    mountpoint = config.parent / "tracker"
    mountpoint.mkdir()
    log = config.parent / "trackerfs.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trackerfs",
                "mount",
                "--all",
                "-f",
                "--config",
                str(config),
                str(mountpoint),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_mounted(mountpoint, process, log)
        yield mountpoint
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=True, capture_output=True)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        force_unmount(mountpoint)


def test_every_profile_is_a_folder_served_by_its_own_tracker(
    mount: Path, jira: EmulatorProcess, yandex: EmulatorProcess
) -> None:
    assert sorted(os.listdir(mount)) == FOLDERS
    for case, emulator, folder in ((JIRA, jira, "work-jira"), (YANDEX, yandex, "yandex")):
        issue = mount / folder / case.project / case.rich_issue
        records = {record["filename"]: record for record in stored(emulator, case.rich_issue)}
        assert sorted(os.listdir(issue)) == sorted(records)
        for name, record in records.items():
            assert file_sha256(issue / name) == record["sha256"], f"{folder}/{name}"
    # One filesystem: one device, and no inode number shared between profiles.
    roots = [os.stat(mount / folder) for folder in FOLDERS]
    assert len({root.st_dev for root in roots}) == 1
    assert len({root.st_ino for root in roots}) == len(FOLDERS)
    jira_files = {path.stat().st_ino for path in (mount / "work-jira" / JIRA.project).rglob("*")}
    yandex_files = {path.stat().st_ino for path in (mount / "yandex" / YANDEX.project).rglob("*")}
    assert jira_files and yandex_files and not jira_files & yandex_files


def test_a_profile_that_cannot_sign_in_is_an_empty_folder_with_its_reason_in_status(mount: Path) -> None:
    assert os.listdir(mount / "broken") == []
    assert os.listdir(mount / "mistyped") == []
    with pytest.raises(PermissionError):
        (mount / "broken" / "note.txt").write_bytes(b"x")
    done = trackerfs("status", str(mount))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"mounted at {mount} by pid ")
    assert any(line.startswith("[broken] not mounted: ") and "credentials" in line for line in lines), lines
    assert any(line.startswith("[mistyped] not mounted: ") and "org_idd" in line for line in lines), lines
    assert "[work-jira]" in lines and "[yandex]" in lines


def test_each_profile_keeps_its_own_status_and_lock(mount: Path, config: Path) -> None:
    done = trackerfs("status", "--config", str(config), "yandex")
    assert done.returncode == 0, done.stderr
    assert f"mounted at {mount / 'yandex'} by pid " in done.stdout
    assert "tracker yandex at http://127.0.0.1:" in done.stdout
    # The profile is in use: a mount of it alone is refused, and says where it is mounted.
    other = config.parent / "other"
    other.mkdir(exist_ok=True)
    refused = trackerfs("mount", "--foreground", "--config", str(config), "yandex", str(other))
    assert refused.returncode == 2
    assert str(mount / "yandex") in refused.stderr


def test_writes_reach_only_their_own_tracker_and_a_move_between_them_copies(
    mount: Path, jira: EmulatorProcess, yandex: EmulatorProcess
) -> None:
    data = os.urandom(300_000)
    source = mount / "work-jira" / JIRA.project / JIRA.plain_issue / "moved.bin"
    source.write_bytes(data)
    assert [record["size"] for record in stored(jira, JIRA.plain_issue, "moved.bin")] == [len(data)]
    assert stored(yandex, YANDEX.plain_issue, "moved.bin") == []

    target = mount / "yandex" / YANDEX.project / YANDEX.plain_issue / "moved.bin"
    with pytest.raises(OSError) as refused:
        os.rename(source, target)
    assert refused.value.errno == errno.EXDEV
    done = subprocess.run(["mv", str(source), str(target)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not stored(jira, JIRA.plain_issue, "moved.bin"), "the moved file to leave Jira")
    [record] = stored(yandex, YANDEX.plain_issue, "moved.bin")
    assert record["sha256"] == file_sha256(target) and record["size"] == len(data)


def test_the_top_level_holds_only_profile_folders(mount: Path) -> None:
    for attempt in (
        lambda: (mount / "new.txt").write_bytes(b"x"),
        (mount / "new-folder").mkdir,
        lambda: os.rename(mount / "work-jira", mount / "renamed"),
        (mount / "yandex").rmdir,
        lambda: os.symlink("elsewhere", mount / "link"),
        lambda: os.symlink("elsewhere", mount / "work-jira" / JIRA.project / JIRA.plain_issue / "link"),
    ):
        with pytest.raises(PermissionError):
            attempt()
    assert sorted(os.listdir(mount)) == FOLDERS


def test_the_root_control_file_flushes_every_profile(mount: Path, jira: EmulatorProcess) -> None:
    issue = mount / "work-jira" / JIRA.project / JIRA.plain_issue
    before = set(os.listdir(issue))
    JIRA.attach_behind(jira, JIRA.plain_issue, "from-the-web.txt", b"added in the web UI\n")
    (mount / ".trackerfs" / "control").write_text("flush metadata\n")
    assert set(os.listdir(issue)) == before | {"from-the-web.txt"}


def test_demo_all_mounts_every_tracker_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    mnt = tmp_path / "tracker"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "trackerfs", "demo", "--all", str(mnt)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_mounted(mnt, demo, log, timeout=90)
        trackers = ["asana", "jira", "openproject", "waldur", "yandex"]
        assert sorted(os.listdir(mnt)) == trackers
        for tracker in trackers:
            assert os.listdir(mnt / tracker), f"{tracker} shows no projects"
        deadline = time.monotonic() + 10
        while "Press Ctrl-C" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        assert not os.path.ismount(mnt)
        assert "Traceback" not in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
        force_unmount(mnt)
