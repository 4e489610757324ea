"""Fault plans: a share of matching requests, counted, from a file at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import REPO_ROOT, EmulatorProcess

#: any API request of the Jira dialect that needs no state: the server's own info
PATH = "/rest/api/3/serverInfo"


def statuses(emulator: EmulatorProcess, times: int) -> list[int]:
    with httpx.Client(base_url=emulator.base_url, auth=emulator.auth, timeout=10) as client:
        return [client.get(PATH).status_code for _ in range(times)]


def test_a_rate_faults_that_share_of_requests_and_counts_them() -> None:
    with EmulatorProcess("--tracker", "jira") as emulator:
        emulator.fault(path="serverInfo", status=503, rate=0.25, count=-1, seed=7, name="busy")
        first = statuses(emulator, 400)
        [rule] = emulator.faults()
        assert rule["name"] == "busy" and rule["rate"] == 0.25
        assert rule["injected"] == first.count(503)
        assert 60 <= first.count(503) <= 140, first.count(503)
        assert set(first) == {200, 503}
        # The same seed replays the same plan.
        emulator.clear_faults()
        emulator.fault(path="serverInfo", status=503, rate=0.25, count=-1, seed=7)
        assert statuses(emulator, 400) == first


def test_a_plan_file_is_in_force_from_the_start_and_again_after_a_reset(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"path": "serverInfo", "status": 502, "count": 2, "name": "gateway"}]))
    with EmulatorProcess("--tracker", "jira", "--faults", str(plan)) as emulator:
        assert statuses(emulator, 3) == [502, 502, 200]
        emulator.reset()
        assert statuses(emulator, 3) == [502, 502, 200]


@pytest.mark.parametrize(
    ("plan", "said"),
    [
        ('{"path": "x"}', "a fault plan is a JSON list of rules"),
        ('[{"path": "x", "rate": 0}]', "rate must be a number above 0 and at most 1"),
        ("[{", "Expecting"),
    ],
)
def test_a_bad_plan_file_is_one_line_and_exit_2(tmp_path: Path, plan: str, said: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(plan)
    done = subprocess.run(
        [sys.executable, "-m", "trackerfs.emulator", "--port", "0", "--faults", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"trackerfs: --faults {path}: ") and said in line
