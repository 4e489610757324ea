"""The emulator's command line: options that do not fit the chosen tracker are one line."""

from __future__ import annotations

import subprocess
import sys

from tests.support.emulator import REPO_ROOT


def emulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackerfs.emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )


def test_a_flavour_of_another_tracker_is_one_line_and_exit_2() -> None:
    done = emulate("--tracker", "jira", "--flavour", "local")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["trackerfs: --tracker jira has no flavour 'local' (it has: both, cloud, datacenter)"]
    assert "Traceback" not in done.stderr
