"""The Waldur dialect in process: DRF paging and errors, Token auth, uploads, media, faults."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.dialects.waldur import sniff_mime_type, stored_name
from trackerfs.emulator.seed import big_binary
from trackerfs.emulator.state import EmulatorState

TOKEN = "waldur-token"
API = "http://waldur.test"
AUTH = {"Authorization": f"Token {TOKEN}"}


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded Waldur emulator."""
    return EmulatorState(EmulatorOptions(tracker="waldur", token=TOKEN), tmp_path)


@pytest.fixture
async def api(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the API app, in process."""
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=AUTH) as client:
        yield client


async def everything(api: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """All items of a list, following ``Link`` rel="next" as a DRF client does."""
    items: list[dict[str, Any]] = []
    response = await api.get(path, params={"page_size": 300, **params})
    while True:
        assert response.status_code == 200, response.text
        items += response.json()
        following = response.links.get("next")
        if following is None:
            return items
        response = await api.get(following["url"])


async def issue_by_summary(api: httpx.AsyncClient, summary: str) -> dict[str, Any]:
    """The one support issue with this summary."""
    (issue,) = await everything(api, "/api/support-issues/", summary=summary)
    return issue


async def test_lists_are_plain_arrays_with_link_and_count(api: httpx.AsyncClient) -> None:
    first = await api.get("/api/support-attachments/")
    total = int(first.headers["x-result-count"])
    assert isinstance(first.json(), list) and len(first.json()) == 10  # DRF's default page
    assert set(first.links) == {"next", "last"}
    middle = await api.get(first.links["next"]["url"])
    assert set(middle.links) == {"first", "prev", "next", "last"}
    last = await api.get(first.links["last"]["url"])
    assert set(last.links) == {"first", "prev"}
    assert len(await everything(api, "/api/support-attachments/")) == total
    whole = await api.get("/api/support-attachments/", params={"page_size": 1000})
    assert len(whole.json()) == total <= 300 and "link" not in whole.headers
    for page in ("99", "0", "x"):
        beyond = await api.get("/api/support-attachments/", params={"page": page})
        assert (beyond.status_code, beyond.json()) == (404, {"detail": "Invalid page."})
    by_name = await api.get("/api/support-attachments/", params={"page": "last"})
    assert by_name.json() == last.json()
    fallback = await api.get("/api/support-attachments/", params={"page_size": "lots"})
    assert len(fallback.json()) == 10


async def test_page_size_clamps_at_300(api: httpx.AsyncClient, state: EmulatorState) -> None:
    issue = next(iter(state.store.issues.values()))
    for n in range(320):
        state.store.add_attachment(issue.id, f"f{n}.txt", b"x", author=state.token_owner)
    response = await api.get("/api/support-attachments/", params={"page_size": 500})
    assert len(response.json()) == 300 and "next" in response.links


async def test_head_on_a_list_sends_the_count_only(api: httpx.AsyncClient) -> None:
    response = await api.head("/api/support-issues/")
    assert response.status_code == 200 and response.content == b""
    listed = await everything(api, "/api/support-issues/")
    assert int(response.headers["x-result-count"]) == len(listed)


async def test_token_auth_and_drf_401_bodies(api: httpx.AsyncClient, state: EmulatorState) -> None:
    for headers, detail in (
        ({"Authorization": ""}, "Authentication credentials were not provided."),
        ({"Authorization": "Token wrong"}, "Invalid token."),
        ({"Authorization": "Token"}, "Invalid token header. No credentials provided."),
        ({"Authorization": f"Bearer {TOKEN}"}, "Authentication credentials were not provided."),
    ):
        response = await api.get("/api/projects/", headers=headers)
        assert response.status_code == 401 and response.json() == {"detail": detail}, headers
        assert response.headers["www-authenticate"] == "Token"
    lower = await api.get("/api/projects/", headers={"Authorization": f"token {TOKEN}"})
    assert lower.status_code == 200
    query = await api.get("/api/projects/", headers={"Authorization": ""}, params={"x-auth-token": TOKEN})
    assert query.status_code == 401  # an Authorization header, even empty, wins over the query
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API) as anonymous:
        by_query = await anonymous.get("/api/projects/", params={"x-auth-token": TOKEN})
        assert by_query.status_code == 200


async def test_customers_projects_and_issues(api: httpx.AsyncClient) -> None:
    customers = await everything(api, "/api/customers/")
    assert [c["name"] for c in customers] == ["Demo Organisation", "Second Organisation"]
    projects = await everything(api, "/api/projects/")
    assert sorted(p["name"] for p in projects) == ["Demo project", "Demo project", "Operations"]
    assert len({p["slug"] for p in projects}) == 3
    second = customers[1]
    (twin,) = await everything(api, "/api/projects/", customer=second["uuid"])
    assert twin["customer"] == second["url"] and twin["customer_name"] == "Second Organisation"
    issues = await everything(api, "/api/support-issues/", project_uuid=twin["uuid"])
    assert [i["key"] for i in issues] == ["", "", ""]
    by_url = await everything(api, "/api/support-issues/", project=twin["url"])
    assert by_url == issues
    demo_1 = await everything(api, "/api/support-issues/", key="DEMO-1")
    assert [i["summary"] for i in demo_1] == ["Demo issue 1"]
    flags = {i["summary"]: (i["destroy_is_available"], i["add_attachment_is_available"]) for i in issues}
    assert flags == {
        "Printer on fire": (True, True),
        "Closed ticket": (False, True),
        "No more files": (True, False),
    }


async def test_uuids_with_or_without_dashes(api: httpx.AsyncClient) -> None:
    issue = await issue_by_summary(api, "Printer on fire")
    assert re.fullmatch(r"[0-9a-f]{32}", issue["uuid"])
    dashed = str(uuid.UUID(issue["uuid"]))
    detail = await api.get(f"/api/support-issues/{dashed}/")
    assert detail.status_code == 200 and detail.json()["uuid"] == issue["uuid"]
    filtered = await everything(api, "/api/support-attachments/", issue_uuid=dashed)
    assert sorted(a["file_name"] for a in filtered) == ["error_log.txt", "printer.pdf"]
    assert await everything(api, "/api/support-attachments/", issue=issue["url"]) == filtered
    bad = await api.get("/api/support-attachments/", params={"issue_uuid": "nope"})
    assert (bad.status_code, bad.json()) == (400, {"issue_uuid": ["Enter a valid UUID."]})
    missing = await api.get("/api/support-issues/0123/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})


async def test_attachment_shape_and_field_selection(api: httpx.AsyncClient) -> None:
    (readme,) = [
        a for a in await everything(api, "/api/support-attachments/") if a["file_name"] == "readme.txt"
    ]
    assert readme["issue_key"] == "DEMO-1" and readme["mime_type"] == "text/plain"
    assert readme["created"] == "2026-01-05T10:14:00Z" and readme["backend_id"] == ""
    assert readme["file"].startswith(f"{API}/api/media/") and readme["file"].endswith("/")
    again = await api.get(readme["url"])
    assert again.json() == readme
    picked = await api.get("/api/support-attachments/", params=[("field", "uuid"), ("field", "file_name")])
    assert set(picked.json()[0]) == {"uuid", "file_name"}


async def test_media_sends_the_whole_body_and_ignores_range(api: httpx.AsyncClient) -> None:
    (big,) = [a for a in await everything(api, "/api/support-attachments/") if a["file_name"] == "big.bin"]
    response = await api.get(big["file"], headers={"Range": "bytes=100-199"})
    assert response.status_code == 200 and response.content == big_binary()
    assert "accept-ranges" not in response.headers and "content-range" not in response.headers
    assert response.headers["content-disposition"] == 'attachment; filename="big.bin"'


async def test_media_answers_404_to_who_may_not_see_it(api: httpx.AsyncClient, state: EmulatorState) -> None:
    readme = next(
        a for a in await everything(api, "/api/support-attachments/") if a["file_name"] == "readme.txt"
    )
    anonymous = await api.get(readme["file"], headers={"Authorization": ""})
    assert (anonymous.status_code, anonymous.json()) == (404, {"detail": "Not found."})
    state.config.update({"media_hidden": True})
    hidden = await api.get(readme["file"])
    assert hidden.status_code == 404


async def test_upload_takes_the_issue_url_and_renames(api: httpx.AsyncClient, state: EmulatorState) -> None:
    issue = await issue_by_summary(api, "Printer on fire")
    response = await api.post(
        "/api/support-attachments/",
        files=[("issue", (None, issue["url"])), ("file", ("my report (final)!.pdf", b"%PDF-1.4\n"))],
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["file_name"] == "my_report_final.pdf" and created["mime_type"] == "application/pdf"
    assert created["issue"] == issue["url"] and created["file_size"] == 9
    again = await api.post(
        "/api/support-attachments/",
        files=[("issue", (None, issue["url"])), ("file", ("my report (final)!.pdf", b"second"))],
    )
    assert re.fullmatch(r"my_report_final_[A-Za-z0-9]{7}\.pdf", again.json()["file_name"])
    assert again.json()["mime_type"] == "text/plain"  # sniffed, not guessed from the name
    stored = await api.get(created["file"])
    assert stored.content == b"%PDF-1.4\n"
    (entry,) = [e for e in state.log.entries() if e["method"] == "POST"][:1]
    assert [p["part"] for p in entry["upload"]] == ["issue", "file"]


async def test_upload_refusals_are_drf_bodies(api: httpx.AsyncClient, state: EmulatorState) -> None:
    issue = await issue_by_summary(api, "Printer on fire")
    frozen = await issue_by_summary(api, "No more files")
    file_part = ("file", ("a.txt", b"abc"))
    cases: list[tuple[list[Any], int, object]] = [
        (
            [("issue", (None, issue["uuid"])), file_part],
            400,
            {"issue": ["Invalid hyperlink - No URL match."]},
        ),
        (
            [("issue", (None, f"{API}/api/support-issues/{'0' * 32}/")), file_part],
            400,
            {"issue": ["Invalid hyperlink - Object does not exist."]},
        ),
        ([file_part], 400, {"issue": ["This field is required."]}),
        ([("issue", (None, issue["url"]))], 400, {"file": ["No file was submitted."]}),
        (
            [("issue", (None, frozen["url"])), file_part],
            400,
            {"non_field_errors": ["Adding attachments is not available."]},
        ),
    ]
    for files, status, body in cases:
        response = await api.post("/api/support-attachments/", files=files)
        assert (response.status_code, response.json()) == (status, body), files
    state.config.update({"create_attachments": False})
    denied = await api.post("/api/support-attachments/", files=[("issue", (None, issue["url"])), file_part])
    assert denied.status_code == 403
    assert denied.json() == {"detail": "You do not have permission to perform this action."}


async def test_upload_over_the_limit_is_the_proxys_html_413(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    issue = await issue_by_summary(api, "Printer on fire")
    state.config.update({"upload_limit": 10})
    response = await api.post(
        "/api/support-attachments/", files=[("issue", (None, issue["url"])), ("file", ("a.bin", b"x" * 11))]
    )
    assert response.status_code == 413 and response.headers["content-type"].startswith("text/html")


async def test_delete(api: httpx.AsyncClient, state: EmulatorState) -> None:
    attachments = await everything(api, "/api/support-attachments/")
    locked = next(a for a in attachments if a["file_name"] == "final_report.txt")
    assert locked["destroy_is_available"] is False
    refused = await api.delete(locked["url"])
    assert (refused.status_code, refused.json()) == (400, ["Destroying is not available."])
    readme = next(a for a in attachments if a["file_name"] == "readme.txt")
    state.config.update({"delete_attachments": "none"})
    forbidden = await api.delete(readme["url"])
    assert forbidden.status_code == 403 and "detail" in forbidden.json()
    state.config.update({"delete_attachments": "all"})
    assert (await api.delete(readme["url"])).status_code == 204
    assert (await api.get(readme["url"])).status_code == 404
    assert (await api.get(readme["file"])).status_code == 404


async def test_a_fault_rule_answers_with_a_drf_body(api: httpx.AsyncClient) -> None:
    added = await api.post("/_emulator/faults", json={"path": "/api/support-issues/", "status": 503})
    assert added.status_code in (200, 201)
    faulted = await api.get("/api/support-issues/")
    assert faulted.status_code == 503 and set(faulted.json()) == {"detail"}
    assert (await api.get("/api/support-issues/")).status_code == 200


def test_stored_name_follows_django() -> None:
    rng = random.Random(1)
    never = frozenset[str]().__contains__
    assert stored_name("my report.pdf", never, rng) == "my_report.pdf"
    assert stored_name("a/b/ünïcode näme?.txt", never, rng) == "ünïcode_näme.txt"
    long = stored_name("x" * 120 + ".txt", never, rng)
    assert len(long) == 80 and re.fullmatch(r"x+_[A-Za-z0-9]{7}\.txt", long)
    taken = stored_name("notes.txt", {"notes.txt"}.__contains__, rng)
    assert re.fullmatch(r"notes_[A-Za-z0-9]{7}\.txt", taken)
    with pytest.raises(ValueError, match="Could not derive"):
        stored_name("???", never, rng)


def test_sniffed_types() -> None:
    assert sniff_mime_type(b"") == "application/x-empty"
    assert sniff_mime_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_mime_type("héllo".encode()) == "text/plain"
    assert sniff_mime_type(b"\x00\x01\x02") == "application/octet-stream"
    assert sniff_mime_type(b"PK\x03\x04" + b"\x00" * 26 + b"other") == "application/zip"


async def test_the_request_log_keeps_no_credential(api: httpx.AsyncClient, state: EmulatorState) -> None:
    state.log.clear()
    await api.get("/api/support-issues/", params={"page_size": 2})
    (entry,) = state.log.entries()
    assert entry["origin"] == "api" and entry["status"] == 200 and entry["authorized"]
    assert entry["query"] == {"page_size": "2"} and entry["headers"]["authorization"] == "present"
    assert TOKEN not in repr(entry)


async def test_media_base_points_file_urls_at_another_server(tmp_path: Path) -> None:
    options = EmulatorOptions(tracker="waldur", token=TOKEN, media_base="http://nginx.test/blobs/")
    state = EmulatorState(options, tmp_path)
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=AUTH) as client:
        (first,) = (await client.get("/api/support-attachments/", params={"page_size": 1})).json()
    blob = next(a.blob_name for a in state.store.attachments.values() if a.id == first["uuid"])
    assert first["file"] == f"http://nginx.test/blobs/{blob}"


async def test_media_names_every_stored_file_in_a_valid_header(api: httpx.AsyncClient) -> None:
    headers = {}
    for attachment in await everything(api, "/api/support-attachments/"):
        response = await api.get(attachment["file"])
        assert response.status_code == 200 and len(response.content) == attachment["file_size"]
        headers[attachment["file_name"]] = response.headers["content-disposition"]
    assert headers["diagram.png"] == 'inline; filename="diagram.png"'
    assert headers["line\nbreak.txt"] == "attachment; filename*=utf-8''line%0Abreak.txt"
    assert headers["é" * 140 + ".txt"].startswith("attachment; filename*=utf-8''%C3%A9")


async def test_a_wrong_method_is_drfs_405_and_a_wrong_path_its_404(api: httpx.AsyncClient) -> None:
    wrong_method = await api.put("/api/support-attachments/", json={})
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"detail": 'Method "PUT" not allowed.'})
    wrong_path = await api.get("/api/nothing-here/")
    assert (wrong_path.status_code, wrong_path.json()) == (404, {"detail": "Not found."})


async def test_users_me_names_the_tokens_owner(api: httpx.AsyncClient, state: EmulatorState) -> None:
    me = await api.get("/api/users/me/")
    assert me.status_code == 200
    body = me.json()
    assert body["full_name"] == state.token_owner.display_name and re.fullmatch(r"[0-9a-f]{32}", body["uuid"])
    assert body["url"] == f"{API}/api/users/{body['uuid']}/"
    refused = await api.get("/api/users/me/", headers={"Authorization": "Token wrong"})
    assert refused.status_code == 401 and refused.json() == {"detail": "Invalid token."}


async def test_rename_uploads_off_keeps_the_name_as_sent(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    issue = await issue_by_summary(api, "Printer on fire")
    state.config.switches["rename_uploads"] = False
    response = await api.post(
        "/api/support-attachments/",
        files=[("issue", (None, issue["url"])), ("file", ("printer.pdf", b"%PDF-1.4\n"))],
    )
    assert response.status_code == 201 and response.json()["file_name"] == "printer.pdf"
    state.config.switches["rename_uploads"] = True
    renamed = await api.post(
        "/api/support-attachments/",
        files=[("issue", (None, issue["url"])), ("file", ("printer.pdf", b"%PDF-1.4\n"))],
    )
    assert re.fullmatch(r"printer_[A-Za-z0-9]{7}\.pdf", renamed.json()["file_name"])
