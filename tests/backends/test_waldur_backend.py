"""The Waldur backend against the Waldur emulator in process: names, the sweep, errors.

What only Waldur has and the shared suite does not cover: one sweep of every attachment
filling every issue's listing, blank keys, uuids in either form, twin project names,
credentials by origin for `file` URLs, and DRF's error bodies mapped to errno.
"""

from __future__ import annotations

import errno
import io
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.backends.waldur import WaldurTracker, blank_key_label, uuid_hex
from trackerfs.config import BackendOptions, profile_from_table
from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.state import EmulatorState
from trackerfs.errors import TrackerError
from trackerfs.model import Attachment, Issue, Project

HOST = "http://waldur.test"
TOKEN = "backend-token"
TOKEN_ENV = "TRACKERFS_TEST_WALDUR_TOKEN"


class Recorder(httpx.AsyncBaseTransport):
    """The emulator's ASGI app, keeping every request the backend sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    def paths(self, path: str) -> list[httpx.Request]:
        """The requests sent to `path` (any query)."""
        return [r for r in self.sent if r.url.path == path]


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded Waldur emulator whose pages hold at most 5 items."""
    emulator = EmulatorState(EmulatorOptions(tracker="waldur", token=TOKEN, page_size=5), tmp_path)
    return emulator


def make_tracker(
    monkeypatch: pytest.MonkeyPatch, transport: httpx.AsyncBaseTransport, **keys: Any
) -> WaldurTracker:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    profile = profile_from_table("w", {"tracker": "waldur", "url": HOST, "token_env": TOKEN_ENV, **keys})
    options = BackendOptions({"page_size": keys.get("page_size", 300)})
    return WaldurTracker(profile, options, transport=transport)


@pytest.fixture
async def waldur(
    state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[WaldurTracker, Recorder]]:
    recorder = Recorder(httpx.ASGITransport(app=create_app(state)))
    tracker = make_tracker(monkeypatch, recorder)
    try:
        yield tracker, recorder
    finally:
        await tracker.aclose()


async def project_named(tracker: WaldurTracker, slug: str) -> Project:
    return next(p for p in await tracker.list_projects() if p.key == slug)


async def test_one_sweep_fills_every_issue_of_every_project(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, sent = waldur
    projects = await tracker.list_projects()
    listed = {p.key: await tracker.list_issues(p) for p in projects}
    store = state.store
    for issues in listed.values():
        for issue in issues:
            expected = sorted(a.id for a in store.attachments.values() if a.issue == issue.id)
            assert issue.attachments is not None, issue.label
            assert sorted(a.id for a in issue.attachments) == expected
    pages = sent.paths("/api/support-attachments/")
    # One sweep for the three projects, 5 a page, and no listing per issue.
    assert len(pages) == -(-len(store.attachments) // 5)
    assert not any("issue_uuid" in r.url.params for r in pages)


async def test_no_sweep_where_one_request_per_issue_is_cheaper(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, sent = waldur
    ops = await project_named(tracker, "ops")
    issues = await tracker.list_issues(ops)
    # 2 issues, 7 pages of attachments: the first page is all the sweep costs.
    assert [i.attachments for i in issues] == [None, None]
    assert len(sent.paths("/api/support-attachments/")) == 1
    files = await tracker.list_attachments(issues[0])
    assert [a.filename for a in files] == ["runbook.md"]
    assert sent.paths("/api/support-attachments/")[-1].url.params["issue_uuid"] == issues[0].id


async def test_a_sweep_whose_total_changes_is_not_trusted(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, sent = waldur
    demo = await project_named(tracker, "demo")
    original = sent.handle_async_request
    pages = 0

    async def deleting_meanwhile(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path == "/api/support-attachments/":
            pages += 1
            if pages == 2:
                state.store.delete_attachment(next(iter(state.store.attachments)))
        return await original(request)

    sent.handle_async_request = deleting_meanwhile  # type: ignore[method-assign]
    issues = await tracker.list_issues(demo)
    assert all(issue.attachments is None for issue in issues)


async def test_a_failed_sweep_leaves_the_issues_listed_and_their_files_asked_one_by_one(
    waldur: tuple[WaldurTracker, Recorder],
) -> None:
    tracker, sent = waldur
    demo = await project_named(tracker, "demo")
    original = sent.handle_async_request

    async def failing_sweep(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/support-attachments/" and "issue_uuid" not in request.url.params:
            return httpx.Response(400, json={"detail": "no sweep today"})
        return await original(request)

    sent.handle_async_request = failing_sweep  # type: ignore[method-assign]
    issues = await tracker.list_issues(demo)
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 13)]
    assert all(issue.attachments is None for issue in issues)
    assert len(await tracker.list_attachments(issues[0])) == 6


async def test_a_sweep_serves_other_projects_until_this_mount_changes_something(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, sent = waldur
    demo = await project_named(tracker, "demo")
    twin = await project_named(tracker, "demo-project")
    await tracker.list_issues(demo)
    swept = len(sent.paths("/api/support-attachments/"))
    assert all(i.attachments is not None for i in await tracker.list_issues(twin))
    assert len(sent.paths("/api/support-attachments/")) == swept
    plain = next(i for i in await tracker.list_issues(demo) if i.key == "DEMO-5")
    assert len(sent.paths("/api/support-attachments/")) == swept
    stored = await tracker.upload(plain, "new.txt", 3, lambda: io.BytesIO(b"new"))
    again = next(i for i in await tracker.list_issues(demo) if i.key == "DEMO-5")
    assert len(sent.paths("/api/support-attachments/")) > swept
    assert [a.id for a in again.attachments or ()] == [stored.id]


async def test_blank_keys_get_readable_names_that_no_key_can_take(
    waldur: tuple[WaldurTracker, Recorder],
) -> None:
    tracker, _ = waldur
    twin = await project_named(tracker, "demo-project")
    issues = await tracker.list_issues(twin)
    labels = [i.label for i in issues]
    assert labels == [blank_key_label(i.summary, i.id) for i in issues]
    assert labels[0] == f"Printer on fire ({issues[0].id[:8]})"
    for issue, label in zip(issues, labels, strict=True):
        assert tracker.issue_reference(twin, label) is None
        # Without a key, the issue is known by its uuid (the xattr `issue` shows it).
        assert issue.key == issue.id
    assert blank_key_label("  ", "0123456789abcdef") == "issue (01234567)"
    assert blank_key_label("x" * 200, "ab" * 16) == "x" * 60 + " (abababab)"


async def test_projects_and_issues_open_by_uuid_in_either_form(
    waldur: tuple[WaldurTracker, Recorder],
) -> None:
    tracker, _ = waldur
    demo = await project_named(tracker, "demo")
    assert tracker.project_reference(str(uuid.UUID(demo.id))) == demo.id
    assert tracker.project_reference(demo.id.upper()) == demo.id
    assert tracker.project_reference("DEMO") == demo.key == "demo"
    assert (await tracker.get_project(str(uuid.UUID(demo.id)))).id == demo.id
    with pytest.raises(TrackerError) as probe:
        await tracker.get_project(".trash")
    assert probe.value.errno == errno.ENOENT
    [first, *_] = await tracker.list_issues(demo)
    for form in (first.id, str(uuid.UUID(first.id)), first.id.upper()):
        reference = tracker.issue_reference(demo, form)
        assert reference == first.id
        found = await tracker.get_issue(demo, reference)
        assert found.id == first.id and found.attachments is not None and len(found.attachments) == 6
    by_key = await tracker.get_issue(demo, "DEMO-1")
    assert by_key.id == first.id
    twin = await project_named(tracker, "demo-project")
    with pytest.raises(TrackerError) as other:
        await tracker.get_issue(twin, first.id)
    assert other.value.errno == errno.ENOENT
    assert tracker.issue_reference(demo, ".directory") is None
    assert uuid_hex("not-a-uuid") is None


async def test_flags_become_read_only_files_and_refused_creates(
    waldur: tuple[WaldurTracker, Recorder],
) -> None:
    tracker, sent = waldur
    twin = await project_named(tracker, "demo-project")
    printer, closed, frozen = await tracker.list_issues(twin)
    [final] = await tracker.list_attachments(closed)
    assert final.read_only and not any(a.read_only for a in await tracker.list_attachments(printer))
    before = len(sent.sent)
    assert (await tracker.permissions(frozen)).create is False
    assert (await tracker.permissions(printer)).create is None
    assert len(sent.sent) == before  # told by the listing, no request


async def test_drf_refusals_map_to_errno(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, _ = waldur
    twin = await project_named(tracker, "demo-project")
    printer, closed, frozen = await tracker.list_issues(twin)
    [final] = await tracker.list_attachments(closed)
    with pytest.raises(TrackerError) as kept:
        await tracker.delete(closed, final)
    assert kept.value.errno == errno.EPERM and "Destroying is not available." in str(kept.value)
    with pytest.raises(TrackerError) as refused:
        await tracker.upload(frozen, "a.txt", 1, lambda: io.BytesIO(b"a"))
    assert refused.value.errno == errno.EACCES and "Adding attachments is not available." in str(
        refused.value
    )
    state.config.upload_limit = 10
    with pytest.raises(TrackerError) as big:
        await tracker.upload(printer, "big.txt", 100, lambda: io.BytesIO(b"b" * 100))
    assert big.value.errno == errno.EFBIG and "<html>" not in str(big.value)
    state.config.upload_limit = None
    with pytest.raises(TrackerError) as empty:
        await tracker.upload(printer, "empty.txt", 0, lambda: io.BytesIO(b""))
    assert empty.value.errno == errno.EINVAL and "file: The submitted file is empty." in str(empty.value)


async def test_an_upload_returns_the_name_waldur_stored(
    waldur: tuple[WaldurTracker, Recorder], state: EmulatorState
) -> None:
    tracker, _ = waldur
    demo = await project_named(tracker, "demo")
    plain = next(i for i in await tracker.list_issues(demo) if i.key == "DEMO-5")
    stored = await tracker.upload(plain, "my report (final).pdf", 6, lambda: io.BytesIO(b"%PDF-1"))
    assert stored.filename == "my_report_final.pdf"
    assert stored.mime_type == "application/pdf"
    assert [a.id for a in state.store.attachments.values() if a.issue == plain.id] == [stored.id]


class Body(httpx.AsyncByteStream):
    """A response body that is streamed, as a real one is."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"abc"


def origin_tracker(
    monkeypatch: pytest.MonkeyPatch, seen: list[httpx.Request]
) -> tuple[WaldurTracker, Callable[[str], Attachment]]:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Length": "3"}, stream=Body())

    tracker = make_tracker(monkeypatch, httpx.MockTransport(answer))

    def record(url: str) -> Attachment:
        return Attachment(id="a" * 32, filename="f", size=3, created=0.0, content_url=url)

    return tracker, record


@pytest.mark.parametrize(
    ("file_url", "sent_to", "credentials"),
    [
        ("http://waldur.test/api/media/0123/", "http://waldur.test/api/media/0123/", True),
        # Waldur behind a TLS proxy, or on its internal port, writes its own origin otherwise;
        # its own routes are used on the profile's origin.
        ("https://waldur.test/api/media/0123/", "http://waldur.test/api/media/0123/", True),
        ("http://internal:8000/media/0123/", "http://waldur.test/media/0123/", True),
        ("HTTP://WALDUR.test:80/other/0123", "http://waldur.test:80/other/0123", True),
        ("https://files.example.com/blob/0123", "https://files.example.com/blob/0123", False),
        ("http://waldur.test:8000/blob/0123", "http://waldur.test:8000/blob/0123", False),
    ],
)
async def test_file_urls_get_credentials_only_on_the_trackers_own_origin(
    monkeypatch: pytest.MonkeyPatch, file_url: str, sent_to: str, credentials: bool
) -> None:
    seen: list[httpx.Request] = []
    tracker, record = origin_tracker(monkeypatch, seen)
    try:
        async with tracker.open_range(record(file_url), 0, 3) as chunks:
            data = b"".join([chunk async for chunk in chunks])
    finally:
        await tracker.aclose()
    assert data == b"abc"
    [request] = seen
    assert str(request.url) == sent_to
    assert ("authorization" in request.headers) is credentials
    if credentials:
        assert request.headers["authorization"] == f"Token {TOKEN}"


def test_attachment_records_keep_the_uuid_as_the_api_writes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = make_tracker(monkeypatch, httpx.MockTransport(lambda r: httpx.Response(500)))
    dashed = "30a44649-ee2d-4a67-ba1f-17938a8a5f6e"
    item = {
        "uuid": dashed,
        "issue": f"{HOST}/api/support-issues/784f/",
        "file": f"{HOST}/api/media/x/",
        "file_size": 5,
        "file_name": "panda.jpg",
        "created": "2018-01-11T19:41:50.451396Z",
        "mime_type": "image/jpg",
        "destroy_is_available": False,
    }
    attachment = tracker._attachment(item)
    assert attachment.id == dashed and attachment.read_only and attachment.created == 1515699710.451396
    with pytest.raises(TrackerError):
        tracker._attachment({**item, "file_size": "5"})
    issue = tracker._issue({"uuid": "ab" * 16, "key": "", "summary": "s"}, None)
    assert isinstance(issue, Issue) and issue.updated == 0.0
