"""The spool as a user meets it: one mount per profile, nothing dropped at unmount,
recovery behind a live mount, private state, and a spool that cannot be created."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at, status, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import force_unmount, write_config
from tests.support.notify import notify_socket
from tests.support.store import sha256_of, stored, upload_reached, uploaded_names, uploads
from tests.support.waiting import upload_started, wait_for

pytestmark = pytest.mark.mount

MiB = 1 << 20


def spool_files(state: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (state / "spool").iterdir()}


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which would make new files 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


HALF_WRITER = """
import sys
import tempfile
with open(sys.argv[1], "wb") as out:
    out.write(b"first half, ")
    out.flush()
    print("half", flush=True)
    sys.stdin.readline()
    out.write(b"second half")
"""


def test_second_mount_of_a_profile_is_refused_and_the_first_goes_on(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a copy of a taken name gets one of the tracker's")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * MiB))
    clean_emulator.fault(**case.upload.rule(action="delay", delay=3, count=1))
    first = mount_at(tmp_path / "a", case, clean_emulator).start()
    try:
        issue = first.path / case.project / case.plain_issue
        copy = subprocess.Popen(["cp", str(big), str(issue)], stderr=subprocess.PIPE)
        wait_for(lambda: upload_started(first.state), "the upload to start")
        # A writer in a process of its own: no other child inherits (and closes) its descriptor.
        draft = subprocess.Popen(
            [sys.executable, "-c", HALF_WRITER, str(issue / "draft.txt")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert draft.stdout is not None and draft.stdin is not None
        assert draft.stdout.readline() == b"half\n"
        before = spool_files(first.state)
        second = mount_at(tmp_path / "b", case, clean_emulator, name=first.name, spool_dir=str(first.state))
        refused = trackerfs(
            "mount",
            "--foreground",
            "--config",
            str(second.config),
            second.name,
            str(second.path),
            env=second.env,
            timeout=30,
        )
        assert first.process is not None
        expected = (
            f"trackerfs: profile {first.name} is already mounted at {first.path} by pid {first.process.pid}"
        )
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [expected]
        assert not os.path.ismount(second.path)
        after = spool_files(first.state)
        assert after.items() <= before.items()  # only the first mount's own upload may finish meanwhile
        assert f"mounted at {first.path} by pid {first.process.pid}" in status(first)

        draft.stdin.write(b"go\n")
        draft.stdin.close()
        assert draft.wait(timeout=60) == 0
        assert copy.wait(timeout=60) == 0
        [kept] = stored(clean_emulator, case.plain_issue, "draft.txt")
        assert kept["sha256"] == sha256_of(b"first half, second half")
        [copied] = stored(clean_emulator, case.plain_issue, "big.bin")
        assert copied["sha256"] == sha256_of(big.read_bytes())
        assert uploaded_names(clean_emulator, case).count("big.bin") == 1
    finally:
        first.stop()
        force_unmount(tmp_path / "b" / "mnt")


TEMPORARY_LOOKING = [
    "results.tmp",
    "download.part",
    "notes.txt~",
    "report.swp",
    "4913",
    "#draft#",
    ".env.sample",
]


def test_files_with_temporary_names_are_kept_at_unmount_in_one_line(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    for name in TEMPORARY_LOOKING:
        (sources / name).write_bytes(f"bytes of {name}\n".encode())
    mount = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        issue = mount.path / case.project / case.plain_issue
        for name in TEMPORARY_LOOKING:
            subprocess.run(["cp", str(sources / name), str(issue / name)], check=True)
        (issue / ".~lock.report.odt#").write_bytes(b"user,host,01.12.2026 10:00,/home/user;\n")
        (issue / "empty.tmp").write_bytes(b"")
        assert sorted(os.listdir(issue)) == sorted([*TEMPORARY_LOOKING, ".~lock.report.odt#", "empty.tmp"])
        assert uploaded_names(clean_emulator, case) == []
        assert mount.unmount() == 0
    finally:
        mount.stop()
    # named as the project is listed, where the user saw it
    folder = mount.state / "recovered" / str(case.listed_project(case.project)) / case.plain_issue
    assert sorted(os.listdir(folder)) == sorted(TEMPORARY_LOOKING)
    for name in TEMPORARY_LOOKING:
        assert (folder / name).read_bytes() == f"bytes of {name}\n".encode()
    [line] = [line for line in mount.log_text().splitlines() if "never uploaded" in line]
    assert all(f"{case.plain_issue}/{name}" in line for name in TEMPORARY_LOOKING)
    listed = status(mount)
    assert all(str(folder / name) in listed for name in TEMPORARY_LOOKING)
    assert stored(clean_emulator, case.plain_issue) == []


def test_sqlite_database_is_uploaded_and_its_journal_never(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: each save gets a name of the tracker's")
    mount = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        database = mount.path / case.project / case.plain_issue / "t.db"
        subprocess.run(["sqlite3", str(database), "create table t(x); insert into t values (1);"], check=True)
        subprocess.run(["sqlite3", str(database), "insert into t values (2);"], check=True)
        assert os.listdir(database.parent) == ["t.db"]
        assert mount.unmount() == 0
    finally:
        mount.stop()
    names = uploaded_names(clean_emulator, case)
    assert names and set(names) == {"t.db"}
    [item] = stored(clean_emulator, case.plain_issue)
    assert item["filename"] == "t.db"
    copy = tmp_path / "copy.db"
    copy.write_bytes(clean_emulator.content(item["id"]))
    counted = subprocess.run(
        ["sqlite3", str(copy), "select sum(x) from t;"], capture_output=True, text=True, check=True
    )
    assert counted.stdout.strip() == "3"


def test_recovery_runs_behind_a_live_mount(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(50 * MiB))
    clean_emulator.fault(**case.upload.rule(action="drop", delay=3, count=1))
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    target = first.path / case.project / case.plain_issue
    copy = subprocess.Popen(["cp", str(source), str(target)], stderr=subprocess.PIPE)
    # The close began the upload (a file this large may be sent while written, before it).
    wait_for(lambda: upload_started(first.state), "the close to start the upload", timeout=60)
    wait_for(lambda: upload_reached(clean_emulator, case), "the upload to reach the tracker", timeout=60)
    crash(first)
    assert copy.wait(timeout=30) != 0
    clean_emulator.clear_faults()
    clean_emulator.clear_requests()
    clean_emulator.fault(**case.upload.rule(action="delay", delay=10, count=1))
    second = mount_at(tmp_path / "w", case, clean_emulator)
    with notify_socket() as (address, received):
        second.env["NOTIFY_SOCKET"] = address
        with second:
            assert os.path.ismount(second.path)
            assert case.plain_issue in os.listdir(second.path / case.project)
            assert stored(clean_emulator, case.plain_issue, "large.bin") == []  # still uploading
            assert "recovering: 1 left" in status(second)
            wait_for(lambda: "READY=1" in received(), "READY=1")
            assert any(m.startswith("STATUS=finishing 1 upload") for m in received())
            assert stored(clean_emulator, case.plain_issue, "large.bin") == []  # READY=1 came first
            wait_for(
                lambda: stored(clean_emulator, case.plain_issue, "large.bin"),
                "the upload to land",
                timeout=90,
            )
            wait_for(lambda: "recovering" not in status(second), "the status to clear")
            [item] = stored(clean_emulator, case.plain_issue, "large.bin")
            assert item["sha256"] == sha256_of(source.read_bytes())
            assert second.unmount() == 0
        assert any("uploads left from an earlier run are done" in m for m in received())
    assert uploaded_names(clean_emulator, case).count("large.bin") == 1
    assert len(stored(clean_emulator, case.plain_issue, "large.bin")) == 1


def modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]
    }


def assert_private(root: Path) -> None:
    for name, mode in modes(root).items():
        expected = 0o700 if (root / name).is_dir() else 0o600
        assert mode == expected, f"{name} is {oct(mode)}"


def test_state_is_private_after_mount_recovery_and_unmount(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path, umask_022: None
) -> None:
    state = tmp_path / "w" / "state"
    (state / "recovered" / "OLD").mkdir(parents=True, mode=0o755)
    os.chmod(state, 0o755)
    (state / "recovered" / "OLD" / "kept.txt").write_bytes(b"from an older version")
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        draft = (first.path / case.project / case.plain_issue / "draft.txt").open("wb")
        draft.write(b"open at the crash")
        draft.flush()
        assert_private(state)
    finally:
        crash(first)
    with contextlib.suppress(OSError):
        draft.close()  # its mount is gone
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        assert next((state / "recovered").rglob("draft.txt")).read_bytes() == b"open at the crash"
        (second.path / case.project / case.plain_issue / "left.tmp").write_bytes(b"temporary")
        assert_private(state)
        assert second.unmount() == 0
    assert next((state / "recovered").rglob("left.tmp")).read_bytes() == b"temporary"
    assert_private(state)


def test_background_mount_log_is_private(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path, umask_022: None
) -> None:
    mount = mount_at(tmp_path / "w", case, clean_emulator)
    done = trackerfs("mount", "--config", str(mount.config), mount.name, str(mount.path), env=mount.env)
    try:
        assert done.returncode == 0, done.stderr
        assert os.path.ismount(mount.path)
        assert_private(mount.state)
        assert (mount.state / "trackerfs.log").exists()
    finally:
        mount.stop()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unusable_spool_dir_is_one_line(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spool_dir = blocker / "state" if where == "under-a-file" else Path("/proc/trackerfs-state")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        "p",
        {
            "tracker": case.tracker,
            "url": emulator.base_url,
            "token_env": "T",
            "spool_dir": str(spool_dir),
            **case.profile,
        },
    )
    done = trackerfs(
        "mount",
        "--foreground",
        "--config",
        str(config),
        "p",
        str(mnt),
        env=dict(os.environ, T=emulator.token),
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"trackerfs: cannot use the state directory {spool_dir}: ")
    assert not os.path.ismount(mnt)


def test_sigterm_during_recovery_finishes_the_upload_in_hand_and_keeps_the_rest(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    sources = {name: os.urandom(MiB + index) for index, name in enumerate(("one.bin", "two.bin"))}
    for name, data in sources.items():
        (tmp_path / name).write_bytes(data)
    clean_emulator.fault(**case.upload.rule(action="drop", delay=2, count=2))
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    target = first.path / case.project / case.plain_issue
    copies = [subprocess.Popen(["cp", str(tmp_path / name), str(target)]) for name in sources]
    wait_for(
        lambda: len(uploads(clean_emulator, case)) == 2,
        "both uploads to reach the tracker",
    )
    crash(first)
    assert all(copy.wait(timeout=30) != 0 for copy in copies)
    clean_emulator.clear_faults()
    clean_emulator.fault(**case.upload.rule(action="delay", delay=3, count=1))
    second = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        wait_for(lambda: "finishing the upload" in second.log_text(), "the recovery to start")
        assert second.process is not None
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=60) == 0
    finally:
        second.stop()
    landed = [name for name in sources if stored(clean_emulator, case.plain_issue, name)]
    assert len(landed) == 1
    [left] = set(sources) - set(landed)
    assert f"{left}" in status(second) and "waiting for upload" in status(second)
    with mount_at(tmp_path / "w", case, clean_emulator) as third:
        wait_for(lambda: stored(clean_emulator, case.plain_issue, left), "the rest to be uploaded")
        wait_for(lambda: "recovering" not in status(third), "the recovery to finish")
    for name, data in sources.items():
        [item] = stored(clean_emulator, case.plain_issue, name)
        assert item["sha256"] == sha256_of(data)


def test_second_background_mount_of_a_profile_reports_the_first(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    with mount_at(tmp_path / "a", case, clean_emulator) as first:
        second = mount_at(tmp_path / "b", case, clean_emulator, name=first.name, spool_dir=str(first.state))
        try:
            refused = trackerfs(
                "mount",
                "--config",
                str(second.config),
                second.name,
                str(second.path),
                env=second.env,
                timeout=30,
            )
        finally:
            force_unmount(second.path)
        assert first.process is not None
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"trackerfs: profile {first.name} is already mounted at {first.path} by pid {first.process.pid}"
        )
        assert case.plain_issue in os.listdir(first.path / case.project)
