"""The Asana dialect in process: auth, envelopes, opt_fields, paging, seed, storage, writes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trackerfs.emulator import EmulatorOptions, create_app, create_media_app, seed
from trackerfs.emulator.dialects import asana
from trackerfs.emulator.dialects.asana_storage import BUCKET
from trackerfs.emulator.state import EmulatorState

TOKEN = "asana-token"
API = "http://asana.test/api/1.0"
MEDIA = "http://storage.test"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def asana_state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded Asana emulator whose download URLs point at MEDIA, pages of 5."""
    state = EmulatorState(EmulatorOptions(tracker="asana", token=TOKEN, page_size=5), tmp_path)
    state.media_url = MEDIA
    return state


@pytest.fixture
async def api(asana_state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the API app, in process."""
    transport = httpx.ASGITransport(app=create_app(asana_state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=BEARER) as client:
        yield client


@pytest.fixture
async def storage(asana_state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the storage (media) app, in process, without credentials."""
    transport = httpx.ASGITransport(app=create_media_app(asana_state))
    async with httpx.AsyncClient(transport=transport, base_url=MEDIA) as client:
        yield client


async def data(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """The ``data`` of a successful answer."""
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def gid_of(client: httpx.AsyncClient, kind: str, name: str, **params: Any) -> str:
    """The gid of the first record called ``name`` in a listing."""
    records = await data(client, kind, **params)
    return str(next(r["gid"] for r in records if r["name"] == name))


async def demo_workspace(client: httpx.AsyncClient) -> str:
    return await gid_of(client, "/workspaces", "Demo workspace")


async def task_named(client: httpx.AsyncClient, project: str, name: str) -> str:
    return await gid_of(client, f"/projects/{project}/tasks", name)


async def demo_project(client: httpx.AsyncClient) -> str:
    return await gid_of(client, "/projects", "Demo project", workspace=await demo_workspace(client))


# -- auth and errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
async def test_refuses_without_the_bearer_token(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    api.headers.pop("Authorization")
    response = await api.get("/workspaces", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not Authorized"}]}


async def test_error_bodies_carry_message_and_help(api: httpx.AsyncClient) -> None:
    bad = await api.get("/tasks/not-a-gid")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["message"] == "task: Not a recognized ID: not-a-gid"
    missing = await api.get("/tasks/1200000000999999")
    assert missing.status_code == 404
    assert set(missing.json()["errors"][0]) == {"message", "help"}
    unknown = await api.get("/no/such/route")
    assert unknown.status_code == 404 and "errors" in unknown.json()


# -- workspaces, projects, tasks ----------------------------------------------------------------
async def test_token_sees_two_workspaces_and_non_unique_project_names(api: httpx.AsyncClient) -> None:
    spaces = await data(api, "/workspaces")
    assert [s["name"] for s in spaces] == ["Demo workspace", "Other workspace"]
    assert all(
        set(s) == {"gid", "resource_type", "name"} and s["resource_type"] == "workspace" for s in spaces
    )
    home = await data(api, f"/workspaces/{spaces[0]['gid']}/projects")
    assert [p["name"] for p in home] == ["Demo project", "Operations", "Operations"]
    other = await data(api, "/projects", workspace=spaces[1]["gid"])
    assert [p["name"] for p in other] == ["Demo project"]
    assert {p["gid"] for p in home}.isdisjoint(p["gid"] for p in other)
    assert all(p["gid"].isdigit() and len(p["gid"]) == 16 for p in home + other)


async def test_project_lists_the_shared_seed_but_not_subtasks(api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    tasks = await data(api, f"/projects/{project}/tasks")
    assert [t["name"] for t in tasks] == [f"Demo issue {n}" for n in range(1, 13)]
    assert set(tasks[0]) == {"gid", "resource_type", "name", "resource_subtype"}
    parent = tasks[0]["gid"]
    subtasks = await data(api, f"/tasks/{parent}/subtasks")
    assert [s["name"] for s in subtasks] == ["Check the diagram"]
    sub = await data(api, f"/tasks/{subtasks[0]['gid']}")
    assert sub["parent"]["gid"] == parent and sub["projects"] == []


async def test_a_task_in_two_projects_shows_in_both(api: httpx.AsyncClient) -> None:
    workspace = await demo_workspace(api)
    projects = await data(api, f"/workspaces/{workspace}/projects")
    twin = projects[2]["gid"]
    listed = [t["name"] for t in await data(api, f"/projects/{twin}/tasks")]
    assert listed == ["Links to other services", "Demo issue 4"]
    shared = await task_named(api, twin, "Demo issue 4")
    in_projects = await data(api, f"/tasks/{shared}/projects")
    assert [p["gid"] for p in in_projects] == [projects[0]["gid"], twin]


async def test_completed_since_hides_completed_tasks(api: httpx.AsyncClient) -> None:
    workspace = await demo_workspace(api)
    ops = (await data(api, f"/workspaces/{workspace}/projects"))[1]["gid"]
    everything = await data(api, f"/projects/{ops}/tasks", opt_fields="name,completed,completed_at")
    assert [(t["name"], t["completed"]) for t in everything] == [
        ("Runbook", False),
        ("Nothing attached", True),
    ]
    assert everything[1]["completed_at"].endswith("Z")
    open_only = await data(api, f"/projects/{ops}/tasks", completed_since="now")
    assert [t["name"] for t in open_only] == ["Runbook"]
    since = await data(api, f"/projects/{ops}/tasks", completed_since="2026-01-01T00:00:00.000Z")
    assert len(since) == 2


async def test_opt_fields_select_gid_and_the_fields_asked_for(api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    tasks = await data(api, f"/projects/{project}/tasks", opt_fields="name,permalink_url,workspace.name")
    assert set(tasks[0]) == {"gid", "name", "permalink_url", "workspace"}
    assert set(tasks[0]["workspace"]) == {"gid", "name"}
    assert tasks[0]["permalink_url"].startswith("https://app.asana.com/1/")
    response = await api.get(f"/projects/{project}/tasks", params={"opt_fields": "name,bogus"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "opt_fields: Unknown field: bogus"


# -- paging -------------------------------------------------------------------------------------
async def test_next_page_only_when_limit_is_sent(api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    whole = (await api.get(f"/projects/{project}/tasks")).json()
    assert "next_page" not in whole and len(whole["data"]) == 12
    names: list[str] = []
    path: str | None = f"/projects/{project}/tasks?limit=4&opt_fields=name"
    pages = 0
    while path is not None:
        body = (await api.get(path)).json()
        names += [t["name"] for t in body["data"]]
        pages += 1
        next_page = body["next_page"]
        if next_page is not None:
            assert next_page["uri"] == f"{API}{next_page['path']}"
            assert f"offset={next_page['offset']}" in next_page["path"]
        path = None if next_page is None else next_page["path"]
    assert pages == 3 and names == [f"Demo issue {n}" for n in range(1, 13)]
    capped = (await api.get(f"/projects/{project}/tasks", params={"limit": 100})).json()
    assert len(capped["data"]) == 5 and capped["next_page"] is not None  # --page-size 5


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
async def test_a_bad_limit_is_a_400(api: httpx.AsyncClient, limit: str) -> None:
    response = await api.get("/workspaces", params={"limit": limit})
    assert response.status_code == 400 and response.json()["errors"][0]["message"].startswith("limit: ")


async def test_offset_tokens_are_opaque_bound_and_expire(api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    first = (await api.get(f"/projects/{project}/tasks", params={"limit": 2})).json()
    offset = first["next_page"]["offset"]
    assert (
        await api.get(f"/projects/{project}/tasks", params={"limit": 2, "offset": offset})
    ).status_code == 200
    elsewhere = await api.get("/workspaces", params={"limit": 2, "offset": offset})
    assert elsewhere.status_code == 400
    forged = await api.get(f"/projects/{project}/tasks", params={"limit": 2, "offset": "eyJvZmZzZXQiOjJ9"})
    assert forged.status_code == 400
    api_config = await api.post("http://asana.test/_emulator/config", json={"expire_offsets": True})
    assert api_config.json()["expire_offsets"] is True
    expired = await api.get(f"/projects/{project}/tasks", params={"limit": 2, "offset": offset})
    assert expired.status_code == 400
    assert expired.json()["errors"][0]["message"] == asana.OFFSET_EXPIRED


# -- attachments and storage --------------------------------------------------------------------
async def test_attachments_of_a_task_match_the_shared_seed(
    api: httpx.AsyncClient, storage: httpx.AsyncClient, asana_state: EmulatorState
) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 1")
    compact = await data(api, "/attachments", parent=task)
    assert [a["name"] for a in compact] == [
        "readme.txt",
        "diagram.png",
        "spec.pdf",
        "archive.zip",
        "report.docx",
        "big.bin",
    ]
    assert set(compact[0]) == {"gid", "resource_type", "name", "resource_subtype"}
    full = await data(api, f"/attachments/{compact[5]['gid']}")
    stored = asana_state.store.attachments[full["gid"]]
    assert full["size"] == stored.size and full["host"] == "asana" and full["parent"]["gid"] == task
    assert full["download_url"].startswith(f"{MEDIA}/{BUCKET}/assets/")
    body = await storage.get(full["download_url"])
    assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == stored.sha256
    assert body.headers["etag"] == f'"{stored.md5}"'
    part = await storage.get(full["download_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{stored.size}"
    head = await storage.head(full["download_url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(stored.size) and not head.content
    ignored = await storage.get(full["download_url"], headers={"Range": "bytes=oops"})
    assert ignored.status_code == 200 and len(ignored.content) == stored.size
    beyond = await storage.get(full["download_url"], headers={"Range": f"bytes={stored.size}-"})
    assert beyond.status_code == 416 and b"<Code>InvalidRange</Code>" in beyond.content


async def test_hostile_names_list_and_download(
    api: httpx.AsyncClient, storage: httpx.AsyncClient, asana_state: EmulatorState
) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 3")
    listed = await data(api, "/attachments", parent=task, opt_fields="name,download_url")
    assert [a["name"] for a in listed] == list(seed.HOSTILE_NAMES)
    for item in listed:
        body = await storage.get(item["download_url"])
        assert body.status_code == 200
        assert hashlib.sha256(body.content).hexdigest() == asana_state.store.attachments[item["gid"]].sha256


async def test_storage_refuses_credentials_forgery_and_expired_urls(
    api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 1")
    first = (await data(api, "/attachments", parent=task, opt_fields="download_url"))[0]
    url = first["download_url"]
    assert "X-Amz-Expires=120&" in url
    with_token = await storage.get(url, headers=BEARER)
    assert with_token.status_code == 400 and b"Only one auth mechanism allowed" in with_token.content
    assert TOKEN.encode() not in with_token.content
    altered = await storage.get(url.replace("X-Amz-Expires=120", "X-Amz-Expires=9999"))
    assert altered.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in altered.content
    unsigned = await storage.get(url.partition("?")[0])
    assert unsigned.status_code == 403 and b"<Code>AccessDenied</Code>" in unsigned.content
    await api.post("http://asana.test/_emulator/config", json={"media_ttl": -1})
    stale = (await data(api, f"/attachments/{first['gid']}"))["download_url"]
    expired = await storage.get(stale)
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.content
    await api.delete(f"/attachments/{first['gid']}")
    gone = await storage.get(url)
    assert gone.status_code == 404 and b"<Code>NoSuchKey</Code>" in gone.content


async def test_external_attachments_have_no_bytes(api: httpx.AsyncClient) -> None:
    workspace = await demo_workspace(api)
    twin = (await data(api, f"/workspaces/{workspace}/projects"))[2]["gid"]
    task = await task_named(api, twin, "Links to other services")
    links = await data(api, "/attachments", parent=task, opt_fields="name,host,size,download_url,view_url")
    assert [(a["name"], a["host"]) for a in links] == [
        ("Budget.xlsx", "dropbox"),
        ("Roadmap", "gdrive"),
        ("Contract.pdf", "box"),
        ("Slides.pptx", "onedrive"),
        ("Walkthrough", "vimeo"),
        ("Status page", "external"),
    ]
    assert all("size" not in a and a["view_url"].startswith("https://") for a in links)
    assert [a["download_url"] is None for a in links] == [False, False, True, False, True, False]


async def test_uploads_by_part_name_and_deletes(api: httpx.AsyncClient, asana_state: EmulatorState) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 5")
    payload = b"uploaded\r\n" * 1000
    files = {"file": ("r%C3%A9sum%C3%A9.pdf", payload, "application/pdf")}
    response = await api.post("/attachments", data={"parent": task}, files=files)
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert created["name"] == "résumé.pdf" and created["size"] == len(payload)
    stored = asana_state.store.attachments[created["gid"]]
    assert stored.sha256 == hashlib.sha256(payload).hexdigest() and stored.issue == task
    raw = {"file": ("100%25 é.txt", b"x", "text/plain")}
    assert (await api.post("/attachments", data={"parent": task}, files=raw)).json()["data"][
        "name"
    ] == "100% é.txt"
    form = {"parent": task, "resource_subtype": "external", "url": "https://example.com/a", "name": "A"}
    # multipart without a file: parts with no filename (the spec takes multipart only)
    link = await api.post("/attachments", files={k: (None, v) for k, v in form.items()})
    assert link.status_code == 200 and link.json()["data"]["host"] == "external"
    deleted = await api.delete(f"/attachments/{created['gid']}")
    assert deleted.status_code == 200 and deleted.json() == {"data": {}}
    assert created["gid"] not in asana_state.store.attachments
    assert (await api.delete(f"/attachments/{created['gid']}")).status_code == 404


async def test_upload_name_from_filename_star_is_decoded_once(api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 5")
    boundary = "asana-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="parent"\r\n\r\n{task}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        "filename=\"a%2541 r%C3%A9sum%C3%A9.txt\"; filename*=UTF-8''a%2541%20r%C3%A9sum%C3%A9.txt\r\n"
        f"Content-Type: text/plain\r\n\r\nbytes\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await api.post("/attachments", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "a%41 résumé.txt"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({}, "parent: Missing input"),
        ({"parent": "{task}"}, "file: Missing input"),
        ({"parent": "{task}", "resource_subtype": "external", "name": "n"}, "url: Missing input"),
    ],
)
async def test_upload_errors(api: httpx.AsyncClient, form: dict[str, str], message: str) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 5")
    fields = {k: v.format(task=task) for k, v in form.items()}
    response = await api.post("/attachments", data=fields, files={"other": ("x.txt", b"x")})
    assert response.status_code == 400 and response.json()["errors"][0]["message"] == message


async def test_upload_over_the_limit_is_refused_and_leaves_nothing(
    api: httpx.AsyncClient, asana_state: EmulatorState
) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 5")
    await api.post("http://asana.test/_emulator/config", json={"upload_limit": 1000})
    before = set(asana_state.store.attachments)
    response = await api.post("/attachments", data={"parent": task}, files={"file": ("big", b"x" * 1001)})
    assert response.status_code == 400 and response.json()["errors"][0]["message"].startswith("file: ")
    assert set(asana_state.store.attachments) == before
    assert list(asana_state.upload_dir.iterdir()) == []


async def test_empty_seed_is_one_workspace(tmp_path: Path) -> None:
    state = EmulatorState(EmulatorOptions(tracker="asana", token=TOKEN, seed="empty"), tmp_path)
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=BEARER) as client:
        spaces = await data(client, "/workspaces")
        assert [s["name"] for s in spaces] == ["Test workspace"]
        projects = await data(client, f"/workspaces/{spaces[0]['gid']}/projects")
        assert [p["name"] for p in projects] == ["Test project"]
        tasks = await data(client, f"/projects/{projects[0]['gid']}/tasks")
        assert [t["name"] for t in tasks] == ["Test issue 1", "Test issue 2", "Test issue 3"]
        assert state.config.media_ttl == 120


# -- rate limit, faults, log --------------------------------------------------------------------
async def test_rate_limit_on_demand(api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(asana, "rate_clock", lambda: now[0])
    assert (await api.get("/workspaces")).status_code == 200  # off by default: not counted
    await api.post("http://asana.test/_emulator/config", json={"rate_limit": True})
    for _ in range(asana.FREE_BUDGET):
        assert (await api.get("/workspaces")).status_code == 200
    now[0] += 20
    refused = await api.get("/workspaces")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "40"
    assert refused.json()["errors"][0]["message"] == asana.RATE_LIMITED
    now[0] += 40
    assert (await api.get("/workspaces")).status_code == 200
    # paid_plan switches to the paid figure (kept small here: 1,500 requests take long)
    monkeypatch.setattr(asana, "PAID_BUDGET", asana.FREE_BUDGET + 5)
    await api.post("http://asana.test/_emulator/config", json={"paid_plan": True})
    for _ in range(asana.FREE_BUDGET + 4):  # one request is in the window already
        assert (await api.get("/workspaces")).status_code == 200
    assert (await api.get("/workspaces")).status_code == 429
    await api.post("http://asana.test/_emulator/reset")
    await api.post("http://asana.test/_emulator/config", json={"rate_limit": True})
    assert (await api.get("/workspaces")).status_code == 200  # a reset starts a new budget


async def test_faults_and_the_request_log_work_for_asana(api: httpx.AsyncClient) -> None:
    control = "http://asana.test/_emulator"
    await api.post(f"{control}/faults", json={"path": "/attachments", "status": 503, "count": 1})
    await api.delete(f"{control}/requests")
    faulted = await api.get("/attachments", params={"parent": "1"})
    assert faulted.status_code == 503
    assert faulted.json()["errors"][0]["message"] == "Injected fault: HTTP 503"
    assert "phrase" in faulted.json()["errors"][0]
    log = (await api.get(f"{control}/requests")).json()
    assert [(e["path"], e["status"], e["headers"]["authorization"]) for e in log] == [
        ("/api/1.0/attachments", 503, "present")
    ]
