"""The Asana backend against the emulator's Asana dialect in process: what a mount asks
and what reaches the tracker, without a mount.

The API and the storage are two apps on two origins, as on the real service, so the
tests see which requests carried credentials and which went where.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.backends import make_tracker
from trackerfs.backends.asana import SHORTCUT_SUFFIX, AsanaTracker, bearer
from trackerfs.backends.http import HttpClient, RequestBudget
from trackerfs.config import profile_from_table
from trackerfs.emulator import EmulatorOptions, create_app, create_media_app
from trackerfs.emulator.faults import parse_fault
from trackerfs.emulator.state import EmulatorState
from trackerfs.errors import ConfigError, TrackerError
from trackerfs.model import Attachment, Issue, Project

TOKEN = "asana-backend-token"
TOKEN_ENV = "TRACKERFS_TEST_ASANA_TOKEN"
SITE = "http://asana.test"
STORAGE = "http://storage.test"


class TwoOrigins(httpx.AsyncBaseTransport):
    """The API app on SITE and the storage app on STORAGE, in process."""

    def __init__(self, state: EmulatorState) -> None:
        self.api = httpx.ASGITransport(app=create_app(state))
        self.storage = httpx.ASGITransport(app=create_media_app(state))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if f"{request.url.scheme}://{request.url.host}" == STORAGE:
            return await self.storage.handle_async_request(request)
        return await self.api.handle_async_request(request)


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """The demo seed, pages of 5, download URLs on STORAGE."""
    emulator = EmulatorState(EmulatorOptions(tracker="asana", token=TOKEN, page_size=5), tmp_path)
    emulator.media_url = STORAGE
    return emulator


def tracker_for(state: EmulatorState, **keys: Any) -> AsanaTracker:
    """An Asana backend for a profile with `keys`, talking to `state` in process."""
    os.environ[TOKEN_ENV] = TOKEN
    profile = profile_from_table(
        "test", {"tracker": "asana", "url": SITE, "token_env": TOKEN_ENV, "page_size": 5, **keys}
    )
    tracker = make_tracker(profile, transport=TwoOrigins(state))
    assert isinstance(tracker, AsanaTracker)
    return tracker


@pytest.fixture
async def tracker(state: EmulatorState) -> AsyncIterator[AsanaTracker]:
    opened = tracker_for(state, workspace="Demo workspace")
    await opened.check_account()
    yield opened
    await opened.aclose()


def log_of(state: EmulatorState) -> list[dict[str, Any]]:
    return state.log.entries()


def steps(state: EmulatorState) -> list[tuple[str, int]]:
    """Where each logged request went and what it got."""
    return [(e["origin"], e["status"]) for e in log_of(state)]


async def project_named(tracker: AsanaTracker, name: str, which: int = 0) -> Project:
    """The project called `name` (the `which`-th of that name: names repeat in Asana)."""
    return [p for p in await tracker.list_projects() if p.name == name][which]


async def task_named(tracker: AsanaTracker, project: str, name: str, which: int = 0) -> Issue:
    issues = await tracker.list_issues(await project_named(tracker, project, which))
    return next(i for i in issues if i.summary == name)


async def read_all(tracker: AsanaTracker, attachment: Attachment) -> bytes:
    async with tracker.open_range(attachment, 0, attachment.size) as chunks:
        return b"".join([chunk async for chunk in chunks])


# -- workspaces ------------------------------------------------------------------------


async def test_a_token_that_sees_two_workspaces_must_be_told_which(state: EmulatorState) -> None:
    tracker = tracker_for(state)
    with pytest.raises(ConfigError) as caught:
        await tracker.check_account()
    message = str(caught.value)
    assert "\n" not in message
    assert '"Demo workspace"' in message and '"Other workspace"' in message
    assert "set workspace" in message
    await tracker.aclose()


@pytest.mark.parametrize("how", ["name", "gid"])
async def test_the_workspace_is_chosen_by_name_or_gid(state: EmulatorState, how: str) -> None:
    other = next(s for s in state.store.spaces.values() if s.name == "Other workspace")
    tracker = tracker_for(state, workspace=other.name if how == "name" else other.id)
    await tracker.check_account()
    assert [p.name for p in await tracker.list_projects()] == ["Demo project"]
    assert tracker.workspace_gid == other.id
    await tracker.aclose()


async def test_an_unknown_workspace_is_one_line_naming_the_ones_seen(state: EmulatorState) -> None:
    tracker = tracker_for(state, workspace="Nowhere")
    with pytest.raises(ConfigError, match=r"no workspace 'Nowhere'; it sees \"Demo workspace\""):
        await tracker.check_account()
    await tracker.aclose()


# -- listings --------------------------------------------------------------------------


async def test_projects_and_tasks_carry_gids_names_and_pages_on_the_profile_origin(
    tracker: AsanaTracker, state: EmulatorState
) -> None:
    projects = await tracker.list_projects()
    assert [p.label for p in projects] == ["Demo project", "Operations", "Operations"]
    assert all(p.id == p.key and p.id.isdigit() for p in projects)
    assert all(p.web_url.startswith(f"{SITE}/") and p.web_url.endswith(f"/project/{p.id}") for p in projects)
    state.log.clear()
    tasks = await tracker.list_issues(projects[0])
    assert [t.label for t in tasks] == [f"Demo issue {n}" for n in range(1, 13)]
    assert all(t.web_url.endswith(f"/task/{t.id}") and t.attachments is None for t in tasks)
    pages = [e for e in log_of(state) if e["path"].endswith("/tasks")]
    # limit is always sent: without it Asana gives no next_page, and a big project times out
    assert len(pages) == 3 and all(e["query"].get("limit") == "5" for e in pages)


class OffsetsExpireOnce(TwoOrigins):
    """The emulator with expiring offsets until it has refused one (data changed once)."""

    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        state.config.update({"expire_offsets": True})
        self.state = state

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if response.status_code == 400 and "offset" in request.url.params:
            self.state.config.update({"expire_offsets": False})
        return response


async def test_a_listing_whose_offset_expired_starts_again(state: EmulatorState) -> None:
    tracker = tracker_for(state, workspace="Demo workspace")
    project = await project_named(tracker, "Demo project")
    await tracker.aclose()
    tracker.http = HttpClient(SITE, credentials=bearer(TOKEN), transport=OffsetsExpireOnce(state))
    state.log.clear()
    tasks = await tracker.list_issues(project)
    assert [t.label for t in tasks] == [f"Demo issue {n}" for n in range(1, 13)]
    pages = [("offset" in e["query"], e["status"]) for e in log_of(state) if e["path"].endswith("/tasks")]
    assert pages == [(False, 200), (True, 400), (False, 200), (True, 200), (True, 200)]
    await tracker.aclose()


async def test_offsets_refused_every_time_end_in_the_tracker_error(
    tracker: AsanaTracker, state: EmulatorState
) -> None:
    project = await project_named(tracker, "Demo project")
    state.config.update({"expire_offsets": True})
    with pytest.raises(TrackerError, match="expired"):
        await tracker.list_issues(project)


async def test_completed_since_now_leaves_out_completed_tasks(state: EmulatorState) -> None:
    everything = tracker_for(state, workspace="Demo workspace")
    open_only = tracker_for(state, workspace="Demo workspace", completed_since="now")
    ops = await project_named(everything, "Operations")
    assert [t.label for t in await everything.list_issues(ops)] == ["Runbook", "Nothing attached"]
    assert [t.label for t in await open_only.list_issues(ops)] == ["Runbook"]
    await everything.aclose()
    await open_only.aclose()


def test_completed_since_must_be_a_date_or_now(state: EmulatorState) -> None:
    with pytest.raises(ConfigError, match="completed_since"):
        tracker_for(state, completed_since="last week")


async def test_max_issues_stops_the_paging(state: EmulatorState) -> None:
    tracker = tracker_for(state, workspace="Demo workspace", max_issues=3)
    project = await project_named(tracker, "Demo project")
    state.log.clear()
    assert [t.label for t in await tracker.list_issues(project)] == [
        "Demo issue 1",
        "Demo issue 2",
        "Demo issue 3",
    ]
    assert len([e for e in log_of(state) if e["path"].endswith("/tasks")]) == 1
    await tracker.aclose()


async def test_any_task_is_found_by_gid_a_subtask_too(tracker: AsanaTracker, state: EmulatorState) -> None:
    project = await project_named(tracker, "Demo project")
    [sub] = [i for i in state.store.issues.values() if i.summary == "Check the diagram"]
    assert tracker.issue_reference(project, sub.id) == sub.id
    assert tracker.issue_reference(project, ".directory") is None
    found = await tracker.get_issue(project, sub.id)
    assert found.id == sub.id and found.label == "Check the diagram"
    assert [a.filename for a in await tracker.list_attachments(found)] == ["checklist.txt"]


# -- content ---------------------------------------------------------------------------


async def test_content_comes_from_a_fresh_download_url_without_the_token(
    tracker: AsanaTracker, state: EmulatorState
) -> None:
    task = await task_named(tracker, "Demo project", "Demo issue 1")
    big = next(a for a in await tracker.list_attachments(task) if a.filename == "big.bin")
    state.log.clear()
    data = await read_all(tracker, big)
    stored = state.store.attachments[big.id]
    assert len(data) == stored.size and data == state.store.blob_path(stored).read_bytes()
    asked = [e for e in log_of(state) if e["origin"] == "api"]
    fetched = [e for e in log_of(state) if e["origin"] == "media"]
    assert [e["path"] for e in asked] == [f"/api/1.0/attachments/{big.id}"]
    assert fetched and not any(e["authorized"] for e in fetched)


async def test_a_download_url_the_storage_refuses_is_asked_for_again_once(
    tracker: AsanaTracker, state: EmulatorState
) -> None:
    task = await task_named(tracker, "Demo project", "Demo issue 1")
    big = next(a for a in await tracker.list_attachments(task) if a.filename == "big.bin")
    content = state.store.blob_path(state.store.attachments[big.id]).read_bytes()
    async with tracker.open_range(big, 0, 1000) as chunks:
        assert b"".join([chunk async for chunk in chunks]) == content[:1000]
    # The URL in hand (reused by the ranges of a download) has expired meanwhile.
    state.faults.add(parse_fault({"origin": "media", "path": "/assets/", "status": 403, "count": 1}))
    state.log.clear()
    async with tracker.open_range(big, 1000, 2000) as chunks:
        assert b"".join([chunk async for chunk in chunks]) == content[1000:2000]
    assert [(e["origin"], e["status"]) for e in log_of(state)] == [
        ("media", 403),
        ("api", 200),
        ("media", 206),
    ]
    # A fresh URL refused too is the error: no loop of asking.
    state.config.update({"media_ttl": -1})
    state.faults.add(parse_fault({"origin": "media", "path": "/assets/", "status": 403, "count": 1}))
    state.log.clear()
    with pytest.raises(TrackerError) as caught:
        async with tracker.open_range(big, 2000, 3000) as chunks:
            b"".join([chunk async for chunk in chunks])
    assert caught.value.errno == errno.EACCES
    assert [(e["origin"], e["status"]) for e in log_of(state)] == [
        ("media", 403),
        ("api", 200),
        ("media", 403),
    ]


async def test_links_to_other_services_are_read_only_shortcuts(
    tracker: AsanaTracker, state: EmulatorState
) -> None:
    task = await task_named(tracker, "Operations", "Links to other services", which=1)
    links = await tracker.list_attachments(task)
    assert sorted(a.filename for a in links) == sorted(
        f"{name}{SHORTCUT_SUFFIX}"
        for name in ("Budget.xlsx", "Roadmap", "Contract.pdf", "Slides.pptx", "Walkthrough", "Status page")
    )
    assert all(a.read_only for a in links)
    box = next(a for a in links if a.filename == "Contract.pdf.url")
    assert dict(box.attributes)["host"] == "box"
    state.log.clear()
    data = await read_all(tracker, box)
    assert data == b"[InternetShortcut]\r\nURL=https://app.box.com/s/xyz789\r\n" and len(data) == box.size
    assert log_of(state) == [], "a shortcut costs no request"


# -- writing ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["résumé 100%.pdf", 'quote " and ; semicolon.txt', "plain.txt"])
async def test_an_upload_keeps_its_name_and_bytes(
    tracker: AsanaTracker, state: EmulatorState, tmp_path: Path, name: str
) -> None:
    task = await task_named(tracker, "Demo project", "Demo issue 5")
    source = tmp_path / "source"
    payload = os.urandom(70_000)
    source.write_bytes(payload)
    created = await tracker.upload(task, name, len(payload), lambda: source.open("rb"))
    assert created.filename == name and created.size == len(payload)
    stored = state.store.attachments[created.id]
    assert stored.filename == name and stored.issue == task.id
    [upload] = [e for e in log_of(state) if e["method"] == "POST"]
    assert [p["part"] for p in upload["upload"]] == ["parent", "file"]
    await tracker.delete(task, created)
    assert created.id not in state.store.attachments


async def test_the_upload_limit_is_known_before_uploading(tracker: AsanaTracker) -> None:
    assert (await tracker.limits()).upload_limit == 100 * 1024 * 1024


async def test_an_upload_over_the_limit_is_too_large(
    tracker: AsanaTracker, state: EmulatorState, tmp_path: Path
) -> None:
    task = await task_named(tracker, "Demo project", "Demo issue 5")
    state.config.update({"upload_limit": 1024})
    source = tmp_path / "source"
    source.write_bytes(b"x" * 4096)
    with pytest.raises(TrackerError) as caught:
        await tracker.upload(task, "big.txt", 4096, lambda: source.open("rb"))
    assert caught.value.errno == errno.EFBIG
    assert "larger than Asana's upload limit" in str(caught.value)


# -- the request budget ----------------------------------------------------------------


class FakeTime:
    """A clock that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_budget_lets_a_minute_of_requests_through_then_waits() -> None:
    time = FakeTime()
    budget = RequestBudget(3, clock=time.clock, sleep=time.sleep)
    waits = [await budget.take() for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0] and time.slept == []
    time.now += 10
    assert await budget.take() == pytest.approx(51.0)  # the first leaves the window at 61 s
    assert budget.statistics()["granted"] == 4


async def test_a_429_holds_back_every_request_for_its_retry_after() -> None:
    time = FakeTime()
    budget = RequestBudget(100, clock=time.clock, sleep=time.sleep)
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    client = HttpClient(
        SITE,
        credentials={},
        budget=budget,
        transport=httpx.MockTransport(handler),
        clock=time.clock,
        sleep=time.sleep,
        deadline=30.0,
    )
    await client.get_json("/api/1.0/users/me")
    assert budget.statistics()["pauses"] == 1
    # the refused request waited for Retry-After, and the budget kept the pause for others
    assert sum(time.slept) >= 7.0
    assert await budget.take() == 0.0
    await client.aclose()
