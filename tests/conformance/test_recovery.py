"""Nothing is lost: interrupted uploads, crashes, unmount during an upload, a full spool."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at, small_disk, status
from tests.support.emulator import EmulatorProcess
from tests.support.store import sha256_of, stored, upload_reached, uploads
from tests.support.waiting import upload_started, wait_for
from trackerfs.core.spool import PENDING, Manifest

pytestmark = pytest.mark.mount

MiB = 1 << 20


def test_upload_cut_off_by_a_crash_is_finished_by_the_next_mount(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / "notes.bin"
    source.write_bytes(os.urandom(MiB + 3))
    clean_emulator.fault(**case.upload.rule(action="drop", delay=3, count=1))
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    target = first.path / case.project / case.plain_issue
    copy = subprocess.Popen(["cp", str(source), str(target)], stderr=subprocess.PIPE)
    wait_for(lambda: upload_reached(clean_emulator, case), "the upload to reach the tracker")
    crash(first)
    assert copy.wait(timeout=30) != 0
    assert stored(clean_emulator, case.plain_issue, "notes.bin") == []
    assert "notes.bin" in status(first)
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        wait_for(lambda: "finishing the upload" in second.log_text(), "the recovery to start")
        wait_for(lambda: "recovering" not in status(second), "the recovery to finish")
        [item] = stored(clean_emulator, case.plain_issue, "notes.bin")
        assert item["sha256"] == sha256_of(source.read_bytes())
        assert (
            second.path / case.project / case.plain_issue / "notes.bin"
        ).read_bytes() == source.read_bytes()
        assert "nothing waiting" in status(second)


def test_upload_whose_answer_was_cut_off_is_found_on_the_tracker_and_not_sent_again(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    clean_emulator.fault(**case.upload.rule(action="truncate", count=1))
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        directory = first.path / case.project / case.plain_issue
        source = tmp_path / "once.bin"
        source.write_bytes(os.urandom(200_000))
        subprocess.run(["cp", str(source), str(directory)], check=True)
        [item] = stored(clean_emulator, case.plain_issue, "once.bin")  # it arrived, once
        assert item["sha256"] == sha256_of(source.read_bytes())
        assert os.getxattr(directory / "once.bin", "user.trackerfs.id").decode() == item["id"]
        assert "reached the tracker as attachment" in first.log_text()
        other = tmp_path / "other.bin"
        other.write_bytes(b"unaffected\n")
        subprocess.run(["cp", str(other), str(directory)], check=True)
        assert [a["sha256"] for a in stored(clean_emulator, case.plain_issue, "other.bin")] == [
            sha256_of(b"unaffected\n")
        ]
        assert len(uploads(clean_emulator, case)) == 2
    finally:
        crash(first)
    clean_emulator.clear_requests()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        os.listdir(second.path / case.project)
        assert len(stored(clean_emulator, case.plain_issue, "once.bin")) == 1
        assert not uploads(clean_emulator, case)


def test_upload_the_tracker_stores_after_the_answer_timed_out_is_found_and_not_sent_again(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # The tracker takes 3 s over the upload; the mount gives up waiting after 1 s. The
    # request was whole, so the tracker stores it late: sending it again would make two.
    clean_emulator.fault(**case.upload.rule(action="delay", delay=3, count=1))
    with mount_at(tmp_path / "w", case, clean_emulator, timeout=1, deadline=20) as mount:
        directory = mount.path / case.project / case.plain_issue
        data = os.urandom(150_000)
        (directory / "late.bin").write_bytes(data)
        [item] = stored(clean_emulator, case.plain_issue, "late.bin")
        assert item["sha256"] == sha256_of(data)
        assert len(uploads(clean_emulator, case)) == 1
        assert "reached the tracker as attachment" in mount.log_text()
        time.sleep(1)  # nothing else is on its way
        assert len(stored(clean_emulator, case.plain_issue, "late.bin")) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_upload_a_gateway_failed_is_checked_then_sent_again(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path, status: int
) -> None:
    clean_emulator.fault(**case.upload.rule(status=status, count=1))
    with mount_at(tmp_path / "w", case, clean_emulator) as mount:
        data = os.urandom(70_000)
        (mount.path / case.project / case.plain_issue / "gateway.bin").write_bytes(data)  # no error
        [item] = stored(clean_emulator, case.plain_issue, "gateway.bin")
        assert item["sha256"] == sha256_of(data)
        sent = [r["status"] for r in uploads(clean_emulator, case)]
        assert len(sent) == 2 and sent[0] == status and sent[1] < 300, sent
        assert "did not reach the tracker; sending it again" in mount.log_text()


def test_pending_upload_whose_data_changed_size_is_kept_and_not_uploaded(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = mount_at(tmp_path / "w", case, clean_emulator)
    # What another mount of the same profile could leave: a pending upload of 5,000,000
    # bytes whose data file was cut to nothing meanwhile.
    spool = mount.state / "spool"
    spool.mkdir(parents=True)
    manifest = Manifest(
        case.project, case.plain_issue, "half.bin", state=PENDING, size=5_000_000, upload_started=time.time()
    )
    (spool / "0123abcd.json").write_text(json.dumps(asdict(manifest)), encoding="utf-8")
    (spool / "0123abcd.data").write_bytes(b"only this")
    clean_emulator.clear_requests()
    with mount:
        os.listdir(mount.path / case.project / case.plain_issue)
        assert stored(clean_emulator, case.plain_issue, "half.bin") == []
        assert not uploads(clean_emulator, case)
        kept = next((mount.state / "recovered").rglob("half.bin"))
        assert kept.read_bytes() == b"only this"
        assert "not the 5000000 recorded" in mount.log_text()


def test_file_open_at_a_crash_is_kept_in_recovery(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    handle = (first.path / case.project / case.plain_issue / "draft.txt").open("wb")
    handle.write(b"half a draft")
    handle.flush()
    crash(first)
    with contextlib.suppress(OSError):
        handle.close()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        assert stored(clean_emulator, case.plain_issue, "draft.txt") == []
        listed = status(second)
        assert "recovered" in listed and "draft.txt" in listed
        kept = next((second.state / "recovered").rglob("draft.txt"))
        assert kept.read_bytes() == b"half a draft"


def test_file_removed_while_open_is_not_brought_back_after_a_crash(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """`rm` of a file still open: the user gave its bytes up, a crash does not undo that."""
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    path = first.path / case.project / case.plain_issue / "scratch.txt"
    handle = path.open("wb")
    handle.write(b"throw this away")
    handle.flush()
    path.unlink()
    handle.write(b", and this")
    handle.flush()
    crash(first)
    with contextlib.suppress(OSError):
        handle.close()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        assert stored(clean_emulator, case.plain_issue, "scratch.txt") == []
        assert "scratch.txt" not in status(second)
        assert not list((second.state / "recovered").rglob("scratch.txt*"))
        assert "scratch.txt" not in os.listdir(second.path / case.project / case.plain_issue)


def test_sigterm_waits_for_an_upload_in_progress(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / "slow.bin"
    source.write_bytes(os.urandom(256 * 1024))
    clean_emulator.fault(**case.upload.rule(action="delay", delay=2, count=1))
    mount = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        copy = subprocess.Popen(["cp", str(source), str(mount.path / case.project / case.plain_issue)])
        wait_for(lambda: upload_started(mount.state), "the upload to start")
        assert mount.process is not None
        mount.process.send_signal(signal.SIGTERM)
        assert copy.wait(timeout=30) == 0
        assert mount.process.wait(timeout=30) == 0
        [item] = stored(clean_emulator, case.plain_issue, "slow.bin")
        assert item["sha256"] == sha256_of(source.read_bytes())
    finally:
        mount.stop()


def test_full_spool_disk_gives_enospc_and_uploads_nothing(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "small", "1m") as small:
        mount = mount_at(tmp_path / "w", case, clean_emulator, spool_dir=str(small / "state"))
        with mount:
            target = mount.path / case.project / case.plain_issue / "huge.bin"
            with pytest.raises(OSError) as caught, target.open("wb") as handle:
                for _ in range(4):
                    handle.write(os.urandom(MiB))
            assert caught.value.errno == errno.ENOSPC
            assert stored(clean_emulator, case.plain_issue, "huge.bin") == []


def test_a_real_file_with_a_temporary_looking_name_is_kept_at_unmount(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = mount_at(tmp_path / "w", case, clean_emulator).start()
    (mount.path / case.project / case.plain_issue / ".env.sample").write_bytes(b"KEY=value\n")
    assert stored(clean_emulator, case.plain_issue, ".env.sample") == []
    assert mount.unmount() == 0
    kept = next((mount.state / "recovered").rglob(".env.sample"))
    assert kept.read_bytes() == b"KEY=value\n"
    assert "never uploaded were kept" in mount.log_text()
