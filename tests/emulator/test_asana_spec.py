"""The emulator's Asana responses checked against Asana's published OpenAPI spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.validation.response.exceptions import InvalidData

from tests.emulator.spec_check import validate
from tests.emulator.test_asana_dialect import API, api, asana_state, demo_project, storage, task_named

#: The operations of Asana's spec the emulator serves, kept in the repository (cut by
#: tests/specs/trim.py from the full 3 MB YAML), so these tests run from any clean clone.
SPEC_PATH = Path(__file__).resolve().parents[1] / "specs/asana-oas.json"
SPEC_HOST = "https://app.asana.com"
PREFIX = "/api/1.0"

__all__ = ["api", "asana_state", "storage"]  # fixtures shared with the dialect tests


def nullable_all_of(node: Any) -> Any:
    """The spec with ``allOf: [Compact, {nullable: true}]`` made to accept ``null``.

    Asana writes a nullable reference (a task's ``parent``) as an ``allOf`` whose second
    member says ``nullable``; OpenAPI 3.0 validators check ``null`` against the first member
    too and refuse it, though Asana sends ``"parent": null`` for every top-level task. Each
    such ``allOf`` becomes "that, or null"; nothing else is relaxed.
    """
    if isinstance(node, list):
        return [nullable_all_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: nullable_all_of(value) for key, value in node.items()}
    members = fixed.get("allOf")
    if isinstance(members, list) and any(isinstance(m, dict) and m.get("nullable") for m in members):
        rest = {key: value for key, value in fixed.items() if key != "allOf"}
        return {**rest, "anyOf": [{"allOf": members}, {"type": "object", "nullable": True, "enum": [None]}]}
    return fixed


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """Asana's spec, loaded once (the spec itself is not re-validated)."""
    spec = nullable_all_of(json.loads(SPEC_PATH.read_text()))
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def check(openapi: OpenAPI, response: httpx.Response, path_pattern: str) -> None:
    """Validate one emulator response against the operation it answers."""
    validate(openapi, response, PREFIX + path_pattern, host=SPEC_HOST)


async def test_listings_and_records(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    spaces = await api.get("/workspaces", params={"limit": 1})
    assert spaces.json()["next_page"] is not None
    check(openapi, spaces, "/workspaces")
    workspace = spaces.json()["data"][0]["gid"]
    check(openapi, await api.get(f"/workspaces/{workspace}"), "/workspaces/{workspace_gid}")
    check(openapi, await api.get("/users/me"), "/users/{user_gid}")
    projects = await api.get(f"/workspaces/{workspace}/projects", params={"limit": 2})
    check(openapi, projects, "/workspaces/{workspace_gid}/projects")
    check(openapi, await api.get("/projects", params={"workspace": workspace}), "/projects")
    project = await demo_project(api)
    check(openapi, await api.get(f"/projects/{project}"), "/projects/{project_gid}")
    for params in ({"limit": 3}, {}, {"opt_fields": "name,completed,parent.name,projects.name"}):
        tasks = await api.get(f"/projects/{project}/tasks", params=params)
        check(openapi, tasks, "/projects/{project_gid}/tasks")
    check(openapi, await api.get("/tasks", params={"project": project, "limit": 5}), "/tasks")
    task = await task_named(api, project, "Demo issue 1")
    check(openapi, await api.get(f"/tasks/{task}"), "/tasks/{task_gid}")
    subtasks = await api.get(f"/tasks/{task}/subtasks")
    check(openapi, subtasks, "/tasks/{task_gid}/subtasks")
    check(openapi, await api.get(f"/tasks/{subtasks.json()['data'][0]['gid']}"), "/tasks/{task_gid}")
    check(openapi, await api.get(f"/tasks/{task}/projects"), "/tasks/{task_gid}/projects")


async def test_attachments(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 1")
    full = "name,size,created_at,host,resource_subtype,download_url,view_url,permanent_url,parent.name"
    for params in ({"parent": task}, {"parent": task, "limit": 2, "opt_fields": full}):
        check(openapi, await api.get("/attachments", params=params), "/attachments")
    hostile = await task_named(api, project, "Demo issue 3")
    check(
        openapi, await api.get("/attachments", params={"parent": hostile, "opt_fields": full}), "/attachments"
    )
    gid = (await api.get("/attachments", params={"parent": task})).json()["data"][0]["gid"]
    check(openapi, await api.get(f"/attachments/{gid}"), "/attachments/{attachment_gid}")
    uploaded = await api.post("/attachments", data={"parent": task}, files={"file": ("a.txt", b"a")})
    assert uploaded.status_code == 200
    check(openapi, uploaded, "/attachments")
    deleted = await api.delete(f"/attachments/{uploaded.json()['data']['gid']}")
    check(openapi, deleted, "/attachments/{attachment_gid}")


async def test_external_attachments(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    spaces = (await api.get("/workspaces")).json()["data"]
    twin = (await api.get(f"/workspaces/{spaces[0]['gid']}/projects")).json()["data"][2]["gid"]
    task = await task_named(api, twin, "Links to other services")
    links = (await api.get("/attachments", params={"parent": task})).json()["data"]
    for link in links:
        check(openapi, await api.get(f"/attachments/{link['gid']}"), "/attachments/{attachment_gid}")


@pytest.mark.parametrize(
    ("path", "pattern", "status"),
    [
        ("/tasks/abc", "/tasks/{task_gid}", 400),
        ("/tasks/1200000000999999", "/tasks/{task_gid}", 404),
        ("/attachments", "/attachments", 400),
        ("/workspaces?limit=0", "/workspaces", 400),
    ],
)
async def test_errors(openapi: OpenAPI, api: httpx.AsyncClient, path: str, pattern: str, status: int) -> None:
    response = await api.get(path)
    assert response.status_code == status
    check(openapi, response, pattern)


async def test_unauthorized(openapi: OpenAPI, asana_state: object) -> None:
    from trackerfs.emulator import create_app

    transport = httpx.ASGITransport(app=create_app(asana_state))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=API) as anonymous:
        response = await anonymous.get("/workspaces")
    assert response.status_code == 401
    check(openapi, response, "/workspaces")


async def test_the_check_refuses_a_wrong_shape(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    project = await demo_project(api)
    task = await task_named(api, project, "Demo issue 1")
    listed = await api.get("/attachments", params={"parent": task})
    gid = listed.json()["data"][0]["gid"]
    response = await api.get(f"/attachments/{gid}")
    body = response.json()
    body["data"]["size"] = "large"
    broken = httpx.Response(200, json=body, request=response.request)
    with pytest.raises(InvalidData):
        check(openapi, broken, "/attachments/{attachment_gid}")
    body["data"] |= {"size": 1, "parent": "not a task"}
    with pytest.raises(InvalidData):
        check(
            openapi, httpx.Response(200, json=body, request=response.request), "/attachments/{attachment_gid}"
        )
