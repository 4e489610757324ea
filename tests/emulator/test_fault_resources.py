"""The emulator's own resources under its faults: it must outlive any soak of them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess

FAULTS = 100
#: Descriptors the emulator may hold beyond its start: the test client's keep-alive
#: connection, and one the server has not yet noticed closing.
SLACK = 3

KINDS: dict[str, dict[str, Any]] = {
    "drop": {"action": "drop"},
    "truncate": {"action": "truncate"},
    "delay": {"action": "delay", "delay": 0.001},
    "status": {"status": 503},
}
#: how each kind shows in the request log
LOGGED: dict[str, tuple[str, Any]] = {
    "drop": ("status", "dropped"),
    "truncate": ("truncated", True),
    "delay": ("status", 200),
    "status": ("status", 503),
}


def descriptors(process: EmulatorProcess) -> int:
    return len(os.listdir(f"/proc/{process.process.pid}/fd"))


def fault_once(client: httpx.Client, url: str) -> None:
    with contextlib.suppress(httpx.TransportError):  # a dropped or cut-off answer, as intended
        client.get(url).read()


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    """An emulator of the test's own: no other test's connections are counted, and one
    broken by a leak breaks no other test."""
    with EmulatorProcess("--page-size", "5") as running:
        yield running


@pytest.mark.parametrize("kind", list(KINDS))
def test_descriptors_stay_flat_over_a_hundred_faults(emulator: EmulatorProcess, kind: str) -> None:
    [item] = [a for a in emulator.attachments() if a["filename"] == "readme.txt"]
    url = f"{emulator.base_url}/rest/api/3/attachment/content/{item['id']}?redirect=false"
    with httpx.Client(auth=emulator.auth, timeout=10) as client:
        emulator.fault(path="/attachment/content/", count=1, **KINDS[kind])
        fault_once(client, url)  # whatever the first fault opens for good is not a leak
        before = descriptors(emulator)
        emulator.fault(path="/attachment/content/", count=FAULTS, **KINDS[kind])
        emulator.clear_requests()
        for _ in range(FAULTS):
            fault_once(client, url)
        field, value = LOGGED[kind]
        assert [entry.get(field) for entry in emulator.requests()] == [value] * FAULTS
        assert client.get(url).content == emulator.content(item["id"])
    # Connections the server closes go away at once; give it a moment to notice ours.
    deadline = time.monotonic() + 15
    while descriptors(emulator) > before + SLACK:
        assert time.monotonic() < deadline, f"{descriptors(emulator) - before} descriptors leaked"
        time.sleep(0.1)
