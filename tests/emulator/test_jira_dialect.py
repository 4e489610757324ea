"""The Jira dialect of the emulator: paging, content, redirects, uploads, faults, the log."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import API, MEDIA, TOKEN
from tests.support.emulator import EmulatorProcess
from trackerfs.emulator.dialects.jira import SEARCH_REMOVED
from trackerfs.emulator.state import EmulatorState

V3 = "/rest/api/3"


def attachment_id(state: EmulatorState, filename: str) -> str:
    return next(a.id for a in state.store.attachments.values() if a.filename == filename)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- auth and errors ---------------------------------------------------------------------------


async def test_requests_without_valid_credentials_get_401_with_jira_body(
    api: httpx.AsyncClient,
) -> None:
    for auth in (None, ("me", "wrong"), ("me", "")):
        response = await api.get(f"{V3}/myself", auth=auth)
        assert response.status_code == 401
        assert response.json()["errors"] == {}
        assert response.json()["errorMessages"][0].startswith("You are not authenticated")
    response = await api.get(f"{V3}/myself", auth=None, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_basic_checks_the_user_and_bearer_belongs_to_the_first(api: httpx.AsyncClient) -> None:
    other = await api.get(f"{V3}/myself", auth=("other@example.com", TOKEN))
    assert other.status_code == 200 and other.json()["emailAddress"] == "other@example.com"
    stranger = await api.get(f"{V3}/myself", auth=("anyone@example.com", TOKEN))
    assert stranger.status_code == 401
    assert stranger.json()["errorMessages"][0].startswith("You are not authenticated")
    bearer = await api.get(f"{V3}/myself", auth=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    assert bearer.json()["active"] is True
    assert bearer.json()["emailAddress"] == "tester@example.com"


async def test_unknown_rest_path_is_404_in_jira_shape(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{V3}/nothing/here")
    assert response.status_code == 404
    assert set(response.json()) == {"errorMessages", "errors"}


# -- projects ------------------------------------------------------------------------------------


async def test_project_search_pages_by_start_at(state: EmulatorState, api: httpx.AsyncClient) -> None:
    for n in range(5):
        state.store.add_project(f"P{n}", f"Project {n}")  # 7 projects, page size 5
    first = (await api.get(f"{V3}/project/search", params={"maxResults": 50})).json()
    assert first["startAt"] == 0 and first["maxResults"] == 5 and first["total"] == 7
    assert first["isLast"] is False
    assert "startAt=5" in first["nextPage"]
    second = (await api.get(f"{V3}/project/search", params={"startAt": 5})).json()
    assert second["isLast"] is True and "nextPage" not in second
    keys = [p["key"] for p in first["values"] + second["values"]]
    assert keys == sorted(keys) and len(set(keys)) == 7
    assert first["values"][0]["id"].isdigit()


async def test_project_list_is_a_plain_array_on_both_versions(api: httpx.AsyncClient) -> None:
    for version in ("2", "3"):
        body = (await api.get(f"/rest/api/{version}/project")).json()
        assert [p["key"] for p in body] == ["DEMO", "OPS"]


# -- search ---------------------------------------------------------------------------------------


async def test_search_jql_token_paging_omits_token_on_last_page(api: httpx.AsyncClient) -> None:
    keys: list[str] = []
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"jql": 'project = "DEMO" ORDER BY key ASC', "maxResults": 100}
    while True:
        page = (await api.get(f"{V3}/search/jql", params=params)).json()
        pages.append(page)
        keys += [issue["key"] for issue in page["issues"]]
        if "nextPageToken" not in page:
            break
        params["nextPageToken"] = page["nextPageToken"]
    assert [len(p["issues"]) for p in pages] == [5, 5, 2]
    assert [p["isLast"] for p in pages] == [False, False, True]
    assert keys == [f"DEMO-{n}" for n in range(1, 13)]
    # default fields = id only
    assert pages[0]["issues"][0]["fields"] == {}


async def test_search_jql_respects_smaller_max_results_and_desc_order(
    api: httpx.AsyncClient,
) -> None:
    page = (
        await api.get(f"{V3}/search/jql", params={"jql": "project=OPS ORDER BY key DESC", "maxResults": 1})
    ).json()
    assert [i["key"] for i in page["issues"]] == ["OPS-2"]
    assert page["isLast"] is False


async def test_search_jql_post_embeds_attachments(api: httpx.AsyncClient, state: EmulatorState) -> None:
    body = {"jql": "project = DEMO AND key = DEMO-2", "fields": ["attachment", "summary"]}
    page = (await api.post(f"{V3}/search/jql", json=body)).json()
    assert [i["key"] for i in page["issues"]] == ["DEMO-2"]
    attachments = page["issues"][0]["fields"]["attachment"]
    assert [a["filename"] for a in attachments] == ["notes.txt", "notes.txt", "notes (2).txt"]
    assert attachments[0]["created"] < attachments[1]["created"] < attachments[2]["created"]
    first = attachments[0]
    assert first["content"] == f"{API}{V3}/attachment/content/{first['id']}"
    assert first["created"].endswith("+0000") and first["created"][19] == "."
    assert isinstance(first["id"], str) and first["size"] == 21
    assert first["author"]["displayName"] == "Alice Example"


async def test_search_jql_rejects_empty_unbounded_and_unknown_project(api: httpx.AsyncClient) -> None:
    for jql in ("", "order by key", "project = NOPE"):
        response = await api.get(f"{V3}/search/jql", params={"jql": jql})
        assert response.status_code == 400, jql
        assert response.json()["errorMessages"]


async def test_old_cloud_search_is_gone_but_dc_search_pages(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    for method in ("GET", "POST"):
        gone = await api.request(method, f"{V3}/search", params={"jql": "project=DEMO"})
        assert gone.status_code == 410
        assert gone.json() == {"errorMessages": [SEARCH_REMOVED], "errors": {}}
    dc = (await api.get("/rest/api/2/search", params={"jql": "project=DEMO", "startAt": 10})).json()
    assert dc["total"] == 12 and dc["startAt"] == 10
    assert [i["key"] for i in dc["issues"]] == ["DEMO-11", "DEMO-12"]
    # DC: default *navigable fields, content under /secure/attachment
    first = (await api.get("/rest/api/2/search", params={"jql": "project=DEMO"})).json()
    content = first["issues"][0]["fields"]["attachment"][0]["content"]
    assert content == f"{API}/secure/attachment/{attachment_id(state, 'readme.txt')}/readme.txt"


# -- issue and attachment metadata --------------------------------------------------------------


async def test_issue_get_and_404(api: httpx.AsyncClient) -> None:
    issue = (await api.get(f"{V3}/issue/DEMO-3", params={"fields": "attachment"})).json()
    assert len(issue["fields"]["attachment"]) == 11
    names = {a["filename"] for a in issue["fields"]["attachment"]}
    assert {"../x", "a/b", ".", "..", "", "nul\x00byte.txt", "bad\udcffname.txt"} <= names
    missing = await api.get(f"{V3}/issue/DEMO-999")
    assert missing.status_code == 404
    assert missing.json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }


async def test_lone_surrogate_name_is_escaped_json(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{V3}/issue/DEMO-3", params={"fields": "attachment"})
    assert b"bad\\udcffname.txt" in response.content


async def test_attachment_metadata_has_int_id_and_meta_reports_limit(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = attachment_id(state, "diagram.png")
    body = (await api.get(f"{V3}/attachment/{ident}")).json()
    assert body["id"] == int(ident) and body["mimeType"] == "image/png"
    assert body["thumbnail"].endswith(f"/attachment/thumbnail/{ident}")
    assert (await api.get(f"{V3}/attachment/999999")).status_code == 404
    state.config.upload_limit = 1234
    assert (await api.get(f"{V3}/attachment/meta")).json() == {"enabled": True, "uploadLimit": 1234}


# -- content and ranges -------------------------------------------------------------------------


async def test_content_without_redirect_serves_whole_and_ranges(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = attachment_id(state, "big.bin")
    expected = random.Random(42).randbytes(8 * 1024 * 1024)
    url = f"{V3}/attachment/content/{ident}?redirect=false"
    whole = await api.get(url)
    assert whole.status_code == 200 and sha(whole.content) == sha(expected)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "application/octet-stream"
    for header, start, end in (
        ("bytes=10-19", 10, 19),
        ("bytes=8388600-", 8388600, 8388607),
        ("bytes=-5", 8388603, 8388607),
        ("bytes=8388600-99999999", 8388600, 8388607),
    ):
        part = await api.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == expected[start : end + 1]
        assert part.headers["content-range"] == f"bytes {start}-{end}/8388608"
        assert part.headers["content-length"] == str(end - start + 1)


async def test_unsatisfiable_and_malformed_ranges(api: httpx.AsyncClient, state: EmulatorState) -> None:
    url = f"{V3}/attachment/content/{attachment_id(state, 'readme.txt')}?redirect=false"
    for header in ("bytes=75-", "bytes=1000-2000", "bytes=-0"):
        response = await api.get(url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == "bytes */75"
    for header in ("bytes=5-2", "items=0-1", "bytes=x-y", "bytes=-"):
        assert (await api.get(url, headers={"Range": header})).status_code == 400, header


async def test_range_support_off_answers_200_with_whole_body(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    state.config.range_support = False
    url = f"{V3}/attachment/content/{attachment_id(state, 'readme.txt')}?redirect=false"
    response = await api.get(url, headers={"Range": "bytes=0-3"})
    assert response.status_code == 200 and len(response.content) == 75
    assert "content-range" not in response.headers


async def test_dc_secure_content_serves_bytes(api: httpx.AsyncClient, state: EmulatorState) -> None:
    ident = attachment_id(state, "runbook.md")
    response = await api.get(f"/secure/attachment/{ident}/runbook.md", headers={"Range": "bytes=0-9"})
    assert response.status_code == 206 and response.content == b"# Runbook\n"
    assert (await api.get(f"/secure/attachment/{ident}/x", auth=None)).status_code == 401


async def test_redirect_to_media_origin_and_its_rules(
    api: httpx.AsyncClient, media: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = attachment_id(state, "spec.pdf")
    redirect = await api.get(f"{V3}/attachment/content/{ident}")
    assert redirect.status_code == 303
    location = httpx.URL(redirect.headers["location"])
    assert str(location).startswith(f"{MEDIA}/file/") and location.params["client"] == "emulator"
    target = location.raw_path.decode()
    ok = await media.get(target)
    assert ok.status_code == 200 and ok.content.startswith(b"%PDF-1.4")
    assert (await media.get(target, headers={"Range": "bytes=0-3"})).content == b"%PDF"
    leaked = await media.get(target, headers={"Authorization": f"Bearer {TOKEN}"})
    assert leaked.status_code == 403
    forged = await media.get(target.replace("token=", "token=1"))
    assert forged.status_code == 401
    state.config.media_ttl = -10
    expired = httpx.URL((await api.get(f"{V3}/attachment/content/{ident}")).headers["location"])
    assert (await media.get(expired.raw_path.decode())).status_code == 401


# -- uploads and delete --------------------------------------------------------------------------


UPLOAD_HEADERS = {"X-Atlassian-Token": "no-check"}


async def test_upload_returns_array_and_stores_bytes(api: httpx.AsyncClient, state: EmulatorState) -> None:
    files = [("file", ("été ü.txt", b"hello", "text/plain")), ("file", ("b.bin", b"\x00" * 300))]
    response = await api.post(f"{V3}/issue/DEMO-5/attachments", files=files, headers=UPLOAD_HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert [a["filename"] for a in body] == ["été ü.txt", "b.bin"]
    assert [a["size"] for a in body] == [5, 300]
    stored = state.store.attachments[body[0]["id"]]
    assert stored.sha256 == sha(b"hello") and state.store.issues[stored.issue].key == "DEMO-5"
    assert stored.md5 == hashlib.md5(b"hello").hexdigest()
    assert stored.author.email == "tester@example.com"  # the user the credentials name
    assert state.store.blob_path(stored).read_bytes() == b"hello"
    again = await api.post(f"{V3}/issue/DEMO-5/attachments", files=files[:1], headers=UPLOAD_HEADERS)
    assert again.json()[0]["id"] != body[0]["id"]  # duplicate names are allowed
    entry = state.log.entries()[0]
    assert entry["upload"] == [
        {"part": "file", "filename": "été ü.txt", "size": 5, "sha256": sha(b"hello")},
        {"part": "file", "filename": "b.bin", "size": 300, "sha256": sha(b"\x00" * 300)},
    ]
    assert entry["headers"]["x-atlassian-token"] == "no-check"


async def test_upload_rfc5987_filename(api: httpx.AsyncClient, state: EmulatorState) -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="fallback.txt"; '
        b"filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.txt\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"data\r\n--XyZ--\r\n"
    )
    response = await api.post(
        f"{V3}/issue/DEMO-5/attachments",
        content=body,
        headers={**UPLOAD_HEADERS, "Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 200
    assert response.json()[0]["filename"] == "отчёт.txt"


async def test_upload_rules(api: httpx.AsyncClient, state: EmulatorState) -> None:
    url = f"{V3}/issue/DEMO-5/attachments"
    before = len(state.store.attachments)
    no_header = await api.post(url, files={"file": ("a.txt", b"x")})
    assert no_header.status_code == 403
    assert no_header.json()["errorMessages"] == ["XSRF check failed"]
    wrong_part = await api.post(url, files={"upload": ("a.txt", b"x")}, headers=UPLOAD_HEADERS)
    assert wrong_part.status_code == 400 and wrong_part.json()["errorMessages"]
    missing = await api.post(
        f"{V3}/issue/DEMO-999/attachments", files={"file": ("a.txt", b"x")}, headers=UPLOAD_HEADERS
    )
    assert missing.status_code == 404
    state.config.upload_limit = 1000
    too_big = await api.post(url, files={"file": ("a.bin", b"x" * 1001)}, headers=UPLOAD_HEADERS)
    assert too_big.status_code == 413
    at_limit = await api.post(url, files={"file": ("a.bin", b"x" * 1000)}, headers=UPLOAD_HEADERS)
    assert at_limit.status_code == 200
    assert len(state.store.attachments) == before + 1
    assert list(state.upload_dir.iterdir()) == []  # no spool file left behind


async def test_delete_attachment(api: httpx.AsyncClient, state: EmulatorState) -> None:
    ident = attachment_id(state, "runbook.md")
    path = state.store.blob_path(state.store.attachments[ident])
    assert (await api.delete(f"{V3}/attachment/{ident}")).status_code == 204
    assert not path.exists()
    assert (await api.delete(f"{V3}/attachment/{ident}")).status_code == 404
    issue = (await api.get(f"{V3}/issue/OPS-1", params={"fields": "attachment"})).json()
    assert issue["fields"]["attachment"] == []


async def test_permission_switches_refuse_deletes_and_uploads_in_jira_shape(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    ident = attachment_id(state, "runbook.md")
    state.config.update({"delete_attachments": "none", "create_attachments": False})
    refused = await api.delete(f"{V3}/attachment/{ident}")
    assert refused.status_code == 403
    assert refused.json() == {
        "errorMessages": [f"You do not have permission to delete attachment with id '{ident}'."],
        "errors": {},
    }
    assert ident in state.store.attachments
    upload = await api.post(
        f"{V3}/issue/OPS-1/attachments",
        files={"file": ("a.txt", b"a")},
        headers={"X-Atlassian-Token": "no-check"},
    )
    assert upload.status_code == 403 and upload.json()["errorMessages"]
    # Only one's own attachments: the seed's belong to others, uploads to the token's user.
    state.config.update({"delete_attachments": "own", "create_attachments": True})
    mine = await api.post(
        f"{V3}/issue/OPS-1/attachments",
        files={"file": ("a.txt", b"a")},
        headers={"X-Atlassian-Token": "no-check"},
    )
    assert (await api.delete(f"{V3}/attachment/{ident}")).status_code == 403
    assert (await api.delete(f"{V3}/attachment/{mine.json()[0]['id']}")).status_code == 204


async def test_my_permissions_follow_the_switches(api: httpx.AsyncClient, state: EmulatorState) -> None:
    keys = "CREATE_ATTACHMENTS,DELETE_OWN_ATTACHMENTS,DELETE_ALL_ATTACHMENTS"

    async def granted(version: str = "3") -> dict[str, bool]:
        response = await api.get(
            f"/rest/api/{version}/mypermissions", params={"issueKey": "OPS-1", "permissions": keys}
        )
        assert response.status_code == 200
        body = response.json()["permissions"]
        assert all(body[key]["key"] == key and body[key]["type"] == "PROJECT" for key in body)
        return {key: entry["havePermission"] for key, entry in body.items()}

    every = dict.fromkeys(keys.split(","), True)
    assert await granted() == every and await granted("2") == every
    state.config.update({"delete_attachments": "own"})
    assert await granted() == {**every, "DELETE_ALL_ATTACHMENTS": False}
    state.config.update({"delete_attachments": "none", "create_attachments": False})
    assert await granted() == dict.fromkeys(every, False)
    missing = await api.get(f"{V3}/mypermissions", params={"issueKey": "OPS-404", "permissions": keys})
    assert missing.status_code == 404
    assert (await api.get(f"{V3}/mypermissions")).status_code == 400
    assert (await api.get(f"{V3}/mypermissions", params={"permissions": "NO_SUCH"})).status_code == 400


async def test_attachment_meta_reports_the_enabled_switch(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    state.config.update({"attachments_enabled": False})
    assert (await api.get(f"{V3}/attachment/meta")).json()["enabled"] is False
    with pytest.raises(ValueError, match="boolean"):
        state.config.update({"attachments_enabled": "no"})
    with pytest.raises(ValueError, match="delete_attachments"):
        state.config.update({"delete_attachments": "some"})


# -- faults ---------------------------------------------------------------------------------------


def test_status_fault_applies_count_times(live: EmulatorProcess) -> None:
    live.fault(path=r"/project$", status=503, count=2, body={"errorMessages": ["busy"]})
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        statuses = [client.get(f"{V3}/project").status_code for _ in range(3)]
        assert statuses == [503, 503, 200]
        live.fault(path="myself", status=429)
        limited = client.get(f"{V3}/myself")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
        assert limited.json()["errorMessages"]
        live.fault(path="myself", status=429, headers={"Retry-After": "7", "X-RateLimit-Limit": "1"})
        assert client.get(f"{V3}/myself").headers["retry-after"] == "7"


def test_drop_and_truncate_faults_on_a_real_server(live: EmulatorProcess) -> None:
    ident = next(a["id"] for a in live.attachments() if a["filename"] == "big.bin")
    url = f"{V3}/attachment/content/{ident}?redirect=false"
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        live.fault(path="/attachment/content/", action="drop")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            client.get(url)
        live.fault(path="/attachment/content/", action="truncate", method="GET")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)
        assert client.get(url).status_code == 200  # both faults were used up
    entries = [e for e in live.requests() if e["path"].startswith(f"{V3}/attachment/content/")]
    assert [e["status"] for e in entries] == ["dropped", 200, 200]
    assert entries[1]["bytes_sent"] == 4 * 1024 * 1024 and entries[1]["truncated"] is True
    assert entries[2]["bytes_sent"] == 8 * 1024 * 1024


def test_media_fault_only_hits_media_origin(live: EmulatorProcess) -> None:
    ident = next(a["id"] for a in live.attachments() if a["filename"] == "readme.txt")
    live.fault(origin="media", path="/binary", status=500, count=-1)
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        direct = client.get(f"{V3}/attachment/content/{ident}?redirect=false")
        assert direct.status_code == 200
        for _ in range(2):
            assert client.get(f"{V3}/attachment/content/{ident}", follow_redirects=True).status_code == 500
    live.clear_faults()
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        followed = client.get(f"{V3}/attachment/content/{ident}", follow_redirects=True)
    assert followed.status_code == 200 and followed.content == live.content(ident)


# -- request log -------------------------------------------------------------------------------


def test_log_records_both_origins_without_secrets(live: EmulatorProcess) -> None:
    ident = next(a["id"] for a in live.attachments() if a["filename"] == "diagram.png")
    live.clear_requests()
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        response = client.get(
            f"{V3}/attachment/content/{ident}", headers={"Range": "bytes=0-99"}, follow_redirects=True
        )
    assert response.status_code == 206 and len(response.content) == 100
    api_entry, media_entry = live.requests()
    assert api_entry["origin"] == "api" and api_entry["status"] == 303
    assert api_entry["authorized"] is True and api_entry["headers"]["authorization"] == "present"
    assert media_entry["origin"] == "media" and media_entry["status"] == 206
    # httpx drops credentials on a cross-origin redirect; the media origin saw none
    assert media_entry["authorized"] is False and "authorization" not in media_entry["headers"]
    assert media_entry["range"] == "bytes=0-99" and media_entry["bytes_sent"] == 100
    assert media_entry["query"]["client"] == "emulator"
    assert live.token not in repr(live.requests())
    assert api_entry["seq"] < media_entry["seq"]


# -- seed ---------------------------------------------------------------------------------------


def test_demo_seed_files_are_valid(state: EmulatorState) -> None:
    def content(name: str) -> bytes:
        return state.store.blob_path(state.store.attachments[attachment_id(state, name)]).read_bytes()

    png = content("diagram.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (64, 64)
    pdf = content("spec.pdf")
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    members = zipfile.ZipFile(io.BytesIO(content("archive.zip"))).namelist()
    assert len(members) >= 3 and any("/" in m for m in members)
    docx = zipfile.ZipFile(io.BytesIO(content("report.docx")))
    assert docx.testzip() is None and "word/document.xml" in docx.namelist()
    assert content("big.bin") == random.Random(42).randbytes(8 * 1024 * 1024)
    ids = [int(a) for a in state.store.attachments]
    assert ids == sorted(ids)
    created = [a.created for a in state.store.attachments.values()]
    assert created == sorted(created) and len(set(created)) == len(created)


async def test_reset_restores_seed(api: httpx.AsyncClient, state: EmulatorState) -> None:
    readme = attachment_id(state, "readme.txt")
    await api.delete(f"{V3}/attachment/{readme}")
    state.config.page_size = 1
    assert (await api.post("/_emulator/reset")).status_code == 200
    assert readme in state.store.attachments and state.config.page_size == 5
    assert state.log.entries() == []
