"""The official ``waldur-api-client`` (8.0.5, the release of the 8.0.5 spec) against a real
Waldur emulator process.

The generated client sends dashed uuids in filters and detail paths, follows ``Link``
rel="next" in ``sync_all`` and builds uploads as multipart ``issue`` + ``file``.
``media_retrieve`` declares its body as JSON and parses it so, which no binary file survives;
the download goes through the same authenticated httpx client with the request that
``media_retrieve`` builds.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from uuid import UUID

import pytest
from waldur_api_client.api.customers import customers_list
from waldur_api_client.api.media import media_retrieve
from waldur_api_client.api.projects import projects_list
from waldur_api_client.api.support_attachments import (
    support_attachments_create,
    support_attachments_destroy,
    support_attachments_list,
)
from waldur_api_client.api.support_issues import support_issues_list
from waldur_api_client.client import AuthenticatedClient
from waldur_api_client.models.attachment_request_multipart import AttachmentRequestMultipart
from waldur_api_client.types import File

from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    """A real Waldur emulator whose pages hold at most 5 items, so paging shows."""
    with EmulatorProcess("--page-size", "5", tracker="waldur") as running:
        yield running


@pytest.fixture
def client(live: EmulatorProcess) -> Iterator[AuthenticatedClient]:
    """The official client, authenticated with ``Token``."""
    with AuthenticatedClient(base_url=live.base_url, token=live.token) as waldur:
        yield waldur


def test_lists_customers_projects_and_issues(client: AuthenticatedClient, live: EmulatorProcess) -> None:
    customers = customers_list.sync_all(client=client)
    second = next(c for c in customers if c.name == "Second Organisation")
    projects = projects_list.sync_all(client=client)
    assert sorted(p.name for p in projects) == ["Demo project", "Demo project", "Operations"]
    assert isinstance(second.uuid, UUID)
    (twin,) = projects_list.sync_all(client=client, customer=[second.uuid])
    assert twin.customer_name == "Second Organisation"
    live.clear_requests()
    issues = support_issues_list.sync_all(client=client, project_uuid=twin.uuid)
    assert [i.key for i in issues] == ["", "", ""]
    sent = [r["query"] for r in live.requests() if r["path"] == "/api/support-issues/"]
    assert sent and all(q["project_uuid"] == str(twin.uuid) for q in sent)  # dashed
    demo = support_issues_list.sync_all(client=client, key="DEMO-1")
    assert [i.summary for i in demo] == ["Demo issue 1"]


def test_lists_every_attachment_through_the_pages(client: AuthenticatedClient, live: EmulatorProcess) -> None:
    live.clear_requests()
    attachments = support_attachments_list.sync_all(client=client)
    assert len(attachments) == len(live.attachments())
    pages = [r for r in live.requests() if r["path"] == "/api/support-attachments/"]
    assert len(pages) == -(-len(attachments) // 5)  # page_size 100 asked, 5 served
    (demo_1,) = support_issues_list.sync(client=client, key="DEMO-1")
    mine = support_attachments_list.sync_all(client=client, issue_uuid=demo_1.uuid)
    assert [a.file_name for a in mine][:2] == ["readme.txt", "diagram.png"]


def test_downloads_the_media(client: AuthenticatedClient, live: EmulatorProcess) -> None:
    stored = next(a for a in live.attachments() if a["filename"] == "big.bin")
    listed = next(a for a in support_attachments_list.sync_all(client=client) if a.file_name == "big.bin")
    media_uuid = str(listed.file).rstrip("/").rsplit("/", 1)[1]
    request = media_retrieve._get_kwargs(str(UUID(media_uuid)))
    response = client.get_httpx_client().request(**request, headers={"Range": "bytes=0-9"})
    assert response.status_code == 200  # no ranges: the whole body
    assert hashlib.sha256(response.content).hexdigest() == stored["sha256"]


def test_uploads_and_deletes(client: AuthenticatedClient, live: EmulatorProcess) -> None:
    (issue,) = support_issues_list.sync(client=client, summary="Printer on fire")
    payload = b"uploaded by the waldur client\n" * 100
    body = AttachmentRequestMultipart(
        issue=str(issue.url), file=File(payload=io.BytesIO(payload), file_name="from client.txt")
    )
    created = support_attachments_create.sync(client=client, body=body)
    assert created.file_name == "from_client.txt" and created.file_size == len(payload)
    stored = {a["id"]: a for a in live.attachments()}[created.uuid.hex]
    assert stored["sha256"] == hashlib.sha256(payload).hexdigest()
    again = support_attachments_create.sync(
        client=client,
        body=AttachmentRequestMultipart(
            issue=str(issue.url), file=File(payload=io.BytesIO(b"2"), file_name="from client.txt")
        ),
    )
    assert again.file_name != created.file_name and again.file_name.startswith("from_client_")
    support_attachments_destroy.sync_detailed(created.uuid, client=client)
    assert created.uuid.hex not in {a["id"] for a in live.attachments()}
    deletes = [r for r in live.requests() if r["method"] == "DELETE"]
    assert deletes[-1]["status"] == 204 and str(created.uuid) in deletes[-1]["path"]  # dashed
