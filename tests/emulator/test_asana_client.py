"""The official ``asana`` client (v5) against a real emulator process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asana
import httpx
import pytest

from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def asana_server() -> Iterator[EmulatorProcess]:
    """A real Asana emulator with pages of 5, shared by the module; tests reset it."""
    with EmulatorProcess("--page-size", "5", tracker="asana") as running:
        yield running


@pytest.fixture
def live(asana_server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    asana_server.reset()
    yield asana_server
    asana_server.reset()


@pytest.fixture
def client(live: EmulatorProcess) -> Iterator[asana.ApiClient]:
    configuration = asana.Configuration()
    configuration.host = f"{live.base_url}/api/1.0"
    configuration.access_token = live.token
    api_client = asana.ApiClient(configuration)
    yield api_client
    api_client.rest_client.pool_manager.clear()


def names(records: Any) -> list[str]:
    return [record["name"] for record in records]


def demo_ids(client: asana.ApiClient) -> tuple[str, str, str]:
    """Demo workspace, its "Demo project" and that project's first task."""
    workspace = next(
        w for w in asana.WorkspacesApi(client).get_workspaces({}) if w["name"] == "Demo workspace"
    )
    projects = asana.ProjectsApi(client).get_projects_for_workspace(workspace["gid"], {})
    project = next(p for p in projects if p["name"] == "Demo project")
    task = next(iter(asana.TasksApi(client).get_tasks_for_project(project["gid"], {})))
    return workspace["gid"], project["gid"], task["gid"]


def test_lists_workspaces_projects_tasks(client: asana.ApiClient, live: EmulatorProcess) -> None:
    assert names(asana.WorkspacesApi(client).get_workspaces({})) == ["Demo workspace", "Other workspace"]
    workspace, project, _ = demo_ids(client)
    projects = asana.ProjectsApi(client).get_projects_for_workspace(workspace, {})
    assert names(projects) == ["Demo project", "Operations", "Operations"]
    tasks = list(asana.TasksApi(client).get_tasks_for_project(project, {"opt_fields": "name,completed"}))
    assert names(tasks) == [f"Demo issue {n}" for n in range(1, 13)]
    # the client sends limit=100; pages of 5 make it follow next_page.offset twice
    listings = [r for r in live.requests() if r["path"].endswith(f"/projects/{project}/tasks")]
    assert [r["query"]["limit"] for r in listings][-3:] == ["100", "100", "100"]
    assert "offset" in listings[-1]["query"]
    assert all(r["headers"]["x-asana-client-lib"].startswith("language=Python") for r in listings)


def test_lists_and_downloads_attachments(client: asana.ApiClient, live: EmulatorProcess) -> None:
    _, _, task = demo_ids(client)
    attachments = asana.AttachmentsApi(client)
    listed = list(attachments.get_attachments_for_object(task, {"opt_fields": "name,size,host"}))
    assert names(listed) == ["readme.txt", "diagram.png", "spec.pdf", "archive.zip", "report.docx", "big.bin"]
    big = listed[-1]
    stored = {a["id"]: a for a in live.attachments()}[big["gid"]]
    assert big["size"] == stored["size"]
    fresh = attachments.get_attachment(big["gid"], {"opt_fields": "download_url"})
    # the pre-signed URL is fetched without the Asana token, as Asana's docs say
    content = httpx.get(fresh["download_url"]).content
    assert hashlib.sha256(content).hexdigest() == stored["sha256"]
    storage = [r for r in live.requests() if r["origin"] == "media"]
    assert storage and not any(r["authorized"] for r in storage)


def test_uploads_and_deletes(client: asana.ApiClient, live: EmulatorProcess, tmp_path: Path) -> None:
    _, _, task = demo_ids(client)
    attachments = asana.AttachmentsApi(client)
    source = tmp_path / "from the client é.txt"
    payload = b"uploaded by the asana client\r\n" * 100
    source.write_bytes(payload)
    created = attachments.create_attachment_for_object({"parent": task, "file": str(source)})
    assert created["name"] == source.name and created["size"] == len(payload)
    stored = {a["id"]: a for a in live.attachments()}[created["gid"]]
    assert stored["sha256"] == hashlib.sha256(payload).hexdigest() and stored["issue_id"] == task
    upload = next(r for r in live.requests() if r["method"] == "POST")
    assert [(p["part"], p["filename"]) for p in upload["upload"]] == [("parent", None), ("file", source.name)]
    assert attachments.delete_attachment(created["gid"]) == {}
    assert created["gid"] not in {a["id"] for a in live.attachments()}


def test_client_sees_asana_errors(client: asana.ApiClient) -> None:
    with pytest.raises(asana.rest.ApiException) as caught:
        asana.TasksApi(client).get_task("1200000000999999", {})
    assert caught.value.status == 404
    assert b"Unknown object" in caught.value.body
