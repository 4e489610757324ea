"""Content behind signed URLs that expire, through a real mount of Jira Cloud's redirects.

Jira Cloud answers a content request with a 303 to its media host and a token that is
valid for a short time; the client reuses the target for the backend's `location_ttl`.
The emulator's media origin refuses an expired token (`media_ttl`), so an open file that
kept a URL for its life would read nothing once the token expired.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

MiB = 1 << 20
#: seconds a signed media URL is valid: short, so that the test can outlive one
MEDIA_TTL = 2
EXPIRY_WAIT = 15.0


@pytest.fixture(scope="module")
def cloud() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--tracker", "jira", "--flavour", "cloud") as running:
        yield running


def big_file(emulator: EmulatorProcess) -> dict[str, Any]:
    return next(
        item for item in emulator.attachments() if item["issue"] == "DEMO-1" and item["filename"] == "big.bin"
    )


def media_requests(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    return [entry for entry in emulator.requests() if entry["origin"] == "media"]


def wait_until_refused(emulator: EmulatorProcess, entry: dict[str, Any]) -> None:
    """Poll the signed URL a read used until the media origin refuses it (expired)."""
    url = f"{emulator.media_url}{entry['path']}"
    deadline = time.monotonic() + EXPIRY_WAIT
    while httpx.get(url, params=entry["query"]).status_code != 401:
        assert time.monotonic() < deadline, "the signed URL never expired"
        time.sleep(0.2)


def test_a_read_after_the_signed_url_expired_gets_the_right_bytes(
    cloud: EmulatorProcess, tmp_path: Path
) -> None:
    cloud.reset()
    cloud.config(media_ttl=MEDIA_TTL)
    item = big_file(cloud)
    expected = cloud.content(item["id"])
    profile = {"user": "tester@example.com", "download": "redirect", "content_cache_mb": 0}
    with Mount(tmp_path, url=cloud.base_url, token=cloud.token, tracker="jira", profile=profile) as mount:
        path = mount.path / "DEMO" / "DEMO-1" / "big.bin"
        with path.open("rb", buffering=0) as handle:
            cloud.clear_requests()
            assert os.pread(handle.fileno(), 4096, 0) == expected[:4096]
            seen = media_requests(cloud)
            used = next(entry for entry in seen if entry["status"] == 206)
            wait_until_refused(cloud, used)

            cloud.clear_requests()
            far = 6 * MiB + 13
            assert os.pread(handle.fileno(), 65536, far) == expected[far : far + 65536]
            requests = cloud.requests()
            seen += [entry for entry in requests if entry["origin"] == "media"]
            statuses = [(entry["origin"], entry["status"]) for entry in requests]
            # The expired target is tried once, Jira is asked again, the fresh target serves.
            assert ("media", 401) in statuses and ("media", 206) in statuses
            refused = statuses.index(("media", 401))
            assert ("api", 303) in statuses[refused:]

            handle.seek(0)
            assert hashlib.sha256(handle.read()).hexdigest() == item["sha256"]
            seen += media_requests(cloud)
    assert not any(entry["authorized"] for entry in seen), "credentials went to the media host"
