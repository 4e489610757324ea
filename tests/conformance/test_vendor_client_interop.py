"""The vendor's own client library and the mount see the same attachments, byte for byte."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.cases import TrackerCase, VendorClient
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount


@pytest.fixture
def client(case: TrackerCase, clean_emulator: EmulatorProcess) -> Iterator[VendorClient]:
    """The vendor's client against the emulator, signed in as the mount's user."""
    if case.vendor_client is None:
        pytest.skip("capability vendor_client: no client library of the vendor speaks to the emulator")
    with case.vendor_client(clean_emulator) as opened:
        yield opened


def test_client_upload_appears_in_the_mount(
    client: VendorClient, make_mount: Callable[..., Mount], case: TrackerCase
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a name with spaces gets one of the tracker's")
    mount = make_mount(metadata_ttl=0)
    payload = os.urandom(300_000)
    added = client.add(case.plain_issue, "from the client.bin", payload)
    path = mount.path / case.project / case.plain_issue / "from the client.bin"
    assert path.read_bytes() == payload
    assert os.getxattr(path, "user.trackerfs.id").decode() == added


def test_mount_upload_downloads_identically_with_the_client(
    client: VendorClient, make_mount: Callable[..., Mount], case: TrackerCase
) -> None:
    mount = make_mount()
    payload = os.urandom(500_000)
    (mount.path / case.project / case.plain_issue / "via mount.bin").write_bytes(payload)
    assert client.read(case.plain_issue, "via mount.bin") == payload
