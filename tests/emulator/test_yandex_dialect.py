"""The Yandex Tracker dialect of the emulator, in process: auth, paging, search, attachments."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.dialects.yandex import (
    NO_SCROLL,
    ONE_SELECTOR,
    YandexDialect,
    content_name,
)
from trackerfs.emulator.state import EmulatorState

TOKEN = "yandex-token"
ORG = "12345"
API = "http://tracker.test"
AUTH = {"Authorization": f"OAuth {TOKEN}", "X-Org-ID": ORG}


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded Yandex emulator whose pages hold at most five items."""
    return EmulatorState(EmulatorOptions(tracker="yandex", token=TOKEN, page_size=5), tmp_path)


@pytest.fixture
async def api(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API app, in process, with an OAuth token and the organisation."""
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=AUTH) as client:
        yield client


def by_name(state: EmulatorState, filename: str) -> Any:
    return next(a for a in state.store.attachments.values() if a.filename == filename)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_yandex_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["errors"] == {} and body["statusCode"] == status
    assert len(body["errorMessages"]) == 1
    if message is not None:
        assert body["errorMessages"] == [message]


# -- auth ------------------------------------------------------------------------------------


async def test_credentials_and_the_organisation_are_required(api: httpx.AsyncClient) -> None:
    for headers in (
        {"Authorization": "", "X-Org-ID": ORG},
        {"Authorization": "OAuth wrong", "X-Org-ID": ORG},
        {"Authorization": f"Basic {TOKEN}", "X-Org-ID": ORG},
        # the org header is part of the access set-up: without it the user is not authorised
        {"Authorization": f"OAuth {TOKEN}", "X-Org-ID": ""},
        # an IAM token is for Yandex Cloud organisations only
        {"Authorization": f"Bearer {TOKEN}", "X-Org-ID": ORG},
    ):
        response = await api.get("/v2/queues/", headers=headers)
        assert_yandex_error(response, 401)
        assert response.json()["errorMessages"][0].startswith("The user is not authorized")
    wrong_org = await api.get("/v2/queues/", headers={"X-Org-ID": "999"})
    assert_yandex_error(wrong_org, 403, "You are not authorized to perform this action.")


async def test_header_without_org_id_value_is_401(state: EmulatorState) -> None:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API) as client:
        response = await client.get("/v2/queues/", headers={"Authorization": f"OAuth {TOKEN}"})
    assert_yandex_error(response, 401)


async def test_cloud_org_header_and_iam_token(api: httpx.AsyncClient) -> None:
    # the python client sends "X-Org-Id: not provided" beside a cloud organisation
    cloud = {"Authorization": f"Bearer {TOKEN}", "X-Org-ID": "not provided", "X-Cloud-Org-ID": ORG}
    assert (await api.get("/v2/myself", headers=cloud)).status_code == 200
    oauth_cloud = {"X-Org-ID": "not provided", "X-Cloud-Org-ID": ORG}
    assert (await api.get("/v2/myself", headers=oauth_cloud)).status_code == 200
    assert (await api.get("/v3/myself")).json()["self"].startswith(f"{API}/v3/users/")


async def test_org_id_option_chooses_the_organisation(tmp_path: Path) -> None:
    state = EmulatorState(EmulatorOptions(tracker="yandex", token=TOKEN, org_id="777"), tmp_path)
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=AUTH) as client:
        assert (await client.get("/v2/myself")).status_code == 403
        assert (await client.get("/v2/myself", headers={"X-Org-ID": "777"})).status_code == 200


async def test_created_by_links_to_a_user(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v2/issues/DEMO-1/attachments")).json()
    author = (await api.get(listed[0]["createdBy"]["self"])).json()
    assert author["login"] == "alice" and author["display"] == "Alice Example"
    assert (await api.get("/v2/users/tester")).json()["email"] == "tester@example.com"
    assert_yandex_error(await api.get("/v2/users/nobody"), 404)


async def test_unknown_path_is_404_in_tracker_shape(api: httpx.AsyncClient) -> None:
    assert_yandex_error(await api.get("/v2/nothing/here"), 404)


# -- queues and paging -----------------------------------------------------------------------


async def test_queues_page_with_total_headers_and_links(api: httpx.AsyncClient) -> None:
    first = await api.get("/v2/queues/", params={"perPage": 2})
    assert [q["key"] for q in first.json()] == ["DEMO", "OPS"]
    assert first.headers["x-total-count"] == "3" and first.headers["x-total-pages"] == "2"
    links = first.links
    assert links["next"]["url"] == f"{API}/v2/queues/?perPage=2&page=2"
    assert links["seek"]["url"] == f"{API}/v2/queues/?perPage=2{{&page}}"
    assert "prev" not in links
    second = await api.get(links["next"]["url"])
    assert [q["key"] for q in second.json()] == ["YAN"]
    assert "next" not in second.links and second.links["prev"]["url"].endswith("page=1")
    # perPage is capped by the emulator's page size (5)
    assert len((await api.get("/v2/queues", params={"perPage": 100})).json()) == 3
    assert_yandex_error(await api.get("/v2/queues/", params={"page": "zero"}), 400)


async def test_queue_by_key_is_case_sensitive(api: httpx.AsyncClient) -> None:
    queue = (await api.get("/v2/queues/DEMO")).json()
    assert queue["key"] == "DEMO" and queue["name"] == "Demo project"
    assert queue["self"] == f"{API}/v2/queues/DEMO"
    assert_yandex_error(await api.get("/v2/queues/demo"), 404)


# -- search ----------------------------------------------------------------------------------


async def test_search_by_queue_pages_sorted_by_key_and_keeps_expand(api: httpx.AsyncClient) -> None:
    response = await api.post("/v2/issues/_search", params={"expand": "attachments"}, json={"queue": "DEMO"})
    assert [i["key"] for i in response.json()] == [f"DEMO-{n}" for n in range(1, 6)]
    assert response.headers["x-total-count"] == "12" and response.headers["x-total-pages"] == "3"
    assert [a["name"] for a in response.json()[1]["attachments"]] == [
        "notes.txt",
        "notes.txt",
        "notes (2).txt",
    ]
    following = response.links["next"]["url"]
    assert "expand=attachments" in following and following.endswith("page=2")
    second = await api.post(following, json={"queue": "DEMO"})
    assert [i["key"] for i in second.json()] == [f"DEMO-{n}" for n in range(6, 11)]
    assert "attachments" in second.json()[0]
    plain = await api.post("/v2/issues/_search", json={"queue": "OPS"})
    assert "attachments" not in plain.json()[0]


async def test_search_takes_one_selector_and_null_counts_as_absent(api: httpx.AsyncClient) -> None:
    for body in (
        {"queue": "DEMO", "keys": ["DEMO-1"]},
        {"keys": ["DEMO-1"], "filter": {"queue": "DEMO"}},
        {"filter": {"queue": "DEMO"}, "query": "Queue: DEMO"},
    ):
        assert_yandex_error(await api.post("/v2/issues/_search", json=body), 400, ONE_SELECTOR)
    # what the python client sends: every key, null when unused
    nulls = {
        "filter": None,
        "filterId": None,
        "query": None,
        "keys": ["OPS-2", "DEMO-3"],
        "queue": None,
        "order": None,
    }
    found = await api.post("/v2/issues/_search", json=nulls)
    assert [i["key"] for i in found.json()] == ["OPS-2", "DEMO-3"]


async def test_search_by_filter_order_and_query(api: httpx.AsyncClient) -> None:
    body = {"filter": {"queue": "DEMO"}, "order": "-key"}
    descending = await api.post("/v2/issues/_search", json=body, params={"perPage": 3})
    assert [i["key"] for i in descending.json()] == ["DEMO-12", "DEMO-11", "DEMO-10"]
    summary = await api.post("/v2/issues/_search", json={"filter": {"summary": "runbook"}})
    assert [i["key"] for i in summary.json()] == ["OPS-1"]
    assert_yandex_error(await api.post("/v2/issues/_search", json={"filter": {"colour": "red"}}), 400)
    query = await api.post("/v2/issues/_search", json={"query": 'Queue: OPS "Sort By": Key DESC'})
    assert [i["key"] for i in query.json()] == ["OPS-2", "OPS-1"]
    keys = await api.post("/v2/issues/_search", json={"query": "Key: DEMO-2, OPS-1"})
    assert [i["key"] for i in keys.json()] == ["DEMO-2", "OPS-1"]
    assert_yandex_error(await api.post("/v2/issues/_search", json={"query": "Assignee: me()"}), 400)
    assert_yandex_error(await api.post("/v2/issues/_search", json={"queue": "NOPE"}), 400)


async def test_paged_search_stops_at_the_window(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(YandexDialect, "search_window", 10)
    past = await api.post("/v2/issues/_search", json={"queue": "DEMO"}, params={"perPage": 5, "page": 3})
    assert_yandex_error(past, 400)
    assert (
        await api.post("/v2/issues/_search", json={"queue": "DEMO"}, params={"page": 2})
    ).status_code == 200


async def test_scroll_with_filter_then_release(api: httpx.AsyncClient) -> None:
    body = {"filter": {"queue": "DEMO"}}
    params = {"scrollType": "sorted", "perScroll": 5, "scrollTTLMillis": 10_000, "expand": "attachments"}
    first = await api.post("/v2/issues/_search", json=body, params=params)
    assert first.status_code == 200 and len(first.json()) == 5
    scroll_id, token = first.headers["x-scroll-id"], first.headers["x-scroll-token"]
    assert first.headers["x-total-count"] == "12"
    keys = [i["key"] for i in first.json()]
    following = first.links["next"]["url"]
    while True:
        page = await api.post(following, json=body)
        assert page.status_code == 200 and page.headers["x-scroll-id"] == scroll_id
        keys += [i["key"] for i in page.json()]
        assert all("attachments" in i for i in page.json())
        if "next" not in page.links:
            break
        following = page.links["next"]["url"]
    assert keys == [f"DEMO-{n}" for n in range(1, 13)]
    # a wrong token releases nothing; the right one does
    await api.post("/v2/system/search/scroll/_clear", json={scroll_id: "wrong"})
    assert (
        await api.post("/v2/issues/_search", json=body, params={"scrollId": scroll_id})
    ).status_code == 200
    cleared = await api.post("/v2/system/search/scroll/_clear", json={scroll_id: token})
    assert cleared.status_code == 200
    gone = await api.post("/v2/issues/_search", json=body, params={"scrollId": scroll_id})
    assert_yandex_error(gone, 404)


async def test_scroll_needs_a_filter(api: httpx.AsyncClient) -> None:
    for body in ({"queue": "DEMO"}, {"keys": ["DEMO-1"]}):
        refused = await api.post("/v2/issues/_search", json=body, params={"scrollType": "unsorted"})
        assert_yandex_error(refused, 400, NO_SCROLL)


# -- issues, aliases, comments ---------------------------------------------------------------


async def test_issue_by_key_id_and_old_key(api: httpx.AsyncClient, state: EmulatorState) -> None:
    issue = (await api.get("/v2/issues/DEMO-1", params={"expand": "attachments"})).json()
    assert issue["key"] == "DEMO-1" and len(issue["id"]) == 24
    int(issue["id"], 16)
    assert [a["name"] for a in issue["attachments"]][:2] == ["readme.txt", "diagram.png"]
    assert (await api.get(f"/v2/issues/{issue['id']}")).json()["key"] == "DEMO-1"
    moved = (await api.get("/v2/issues/OPS-3", params={"expand": "attachments"})).json()
    assert moved["key"] == "YAN-2" and moved["aliases"] == ["OPS-3"]
    assert moved["queue"]["key"] == "YAN"
    assert [a["name"] for a in moved["attachments"]] == ["moved.txt"]
    assert moved["attachments"][0]["self"].startswith(f"{API}/v2/issues/YAN-2/attachments/")
    assert_yandex_error(await api.get("/v2/issues/DEMO-99"), 404)


async def test_comment_attachments_are_listed_with_the_issue(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v2/issues/YAN-1/attachments")).json()
    assert [a["name"] for a in listed] == ["photo.png", "run.log"]
    comments = (await api.get("/v2/issues/YAN-1/comments")).json()
    assert len(comments) == 1 and isinstance(comments[0]["id"], int)
    assert [a["id"] for a in comments[0]["attachments"]] == [listed[1]["id"]]
    assert comments[0]["attachments"][0]["display"] == "run.log"
    # the issue record counts its comments; one without comments leaves the count out
    assert (await api.get("/v2/issues/YAN-1")).json()["commentWithoutExternalMessageCount"] == 1
    assert "commentWithoutExternalMessageCount" not in (await api.get("/v2/issues/DEMO-1")).json()


# -- attachments -----------------------------------------------------------------------------


async def test_attachment_list_with_and_without_slash(api: httpx.AsyncClient, state: EmulatorState) -> None:
    listed = (await api.get("/v2/issues/DEMO-2/attachments/")).json()
    assert listed == (await api.get("/v2/issues/DEMO-2/attachments")).json()
    first = listed[0]
    assert first["content"] == f"{first['self']}/notes.txt"
    one = await api.get(first["self"])
    assert one.json() == first
    assert_yandex_error(await api.get("/v2/issues/DEMO-1/attachments/" + first["id"]), 404)


async def test_content_urls_survive_hostile_names(api: httpx.AsyncClient, state: EmulatorState) -> None:
    assert content_name(".") == "%2E" and content_name("..") == "%2E%2E" and content_name("a/b") == "a%2Fb"
    listed = (await api.get("/v2/issues/DEMO-3/attachments")).json()
    for item in listed:
        response = await api.get(item["content"])
        assert response.status_code == 200, item["name"]
        assert response.content == state.store.blob_path(state.store.attachments[item["id"]]).read_bytes()


async def test_content_honours_ranges_unless_switched_off(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    big = by_name(state, "big.bin")
    data = state.store.blob_path(big).read_bytes()
    url = f"/v2/issues/DEMO-1/attachments/{big.id}/big.bin"
    part = await api.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert (await api.get(url, headers={"Range": f"bytes={len(data)}-"})).status_code == 416
    await api.post("/_emulator/config", json={"range_support": False})
    whole = await api.get(url, headers={"Range": "bytes=100-199"})
    assert whole.status_code == 200 and sha(whole.content) == big.sha256


async def test_images_have_thumbnails_and_sizes(api: httpx.AsyncClient, state: EmulatorState) -> None:
    listed = {a["name"]: a for a in (await api.get("/v2/issues/DEMO-1/attachments")).json()}
    diagram = listed["diagram.png"]
    assert diagram["metadata"] == {"size": "64x64"} and diagram["mimetype"] == "image/png"
    thumbnail = await api.get(diagram["thumbnail"])
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\x89PNG")
    assert "thumbnail" not in listed["readme.txt"]
    readme = listed["readme.txt"]["id"]
    assert_yandex_error(await api.get(f"/v2/issues/DEMO-1/thumbnails/{readme}"), 404)


async def test_upload_names_the_file_by_query_and_answers_201(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    payload = b"uploaded bytes\n" * 50
    response = await api.post(
        "/v2/issues/DEMO-5/attachments/",
        params={"filename": "report ü.txt"},
        files={"file": ("file", payload)},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "report ü.txt" and created["size"] == len(payload)
    assert created["createdBy"]["id"] == "tester" and created["mimetype"] == "text/plain"
    stored = state.store.attachments[created["id"]]
    assert stored.sha256 == sha(payload)
    assert (await api.get(created["content"])).content == payload
    log = (await api.get("/_emulator/requests")).json()
    assert log[-2]["upload"] == [
        {"part": "file", "filename": "file", "size": len(payload), "sha256": sha(payload)}
    ]
    # without ?filename= the part's own name is used
    plain = await api.post("/v2/issues/DEMO-5/attachments", files={"file": ("plain.bin", b"x")})
    assert plain.status_code == 201 and plain.json()["name"] == "plain.bin"


async def test_upload_rules(api: httpx.AsyncClient) -> None:
    url = "/v2/issues/DEMO-5/attachments/"
    assert_yandex_error(await api.post(url, files={"other": ("a.txt", b"x")}), 400)
    assert_yandex_error(await api.post("/v2/issues/DEMO-99/attachments/", files={"file": ("a", b"x")}), 404)
    await api.post("/_emulator/config", json={"upload_limit": 10})
    assert_yandex_error(await api.post(url, files={"file": ("a", b"x" * 11)}), 413)
    await api.post("/_emulator/config", json={"create_attachments": False})
    assert_yandex_error(await api.post(url, files={"file": ("a", b"x")}), 403)


async def test_delete_with_and_without_slash(api: httpx.AsyncClient, state: EmulatorState) -> None:
    first, second = (a.id for a in state.store.attachments.values() if a.filename == "notes.txt")
    assert (await api.delete(f"/v2/issues/DEMO-2/attachments/{first}/")).status_code == 204
    assert (await api.delete(f"/v2/issues/DEMO-2/attachments/{second}")).status_code == 204
    assert first not in state.store.attachments and second not in state.store.attachments
    assert_yandex_error(await api.delete(f"/v2/issues/DEMO-2/attachments/{first}/"), 404)
    await api.post("/_emulator/config", json={"delete_attachments": "none"})
    readme = by_name(state, "readme.txt").id
    assert_yandex_error(await api.delete(f"/v2/issues/DEMO-1/attachments/{readme}/"), 403)


async def test_edits_disabled_switch_answers_423(api: httpx.AsyncClient, state: EmulatorState) -> None:
    config = (await api.post("/_emulator/config", json={"edits_disabled": True})).json()
    assert config["edits_disabled"] is True
    readme = by_name(state, "readme.txt").id
    assert_yandex_error(await api.delete(f"/v2/issues/DEMO-1/attachments/{readme}/"), 423)
    upload = await api.post("/v2/issues/DEMO-1/attachments/", files={"file": ("a", b"x")})
    assert_yandex_error(upload, 423)
    assert readme in state.store.attachments


async def test_rename_uploads_switch_stores_the_name_waldur_would(api: httpx.AsyncClient) -> None:
    await api.post("/_emulator/config", json={"rename_uploads": True})
    params = {"filename": "my report.pdf"}
    first = await api.post("/v2/issues/DEMO-5/attachments/", params=params, files={"file": ("file", b"1")})
    second = await api.post("/v2/issues/DEMO-5/attachments/", params=params, files={"file": ("file", b"2")})
    assert first.status_code == second.status_code == 201
    assert first.json()["name"] == "my_report.pdf"
    assert second.json()["name"] not in ("my report.pdf", "my_report.pdf")
    await api.post("/_emulator/config", json={"rename_uploads": False})
    kept = await api.post("/v2/issues/DEMO-5/attachments/", params=params, files={"file": ("file", b"3")})
    assert kept.json()["name"] == "my report.pdf"


async def test_rate_limit_fault_without_retry_after(api: httpx.AsyncClient) -> None:
    await api.post("/_emulator/faults", json={"path": "/v2/queues", "status": 429, "headers": {}})
    limited = await api.get("/v2/queues/")
    assert_yandex_error(limited, 429)
    assert "retry-after" not in limited.headers
    assert (await api.get("/v2/queues/")).status_code == 200
    log = (await api.get("/_emulator/requests")).json()
    assert [e["status"] for e in log] == [429, 200]
    assert log[0]["headers"]["x-org-id"] == ORG and log[0]["headers"]["authorization"] == "present"
