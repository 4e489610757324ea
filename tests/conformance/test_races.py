"""Changes that meet an upload in progress: rm, mv, rename while editing, recovery of a resave."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import sha256_of, stored, upload_reached
from tests.support.waiting import upload_started, wait_for

pytestmark = pytest.mark.mount


def slow_upload(emulator: EmulatorProcess, case: TrackerCase, seconds: float = 2) -> None:
    """Hold the next upload for `seconds` before the tracker answers it."""
    emulator.fault(**case.upload.rule(action="delay", delay=seconds, count=1))


def test_rm_during_the_upload_removes_the_file_from_the_tracker(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = make_mount()
    source = tmp_path / "short-lived.bin"
    source.write_bytes(os.urandom(100_000))
    directory = mount.path / case.project / case.plain_issue
    slow_upload(clean_emulator, case)
    copy = subprocess.Popen(["cp", str(source), str(directory)])
    wait_for(lambda: upload_started(mount.state), "the upload to start")
    (directory / "short-lived.bin").unlink()
    assert copy.wait(timeout=30) == 0
    assert "short-lived.bin" not in os.listdir(directory)
    assert stored(clean_emulator, case.plain_issue, "short-lived.bin") == []


def test_mv_during_the_upload_ends_under_the_new_name(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = make_mount()
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(100_000))
    directory = mount.path / case.project / case.plain_issue
    slow_upload(clean_emulator, case)
    copy = subprocess.Popen(["cp", str(source), str(directory)])
    wait_for(lambda: upload_started(mount.state), "the upload to start")
    subprocess.run(["mv", str(directory / "a.bin"), str(directory / "b.bin")], check=True)
    assert copy.wait(timeout=30) == 0
    assert sorted(os.listdir(directory)) == ["b.bin"]
    assert [a["filename"] for a in stored(clean_emulator, case.plain_issue)] == ["b.bin"]
    assert (directory / "b.bin").read_bytes() == source.read_bytes()


def test_renaming_a_file_being_edited_moves_the_edit(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    original = (directory / "readme.txt").read_bytes()
    with (directory / "readme.txt").open("r+b") as handle:
        handle.seek(0)
        handle.write(b"EDITED")
        handle.flush()  # the bytes reach the mount: the file is being overwritten now
        os.rename(directory / "readme.txt", directory / "renamed.txt")
        assert "readme.txt" not in os.listdir(directory)
    expected = b"EDITED" + original[6:]
    names = os.listdir(directory)
    assert names.count("renamed.txt") == 1 and "readme.txt" not in names
    assert stored(clean_emulator, case.rich_issue, "readme.txt") == []
    [item] = stored(clean_emulator, case.rich_issue, "renamed.txt")
    assert item["sha256"] == sha256_of(expected)


def test_an_interrupted_resave_of_the_same_size_is_not_taken_for_the_old_one(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a resave gets a name of the tracker's")
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    target = first.path / case.project / case.plain_issue / "same.txt"
    target.write_bytes(b"version one\n")
    [old] = stored(clean_emulator, case.plain_issue, "same.txt")
    clean_emulator.clear_requests()
    clean_emulator.fault(**case.upload.rule(action="drop", delay=3, count=1))
    writer = subprocess.Popen(["sh", "-c", f"printf 'version two\\n' > '{target}'"])
    wait_for(lambda: upload_reached(clean_emulator, case), "the upload to reach the tracker")
    crash(first)
    writer.wait(timeout=30)
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        # Recovery runs behind the live mount: wait until it replaced the old version.
        wait_for(
            lambda: (
                [a["id"] for a in stored(clean_emulator, case.plain_issue, "same.txt")]
                not in ([], [old["id"]])
            ),
            "the recovered upload",
        )
        wait_for(
            lambda: len(stored(clean_emulator, case.plain_issue, "same.txt")) == 1, "the old version to go"
        )
        [new] = stored(clean_emulator, case.plain_issue, "same.txt")
        assert new["id"] != old["id"]
        assert new["sha256"] == sha256_of(b"version two\n")
        assert (second.path / case.project / case.plain_issue / "same.txt").read_bytes() == b"version two\n"


def test_a_refused_file_can_be_written_again(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.config(upload_limit=64 * 1024)
    mount = make_mount()
    target = mount.path / case.project / case.plain_issue / "retry.txt"
    with pytest.raises(OSError), target.open("wb") as handle:
        handle.write(b"x" * (128 * 1024))
    assert stored(clean_emulator, case.plain_issue, "retry.txt") == []
    target.write_bytes(b"small enough\n")
    wait_for(lambda: stored(clean_emulator, case.plain_issue, "retry.txt"), "the second write to arrive", 10)
    [item] = stored(clean_emulator, case.plain_issue, "retry.txt")
    assert item["sha256"] == sha256_of(b"small enough\n")
