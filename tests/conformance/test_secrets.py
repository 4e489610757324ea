"""Secrets and access: the token in no log line at DEBUG, no argv, no status file, and a
mount no other user can enter."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

NOBODY = "65534"


def test_the_token_is_in_no_log_line_argv_or_status_file(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = make_mount()  # every test mount logs at DEBUG: each request and FUSE operation
    issue = mount.path / case.project / case.plain_issue
    for name in os.listdir(mount.path / case.project / case.rich_issue):
        (mount.path / case.project / case.rich_issue / name).read_bytes()
    source = tmp_path / "note.txt"
    source.write_text("a note\n")
    shutil.copy(source, issue / "note.txt")
    (issue / "note.txt").unlink()
    status = (mount.path / ".trackerfs" / "status.json").read_text()
    assert mount.process is not None
    argv = Path(f"/proc/{mount.process.pid}/cmdline").read_bytes().decode(errors="replace")
    log = mount.log_text()
    assert "GET " in log or "get " in log.lower(), "the log is not at DEBUG: this test would prove nothing"
    token = clean_emulator.token
    assert token not in log
    assert token not in argv
    assert token not in status


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_another_user_cannot_enter_a_private_mount(case: TrackerCase, emulator: EmulatorProcess) -> None:
    if os.geteuid() != 0:
        pytest.fail("switching to another user needs root (the suite runs as root in CI)")
    # Somewhere every user may walk to, so that only the mount itself can refuse.
    workdir = Path(tempfile.mkdtemp(prefix="tfs-shared-"))
    workdir.chmod(0o755)
    try:
        with mount_at(workdir, case, emulator) as mount:
            mount.path.parent.chmod(0o755)
            assert as_nobody("stat", str(mount.path.parent)).returncode == 0
            mine = mount.path / case.project
            assert os.listdir(mine)
            some_file = next((mine / case.rich_issue).iterdir())
            for command in (["ls", str(mine)], ["cat", str(some_file)], ["ls", str(mount.path)]):
                done = as_nobody(*command)
                assert done.returncode != 0, done.stdout
                assert "Permission denied" in done.stderr, done.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
