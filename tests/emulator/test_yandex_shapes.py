"""The Yandex dialect's JSON against the shapes Tracker's documentation gives.

Tracker publishes no OpenAPI document; these schemas write down the documented objects
(queue, issue, attachment, reference, error) with their formats: ids as strings, 24-hex
issue ids, ``QUEUE-N`` keys, times as ``2017-06-11T05:11:12.347+0000``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.state import EmulatorState

TOKEN = "shape-token"
API = "http://tracker.test"
TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$"

REFERENCE: dict[str, Any] = {
    "type": "object",
    "required": ["self", "id", "display"],
    "properties": {
        "self": {"type": "string", "pattern": f"^{API}/v2/"},
        "id": {"type": "string"},
        "display": {"type": "string"},
    },
}
QUEUE: dict[str, Any] = {
    "type": "object",
    "required": [
        "self",
        "id",
        "key",
        "version",
        "name",
        "description",
        "lead",
        "assignAuto",
        "defaultType",
        "defaultPriority",
        "teamUsers",
    ],
    "properties": {
        "id": {"type": "string"},
        "key": {"type": "string", "pattern": "^[A-Z]+$"},
        "version": {"type": "integer"},
        "lead": REFERENCE,
        "defaultType": REFERENCE,
        "defaultPriority": REFERENCE,
        "assignAuto": {"type": "boolean"},
        "teamUsers": {"type": "array"},
    },
}
ATTACHMENT: dict[str, Any] = {
    "type": "object",
    "required": ["self", "id", "name", "content", "createdBy", "createdAt", "mimetype", "size"],
    "properties": {
        "self": {"type": "string", "pattern": rf"^{API}/v2/issues/[A-Z]+-\d+/attachments/\d+$"},
        "id": {"type": "string", "pattern": r"^\d+$"},
        "name": {"type": "string"},
        "content": {"type": "string", "pattern": rf"^{API}/v2/issues/[A-Z]+-\d+/attachments/\d+/"},
        "thumbnail": {"type": "string"},
        "createdBy": REFERENCE,
        "createdAt": {"type": "string", "pattern": TIME},
        "mimetype": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "metadata": {
            "type": "object",
            "properties": {"size": {"type": "string", "pattern": r"^\d+x\d+$"}},
        },
    },
}
ISSUE: dict[str, Any] = {
    "type": "object",
    "required": ["self", "id", "key", "version", "summary", "queue", "createdAt", "updatedAt"],
    "properties": {
        "self": {"type": "string", "pattern": rf"^{API}/v2/issues/[A-Z]+-\d+$"},
        "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
        "key": {"type": "string", "pattern": r"^[A-Z]+-\d+$"},
        "version": {"type": "integer"},
        "summary": {"type": "string"},
        "queue": {**REFERENCE, "required": ["self", "id", "key", "display"]},
        "aliases": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Z]+-\d+$"}},
        "createdAt": {"type": "string", "pattern": TIME},
        "updatedAt": {"type": "string", "pattern": TIME},
        "attachments": {"type": "array", "items": ATTACHMENT},
        "commentWithoutExternalMessageCount": {"type": "integer", "minimum": 1},
    },
}
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["errors", "errorMessages", "statusCode"],
    "additionalProperties": False,
    "properties": {
        "errors": {"type": "object"},
        "errorMessages": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "statusCode": {"type": "integer"},
    },
}


def array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    state = EmulatorState(EmulatorOptions(tracker="yandex", token=TOKEN), tmp_path)
    transport = httpx.ASGITransport(app=create_app(state))
    headers = {"Authorization": f"OAuth {TOKEN}", "X-Org-ID": "12345"}
    async with httpx.AsyncClient(transport=transport, base_url=API, headers=headers) as client:
        yield client


async def test_queues_have_the_documented_shape(api: httpx.AsyncClient) -> None:
    response = await api.get("/v2/queues/", params={"perPage": 2})
    jsonschema.validate(response.json(), array_of(QUEUE))
    assert int(response.headers["x-total-count"]) == 3 and int(response.headers["x-total-pages"]) == 2
    jsonschema.validate((await api.get("/v2/queues/YAN")).json(), QUEUE)


async def test_issues_and_attachments_have_the_documented_shape(api: httpx.AsyncClient) -> None:
    for queue in ("DEMO", "OPS", "YAN"):
        found = await api.post(
            "/v2/issues/_search", params={"expand": "attachments", "perPage": 50}, json={"queue": queue}
        )
        jsonschema.validate(found.json(), array_of(ISSUE))
        for issue in found.json():
            listed = (await api.get(f"/v2/issues/{issue['key']}/attachments")).json()
            jsonschema.validate(listed, array_of(ATTACHMENT))
            assert listed == issue["attachments"]
    jsonschema.validate((await api.get("/v2/issues/OPS-3?expand=attachments")).json(), ISSUE)


async def test_uploads_and_errors_have_the_documented_shape(api: httpx.AsyncClient) -> None:
    created = await api.post("/v2/issues/DEMO-7/attachments/?filename=a.txt", files={"file": ("file", b"a")})
    assert created.status_code == 201
    jsonschema.validate(created.json(), ATTACHMENT)
    for response in (
        await api.get("/v2/issues/NOPE-1"),
        await api.get("/v2/queues/", headers={"X-Org-ID": "1"}),
        await api.post("/v2/issues/_search", json={"queue": "DEMO", "query": "Queue: DEMO"}),
    ):
        jsonschema.validate(response.json(), ERROR)
        assert response.json()["statusCode"] == response.status_code
