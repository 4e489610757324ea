"""The emulator's Jira responses checked against Atlassian's published OpenAPI spec."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import FormatChecker
from openapi_core import Config, OpenAPI
from openapi_core.validation.response.exceptions import InvalidData
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.emulator.spec_check import validate
from trackerfs.emulator.state import EmulatorState

#: The parts of Atlassian's spec the emulator serves, kept in the repository (tests/specs/trim.py
#: cuts them from the full spec), so these tests run from any clean clone.
SPEC_PATH = Path(__file__).resolve().parents[1] / "specs/jira-cloud-v3.json"
SPEC_HOST = "https://your-domain.atlassian.net"
V3 = "/rest/api/3"
UPLOAD_HEADERS = {"X-Atlassian-Token": "no-check"}


def jira_date_time(value: Any) -> bool:
    """``date-time`` as Jira really sends it.

    The spec declares RFC 3339 ``date-time`` but Jira answers ``2026-01-05T10:00:00.000+0000``
    (no colon in the offset; see tracker-apis.md 1.5). The emulator follows the servers;
    anything else is still rejected.
    """
    if not isinstance(value, str):
        return True
    for layout in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            datetime.strptime(value, layout)
        except ValueError:
            continue
        return True
    return False


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """The Jira Cloud v3 spec, loaded once (2.4 MB; the spec itself is not re-validated)."""
    spec = json.loads(SPEC_PATH.read_text())
    return OpenAPI.from_dict(
        spec,
        config=Config(spec_validator_cls=None, extra_format_validators={"date-time": jira_date_time}),
    )


@pytest.fixture(scope="session")
def attachment_schema(openapi: OpenAPI) -> OAS30Validator:
    """A validator of the spec's ``Attachment`` component (IssueBean.fields is free-form,
    so embedded attachments are checked against the component directly)."""
    spec = json.loads(SPEC_PATH.read_text())
    registry: Registry[Any] = Registry().with_resource(
        "urn:jira", Resource.from_contents(spec, default_specification=DRAFT4)
    )
    checker = FormatChecker()
    checker.checkers = dict(oas30_format_checker.checkers)
    checker.checks("date-time")(jira_date_time)
    return OAS30Validator(
        {"$ref": "urn:jira#/components/schemas/Attachment"}, registry=registry, format_checker=checker
    )


def assert_attachments_valid(validator: OAS30Validator, body: dict[str, Any]) -> int:
    """Validate every ``fields.attachment`` item of a search or issue body; returns how many."""
    issues = body.get("issues", [body])
    items = [a for issue in issues for a in issue["fields"].get("attachment", [])]
    for item in items:
        errors = [error.message for error in validator.iter_errors(item)]
        assert errors == [], (item["filename"], errors)
    return len(items)


def check(openapi: OpenAPI, response: httpx.Response, path_pattern: str) -> None:
    """Validate one emulator response against the operation it answers."""
    validate(openapi, response, path_pattern, host=SPEC_HOST)


async def test_project_search(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    response = await api.get(f"{V3}/project/search", params={"maxResults": 1})
    assert response.status_code == 200 and response.json()["values"]
    check(openapi, response, f"{V3}/project/search")


async def test_search_jql_with_attachments(
    openapi: OpenAPI, attachment_schema: OAS30Validator, api: httpx.AsyncClient
) -> None:
    for fields in ("attachment,summary,created,updated,project", "*all", None):
        params = {"jql": "project = DEMO", "maxResults": 5, **({"fields": fields} if fields else {})}
        response = await api.get(f"{V3}/search/jql", params=params)
        assert response.status_code == 200 and "nextPageToken" in response.json()
        check(openapi, response, f"{V3}/search/jql")
        if fields:
            assert assert_attachments_valid(attachment_schema, response.json()) >= 6
    last = await api.get(f"{V3}/search/jql", params={"jql": "project = OPS", "fields": "attachment"})
    assert last.json()["isLast"] is True
    check(openapi, last, f"{V3}/search/jql")


async def test_search_jql_error_body(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    response = await api.get(f"{V3}/search/jql", params={"jql": ""})
    assert response.status_code == 400
    check(openapi, response, f"{V3}/search/jql")


async def test_issue_with_hostile_attachment_names(
    openapi: OpenAPI, attachment_schema: OAS30Validator, api: httpx.AsyncClient
) -> None:
    for key in ("DEMO-1", "DEMO-3"):
        response = await api.get(f"{V3}/issue/{key}")
        assert response.status_code == 200 and response.json()["fields"]["attachment"]
        check(openapi, response, f"{V3}/issue/{{issueIdOrKey}}")
        assert assert_attachments_valid(attachment_schema, response.json()) >= 6
    missing = await api.get(f"{V3}/issue/DEMO-404")
    assert missing.status_code == 404
    check(openapi, missing, f"{V3}/issue/{{issueIdOrKey}}")


async def test_attachment_meta_and_metadata(
    openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState
) -> None:
    meta = await api.get(f"{V3}/attachment/meta")
    check(openapi, meta, f"{V3}/attachment/meta")
    for name in ("readme.txt", "diagram.png"):  # text and image (with thumbnail)
        ident = next(a.id for a in state.store.attachments.values() if a.filename == name)
        response = await api.get(f"{V3}/attachment/{ident}")
        assert response.status_code == 200
        check(openapi, response, f"{V3}/attachment/{{id}}")


async def test_my_permissions(openapi: OpenAPI, api: httpx.AsyncClient, state: EmulatorState) -> None:
    state.config.update({"delete_attachments": "own"})
    params = {"issueKey": "DEMO-1", "permissions": "CREATE_ATTACHMENTS,DELETE_ALL_ATTACHMENTS"}
    response = await api.get(f"{V3}/mypermissions", params=params)
    assert response.status_code == 200
    check(openapi, response, f"{V3}/mypermissions")
    missing = await api.get(f"{V3}/mypermissions", params={**params, "issueKey": "DEMO-404"})
    assert missing.status_code == 404
    check(openapi, missing, f"{V3}/mypermissions")


async def test_upload_response(openapi: OpenAPI, api: httpx.AsyncClient) -> None:
    response = await api.post(
        f"{V3}/issue/DEMO-4/attachments",
        files=[("file", ("a.txt", b"abc")), ("file", ("picture.png", b"\x89PNG"))],
        headers=UPLOAD_HEADERS,
    )
    assert response.status_code == 200 and len(response.json()) == 2
    check(openapi, response, f"{V3}/issue/{{issueIdOrKey}}/attachments")


async def test_validation_catches_a_wrong_shape(
    openapi: OpenAPI, attachment_schema: OAS30Validator, api: httpx.AsyncClient, state: EmulatorState
) -> None:
    """The check above can fail: a body with a wrongly typed field is rejected."""
    response = await api.get(f"{V3}/attachment/meta")
    broken: dict[str, Any] = {"enabled": "yes", "uploadLimit": "big"}
    forged = httpx.Response(200, json=broken, request=response.request)
    with pytest.raises(InvalidData):
        check(openapi, forged, f"{V3}/attachment/meta")
    readme = next(a.id for a in state.store.attachments.values() if a.filename == "readme.txt")
    metadata = (await api.get(f"{V3}/attachment/{readme}")).json()
    for field, value in (("created", "yesterday"), ("size", "75"), ("id", readme)):
        forged = httpx.Response(200, json={**metadata, field: value}, request=response.request)
        with pytest.raises(InvalidData):
            check(openapi, forged, f"{V3}/attachment/{{id}}")
    assert list(attachment_schema.iter_errors({"id": 10000, "size": "big"}))
