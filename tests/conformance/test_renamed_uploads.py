"""Uploads the tracker stores under a name of its own (a Django-style storage sanitises
and de-duplicates them).

The emulator's `rename_uploads` switch makes a dialect store uploads the way such a
storage does (spaces to `_`, a suffix when the name is taken), so these run against every tracker
whose emulator can rename. The user's `cp` succeeds, and an upload whose answer was lost
(live, or by a crash) is recognised on the tracker by size, time and bytes, not by name.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import force_unmount
from tests.support.store import sha256_of, stored, uploads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

USER_NAME = "my report.pdf"
STORED_NAME = "my_report.pdf"


@pytest.fixture
def renaming(case: TrackerCase, clean_emulator: EmulatorProcess) -> EmulatorProcess:
    """The emulator with uploads renamed the way a Django-style storage renames them."""
    if "rename_uploads" not in clean_emulator.config():
        pytest.skip(f"the {case.id} emulator has no rename_uploads switch")
    clean_emulator.config(rename_uploads=True)
    return clean_emulator


def names_and_digests(emulator: EmulatorProcess, issue: str) -> dict[str, str]:
    """Name → sha256 of the attachments of `issue` in the emulator's store."""
    return {a["filename"]: a["sha256"] for a in stored(emulator, issue)}


def checked_after_upload(emulator: EmulatorProcess, case: TrackerCase) -> bool:
    """Whether an issue was read again after an upload (the check whether it landed)."""
    log = emulator.requests()
    posts = [n for n, entry in enumerate(log) if case.upload.matches(entry)]
    return bool(posts) and any(case.attachments_check.matches(entry) for entry in log[posts[0] :])


def test_cp_of_a_name_the_tracker_renames_succeeds_and_the_tracker_keeps_its_name(
    case: TrackerCase, renaming: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / USER_NAME
    source.write_bytes(os.urandom(150_000))
    with mount_at(tmp_path / "w", case, renaming) as mount:
        directory = mount.path / case.project / case.plain_issue
        subprocess.run(["cp", str(source), str(directory)], check=True)
        assert names_and_digests(renaming, case.plain_issue) == {STORED_NAME: sha256_of(source.read_bytes())}
        [item] = [a for a in renaming.attachments() if a["filename"] == STORED_NAME]
        # The name the user gave still reaches the new attachment during this mount.
        assert os.getxattr(directory / USER_NAME, "user.trackerfs.id").decode() == item["id"]
        assert f"stored {case.plain_issue}/{USER_NAME} under the name '{STORED_NAME}'" in mount.log_text()
        assert len(uploads(renaming, case)) == 1


def test_a_lost_answer_to_a_renamed_upload_is_found_by_its_bytes_and_not_sent_again(
    case: TrackerCase, renaming: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / USER_NAME
    source.write_bytes(os.urandom(120_000))
    decoy = os.urandom(len(source.read_bytes()))
    with mount_at(tmp_path / "w", case, renaming) as mount:
        directory = mount.path / case.project / case.plain_issue
        os.listdir(directory)
        # Someone else attaches a file of the same size meanwhile: same size and time,
        # another name, other bytes. It must not pass for the user's upload.
        case.attach_behind(renaming, case.plain_issue, "decoy.pdf", decoy)
        renaming.fault(**case.upload.rule(action="truncate", count=1))
        subprocess.run(["cp", str(source), str(directory)], check=True)
        assert names_and_digests(renaming, case.plain_issue) == {
            "decoy.pdf": sha256_of(decoy),
            STORED_NAME: sha256_of(source.read_bytes()),
        }
        # One upload from the mount (the other is the decoy's, from another client).
        assert len(uploads(renaming, case)) == 2
        [item] = [a for a in renaming.attachments() if a["filename"] == STORED_NAME]
        assert os.getxattr(directory / USER_NAME, "user.trackerfs.id").decode() == item["id"]
        assert f"reached the tracker as attachment {item['id']}" in mount.log_text()


def test_a_crash_after_a_renamed_upload_landed_never_duplicates_it_at_the_next_mount(
    case: TrackerCase, renaming: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / USER_NAME
    source.write_bytes(os.urandom(1 << 20))
    first = mount_at(tmp_path / "w", case, renaming).start()
    try:
        directory = first.path / case.project / case.plain_issue
        os.listdir(directory.parent)
        os.listdir(directory)
        # The upload is stored but its answer is cut; the mount's check of the tracker is
        # held until the mount is killed, so only the next mount can tell it landed.
        renaming.fault(**case.upload.rule(action="truncate", count=1))
        renaming.fault(**case.attachments_check.rule(action="delay", delay=60, count=1))
        copy = subprocess.Popen(["cp", str(source), str(directory)])
        wait_for(lambda: checked_after_upload(renaming, case), "the mount's check after the lost answer")
    finally:
        assert first.process is not None
        first.process.kill()
        first.process.wait()
        force_unmount(first.path)
    assert copy.wait(timeout=30) != 0
    assert names_and_digests(renaming, case.plain_issue) == {STORED_NAME: sha256_of(source.read_bytes())}
    renaming.clear_requests()
    with mount_at(tmp_path / "w", case, renaming) as second:
        wait_for(lambda: "reached the tracker before trackerfs stopped" in second.log_text(), "the recovery")
        assert names_and_digests(renaming, case.plain_issue) == {STORED_NAME: sha256_of(source.read_bytes())}
        assert uploads(renaming, case) == []
