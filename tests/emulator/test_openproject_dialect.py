"""The OpenProject dialect in process: HAL collections, paging, auth, filters, content, uploads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from trackerfs.emulator import EmulatorOptions, create_app, create_media_app
from trackerfs.emulator.state import EmulatorState

TOKEN = "op-token"
API = "http://openproject.test"
MEDIA = "http://storage.test"
V3 = "/api/v3"
ERRORS = "urn:openproject-org:api:v3:errors:"


def make_state(tmp_path: Path, flavour: str = "local") -> EmulatorState:
    state = EmulatorState(
        EmulatorOptions(tracker="openproject", flavour=flavour, token=TOKEN, page_size=5), tmp_path
    )
    state.media_url = MEDIA
    return state


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    return make_state(tmp_path)


@pytest.fixture
async def api(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, auth=("apikey", TOKEN)) as client:
        yield client


def stored(state: EmulatorState, filename: str) -> str:
    return next(a.id for a in state.store.attachments.values() if a.filename == filename)


def wp_id(state: EmulatorState, key: str) -> str:
    issue = state.store.issue_by_key(key)
    assert issue is not None
    return issue.id


def upload_parts(name: str, data: bytes, *, metadata: Any = None) -> list[tuple[str, Any]]:
    """The two parts in the documented order: ``metadata`` (JSON) first, then ``file``."""
    meta = json.dumps({"fileName": name} if metadata is None else metadata)
    return [
        ("metadata", (None, meta, "application/json")),
        ("file", ("ignored-part-name.bin", data, "application/octet-stream")),
    ]


def assert_error(response: httpx.Response, status: int, identifier: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["_type"] == "Error" and body["errorIdentifier"] == ERRORS + identifier
    assert response.headers["content-type"].startswith("application/hal+json")
    message: str = body["message"]
    return message


# -- auth ----------------------------------------------------------------------------------------


async def test_apikey_basic_and_bearer_are_accepted_and_others_get_401(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{V3}/users/me")).json()["login"] == "tester@example.com"
    bearer = await api.get(f"{V3}/users/me", auth=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    missing = await api.get(f"{V3}/projects", auth=None)
    assert assert_error(missing, 401, "Unauthenticated").startswith("You need to be authenticated")
    assert missing.headers["www-authenticate"].startswith("Basic")
    # the user name must be literally `apikey`, not a login
    for auth in (("tester@example.com", TOKEN), ("apikey", "wrong")):
        refused = await api.get(f"{V3}/projects", auth=auth)
        assert assert_error(refused, 401, "Unauthenticated") == "You did not provide the correct credentials."


async def test_unknown_api_path_is_a_hal_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.get(f"{V3}/nothing/here"), 404, "NotFound")


# -- projects and paging -------------------------------------------------------------------------


async def test_projects_are_a_collection_by_identifier_and_hidden_ones_are_404(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    body = (await api.get(f"{V3}/projects")).json()
    assert body["_type"] == "Collection" and body["total"] == 2 and body["offset"] == 1
    assert [p["identifier"] for p in body["_embedded"]["elements"]] == ["demo", "ops"]
    assert "nextByOffset" not in body["_links"]
    demo = (await api.get(f"{V3}/projects/demo")).json()
    assert demo["id"] == int(state.store.project_by_key("DEMO").id)  # type: ignore[union-attr]
    assert (await api.get(f"{V3}/projects/{demo['id']}")).json()["identifier"] == "demo"
    hr = state.store.project_by_key("HR")
    assert hr is not None
    for path in ("/projects/hr", f"/projects/{hr.id}", f"/projects/{hr.id}/work_packages"):
        assert_error(await api.get(V3 + path), 404, "NotFound")


async def test_offset_is_a_page_number_and_next_by_offset_ends_the_listing(api: httpx.AsyncClient) -> None:
    path = f"{V3}/projects/demo/work_packages"
    seen: list[str] = []
    url: str | None = f"{path}?filters=[]&pageSize=4"
    pages = 0
    while url is not None:
        body = (await api.get(url)).json()
        pages += 1
        assert body["offset"] == pages and body["pageSize"] == 4 and body["total"] == 12
        assert body["count"] == len(body["_embedded"]["elements"])
        seen += [wp["displayId"] for wp in body["_embedded"]["elements"]]
        nxt = body["_links"].get("nextByOffset")
        url = nxt["href"] if nxt else None
        if url is not None:
            query = parse_qs(urlsplit(url).query)
            assert query["offset"] == [str(pages + 1)] and query["filters"] == ["[]"]
    assert pages == 3 and seen == [f"DEMO-{n}" for n in range(1, 13)]
    assert body["_links"]["previousByOffset"]["href"].endswith("offset=2&pageSize=4")
    assert (
        body["_links"]["jumpTo"]["templated"] is True and "%7Boffset%7D" in body["_links"]["jumpTo"]["href"]
    )


async def test_page_size_is_capped_defaults_and_past_the_end_is_empty(api: httpx.AsyncClient) -> None:
    path = f"{V3}/projects/demo/work_packages"
    capped = (await api.get(path, params={"pageSize": 1000, "filters": "[]"})).json()
    assert capped["pageSize"] == 5 and capped["count"] == 5  # the instance maximum
    assert (await api.get(path, params={"pageSize": -1})).json()["pageSize"] == 5
    zero = (await api.get(path, params={"pageSize": 0, "filters": "[]"})).json()
    assert zero["count"] == 0 and zero["total"] == 12
    beyond = (await api.get(path, params={"offset": 9, "filters": "[]"})).json()
    assert beyond["count"] == 0 and beyond["offset"] == 9 and "nextByOffset" not in beyond["_links"]
    # Ruby's to_i: garbage and 0 mean the first page
    assert (await api.get(path, params={"offset": "x"})).json()["offset"] == 1


# -- work packages -------------------------------------------------------------------------------


async def test_closed_work_packages_need_an_explicit_filter(api: httpx.AsyncClient) -> None:
    path = f"{V3}/projects/demo/work_packages"

    async def keys(**params: Any) -> list[str]:
        found: list[str] = []
        for page in range(1, 5):
            body = (await api.get(path, params={"offset": page, **params})).json()
            found += [wp["displayId"] for wp in body["_embedded"]["elements"]]
        return found

    assert await keys() == [f"DEMO-{n}" for n in range(1, 12)]  # default: open only
    everything = [f"DEMO-{n}" for n in range(1, 13)]
    assert await keys(filters="[]") == everything
    # what openproject-api-client's status="all" sends
    assert await keys(filters='[{"status_id":{"operator":"*","values":null}}]') == everything
    assert await keys(filters='[{"status":{"operator":"c","values":null}}]') == ["DEMO-12"]
    assert await keys(filters='[{"status_id":{"operator":"=","values":["12"]}}]') == ["DEMO-12"]
    assert await keys(filters="[]", sortBy='[["id","desc"]]') == everything[::-1]
    bad = await api.get(path, params={"filters": '[{"colour":{"operator":"=","values":["red"]}}]'})
    assert_error(bad, 400, "InvalidQuery")
    assert_error(await api.get(path, params={"filters": "not json"}), 400, "InvalidQuery")


async def test_work_package_by_id_or_semantic_id_embeds_its_attachments(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = wp_id(state, "DEMO-1")
    by_id = (await api.get(f"{V3}/work_packages/{ident}")).json()
    by_key = (await api.get(f"{V3}/work_packages/DEMO-1")).json()
    assert by_id == by_key and by_id["id"] == int(ident) and by_id["displayId"] == "DEMO-1"
    embedded = by_id["_embedded"]["attachments"]
    assert embedded["total"] == 6 and embedded["_embedded"]["elements"][0]["fileName"] == "readme.txt"
    links = by_id["_links"]
    assert links["attachments"]["href"] == f"{V3}/work_packages/{ident}/attachments"
    assert links["addAttachment"]["method"] == "post"
    for name in ("type", "priority", "status", "project", "author", "self"):
        assert links[name]["href"] and links[name]["title"], name
    assert links["status"]["title"] == "New"
    assert_error(await api.get(f"{V3}/work_packages/DEMO-9999"), 404, "NotFound")
    assert_error(await api.get(f"{V3}/work_packages/{wp_id(state, 'HR-1')}"), 404, "NotFound")
    assert_error(await api.get(f"{V3}/work_packages/HR-1/attachments"), 404, "NotFound")


async def test_classic_mode_shows_numeric_display_ids_and_resolves_only_ids(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    state.config.update({"classic_ids": True})
    ident = wp_id(state, "DEMO-2")
    assert (await api.get(f"{V3}/work_packages/{ident}")).json()["displayId"] == ident
    assert_error(await api.get(f"{V3}/work_packages/DEMO-2"), 404, "NotFound")
    listed = (await api.get(f"{V3}/projects/demo/work_packages")).json()["_embedded"]["elements"]
    assert all(wp["displayId"] == str(wp["id"]) for wp in listed)


# -- attachments and content ---------------------------------------------------------------------


async def test_attachments_carry_md5_digest_status_and_links(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    body = (await api.get(f"{V3}/work_packages/DEMO-2/attachments")).json()
    assert body["_type"] == "Collection" and body["total"] == 3
    names = [a["fileName"] for a in body["_embedded"]["elements"]]
    assert names == ["notes.txt", "notes.txt", "notes (2).txt"]
    first = body["_embedded"]["elements"][0]
    record = state.store.attachments[str(first["id"])]
    assert first["digest"] == {"algorithm": "md5", "hash": record.md5}
    assert first["fileSize"] == record.size and first["status"] == "uploaded"
    assert first["_links"]["downloadLocation"]["href"] == f"{V3}/attachments/{first['id']}/content"
    assert first["_links"]["author"]["title"] == "Alice Example"
    one = (await api.get(f"{V3}/attachments/{first['id']}")).json()
    assert one == first


async def test_local_content_is_200_with_range_per_the_switch(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = stored(state, "big.bin")
    data = state.store.blob_path(state.store.attachments[ident]).read_bytes()
    whole = await api.get(f"{V3}/attachments/{ident}/content")
    assert (
        whole.status_code == 200
        and hashlib.md5(whole.content).hexdigest() == state.store.attachments[ident].md5
    )
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["content-disposition"].startswith('attachment; filename="big.bin"')
    part = await api.get(f"{V3}/attachments/{ident}/content", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    state.config.update({"range_support": False})
    ignored = await api.get(f"{V3}/attachments/{ident}/content", headers={"Range": "bytes=10-19"})
    assert ignored.status_code == 200 and len(ignored.content) == len(data)
    text = await api.get(f"{V3}/attachments/{stored(state, 'readme.txt')}/content")
    assert text.headers["content-type"].startswith("text/plain")
    hostile = await api.get(f"{V3}/attachments/{stored(state, 'line' + chr(10) + 'break.txt')}/content")
    assert hostile.status_code == 200 and "\n" not in hostile.headers["content-disposition"]


async def test_quarantined_attachment_is_listed_but_its_content_refused(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    listed = (await api.get(f"{V3}/work_packages/OPS-3/attachments")).json()["_embedded"]["elements"]
    assert {a["fileName"]: a["status"] for a in listed} == {
        "scanned.txt": "uploaded",
        "eicar.com": "quarantined",
    }
    refused = await api.get(f"{V3}/attachments/{stored(state, 'eicar.com')}/content")
    assert "quarantined" in assert_error(refused, 403, "MissingPermission")
    assert_error(await api.get(f"{V3}/attachments/{stored(state, 'salaries.csv')}"), 404, "NotFound")


async def test_remote_storage_redirects_to_signed_expiring_media_urls(tmp_path: Path) -> None:
    state = make_state(tmp_path, "remote")
    api_app = httpx.ASGITransport(app=create_app(state))
    media_app = httpx.ASGITransport(app=create_media_app(state))
    async with (
        httpx.AsyncClient(transport=api_app, base_url=API, auth=("apikey", TOKEN)) as api,
        httpx.AsyncClient(transport=media_app, base_url=MEDIA) as media,
    ):
        ident = stored(state, "spec.pdf")
        answer = await api.get(f"{V3}/attachments/{ident}/content")
        assert answer.status_code == 302 and answer.headers["cache-control"].startswith("public, max-age=")
        location = answer.headers["location"]
        assert location.startswith(MEDIA)
        listed = (await api.get(f"{V3}/attachments/{ident}")).json()["_links"]
        assert listed["downloadLocation"]["href"].startswith(MEDIA)
        assert listed["staticDownloadLocation"]["href"] == f"{V3}/attachments/{ident}/content"
        fetched = await media.get(location)
        assert fetched.status_code == 200 and fetched.content.startswith(b"%PDF")
        # no credentials on the storage origin
        assert (await media.get(location, headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 403
        state.config.update({"media_ttl": -30})
        expired = (await api.get(f"{V3}/attachments/{ident}/content")).headers["location"]
        assert (await media.get(expired)).status_code == 401


# -- uploads and deletes ---------------------------------------------------------------------------


async def test_upload_takes_the_name_from_metadata_and_answers_201(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    payload = b"uploaded through the API\n" * 50
    answer = await api.post(
        f"{V3}/work_packages/DEMO-4/attachments", files=upload_parts("report ü.txt", payload)
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["fileName"] == "report ü.txt" and body["fileSize"] == len(payload)
    assert body["digest"]["hash"] == hashlib.md5(payload).hexdigest()
    record = state.store.attachments[str(body["id"])]
    assert record.issue == wp_id(state, "DEMO-4") and record.author.email == "tester@example.com"
    # parts are found by name: file first works too
    reordered = list(reversed(upload_parts("second.txt", b"x")))
    assert (await api.post(f"{V3}/work_packages/DEMO-4/attachments", files=reordered)).status_code == 201
    # metadata sent as a file part of its own is read all the same
    as_file = [("metadata", ("meta.json", b'{"fileName": "third.txt"}', "application/json")), reordered[0]]
    third = await api.post(f"{V3}/work_packages/DEMO-4/attachments", files=as_file)
    assert third.status_code == 201 and third.json()["fileName"] == "third.txt"
    assert not list(state.upload_dir.iterdir())


async def test_upload_errors(api: httpx.AsyncClient, state: EmulatorState) -> None:
    url = f"{V3}/work_packages/DEMO-4/attachments"
    assert_error(await api.post(url, files=upload_parts("", b"x")), 422, "PropertyConstraintViolation")
    assert_error(
        await api.post(url, files=upload_parts("x", b"x", metadata={"name": "x"})),
        422,
        "PropertyConstraintViolation",
    )
    broken = [("metadata", (None, "{not json", "application/json")), ("file", ("f", b"x"))]
    assert (
        assert_error(await api.post(url, files=broken), 400, "InvalidRequestBody")
        == "The request could not be parsed as JSON."
    )
    assert_error(await api.post(url, files=[("file", ("f", b"x"))]), 400, "InvalidRequestBody")
    assert_error(await api.post(url, files=[upload_parts("x", b"")[0]]), 400, "InvalidRequestBody")
    assert_error(await api.post(url, json={"fileName": "x"}), 415, "TypeNotSupported")
    missing_type = await api.post(url, content=b"raw")
    assert missing_type.status_code == 406 and missing_type.text == "Missing content-type header"
    assert_error(
        await api.post(f"{V3}/work_packages/HR-1/attachments", files=upload_parts("x", b"x")), 404, "NotFound"
    )
    prepare = await api.post(f"{url}/prepare", files=[upload_parts("x", b"")[0]])
    assert "Direct file upload is not available" in assert_error(prepare, 422, "PropertyConstraintViolation")
    state.config.update({"upload_limit": 10})
    too_large = await api.post(url, files=upload_parts("big.txt", b"y" * 11))
    assert (
        assert_error(too_large, 422, "PropertyConstraintViolation")
        == "File is too large (maximum size is 10 Bytes)."
    )
    assert (await api.get(f"{V3}/configuration")).json()["maximumAttachmentFileSize"] == 10
    state.config.update({"create_attachments": False})
    assert_error(await api.post(url, files=upload_parts("x", b"x")), 403, "MissingPermission")
    assert "addAttachment" not in (await api.get(f"{V3}/work_packages/DEMO-4")).json()["_links"]
    assert not list(state.upload_dir.iterdir())


async def test_delete_answers_204_then_404_and_403_when_denied(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = stored(state, "notes-4.txt")
    state.config.update({"delete_attachments": "own"})  # the seed's files belong to others
    # the `delete` link is there only for what the user may delete, as OpenProject renders it
    assert "delete" not in (await api.get(f"{V3}/attachments/{ident}")).json()["_links"]
    assert_error(await api.delete(f"{V3}/attachments/{ident}"), 403, "MissingPermission")
    state.config.update({"delete_attachments": "all"})
    assert "delete" in (await api.get(f"{V3}/attachments/{ident}")).json()["_links"]
    assert (await api.delete(f"{V3}/attachments/{ident}")).status_code == 204
    assert_error(await api.delete(f"{V3}/attachments/{ident}"), 404, "NotFound")
    assert_error(await api.delete(f"{V3}/attachments/{stored(state, 'salaries.csv')}"), 404, "NotFound")


# -- shared middleware ---------------------------------------------------------------------------


async def test_faults_get_the_openproject_error_body_and_requests_are_logged(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    control = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=control, base_url=API) as client:
        rule = {"path": "/work_packages/.*/attachments", "status": 503, "count": 1}
        assert (await client.post("/_emulator/faults", json=rule)).status_code == 200
        await client.delete("/_emulator/requests")
    faulted = await api.get(f"{V3}/work_packages/DEMO-1/attachments")
    assert_error(faulted, 503, "InternalServerError")
    assert (await api.get(f"{V3}/work_packages/DEMO-1/attachments")).status_code == 200
    await api.post(f"{V3}/work_packages/DEMO-5/attachments", files=upload_parts("log.txt", b"abc"))
    log = state.log.entries()
    assert [entry["status"] for entry in log] == [503, 200, 201]
    assert [part["part"] for part in log[-1]["upload"]] == ["metadata", "file"]
    assert log[-1]["headers"]["authorization"] == "present"


async def test_configuration_and_root(api: httpx.AsyncClient) -> None:
    config = (await api.get(f"{V3}/configuration")).json()
    assert config["_type"] == "Configuration" and config["maximumAttachmentFileSize"] > 0
    root = (await api.get(V3)).json()
    assert root["_type"] == "Root" and root["_links"]["user"]["title"] == "Tester"


async def test_empty_seed_has_no_particulars(tmp_path: Path) -> None:
    state = EmulatorState(EmulatorOptions(tracker="openproject", token=TOKEN, seed="empty"), tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)), base_url=API, auth=("apikey", TOKEN)
    ) as api:
        projects = (await api.get(f"{V3}/projects")).json()["_embedded"]["elements"]
        assert [p["identifier"] for p in projects] == ["test"]
        listed = (await api.get(f"{V3}/projects/test/work_packages")).json()
        assert [wp["displayId"] for wp in listed["_embedded"]["elements"]] == ["TEST-1", "TEST-2", "TEST-3"]
    assert not state.store.attachments
