"""The Jira dialect refuses what Jira refuses: the other flavour's API, strangers, bad JQL.

And it can be switched into the awkward answers real servers give (a login-page redirect,
a moved issue) so that the client's handling of them is testable.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import API, MEDIA, TOKEN, USER
from tests.support.emulator import EmulatorProcess
from trackerfs.emulator import EmulatorOptions, create_app
from trackerfs.emulator.cli import add_arguments, options_from_args
from trackerfs.emulator.state import EmulatorState

V2, V3 = "/rest/api/2", "/rest/api/3"
Open = Callable[..., AbstractAsyncContextManager[tuple[EmulatorState, httpx.AsyncClient]]]


@pytest.fixture
def open_emulator(tmp_path: Path) -> Open:
    """In-process emulators with chosen options, authenticated as USER."""
    counter = iter(range(100))

    @asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[tuple[EmulatorState, httpx.AsyncClient]]:
        data_dir = tmp_path / f"emulator-{next(counter)}"
        state = EmulatorState(EmulatorOptions(token=TOKEN, page_size=5, **options), data_dir)
        state.media_url = MEDIA
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url=API, auth=(USER, TOKEN)) as client:
            yield state, client

    return start


def readme_id(state: EmulatorState) -> str:
    return next(a.id for a in state.store.attachments.values() if a.filename == "readme.txt")


# -- flavours ----------------------------------------------------------------------------------


async def test_cloud_flavour_serves_only_v3_and_cloud_content(open_emulator: Open) -> None:
    async with open_emulator(flavour="cloud") as (state, api):
        ident = readme_id(state)
        assert (await api.get(f"{V3}/myself")).status_code == 200
        info = (await api.get(f"{V3}/serverInfo")).json()
        assert info["deploymentType"] == "Cloud"
        redirect = await api.get(f"{V3}/attachment/content/{ident}")
        assert redirect.status_code == 303 and redirect.headers["location"].startswith(MEDIA)
        jql = {"jql": "project = DEMO", "fields": "attachment"}
        issues = (await api.get(f"{V3}/search/jql", params=jql)).json()["issues"]
        assert issues[0]["fields"]["attachment"][0]["content"] == f"{API}{V3}/attachment/content/{ident}"
        for path in (f"{V2}/myself", f"{V2}/search", f"/secure/attachment/{ident}/readme.txt"):
            assert (await api.get(path, params={"jql": "project = DEMO"})).status_code == 404, path


async def test_datacenter_flavour_serves_only_v2_and_secure_content(open_emulator: Open) -> None:
    async with open_emulator(flavour="datacenter") as (state, api):
        ident = readme_id(state)
        info = (await api.get(f"{V2}/serverInfo")).json()
        assert info["deploymentType"] == "Server"
        page = (await api.get(f"{V2}/search", params={"jql": "project = DEMO"})).json()
        content = page["issues"][0]["fields"]["attachment"][0]["content"]
        assert content == f"{API}/secure/attachment/{ident}/readme.txt"
        served = await api.get(content)
        assert served.status_code == 200 and served.content.startswith(b"trackerfs demo")
        for path in (
            f"{V3}/myself",
            f"{V2}/search/jql",
            f"{V2}/attachment/content/{ident}",
            f"{V3}/attachment/content/{ident}",
        ):
            assert (await api.get(path, params={"jql": "project = DEMO"})).status_code == 404, path


async def test_datacenter_search_takes_unbounded_jql_cloud_does_not(open_emulator: Open) -> None:
    async with open_emulator(flavour="datacenter") as (_, api):
        everything = (await api.get(f"{V2}/search", params={"jql": "", "maxResults": 1})).json()
        assert everything["total"] == 14
    async with open_emulator(flavour="cloud") as (_, api):
        assert (await api.get(f"{V3}/search/jql", params={"jql": "order by key"})).status_code == 400


def test_flavour_and_users_from_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--flavour", "datacenter", "--user", "a@x", "--user", "b@x", "--token", "t"])
    options = options_from_args(args)
    assert options.flavour == "datacenter" and options.users == ("a@x", "b@x")
    assert options_from_args(parser.parse_args(["--token", "t"])).flavour is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--flavour", "saas"])


def test_unknown_flavour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flavour"):
        EmulatorState(EmulatorOptions(token=TOKEN, flavour="default"), tmp_path)


def test_a_real_emulator_runs_one_flavour() -> None:
    with (
        EmulatorProcess("--flavour", "datacenter", "--seed", "empty") as running,
        httpx.Client(base_url=running.base_url, auth=running.auth) as client,
    ):
        assert client.get(f"{V2}/myself").status_code == 200
        assert client.get(f"{V3}/myself").status_code == 404


# -- users ------------------------------------------------------------------------------------


async def test_configured_users_replace_the_default_ones(open_emulator: Open) -> None:
    async with open_emulator(users=("alice@corp.example", "bob@corp.example")) as (state, api):
        assert (await api.get(f"{V3}/myself")).status_code == 401  # USER is not among them
        bob = await api.get(f"{V3}/myself", auth=("bob@corp.example", TOKEN))
        assert bob.status_code == 200 and bob.json()["emailAddress"] == "bob@corp.example"
        for password in ("wrong", ""):
            refused = await api.get(f"{V3}/myself", auth=("bob@corp.example", password))
            assert refused.status_code == 401, password
        utf8 = base64.b64encode("bob@corp.example:wröng".encode()).decode()
        refused = await api.get(f"{V3}/myself", auth=None, headers={"Authorization": f"Basic {utf8}"})
        assert refused.status_code == 401
        bearer = await api.get(f"{V3}/myself", auth=None, headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.json()["emailAddress"] == "alice@corp.example"
        answer = await api.post(
            f"{V3}/issue/DEMO-5/attachments",
            files={"file": ("by bob.txt", b"bob")},
            headers={"X-Atlassian-Token": "no-check"},
            auth=("bob@corp.example", TOKEN),
        )
        assert answer.json()[0]["author"]["emailAddress"] == "bob@corp.example"
        assert state.store.attachments[answer.json()[0]["id"]].author.email == "bob@corp.example"


# -- JQL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("assignee = currentUser()", "Field 'assignee' does not exist or you do not have permission"),
        ("project = DEMO AND", "Error in the JQL Query"),
        ("project = DEMO status = Done", "Error in the JQL Query: expecting either 'OR' or 'AND'"),
        ('summary ~ "unterminated', "Error in the JQL Query"),
        ("project ~ DEMO", "The operator '~' is not supported by the 'project' field."),
        ("project = DEMO ORDER BY priority", "Not able to sort using field 'priority'."),
        ("project in (DEMO, NOPE)", "The value 'NOPE' does not exist for the field 'project'."),
    ],
)
async def test_jql_the_emulator_cannot_evaluate_is_a_400_with_jiras_body(
    api: httpx.AsyncClient, jql: str, message: str
) -> None:
    for path in (f"{V3}/search/jql", f"{V2}/search"):
        response = await api.get(path, params={"jql": jql})
        assert response.status_code == 400, (path, jql)
        body = response.json()
        assert body["errors"] == {} and body["errorMessages"][0].startswith(message), body


async def test_jql_conditions_combine(api: httpx.AsyncClient) -> None:
    async def keys(jql: str) -> list[str]:
        body = (await api.post(f"{V3}/search/jql", json={"jql": jql, "maxResults": 5})).json()
        return [issue["key"] for issue in body["issues"]]

    assert await keys("project = OPS OR key in (DEMO-2, demo-3) ORDER BY key DESC") == [
        "OPS-2",
        "OPS-1",
        "DEMO-3",
        "DEMO-2",
    ]
    assert await keys('project = DEMO AND NOT (key != DEMO-1) AND summary ~ "issue 1"') == ["DEMO-1"]
    assert await keys("project = OPS AND key not in (OPS-1)") == ["OPS-2"]
    assert await keys("project = OPS ORDER BY created DESC") == ["OPS-2", "OPS-1"]


async def test_forged_page_token_is_a_400(api: httpx.AsyncClient) -> None:
    params = {"jql": "project = DEMO", "nextPageToken": "not-a-token"}
    response = await api.get(f"{V3}/search/jql", params=params)
    assert response.status_code == 400
    assert response.json()["errorMessages"] == ["The provided next page token is invalid or expired."]


# -- switches: the login redirect and a moved issue --------------------------------------------


async def test_login_redirect_answers_refused_credentials_with_302_to_login(
    api: httpx.AsyncClient, state: EmulatorState
) -> None:
    assert (await api.get("/_emulator/config")).json()["login_redirect"] is False
    assert (await api.post("/_emulator/config", json={"login_redirect": "yes"})).status_code == 400
    assert (await api.post("/_emulator/config", json={"login_redirect": True})).status_code == 200
    refused = await api.get(f"{V2}/search", params={"jql": "project = DEMO"}, auth=(USER, "wrong"))
    assert refused.status_code == 302
    location = httpx.URL(refused.headers["location"])
    assert location.path == "/login.jsp"
    assert location.params["os_destination"] == "/rest/api/2/search?jql=project+%3D+DEMO"
    page = await api.get(str(location), auth=None)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert (await api.get(f"{V2}/myself")).status_code == 200  # good credentials still work
    await api.post("/_emulator/reset")
    assert (await api.get(f"{V2}/myself", auth=(USER, "wrong"))).status_code == 401


async def test_moved_issue_answers_under_its_new_key(api: httpx.AsyncClient, state: EmulatorState) -> None:
    before = {a["filename"]: a for a in (await api.get("/_emulator/attachments")).json()}
    moved = await api.post("/_emulator/issues/DEMO-8/move", json={"project": "OPS"})
    assert moved.status_code == 200
    assert moved.json()["key"] == "OPS-3" and moved.json()["aliases"] == ["DEMO-8"]
    old = (await api.get(f"{V3}/issue/DEMO-8", params={"fields": "attachment,project"})).json()
    assert old["key"] == "OPS-3" and old["id"] == moved.json()["id"]
    assert old["fields"]["project"]["key"] == "OPS"
    assert [a["filename"] for a in old["fields"]["attachment"]] == ["notes-8.txt"]
    demo = (await api.get(f"{V3}/search/jql", params={"jql": "project = DEMO", "maxResults": 20})).json()
    assert "DEMO-8" not in [i["key"] for i in demo["issues"]] and len(demo["issues"]) == 5
    by_old_key = (await api.get(f"{V3}/search/jql", params={"jql": "key = DEMO-8"})).json()
    assert [i["key"] for i in by_old_key["issues"]] == ["OPS-3"]
    stored = {a["filename"]: a for a in (await api.get("/_emulator/attachments")).json()}["notes-8.txt"]
    assert stored["issue"] == "OPS-3" and stored["project"] == "OPS"
    assert stored["id"] == before["notes-8.txt"]["id"]
    upload = await api.post(
        f"{V3}/issue/DEMO-8/attachments",
        files={"file": ("late.txt", b"late")},
        headers={"X-Atlassian-Token": "no-check"},
    )
    assert upload.status_code == 200
    assert state.store.issues[state.store.attachments[upload.json()[0]["id"]].issue].key == "OPS-3"
    assert (await api.post("/_emulator/issues/NOPE-1/move", json={"project": "OPS"})).status_code == 404
    assert (await api.post("/_emulator/issues/OPS-3/move", json={"project": "NOPE"})).status_code == 400


def test_moved_issue_through_a_real_emulator(live: EmulatorProcess) -> None:
    with httpx.Client(base_url=live.base_url, auth=live.auth) as client:
        moved = client.post("/_emulator/issues/DEMO-2/move", json={"project": "OPS"}).json()
        assert moved["key"] == "OPS-3"
        assert client.get(f"{V3}/issue/DEMO-2").json()["key"] == "OPS-3"
    assert {a["issue"] for a in live.attachments() if a["filename"].startswith("notes")} >= {"OPS-3"}
