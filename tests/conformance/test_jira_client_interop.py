"""The official `jira` client and the mount see the same attachments, byte for byte."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator

import pytest
from jira import JIRA

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount


@pytest.fixture
def client(case: TrackerCase, clean_emulator: EmulatorProcess) -> Iterator[JIRA]:
    if case.tracker != "jira":
        pytest.skip("the jira client speaks only to Jira")
    version = "2" if case.profile.get("flavour") == "datacenter" else "3"
    jira = JIRA(
        server=clean_emulator.base_url,
        basic_auth=("tester@example.com", clean_emulator.token),
        options={"rest_api_version": version, "check_update": False},
        max_retries=0,
    )
    yield jira
    jira.close()


def test_client_upload_appears_in_the_mount(
    client: JIRA, make_mount: Callable[..., Mount], case: TrackerCase
) -> None:
    mount = make_mount(metadata_ttl=0)
    payload = os.urandom(300_000)
    added = client.add_attachment(case.plain_issue, io.BytesIO(payload), filename="from the client.bin")
    path = mount.path / case.project / case.plain_issue / "from the client.bin"
    assert path.read_bytes() == payload
    assert os.getxattr(path, "user.trackerfs.id").decode() == str(added.id)


def test_mount_upload_downloads_identically_with_the_client(
    client: JIRA, make_mount: Callable[..., Mount], case: TrackerCase
) -> None:
    mount = make_mount()
    payload = os.urandom(500_000)
    (mount.path / case.project / case.plain_issue / "via mount.bin").write_bytes(payload)
    issue = client.issue(case.plain_issue, fields="attachment")
    [attachment] = [a for a in issue.fields.attachment if a.filename == "via mount.bin"]
    assert attachment.get() == payload
