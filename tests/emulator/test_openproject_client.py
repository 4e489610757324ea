"""``openproject-api-client`` lists and downloads against a real emulator process, in both
content modes; uploads and deletes are plain HTTP calls shaped exactly as the spec documents
them (the PyPI clients cannot upload: tracker-apis.md §6)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
import requests
from openproject_api_client import ApiClient
from openproject_api_client import resources as op

from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module", params=["local", "remote"])
def server(request: pytest.FixtureRequest) -> Iterator[EmulatorProcess]:
    """One emulator per content mode: the bytes themselves, or a redirect to storage."""
    with EmulatorProcess("--flavour", request.param, "--page-size", "5", tracker="openproject") as running:
        yield running


@pytest.fixture
def live(server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(live: EmulatorProcess) -> ApiClient:
    return ApiClient(live.base_url, live.token, timeout=30)


def demo_project(client: ApiClient) -> op.Project:
    return next(p for p in client.get_projects() if p.identifier == "demo")


def test_lists_projects_and_every_work_package_page_by_page(client: ApiClient, live: EmulatorProcess) -> None:
    projects = client.get_projects()
    assert [(type(p), p.identifier) for p in projects] == [(op.Project, "demo"), (op.Project, "ops")]
    live.clear_requests()
    packages = client.get_workpackages_by_project_id(demo_project(client).id, status="all")
    # each element decoded as a WorkPackage: every link the client reads carries a title
    assert all(type(wp) is op.WorkPackage for wp in packages)
    assert [wp.displayid for wp in packages] == [f"DEMO-{n}" for n in range(1, 13)]
    assert {wp.status for wp in packages} == {"New", "Closed"}
    assert packages[0].project == "Demo project" and packages[0].type == "Task"
    pages = [r for r in live.requests() if r["path"].endswith("/work_packages")]
    # 12 work packages at 5 a page: the client asked for pages 1, 2, 3 by number
    assert [r["query"]["offset"] for r in pages] == ["1", "2", "3"]
    open_only = client.get_workpackages_by_project_id(demo_project(client).id)
    assert "DEMO-12" not in [wp.displayid for wp in open_only]


def test_lists_and_downloads_attachments(client: ApiClient, live: EmulatorProcess) -> None:
    [demo_1] = [
        wp
        for wp in client.get_workpackages_by_project_id(demo_project(client).id)
        if wp.displayid == "DEMO-1"
    ]
    attachments = client.get_attachments_by_work_package(demo_1.id)
    assert [a.filename for a in attachments] == [
        "readme.txt",
        "diagram.png",
        "spec.pdf",
        "archive.zip",
        "report.docx",
        "big.bin",
    ]
    big = attachments[-1]
    assert isinstance(big, op.Attachment) and big.author == "Bob Example" and big.container_id == demo_1.id
    live.clear_requests()
    content = client.http_get(f"attachments/{big.id}/content")
    assert content.status_code == 200
    assert (
        hashlib.md5(content.content).hexdigest() == big.digest["hash"]
        and len(content.content) == big.filesize
    )
    media = [r for r in live.requests() if r["origin"] == "media"]
    # remote storage: the client followed the 302 and left its credentials behind
    remote = big.download_url.startswith("http")
    assert bool(media) == remote and not any(r["authorized"] for r in media)
    if remote:
        # remote storage lists the signed URL itself; it takes no credentials
        assert requests.get(big.download_url, timeout=30).content == content.content
        assert client._session.get(big.download_url, timeout=30).status_code == 403
    else:
        assert big.download_url == f"/api/v3/attachments/{big.id}/content"


def test_uploads_and_deletes_as_the_spec_documents(client: ApiClient, live: EmulatorProcess) -> None:
    demo_4 = next(
        wp
        for wp in client.get_workpackages_by_project_id(demo_project(client).id)
        if wp.displayid == "DEMO-4"
    )
    payload = b"uploaded as documented\n" * 200
    with httpx.Client(auth=("apikey", live.token), timeout=30) as http:
        created = http.post(
            f"{live.base_url}/api/v3/work_packages/{demo_4.id}/attachments",
            files=[
                (
                    "metadata",
                    (
                        None,
                        json.dumps({"fileName": "documented ü.txt", "description": {"raw": "x"}}),
                        "application/json",
                    ),
                ),
                ("file", ("documented.txt", payload, "text/plain")),
            ],
        )
        assert created.status_code == 201, created.text
        ident = created.json()["id"]
        listed = client.get_attachments_by_work_package(demo_4.id)
        assert [(a.id, a.filename, a.filesize) for a in listed][-1] == (
            ident,
            "documented ü.txt",
            len(payload),
        )
        assert listed[-1].digest["hash"] == hashlib.md5(payload).hexdigest()
        assert http.delete(f"{live.base_url}/api/v3/attachments/{ident}").status_code == 204
    assert ident not in {a.id for a in client.get_attachments_by_work_package(demo_4.id)}
    [log] = [r for r in live.requests() if r["method"] == "POST"]
    assert [part["part"] for part in log["upload"]] == ["metadata", "file"]
    # the client's own delete works too
    notes = client.get_attachments_by_work_package(demo_4.id)[0]
    assert client.delete_attachment(notes.id) is True
    assert client.get_attachment(notes.id) is None
