"""The official ``jira`` client (pycontribs) against a real emulator process."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
from jira import JIRA

from tests.support.emulator import EmulatorProcess


@pytest.fixture
def client(live: EmulatorProcess) -> Iterator[JIRA]:
    jira = JIRA(
        server=live.base_url,
        basic_auth=("tester@example.com", live.token),
        options={"rest_api_version": "3", "check_update": False},
        max_retries=0,
    )
    yield jira
    jira.close()


def test_lists_projects(client: JIRA) -> None:
    assert [p.key for p in client.projects()] == ["DEMO", "OPS"]


def test_searches_issues_with_attachments(client: JIRA, live: EmulatorProcess) -> None:
    issues = client.enhanced_search_issues(
        "project = DEMO ORDER BY key ASC", maxResults=0, fields="attachment,summary"
    )
    assert [i.key for i in issues] == [f"DEMO-{n}" for n in range(1, 13)]
    # page size 5: the client followed nextPageToken until it was omitted
    searches = [r for r in live.requests() if r["path"].endswith("/search/jql")]
    assert len(searches) == 3
    assert [a.filename for a in issues[1].fields.attachment] == ["notes.txt", "notes.txt", "notes (2).txt"]
    legacy = client.search_issues("project = OPS", fields="summary")
    assert [i.key for i in legacy] == ["OPS-1", "OPS-2"]


def test_downloads_attachment_through_the_media_redirect(client: JIRA, live: EmulatorProcess) -> None:
    stored = next(a for a in live.attachments() if a["filename"] == "big.bin")
    data = client.attachment(stored["id"]).get()
    assert hashlib.sha256(data).hexdigest() == stored["sha256"]
    media = [r for r in live.requests() if r["origin"] == "media"]
    assert media and all(not r["authorized"] for r in media)


def test_adds_and_deletes_an_attachment(client: JIRA, live: EmulatorProcess) -> None:
    payload = b"uploaded by the jira client\n" * 100
    added = client.add_attachment("DEMO-4", io.BytesIO(payload), filename="from-client ü.txt")
    assert added.filename == "from-client ü.txt" and added.size == len(payload)
    stored = {a["id"]: a for a in live.attachments()}[added.id]
    assert stored["issue"] == "DEMO-4"
    assert stored["sha256"] == hashlib.sha256(payload).hexdigest()
    client.delete_attachment(added.id)
    assert added.id not in {a["id"] for a in live.attachments()}


def test_reads_my_permissions(client: JIRA, live: EmulatorProcess) -> None:
    keys = "CREATE_ATTACHMENTS,DELETE_OWN_ATTACHMENTS,DELETE_ALL_ATTACHMENTS"
    granted = client.my_permissions(issueKey="DEMO-1", permissions=keys)["permissions"]
    assert {key: entry["havePermission"] for key, entry in granted.items()} == dict.fromkeys(
        keys.split(","), True
    )
    live.config(delete_attachments="none")
    granted = client.my_permissions(issueKey="DEMO-1", permissions=keys)["permissions"]
    assert granted["DELETE_ALL_ATTACHMENTS"]["havePermission"] is False
    assert granted["CREATE_ATTACHMENTS"]["havePermission"] is True
