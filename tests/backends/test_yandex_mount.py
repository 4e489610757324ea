"""Yandex Tracker through a real mount: comment files, a moved issue, edits disabled.

The shared suite covers what every tracker does; these are what the demo seed's YAN queue
and Tracker's own answers add: a file posted with a comment carries the comment's id, a
moved issue opens under its old key in its new queue, a queue and an issue directory name
their ids, and a tracker that disabled edits refuses `rm` with EACCES, its message logged.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

ORG = "777"


@pytest.fixture(scope="module")
def tracker() -> Iterator[EmulatorProcess]:
    """A Yandex emulator for organisation ORG."""
    with EmulatorProcess("--org-id", ORG, tracker="yandex") as running:
        yield running


@pytest.fixture
def mount(tracker: EmulatorProcess, tmp_path: Path) -> Iterator[Mount]:
    tracker.reset()
    with Mount(
        tmp_path, url=tracker.base_url, token=tracker.token, tracker="yandex", profile={"org_id": ORG}
    ) as m:
        yield m
    tracker.reset()


def stored(tracker: EmulatorProcess, issue: str) -> dict[str, dict[str, Any]]:
    return {item["filename"]: item for item in tracker.attachments() if item["issue"] == issue}


def test_a_file_posted_with_a_comment_carries_the_comments_id(mount: Mount, tracker: EmulatorProcess) -> None:
    issue = mount.path / "YAN" / "YAN-1"
    assert sorted(os.listdir(issue)) == ["photo.png", "run.log"]
    headers = {"Authorization": f"OAuth {tracker.token}", "X-Org-ID": ORG}
    [comment] = httpx.get(f"{tracker.base_url}/v2/issues/YAN-1/comments", headers=headers).json()
    assert os.getxattr(issue / "run.log", "user.trackerfs.comment").decode() == str(comment["id"])
    assert "user.trackerfs.comment" not in os.listxattr(issue / "photo.png")
    items = stored(tracker, "YAN-1")
    assert hashlib.sha256((issue / "run.log").read_bytes()).hexdigest() == items["run.log"]["sha256"]
    assert os.getxattr(issue / "run.log", "user.trackerfs.id").decode() == items["run.log"]["id"]
    assert os.getxattr(issue / "run.log", "user.trackerfs.issue").decode() == "YAN-1"


def test_directories_carry_their_ids_and_web_pages(mount: Mount, tracker: EmulatorProcess) -> None:
    queue, issue = mount.path / "YAN", mount.path / "YAN" / "YAN-1"
    assert os.getxattr(queue, "user.trackerfs.url").decode() == f"{tracker.base_url}/YAN"
    assert os.getxattr(issue, "user.trackerfs.url").decode() == f"{tracker.base_url}/YAN-1"
    ident = os.getxattr(issue, "user.trackerfs.id").decode()
    assert len(ident) == 24 and int(ident, 16) >= 0
    assert os.getxattr(queue, "user.trackerfs.id")


def test_a_moved_issue_opens_by_its_old_key_in_its_new_queue(mount: Mount, tracker: EmulatorProcess) -> None:
    assert "OPS-3" not in os.listdir(mount.path / "OPS")
    with pytest.raises(FileNotFoundError):
        os.stat(mount.path / "OPS" / "OPS-3")
    assert sorted(os.listdir(mount.path / "YAN")) == ["YAN-1", "YAN-2"]
    alias = mount.path / "YAN" / "OPS-3"
    assert os.listdir(alias) == ["moved.txt"]
    assert os.stat(alias).st_ino == os.stat(mount.path / "YAN" / "YAN-2").st_ino
    expected = stored(tracker, "YAN-2")["moved.txt"]["sha256"]
    assert hashlib.sha256((alias / "moved.txt").read_bytes()).hexdigest() == expected


def test_rm_while_edits_are_disabled_is_eacces_and_the_file_stays(
    mount: Mount, tracker: EmulatorProcess
) -> None:
    target = mount.path / "DEMO" / "DEMO-1" / "readme.txt"
    os.stat(target)
    tracker.config(edits_disabled=True)
    with pytest.raises(PermissionError) as refused:
        target.unlink()
    assert refused.value.errno == errno.EACCES
    assert "readme.txt" in stored(tracker, "DEMO-1")
    assert "Object edits disabled." in mount.log.read_text(errors="replace")
    tracker.config(edits_disabled=False)
    assert "readme.txt" in os.listdir(target.parent)
