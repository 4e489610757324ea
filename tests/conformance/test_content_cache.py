"""The on-disk content cache through real mounts: remounts, crashes mid-fill, deletes."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.test_recovery import crash, wait_for
from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from trackerfs.core.content_cache import entry_name

pytestmark = pytest.mark.mount


def mount_at(workdir: Path, case: TrackerCase, emulator: EmulatorProcess, **profile: Any) -> Mount:
    """A mount whose state and content cache live in `workdir` (so a remount finds them)."""
    return Mount(
        workdir,
        url=emulator.base_url,
        token=emulator.token,
        tracker=case.tracker,
        profile={**case.profile, **profile},
    )


def content_requests(case: TrackerCase, emulator: EmulatorProcess) -> list[dict]:
    return [r for r in emulator.requests() if case.content_path in r["path"]]


def item(case: TrackerCase, emulator: EmulatorProcess, name: str) -> dict:
    return next(a for a in emulator.attachments() if a["issue"] == case.rich_issue and a["filename"] == name)


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def test_a_reread_after_a_remount_costs_no_content_request(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    expected = item(case, clean_emulator, case.big_file)
    with mount_at(tmp_path / "w", case, clean_emulator) as first:
        assert sha256_of(first.path / case.project / case.rich_issue / case.big_file) == expected["sha256"]
    assert content_requests(case, clean_emulator)
    clean_emulator.clear_requests()
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        path = second.path / case.project / case.rich_issue / case.big_file
        assert sha256_of(path) == expected["sha256"]
        assert content_requests(case, clean_emulator) == []
    clean_emulator.clear_requests()
    with mount_at(tmp_path / "w", case, clean_emulator, content_cache_mb=0) as third:
        path = third.path / case.project / case.rich_issue / case.big_file
        assert sha256_of(path) == expected["sha256"]
        assert content_requests(case, clean_emulator)  # turned off: read from the tracker


def test_a_kill_during_a_fill_never_serves_wrong_bytes(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    expected = item(case, clean_emulator, case.big_file)
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
        assert sha256_of(path) == expected["sha256"]
    assert os.listdir(tmp_path / "w" / "cache")


def test_rm_removes_the_cached_bytes(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    target = item(case, clean_emulator, "readme.txt")
    cache = tmp_path / "w" / "cache"
    name = entry_name(target["id"])
    with mount_at(tmp_path / "w", case, clean_emulator) as mount:
        path = mount.path / case.project / case.rich_issue / "readme.txt"
        assert sha256_of(path) == target["sha256"]
        wait_for(lambda: bool(list(cache.glob(f"*/{name}.json"))), "the bytes to reach the disk")
        path.unlink()
        assert not list(cache.glob(f"*/{name}.*"))
    assert all(a["id"] != target["id"] for a in clean_emulator.attachments())
