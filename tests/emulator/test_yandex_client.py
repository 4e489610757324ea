"""The official ``yandex-tracker-client`` against a real emulator process."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from yandex_tracker_client import TrackerClient
from yandex_tracker_client.exceptions import Forbidden, NotFound

from tests.support.emulator import EmulatorProcess

ORG = "4242"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    """A Yandex emulator for organisation ORG with pages of five."""
    with EmulatorProcess("--page-size", "5", "--org-id", ORG, tracker="yandex") as running:
        yield running


@pytest.fixture
def live(server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def client(live: EmulatorProcess) -> TrackerClient:
    return TrackerClient(token=live.token, org_id=ORG, base_url=live.base_url, retries=0)


def test_lists_queues_across_pages(client: TrackerClient, live: EmulatorProcess) -> None:
    live.config(page_size=2)
    assert [q.key for q in client.queues.get_all()] == ["DEMO", "OPS", "YAN"]
    pages = [r["query"].get("page") for r in live.requests() if r["path"] == "/v2/queues/"]
    assert pages == [None, "2"]


def test_finds_issues_by_queue_keys_filter_and_query(client: TrackerClient, live: EmulatorProcess) -> None:
    assert [i.key for i in client.issues.find(queue="DEMO")] == [f"DEMO-{n}" for n in range(1, 13)]
    searches = [r for r in live.requests() if r["path"] == "/v2/issues/_search"]
    assert len(searches) == 3  # five a page: the client followed Link rel="next"
    assert [i.key for i in client.issues.find(keys=["OPS-1", "OPS-3"])] == ["OPS-1", "YAN-2"]
    assert [i.key for i in client.issues.find(filter={"queue": "OPS"}, order=["-key"])] == ["OPS-2", "OPS-1"]
    assert [i.key for i in client.issues.find(query="Queue: YAN")] == ["YAN-1", "YAN-2"]
    # reading an attribute made the client fetch the field list once
    assert sum(r["path"] == "/v2/fields/" for r in live.requests()) == 1


def test_lists_and_downloads_attachments(
    client: TrackerClient, live: EmulatorProcess, tmp_path: Path
) -> None:
    issue = client.issues["DEMO-1"]
    attachments = list(issue.attachments)
    assert [a.name for a in attachments] == [
        "readme.txt",
        "diagram.png",
        "spec.pdf",
        "archive.zip",
        "report.docx",
        "big.bin",
    ]
    big = next(a for a in attachments if a.name == "big.bin")
    big.download_to(str(tmp_path))
    stored = {a["id"]: a for a in live.attachments()}[big.id]
    assert hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest() == stored["sha256"]
    assert any(r["path"] == "/v2/issues/DEMO-1/attachments/" for r in live.requests())
    comment_files = [a.name for a in client.issues["YAN-1"].attachments]
    assert comment_files == ["photo.png", "run.log"]


def test_uploads_and_deletes_an_attachment(client: TrackerClient, live: EmulatorProcess) -> None:
    payload = b"uploaded by yandex-tracker-client\n" * 100
    issue = client.issues["DEMO-4"]
    added = issue.attachments.create(io.BytesIO(payload), params={"filename": "from-client ü.txt"})
    assert added.name == "from-client ü.txt" and added.size == len(payload)
    stored = {a["id"]: a for a in live.attachments()}[added.id]
    assert stored["issue"] == "DEMO-4" and stored["sha256"] == hashlib.sha256(payload).hexdigest()
    upload = next(r for r in live.requests() if r["method"] == "POST" and "/attachments" in r["path"])
    assert upload["status"] == 201 and upload["upload"][0]["part"] == "file"
    assert b"".join(added.read()) == payload
    added.delete()
    assert added.id not in {a["id"] for a in live.attachments()}
    with pytest.raises(NotFound):
        client.issues["DEMO-4"].attachments[added.id]


def test_a_wrong_organisation_is_forbidden(live: EmulatorProcess) -> None:
    stranger = TrackerClient(token=live.token, org_id="1", base_url=live.base_url, retries=0)
    with pytest.raises(Forbidden):
        list(stranger.queues.get_all())
