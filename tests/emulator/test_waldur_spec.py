"""The emulator's Waldur responses checked against Waldur Mastermind's 8.0.5 OpenAPI spec."""

from __future__ import annotations

import json
import uuid
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

#: The operations the emulator serves, cut from the 4 MB YAML by tests/specs/trim.py.
SPEC_PATH = Path(__file__).resolve().parents[1] / "specs/waldur-8.0.5.json"
HOST = "http://waldur.test"
TOKEN = "spec-token"


def waldur_uuid(value: Any) -> bool:
    """``uuid`` as Waldur really sends it.

    The spec declares the dashed ``format: uuid``, but Waldur serialises uuids as 32 hex
    digits without dashes (tracker-apis.md 3.11, the example in 3.5); the emulator follows
    the server and accepts the dashed form on input. Anything else is still rejected.
    """
    if not isinstance(value, str):
        return True
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return value in (parsed.hex, str(parsed))


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """Waldur's spec, loaded once (the spec itself is not re-validated)."""
    spec = json.loads(SPEC_PATH.read_text())
    # `feedback` is `allOf: [NestedFeedback]` with `nullable: true`, which OpenAPI 3.0 tools
    # (openapi-core among them) read as not nullable; Waldur sends null for an issue without
    # feedback. Say the same thing in a form the validator reads.
    schemas = spec["components"]["schemas"]
    schemas["Issue"]["properties"]["feedback"] = {**schemas["NestedFeedback"], "nullable": True}
    config = Config(spec_validator_cls=None, extra_format_validators={"uuid": waldur_uuid})
    return OpenAPI.from_dict(spec, config=config)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of a demo-seeded Waldur emulator, in process."""
    state = EmulatorState(EmulatorOptions(tracker="waldur", token=TOKEN), tmp_path)
    transport = httpx.ASGITransport(app=create_app(state))
    headers = {"Authorization": f"Token {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url=HOST, headers=headers) as client:
        yield client


def check(openapi: OpenAPI, response: httpx.Response, path_pattern: str) -> None:
    """Validate one emulator response against the operation it answers."""
    validate(openapi, response, path_pattern, host=HOST)


async def all_of(api: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    """One page of up to 300 items (the demo seed fits)."""
    response = await api.get(path, params={"page_size": 300})
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()
    return items


async def test_lists_and_details(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    for collection in ("customers", "projects", "support-issues", "support-attachments"):
        path = f"/api/{collection}/"
        listed = await api.get(path, params={"page_size": 300})
        assert listed.status_code == 200 and listed.json()
        check(openapi, listed, path)
        for item in listed.json():
            check(openapi, await api.get(item["url"]), f"/api/{collection}/{{uuid}}/")


async def test_issues_with_blank_keys_and_flags(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    issues = await all_of(api, "/api/support-issues/")
    assert {i["key"] == "" for i in issues} == {True, False}
    assert {i["destroy_is_available"] for i in issues} == {True, False}
    assert {i["add_attachment_is_available"] for i in issues} == {True, False}


async def test_upload_and_delete(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    issue = (await all_of(api, "/api/support-issues/"))[0]
    created = await api.post(
        "/api/support-attachments/", files=[("issue", (None, issue["url"])), ("file", ("a b.txt", b"abc"))]
    )
    assert created.status_code == 201
    check(openapi, created, "/api/support-attachments/")
    deleted = await api.delete(created.json()["url"])
    assert deleted.status_code == 204
    check(openapi, deleted, "/api/support-attachments/{uuid}/")


async def test_media_and_head(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    readme = next(a for a in await all_of(api, "/api/support-attachments/") if a["file_name"] == "readme.txt")
    content = await api.get(readme["file"])
    assert content.status_code == 200 and content.content.startswith(b"trackerfs demo")
    head = await api.head("/api/support-attachments/")
    assert head.status_code == 200 and int(head.headers["x-result-count"]) > 0
    check(openapi, head, "/api/support-attachments/")


async def test_validation_catches_a_wrong_shape(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    """The check above can fail: a wrongly typed or missing required field is rejected."""
    listed = await api.get("/api/support-issues/", params={"page_size": 1})
    (issue,) = listed.json()
    for broken in ({**issue, "destroy_is_available": "no"}, {k: v for k, v in issue.items() if k != "key"}):
        forged = httpx.Response(200, json=[broken], request=listed.request)
        with pytest.raises(InvalidData):
            check(openapi, forged, "/api/support-issues/")
    attachments = await api.get("/api/support-attachments/", params={"page_size": 1})
    for field, value in (("file_size", "3"), ("uuid", "not-a-uuid")):
        forged = httpx.Response(
            200, json=[{**attachments.json()[0], field: value}], request=attachments.request
        )
        with pytest.raises(InvalidData):
            check(openapi, forged, "/api/support-attachments/")
