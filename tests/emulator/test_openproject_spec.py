"""The emulator's OpenProject responses checked against the published API v3 spec (a subset).

Where the spec and the servers disagree the emulator follows the servers, and the check
below says so in one place (docs/openproject.md lists the same points):

* the work package listing's ``_type`` is ``WorkPackageCollection`` (the spec's
  ``CollectionModel`` allows only ``Collection``);
* an upload answers 201 (the spec documents 200): its body is checked against the 200 entry.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.validation.response.exceptions import InvalidData

from tests.emulator.spec_check import validate
from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.state import EmulatorState

SPEC_PATH = Path(__file__).resolve().parents[1] / "specs/openproject-v3-attachments.json"
SPEC_HOST = "https://community.openproject.org"
TOKEN = "spec-token"
V3 = "/api/v3"


def server_spec() -> dict[str, Any]:
    """The trimmed spec with the servers' known deviations allowed (see the module docstring)."""
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    collection = copy.deepcopy(spec["components"]["schemas"]["CollectionModel"])
    collection["properties"]["_type"]["enum"] = ["Collection", "WorkPackageCollection"]
    spec["components"]["schemas"]["CollectionModel"] = collection
    return spec


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    # HAL+JSON is JSON; openapi-core knows only application/json by name
    config = Config(
        spec_validator_cls=None, extra_media_type_deserializers={"application/hal+json": json.loads}
    )
    return OpenAPI.from_dict(server_spec(), config=config)


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    emulator = EmulatorState(EmulatorOptions(tracker="openproject", token=TOKEN, page_size=5), tmp_path)
    emulator.media_url = "http://media.test"
    return emulator


@pytest.fixture
async def api(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://openproject.test", auth=("apikey", TOKEN)
    ) as client:
        yield client


def check(
    openapi: OpenAPI, response: httpx.Response, path_pattern: str, *, status: int | None = None
) -> None:
    """Validate one emulator response against the operation it answers."""
    validate(
        openapi, response, path_pattern, host=SPEC_HOST, status=status, content_type="application/hal+json"
    )


def hal_response(body: dict[str, Any], request: httpx.Request) -> httpx.Response:
    """A forged 200 with ``body`` as HAL+JSON."""
    headers = {"content-type": "application/hal+json"}
    return httpx.Response(200, content=json.dumps(body).encode(), headers=headers, request=request)


def wp(state: EmulatorState, key: str) -> str:
    issue = state.store.issue_by_key(key)
    assert issue is not None
    return issue.id


async def test_root_configuration_and_projects(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    check(openapi, await api.get(V3), V3)
    check(openapi, await api.get(f"{V3}/configuration"), f"{V3}/configuration")
    listing = await api.get(f"{V3}/projects", params={"pageSize": 1})
    assert listing.json()["_links"]["nextByOffset"]
    check(openapi, listing, f"{V3}/projects")
    check(openapi, await api.get(f"{V3}/projects/1"), f"{V3}/projects/{{id}}")
    missing = await api.get(f"{V3}/projects/999")
    assert missing.status_code == 404
    check(openapi, missing, f"{V3}/projects/{{id}}")


async def test_work_packages(openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState) -> None:
    for params in ({"filters": "[]"}, {"offset": 3, "pageSize": 5}):
        listing = await api.get(f"{V3}/projects/1/work_packages", params=params)
        assert listing.status_code == 200 and listing.json()["_embedded"]["elements"]
        check(openapi, listing, f"{V3}/projects/{{id}}/work_packages")
    for key in ("DEMO-1", "DEMO-3", "DEMO-12"):
        one = await api.get(f"{V3}/work_packages/{wp(state, key)}")
        check(openapi, one, f"{V3}/work_packages/{{id}}")
    missing = await api.get(f"{V3}/work_packages/99999")
    assert missing.status_code == 404
    check(openapi, missing, f"{V3}/work_packages/{{id}}")


async def test_attachments_including_hostile_names_and_quarantine(
    openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState
) -> None:
    for key in ("DEMO-1", "DEMO-2", "DEMO-3", "OPS-3"):
        listing = await api.get(f"{V3}/work_packages/{wp(state, key)}/attachments")
        assert listing.json()["total"] >= 2
        check(openapi, listing, f"{V3}/work_packages/{{id}}/attachments")
    for attachment in list(state.store.attachments.values())[:3]:
        check(openapi, await api.get(f"{V3}/attachments/{attachment.id}"), f"{V3}/attachments/{{id}}")
    missing = await api.get(f"{V3}/attachments/99999")
    assert missing.status_code == 404
    check(openapi, missing, f"{V3}/attachments/{{id}}")


async def test_upload_and_delete(openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState) -> None:
    path = f"{V3}/work_packages/{{id}}/attachments"
    files = [
        ("metadata", (None, json.dumps({"fileName": "cat.png"}), "application/json")),
        ("file", ("cat.png", b"\x89PNG\r\n", "image/png")),
    ]
    created = await api.post(f"{V3}/work_packages/{wp(state, 'DEMO-4')}/attachments", files=files)
    assert created.status_code == 201
    check(openapi, created, path, status=200)
    for answer in (
        await api.post(f"{V3}/work_packages/{wp(state, 'DEMO-4')}/attachments", files=files[1:]),
        await api.post(f"{V3}/work_packages/99999/attachments", files=files),
    ):
        assert answer.status_code in (400, 404)
        check(openapi, answer, path)
    state.config.update({"upload_limit": 2})
    too_large = await api.post(f"{V3}/work_packages/{wp(state, 'DEMO-4')}/attachments", files=files)
    assert too_large.status_code == 422
    check(openapi, too_large, path)
    ident = created.json()["id"]
    state.config.update({"delete_attachments": "none"})
    denied = await api.delete(f"{V3}/attachments/{ident}")
    assert denied.status_code == 403
    check(openapi, denied, f"{V3}/attachments/{{id}}")
    state.config.update({"delete_attachments": "all"})
    deleted = await api.delete(f"{V3}/attachments/{ident}")
    assert deleted.status_code == 204
    check(openapi, deleted, f"{V3}/attachments/{{id}}")


async def test_validation_catches_a_wrong_shape(
    openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState
) -> None:
    """The checks above can fail: wrongly typed fields and a wrong ``_type`` are rejected."""
    ident = next(iter(state.store.attachments))
    response = await api.get(f"{V3}/attachments/{ident}")
    body = response.json()
    for field, value in (
        ("fileSize", "75"),
        ("digest", "md5"),
        ("createdAt", "yesterday"),
        ("status", "done"),
    ):
        forged = hal_response({**body, field: value}, response.request)
        with pytest.raises(InvalidData):
            check(openapi, forged, f"{V3}/attachments/{{id}}")
    listing = await api.get(f"{V3}/projects")
    forged = hal_response({**listing.json(), "_type": "Projects"}, listing.request)
    with pytest.raises(InvalidData):
        check(openapi, forged, f"{V3}/projects")
