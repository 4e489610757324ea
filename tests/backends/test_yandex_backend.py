"""The Yandex Tracker backend against the emulator's Yandex dialect, in process.

What the shared suite cannot see: the scroll a queue past the search window needs, the
comments that name a file's comment, the organisation header, the profile's rules, and
Tracker's 423 and header-less 429.
"""

from __future__ import annotations

import errno
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.backends import make_tracker
from trackerfs.backends.base import Tracker
from trackerfs.backends.yandex import YandexTracker, unfoldable
from trackerfs.config import profile_from_table
from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.dialects.yandex import YandexDialect
from trackerfs.emulator.faults import parse_fault
from trackerfs.emulator.state import EmulatorState
from trackerfs.errors import ConfigError, NotFoundError, PermissionDeniedError
from trackerfs.model import Issue, Project

TOKEN = "yandex-backend-token"
TOKEN_ENV = "TRACKERFS_YANDEX_TEST_TOKEN"
API = "http://tracker.test"
ORG = "12345"


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded Yandex emulator with pages of five."""
    return EmulatorState(EmulatorOptions(tracker="yandex", token=TOKEN, page_size=5), tmp_path)


def profile_table(**keys: Any) -> dict[str, Any]:
    return {"tracker": "yandex", "url": API, "token_env": TOKEN_ENV, **keys}


@pytest.fixture
async def tracker(state: EmulatorState, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[YandexTracker]:
    """The backend for organisation ORG over the in-process emulator."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    backend = make_tracker(
        profile_from_table("p", profile_table(org_id=ORG)),
        transport=httpx.ASGITransport(app=create_app(state)),
    )
    assert isinstance(backend, YandexTracker)
    yield backend
    await backend.aclose()


async def project(tracker: Tracker, key: str) -> Project:
    return next(p for p in await tracker.list_projects() if p.key == key)


def requests(state: EmulatorState, path: str) -> list[dict[str, Any]]:
    return [entry for entry in state.log.entries() if entry["path"] == path]


def files(issue: Issue) -> list[str]:
    return [a.filename for a in issue.attachments or ()]


async def test_a_queue_listing_is_its_search_pages_with_the_files(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    await tracker.check_account()
    demo = await project(tracker, "DEMO")
    assert demo.web_url == f"{API}/DEMO" and demo.id
    state.log.clear()
    issues = await tracker.list_issues(demo)
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 13)]
    assert files(issues[0]) == [
        "readme.txt",
        "diagram.png",
        "spec.pdf",
        "archive.zip",
        "report.docx",
        "big.bin",
    ]
    assert all(len(i.id) == 24 and i.web_url == f"{API}/{i.key}" for i in issues)
    searches = requests(state, "/v2/issues/_search")
    # 12 issues at five a page: three pages, and nothing else (no comments, no lookups)
    assert len(state.log.entries()) == len(searches) == 3
    assert all(s["method"] == "POST" and s["query"]["expand"] == "attachments" for s in searches)
    assert all(s["headers"]["x-org-id"] == ORG for s in searches)
    readme = issues[0].attachments[0] if issues[0].attachments else None
    assert readme is not None and readme.mime_type == "text/plain" and readme.author_id and readme.created > 0
    assert readme.content_url.startswith(f"{API}/v2/issues/DEMO-1/attachments/{readme.id}/")


async def test_a_file_posted_with_a_comment_names_the_comment(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    yan = await project(tracker, "YAN")
    state.log.clear()
    issues = {i.key: i for i in await tracker.list_issues(yan)}
    # only the issue that has comments had them read
    read = [e["path"] for e in state.log.entries() if "comments" in e["path"]]
    assert read == ["/v2/issues/YAN-1/comments"]
    photo, log = issues["YAN-1"].attachments or ()
    [comment] = (await httpx_get(state, "/v2/issues/YAN-1/comments")).json()
    assert dict(log.attributes) == {"comment": str(comment["id"])}
    assert dict(photo.attributes) == {}


async def test_comments_are_read_again_only_when_the_issue_changed(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    yan = await project(tracker, "YAN")
    await tracker.list_issues(yan)
    state.log.clear()
    await tracker.list_issues(yan)
    assert not [e for e in state.log.entries() if "comments" in e["path"]]
    issue = state.store.issue_by_key("YAN-1")
    assert issue is not None
    comment = state.store.add_comment(issue.id, "one more log", author=state.token_owner)
    state.store.add_attachment(issue.id, "late.log", b"late\n", author=state.token_owner, comment=comment.id)
    issues = {i.key: i for i in await tracker.list_issues(yan)}
    late = next(a for a in issues["YAN-1"].attachments or () if a.filename == "late.log")
    assert dict(late.attributes) == {"comment": str(int(comment.id))}
    assert len([e for e in state.log.entries() if "comments" in e["path"]]) == 1


async def httpx_get(state: EmulatorState, path: str) -> httpx.Response:
    headers = {"Authorization": f"OAuth {TOKEN}", "X-Org-ID": ORG}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)), base_url=API, headers=headers
    ) as client:
        return await client.get(path)


async def test_a_queue_past_the_search_window_is_scrolled_and_the_scroll_released(
    tracker: YandexTracker, state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(YandexDialect, "search_window", 10)
    monkeypatch.setattr(YandexTracker, "search_window", 10)
    monkeypatch.setattr(YandexTracker, "per_scroll", 5)
    demo = await project(tracker, "DEMO")
    state.log.clear()
    issues = await tracker.list_issues(demo)
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 13)]
    assert files(issues[0])[0] == "readme.txt"
    searches = requests(state, "/v2/issues/_search")
    # one page told the total; then a sorted scroll of five a time, each with the files
    assert "scrollType" not in searches[0]["query"]
    assert searches[1]["query"]["scrollType"] == "sorted"
    follow_ups = [s["query"] for s in searches[2:]]
    assert len(follow_ups) == 2 and all("scrollId" in q and q["expand"] == "attachments" for q in follow_ups)
    assert all(s["status"] == 200 for s in searches)
    [release] = requests(state, "/v2/system/search/scroll/_clear")
    assert release["status"] == 200 and release["headers"]["x-org-id"] == ORG


async def test_the_released_scroll_answers_404(
    tracker: YandexTracker, state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(YandexDialect, "search_window", 10)
    monkeypatch.setattr(YandexTracker, "search_window", 10)
    monkeypatch.setattr(YandexTracker, "per_scroll", 5)
    await tracker.list_issues(await project(tracker, "DEMO"))
    scroll = next(e["query"]["scrollId"] for e in state.log.entries() if "scrollId" in e["query"])
    headers = {"Authorization": f"OAuth {TOKEN}", "X-Org-ID": ORG}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)), base_url=API, headers=headers
    ) as client:
        again = await client.post(
            "/v2/issues/_search", params={"scrollId": scroll}, json={"filter": {"queue": "DEMO"}}
        )
    assert again.status_code == 404


async def test_a_capped_listing_within_the_window_is_never_scrolled(
    state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setattr(YandexDialect, "search_window", 10)
    monkeypatch.setattr(YandexTracker, "search_window", 10)
    profile = profile_from_table("p", profile_table(org_id=ORG, max_issues=7))
    backend = make_tracker(profile, transport=httpx.ASGITransport(app=create_app(state)))
    try:
        issues = await backend.list_issues(await project(backend, "DEMO"))
    finally:
        await backend.aclose()
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 8)]
    searches = requests(state, "/v2/issues/_search")
    assert len(searches) == 2 and not any("scrollType" in s["query"] for s in searches)


async def test_a_moved_issue_answers_its_old_key_in_its_new_queue_only(tracker: YandexTracker) -> None:
    yan, ops = await project(tracker, "YAN"), await project(tracker, "OPS")
    assert tracker.issue_reference(yan, "OPS-3") == "OPS-3"
    moved = await tracker.get_issue(yan, "OPS-3")
    assert moved.key == "YAN-2" and files(moved) == ["moved.txt"]
    with pytest.raises(NotFoundError):
        await tracker.get_issue(ops, "OPS-3")
    by_id = await tracker.get_issue_by_reference(tracker.locator(moved))
    assert by_id.key == "YAN-2"
    assert tracker.issue_reference(yan, moved.id) == moved.id
    assert tracker.issue_reference(yan, ".directory") is None
    assert tracker.issue_reference(yan, "Thumbs.db") is None


async def test_edits_disabled_is_eacces_with_trackers_message_logged(
    tracker: YandexTracker, state: EmulatorState, caplog: pytest.LogCaptureFixture
) -> None:
    state.config.update({"edits_disabled": True})
    issue = await tracker.get_issue(await project(tracker, "DEMO"), "DEMO-5")
    with (
        caplog.at_level(logging.ERROR, logger="trackerfs.backends.yandex"),
        pytest.raises(PermissionDeniedError) as refused,
    ):
        await tracker.upload(issue, "new.txt", 3, lambda: io.BytesIO(b"abc"))
    assert refused.value.errno == errno.EACCES and refused.value.status == 423
    assert "Object edits disabled." in caplog.text
    assert not [a for a in state.store.attachments.values() if a.filename == "new.txt"]


async def test_a_rate_limit_without_retry_after_is_retried(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    demo = await project(tracker, "DEMO")
    state.faults.add(parse_fault({"path": "/v2/issues/_search", "status": 429, "headers": {}, "count": 2}))
    state.log.clear()
    issues = await tracker.list_issues(demo)
    assert len(issues) == 12
    statuses = [s["status"] for s in requests(state, "/v2/issues/_search")]
    assert statuses == [429, 429, 200, 200, 200]


async def test_upload_names_the_file_in_the_query_and_delete_removes_it(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    issue = await tracker.get_issue(await project(tracker, "DEMO"), "DEMO-5")
    created = await tracker.upload(issue, "a b ü.txt", 5, lambda: io.BytesIO(b"hello"))
    assert created.filename == "a b ü.txt" and created.size == 5
    [upload] = [e for e in state.log.entries() if e["method"] == "POST" and "attachments" in e["path"]]
    assert upload["status"] == 201 and upload["query"]["filename"] == "a b ü.txt"
    assert [p["part"] for p in upload["upload"]] == ["file"]
    await tracker.delete(issue, created)
    assert created.id not in state.store.attachments


async def test_dot_names_keep_an_encoded_content_url(tracker: YandexTracker, state: EmulatorState) -> None:
    target = state.store.issue_by_key("DEMO-5")
    assert target is not None
    for name in (".", ".."):
        state.store.add_attachment(target.id, name, f"named {name}\n".encode(), author=state.token_owner)
    issue = await tracker.get_issue(await project(tracker, "DEMO"), "DEMO-5")
    for attachment in issue.attachments or ():
        assert attachment.content_url.endswith("/" + attachment.filename.replace(".", "%2E"))
        async with tracker.open_range(attachment, 0, attachment.size) as chunks:
            assert b"".join([c async for c in chunks]) == f"named {attachment.filename}\n".encode()
    assert (
        unfoldable("http://h/v2/issues/A-1/attachments/7/..") == "http://h/v2/issues/A-1/attachments/7/%2E%2E"
    )
    assert (
        unfoldable("http://h/v2/issues/A-1/attachments/7/a.txt")
        == "http://h/v2/issues/A-1/attachments/7/a.txt"
    )


async def test_an_iam_token_goes_with_the_cloud_organisation(
    state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    profile = profile_from_table("p", profile_table(auth="bearer", cloud_org_id=ORG))
    backend = make_tracker(profile, transport=httpx.ASGITransport(app=create_app(state)))
    try:
        await backend.check_account()
    finally:
        await backend.aclose()
    [check] = requests(state, "/v2/myself")
    assert check["status"] == 200 and check["headers"].get("x-cloud-org-id") == ORG
    assert "x-org-id" not in check["headers"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "exactly one of org_id"),
        ({"org_id": ORG, "cloud_org_id": ORG}, "exactly one of org_id"),
        ({"auth": "bearer", "org_id": ORG}, "works only with cloud_org_id"),
    ],
)
def test_the_organisation_keys_are_checked(
    keys: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with pytest.raises(ConfigError, match=message):
        make_tracker(profile_from_table("p", profile_table(**keys)))


def test_the_web_ui_of_tracker_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    url = "https://api.tracker.yandex.net"
    for keys, web in (
        ({"org_id": ORG}, "https://tracker.yandex.ru"),
        ({"cloud_org_id": ORG}, "https://tracker.yandex.cloud"),
        ({"org_id": ORG, "web_url": "https://tracker.example/"}, "https://tracker.example"),
    ):
        backend = make_tracker(profile_from_table("p", {**profile_table(**keys), "url": url}))
        assert isinstance(backend, YandexTracker) and backend.web == web


async def test_content_from_a_server_ignoring_range_is_still_right(
    tracker: YandexTracker, state: EmulatorState
) -> None:
    state.config.update({"range_support": False})
    issue = await tracker.get_issue(await project(tracker, "DEMO"), "DEMO-1")
    big = next(a for a in issue.attachments or () if a.filename == "big.bin")
    expected = state.store.blob_path(state.store.attachments[big.id]).read_bytes()
    assert tracker.honours_range(big)
    async with tracker.open_range(big, 1000, 5000) as chunks:
        assert b"".join([c async for c in chunks]) == expected[1000:5000]
    # the whole body came for a part: the reader is told to download it once, whole
    assert not tracker.honours_range(big)


async def test_pages_without_a_link_follow_the_total_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        queues = [{"key": f"Q{page}{n}", "id": f"{page}{n}", "name": "q"} for n in range(2)]
        return httpx.Response(200, json=queues, headers={"X-Total-Pages": "3", "X-Total-Count": "6"})

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    backend = make_tracker(
        profile_from_table("p", profile_table(org_id=ORG)), transport=httpx.MockTransport(answer)
    )
    try:
        queues = await backend.list_projects()
    finally:
        await backend.aclose()
    assert [q.key for q in queues] == ["Q10", "Q11", "Q20", "Q21", "Q30", "Q31"]


async def test_a_token_of_another_organisation_names_the_key(
    state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    profile = profile_from_table("p", profile_table(org_id="999"))
    backend = make_tracker(profile, transport=httpx.ASGITransport(app=create_app(state)))
    try:
        with pytest.raises(PermissionDeniedError, match="not in organisation 999 of org_id") as refused:
            await backend.check_account()
    finally:
        await backend.aclose()
    assert refused.value.errno == errno.EACCES and "You are not authorized" in str(refused.value)


async def test_a_capped_listing_that_stops_inside_a_scroll_releases_it(
    state: EmulatorState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setattr(YandexDialect, "search_window", 5)
    monkeypatch.setattr(YandexTracker, "search_window", 5)
    monkeypatch.setattr(YandexTracker, "per_scroll", 5)
    profile = profile_from_table("p", profile_table(org_id=ORG, max_issues=6))
    backend = make_tracker(profile, transport=httpx.ASGITransport(app=create_app(state)))
    try:
        issues = await backend.list_issues(await project(backend, "DEMO"))
    finally:
        await backend.aclose()
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 7)]
    scrolls = [s for s in requests(state, "/v2/issues/_search") if "scroll" in "".join(s["query"])]
    assert len(scrolls) == 2  # the scroll still had issues when the cap was reached
    [release] = requests(state, "/v2/system/search/scroll/_clear")
    assert release["status"] == 200
