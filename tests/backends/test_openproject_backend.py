"""The OpenProject backend against the emulator in process: paging, records, uploads, errors.

What reached the tracker is read from the requests the transport carried.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from trackerfs.backends import make_tracker
from trackerfs.backends.openproject import OpenProjectTracker
from trackerfs.config import profile_from_table
from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.state import EmulatorState
from trackerfs.errors import ConfigError, NotFoundError, PermissionDeniedError, TooLargeError
from trackerfs.model import Project

TOKEN = "op-token"
TOKEN_ENV = "TRACKERFS_OP_TEST_TOKEN"
SITE = "http://openproject.test"


class Recording(httpx.AsyncBaseTransport):
    """The in-process emulator, keeping every request it was sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            await request.aread()  # kept whole, so the test can read what was sent
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    return EmulatorState(EmulatorOptions(tracker="openproject", token=TOKEN, page_size=5), tmp_path)


@pytest.fixture
def transport(state: EmulatorState) -> Recording:
    return Recording(httpx.ASGITransport(app=create_app(state)))


def profile(**keys: object) -> dict[str, object]:
    return {"tracker": "openproject", "url": SITE, "token_env": TOKEN_ENV, **keys}


@pytest.fixture
async def tracker(transport: Recording, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenProjectTracker]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    made = make_tracker(profile_from_table("op", profile()), transport=transport)
    assert isinstance(made, OpenProjectTracker)
    await made.check_account()
    try:
        yield made
    finally:
        await made.aclose()


async def demo(tracker: OpenProjectTracker) -> Project:
    return next(p for p in await tracker.list_projects() if p.key == "demo")


async def test_listing_follows_next_by_offset_with_every_work_package(
    tracker: OpenProjectTracker, transport: Recording
) -> None:
    project = await demo(tracker)
    transport.sent.clear()
    issues = await tracker.list_issues(project)
    assert [issue.label for issue in issues] == [f"DEMO-{n}" for n in range(1, 13)]
    pages = [request.url.params for request in transport.sent]
    # asked 100 a page; the instance's 5 come back in nextByOffset, by page number
    assert [(p["offset"], p["pageSize"]) for p in pages] == [("1", "100"), ("2", "5"), ("3", "5")]
    assert all(p["filters"] == "[]" for p in pages)
    assert all(issue.attachments is None for issue in issues)


async def test_a_work_package_found_by_semantic_or_numeric_id_and_only_in_its_project(
    tracker: OpenProjectTracker,
) -> None:
    project = await demo(tracker)
    by_key = await tracker.get_issue(project, "DEMO-1")
    by_id = await tracker.get_issue(project, by_key.id)
    assert by_key.id == by_id.id and by_key.label == "DEMO-1"
    assert [a.filename for a in by_key.attachments or ()][:1] == ["readme.txt"]
    ops = next(p for p in await tracker.list_projects() if p.key == "ops")
    with pytest.raises(NotFoundError):
        await tracker.get_issue(ops, "DEMO-1")
    assert tracker.issue_reference(project, "DEMO-42") == "DEMO-42"
    assert tracker.issue_reference(project, "desktop.ini") is None
    recovered = await tracker.get_issue_by_reference(tracker.locator(by_key))
    assert recovered.project_key == "demo"


async def test_attachment_records_carry_the_md5_and_leave_quarantined_files_out(
    tracker: OpenProjectTracker, state: EmulatorState
) -> None:
    ops = next(p for p in await tracker.list_projects() if p.key == "ops")
    scan = next(issue for issue in await tracker.list_issues(ops) if issue.summary == "Virus scan")
    [clean] = await tracker.list_attachments(scan)
    stored = state.store.attachments[clean.id]
    assert clean.filename == "scanned.txt" and clean.size == stored.size
    assert clean.checksum == f"md5:{stored.md5}" and clean.attributes == (("md5", stored.md5),)
    assert clean.author == "Alice Example" and clean.author_id


async def test_upload_sends_metadata_first_then_file(
    tracker: OpenProjectTracker, transport: Recording, state: EmulatorState
) -> None:
    issue = await tracker.get_issue(await demo(tracker), "DEMO-5")
    data = b"uploaded bytes\n" * 100
    transport.sent.clear()
    made = await tracker.upload(issue, "notes ü.txt", len(data), lambda: io.BytesIO(data))
    assert made.filename == "notes ü.txt" and made.checksum == f"md5:{hashlib.md5(data).hexdigest()}"
    [request] = transport.sent
    body = request.content
    assert body.index(b'name="metadata"') < body.index(b'name="file"')
    head, _, rest = body.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(rest.split(b"\r\n--", 1)[0]) == {"fileName": "notes ü.txt"}
    assert state.store.attachments[made.id].sha256 == hashlib.sha256(data).hexdigest()


async def test_upload_refusals_map_to_efbig_and_eacces(
    tracker: OpenProjectTracker, state: EmulatorState
) -> None:
    issue = await tracker.get_issue(await demo(tracker), "DEMO-5")
    data = b"x" * 64
    state.config.update({"upload_limit": 10})
    assert (await tracker.limits()).upload_limit == 10
    with pytest.raises(TooLargeError, match="too large"):
        await tracker.upload(issue, "big.bin", len(data), lambda: io.BytesIO(data))
    state.config.update({"upload_limit": 1 << 20, "create_attachments": False})
    assert (await tracker.permissions(issue)).create is False
    with pytest.raises(PermissionDeniedError):
        await tracker.upload(issue, "denied.bin", len(data), lambda: io.BytesIO(data))


async def test_permissions_read_the_delete_links(tracker: OpenProjectTracker, state: EmulatorState) -> None:
    issue = await tracker.get_issue(await demo(tracker), "DEMO-1")
    assert (await tracker.permissions(issue)).delete_any is True
    state.config.update({"delete_attachments": "none"})
    denied = await tracker.permissions(issue)
    assert denied.delete_any is False and denied.create is True
    assert all(denied.may_delete(a) is False for a in issue.attachments or ())


def test_filters_must_be_a_json_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    for bad in ("{not json", '{"status": {}}', "[1, 2]"):
        with pytest.raises(ConfigError, match="filters"):
            make_tracker(profile_from_table("op", profile(filters=bad)))
