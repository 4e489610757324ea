"""The on-disk content cache through real mounts: remounts, crashes mid-fill, deletes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at, small_disk, status
from tests.support.emulator import EmulatorProcess
from tests.support.store import attachment, content_requests, file_sha256
from tests.support.waiting import wait_for
from trackerfs.core.content_cache import entry_name

pytestmark = pytest.mark.mount


def test_a_reread_after_a_remount_costs_no_content_request(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    expected = attachment(clean_emulator, case.rich_issue, case.big_file)
    with mount_at(tmp_path / "w", case, clean_emulator) as first:
        assert file_sha256(first.path / case.project / case.rich_issue / case.big_file) == expected["sha256"]
    assert content_requests(clean_emulator, case)
    clean_emulator.clear_requests()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        path = second.path / case.project / case.rich_issue / case.big_file
        assert file_sha256(path) == expected["sha256"]
        assert content_requests(clean_emulator, case) == []
    clean_emulator.clear_requests()
    with mount_at(tmp_path / "w", case, clean_emulator, content_cache_mb=0) as third:
        path = third.path / case.project / case.rich_issue / case.big_file
        assert file_sha256(path) == expected["sha256"]
        assert content_requests(clean_emulator, case)  # turned off: read from the tracker


def test_a_kill_during_a_fill_never_serves_wrong_bytes(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    expected = attachment(clean_emulator, case.rich_issue, case.big_file)
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    # A slow answer keeps the fill going while the daemon is killed.
    clean_emulator.fault(path=f"/{expected['id']}(/|$)", action="delay", delay=0.3, count=-1)
    handle = (first.path / case.project / case.rich_issue / case.big_file).open("rb")
    handle.read(256 << 10)
    wait_for(lambda: any((tmp_path / "w" / "cache").rglob("*.json")), "a block to reach the disk")
    crash(first)
    with contextlib.suppress(OSError):
        handle.close()
    clean_emulator.clear_faults()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        path = second.path / case.project / case.rich_issue / case.big_file
        assert file_sha256(path) == expected["sha256"]
    assert os.listdir(tmp_path / "w" / "cache")


def test_rm_removes_the_cached_bytes(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    target = attachment(clean_emulator, case.rich_issue, "readme.txt")
    cache = tmp_path / "w" / "cache"
    name = entry_name(target["id"])
    with mount_at(tmp_path / "w", case, clean_emulator) as mount:
        path = mount.path / case.project / case.rich_issue / "readme.txt"
        assert file_sha256(path) == target["sha256"]
        wait_for(lambda: bool(list(cache.glob(f"*/{name}.json"))), "the bytes to reach the disk")
        path.unlink()
        assert not list(cache.glob(f"*/{name}.*"))
    assert all(a["id"] != target["id"] for a in clean_emulator.attachments())


def test_a_full_cache_disk_costs_cached_bytes_never_a_read(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    big = attachment(clean_emulator, case.rich_issue, case.big_file)
    small = attachment(clean_emulator, case.rich_issue, "readme.txt")
    assert big["size"] > 2 << 20
    with small_disk(tmp_path / "disk", "2m") as disk:
        mount = mount_at(tmp_path / "w", case, clean_emulator, cache_dir=str(disk / "cache"))
        with mount:
            issue = mount.path / case.project / case.rich_issue
            for _ in range(2):  # the second read finds what the full disk let the cache keep
                assert file_sha256(issue / case.big_file) == big["sha256"]
                assert file_sha256(issue / "readme.txt") == small["sha256"]
            assert "content cache" in status(mount)  # the daemon answers
            wait_for(lambda: "budget is now" in mount.log.read_text(), "the full disk to be logged")
            # The cache shrinks to the disk and goes on keeping what fits: the small file.
            name = entry_name(small["id"])
            kept = disk / "cache"
            wait_for(lambda: bool(list(kept.glob(f"*/{name}.json"))), "the small file to be cached")
        assert mount.process is not None and mount.process.returncode == 0
    log = mount.log.read_text()
    assert "Traceback" not in log
    assert "No space left on device" in log
