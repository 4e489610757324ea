"""The mount's control folder: `.trackerfs/status.json`, `.trackerfs/control`, `trackerfs status`.

Nothing of it shows in a listing; a lookup by name finds it. The status file says where
the mount is and which tracker it shows first, then what is going on (uploads in flight,
caches, requests, recent problems); the control file flushes the metadata or the content
cache on a written command.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import attachment
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

MiB = 1 << 20


def snapshot(mount: Mount) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((mount.path / ".trackerfs" / "status.json").read_bytes())
    return data


def command(mount: Mount, text: str) -> None:
    with (mount.path / ".trackerfs" / "control").open("w") as control:
        control.write(text + "\n")


def test_the_folder_is_in_no_listing_but_opens_by_name(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    assert ".trackerfs" not in os.listdir(mount.path)
    walked = subprocess.run(
        ["find", str(mount.path), "-maxdepth", "2"], capture_output=True, text=True, check=True
    )
    assert ".trackerfs" not in walked.stdout
    assert sorted(os.listdir(mount.path / ".trackerfs")) == ["control", "status.json"]
    data = snapshot(mount)
    assert list(data)[:2] == ["mountpoint", "url"]
    assert data["mountpoint"] == str(mount.path) and data["url"] == clean_emulator.base_url
    assert data["tracker"] == case.tracker and data["pid"] == mount.process.pid
    assert clean_emulator.token not in json.dumps(data)
    shown = trackerfs("status", str(mount.path), env=mount.env)
    assert shown.returncode == 0, shown.stderr
    first, second = shown.stdout.splitlines()[:2]
    assert first.startswith(f"mounted at {mount.path} by pid {mount.process.pid}")
    assert clean_emulator.base_url in second
    by_profile = trackerfs("status", "--config", str(mount.config), mount.name, env=mount.env)
    assert f"mounted at {mount.path}" in by_profile.stdout and clean_emulator.base_url in by_profile.stdout


def test_status_counts_requests_and_caches_and_shows_an_upload_in_flight(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = make_mount()
    issue = mount.path / case.project / case.rich_issue
    (issue / case.big_file).read_bytes()
    data = snapshot(mount)
    assert sum(count for kind, count in data["requests"].items() if kind.startswith("GET ")) > 0
    assert data["reads"]["bytes_fetched"] > 0
    # The content cache writes behind, in batches: the entry shows once its batch is on disk.
    wait_for(lambda: snapshot(mount)["content_cache"]["entries"] >= 1, "the read to reach the content cache")
    source = tmp_path / "slow.bin"
    source.write_bytes(os.urandom(2 * MiB))
    clean_emulator.fault(**case.upload.rule(action="delay", delay=4, count=1))
    target = mount.path / case.project / case.plain_issue
    copy = threading.Thread(target=lambda: subprocess.run(["cp", str(source), str(target)], check=False))
    copy.start()
    try:
        wait_for(lambda: snapshot(mount)["uploads_in_flight"], "the upload to show in the status file")
        [upload] = snapshot(mount)["uploads_in_flight"]
        assert upload["name"] == "slow.bin" and upload["size"] == 2 * MiB
        shown = trackerfs("status", str(mount.path), env=mount.env).stdout
        assert "uploads in flight: 1" in shown and "slow.bin" in shown
    finally:
        copy.join(timeout=60)
    wait_for(lambda: not snapshot(mount)["uploads_in_flight"], "the upload to finish")


def test_flush_metadata_shows_a_change_made_behind_the_mount_at_once(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(metadata_ttl=600, attr_timeout=0, negative_ttl=600)
    issue = mount.path / case.project / case.plain_issue
    before = set(os.listdir(issue))
    case.attach_behind(clean_emulator, case.plain_issue, "from-the-web.txt", b"made elsewhere\n")
    assert set(os.listdir(issue)) == before, "the listing is cached for 600 s"
    command(mount, "flush metadata")
    assert "from-the-web.txt" in os.listdir(issue)
    assert (issue / "from-the-web.txt").read_bytes() == b"made elsewhere\n"


def test_flush_content_empties_the_disk_cache_and_a_bad_command_is_einval(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    (mount.path / case.project / case.rich_issue / case.big_file).read_bytes()
    size = attachment(clean_emulator, case.rich_issue, case.big_file)["size"]
    # Written behind: wait until the whole file is on disk, so nothing lands after the flush.
    wait_for(lambda: snapshot(mount)["content_cache"]["bytes"] >= size, "the content cache to fill")
    command(mount, "flush content")
    assert snapshot(mount)["content_cache"]["bytes"] == 0
    clean_emulator.clear_requests()
    with pytest.raises(OSError) as refused:
        command(mount, "flush everything")
    assert refused.value.errno == errno.EINVAL
    assert clean_emulator.requests() == []
    assert "unknown command" in json.dumps(snapshot(mount)["recent_problems"])
