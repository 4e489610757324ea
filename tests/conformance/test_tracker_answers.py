"""Awkward answers real trackers give, switched on in the emulator, as a user meets them."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import profile_config, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, Mount
from tests.support.store import stored

pytestmark = pytest.mark.mount


def move_issue(emulator: EmulatorProcess, issue: str, project: str) -> str:
    """Move an issue to another project behind the mount's back; returns its new key."""
    answer = httpx.post(f"{emulator.base_url}/_emulator/issues/{issue}/move", json={"project": project})
    answer.raise_for_status()
    assert answer.json()["aliases"][-1] == issue
    return str(answer.json()["key"])


def test_moved_issue_leaves_its_old_directory_for_the_new_one(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.issue_keys:
        pytest.skip("capability issue_keys: an issue keeps its directory name when it moves")
    names = sorted(a["filename"] for a in stored(clean_emulator, case.duplicates_issue))
    clean_emulator.add_project("MOVED", "Moved here")
    new_key = move_issue(clean_emulator, case.duplicates_issue, "MOVED")
    mount = make_mount()
    # The old key still answers at the tracker, under the new key: not this directory.
    with pytest.raises(FileNotFoundError) as caught:
        os.stat(mount.path / case.project / case.duplicates_issue)
    assert caught.value.errno == errno.ENOENT
    assert case.duplicates_issue not in os.listdir(mount.path / case.project)
    moved = mount.path / "MOVED" / new_key
    assert len(os.listdir(moved)) == len(names)
    assert len(stored(clean_emulator, new_key)) == len(names)


def test_login_page_redirect_is_refused_credentials(
    tmp_path: Path, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.login_page is None:
        pytest.skip("capability login_page: refused credentials never redirect to a sign-in page")
    clean_emulator.config(login_redirect=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV)
    env = dict(os.environ, **{TOKEN_ENV: "refused-token-value"})
    done = trackerfs("mount", "--foreground", "--config", str(config), "p", str(mnt), env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    # the one line says what happened: a redirect, not a plain 401
    assert "refused the credentials" in lines[0] and "login page" in lines[0], lines[0]
    assert "refused-token-value" not in done.stderr
    assert not os.path.ismount(mnt)
    redirected = [r for r in clean_emulator.requests() if r["status"] == 302]
    assert redirected, "the emulator never redirected"
    assert not any(r["path"] == case.login_page and r["authorized"] for r in clean_emulator.requests())
