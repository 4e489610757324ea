"""Waiting for what a mount does in the background, by polling, never by sleeping blind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

POLL = 0.05


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL)


def upload_started(state: Path) -> bool:
    """Whether the spool under `state` holds an upload in progress (a pending manifest)."""
    for path in (state / "spool").glob("*.json"):
        try:
            if json.loads(path.read_text()).get("state") == "pending":
                return True
        except (OSError, ValueError):
            continue
    return False
