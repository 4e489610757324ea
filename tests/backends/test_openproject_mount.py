"""What OpenProject has that the shared suite does not cover, through real mounts.

md5 digests (the xattr, and a whole download whose bytes differ from it), attachments
whose status has no bytes to offer, the open-only default filter and the profile's own,
classic numeric ids, Bearer tokens, and the errors of an upload (422 too large, 403).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

CONTENT = r"^/api/v3/attachments/[^/]+/content$"
UPLOAD = r"^/api/v3/work_packages/[^/]+/attachments$"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--tracker", "openproject", "--flavour", "local", "--page-size", "5") as running:
        yield running


@pytest.fixture
def live(server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def mount(live: EmulatorProcess, tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """Start a mount of the emulator with extra profile keys."""
    started: list[Mount] = []

    def start(**profile: Any) -> Mount:
        made = Mount(
            tmp_path / f"m{len(started)}",
            url=live.base_url,
            token=live.token,
            tracker="openproject",
            profile=profile,
        )
        started.append(made)
        return made.start()

    yield start
    for made in started:
        made.stop()


def stored(emulator: EmulatorProcess, issue: str, name: str) -> dict[str, Any]:
    [item] = [a for a in emulator.attachments() if a["issue"] == issue and a["filename"] == name]
    return item


def content_requests(emulator: EmulatorProcess, ident: str) -> list[dict[str, Any]]:
    path = f"/api/v3/attachments/{ident}/content"
    return [r for r in emulator.requests() if r["path"] == path]


def read_or_none(path: Path) -> bytes | None:
    """The file's bytes, or None when reading it fails with EIO."""
    try:
        return path.read_bytes()
    except OSError as exc:
        assert exc.errno == errno.EIO
        return None


def wrong_bytes_like(data: bytes) -> str:
    """Text of the same length as `data` that is not `data`."""
    text = "x" * len(data)
    assert text.encode() != data
    return text


def test_md5_xattr_is_the_vendor_digest(mount: Callable[..., Mount], live: EmulatorProcess) -> None:
    mounted = mount()
    item = stored(live, "DEMO-1", "readme.txt")
    path = mounted.path / "demo" / "DEMO-1" / "readme.txt"
    assert os.getxattr(path, "user.trackerfs.md5").decode() == item["md5"]
    assert hashlib.md5(path.read_bytes()).hexdigest() == item["md5"]
    assert os.getxattr(path, "user.trackerfs.id").decode() == item["id"]


def test_a_whole_download_with_a_wrong_md5_is_downloaded_again(
    mount: Callable[..., Mount], live: EmulatorProcess
) -> None:
    mounted = mount(range_requests=False)
    item = stored(live, "DEMO-1", "readme.txt")
    good = live.content(item["id"])
    path = mounted.path / "demo" / "DEMO-1" / "readme.txt"
    os.listdir(path.parent)
    live.clear_requests()
    live.fault(path=CONTENT, method="GET", status=200, body=wrong_bytes_like(good), count=1)
    assert path.read_bytes() == good
    assert len(content_requests(live, item["id"])) == 2
    assert "does not match its md5; downloading it again" in mounted.log_text()


def test_a_whole_download_wrong_twice_fails_with_eio_and_one_error(
    mount: Callable[..., Mount], live: EmulatorProcess
) -> None:
    mounted = mount(range_requests=False)
    item = stored(live, "DEMO-1", "readme.txt")
    path = mounted.path / "demo" / "DEMO-1" / "readme.txt"
    os.listdir(path.parent)
    live.clear_requests()
    live.fault(
        path=CONTENT, method="GET", status=200, body=wrong_bytes_like(live.content(item["id"])), count=2
    )
    with pytest.raises(OSError) as caught:
        path.read_bytes()
    assert caught.value.errno == errno.EIO
    assert len(content_requests(live, item["id"])) == 2
    errors = [line for line in mounted.log_text().splitlines() if "checksum mismatch" in line]
    assert len(errors) == 1 and "ERROR" in errors[0] and item["id"] in errors[0]
    assert "Traceback" not in mounted.log_text()
    # The kernel's repeat of the failed read fails as well (no third download at once);
    # once that moment has passed, with the fault spent, a read has the stored bytes.
    good = live.content(item["id"])
    wait_for(lambda: read_or_none(path) == good, "a read after the failure")
    assert all(read_or_none(path) in (None, good) for _ in range(3))


def test_a_quarantined_attachment_is_left_out(mount: Callable[..., Mount], live: EmulatorProcess) -> None:
    mounted = mount()
    quarantined = stored(live, "OPS-3", "eicar.com")
    directory = mounted.path / "ops" / "OPS-3"
    assert sorted(os.listdir(directory)) == ["scanned.txt"]
    assert (directory / "scanned.txt").read_bytes() == b"scanned and clean\n"
    with pytest.raises(FileNotFoundError):
        os.stat(directory / "eicar.com")
    assert content_requests(live, quarantined["id"]) == []


def test_closed_work_packages_are_listed_and_a_hidden_project_is_not_there(
    mount: Callable[..., Mount], live: EmulatorProcess
) -> None:
    mounted = mount()
    assert sorted(os.listdir(mounted.path)) == ["demo", "ops"]
    listed = os.listdir(mounted.path / "demo")
    assert "DEMO-12" in listed and len(listed) == 12
    listings = [r for r in live.requests() if r["path"].endswith("/work_packages")]
    assert listings and all(r["query"].get("filters") == "[]" for r in listings)
    with pytest.raises(FileNotFoundError):
        os.stat(mounted.path / "hr")
    with pytest.raises(FileNotFoundError):
        os.stat(mounted.path / "demo" / "HR-1")


def test_a_profile_filter_narrows_the_listing_but_not_a_direct_lookup(
    mount: Callable[..., Mount], live: EmulatorProcess
) -> None:
    mounted = mount(filters='[{"status": {"operator": "o", "values": null}}]')
    listed = os.listdir(mounted.path / "demo")
    assert "DEMO-12" not in listed and len(listed) == 11
    closed = mounted.path / "demo" / "DEMO-12"
    assert closed.is_dir()
    ident = os.getxattr(closed, "user.trackerfs.id").decode()
    assert (mounted.path / "demo" / ident).is_dir()
    assert os.getxattr(closed, "user.trackerfs.url").decode().endswith("/work_packages/DEMO-12")


def test_classic_ids_name_directories_by_number(mount: Callable[..., Mount], live: EmulatorProcess) -> None:
    live.config(classic_ids=True)
    mounted = mount(auth="bearer")
    listed = os.listdir(mounted.path / "demo")
    assert listed and all(name.isdigit() for name in listed)
    first = mounted.path / "demo" / min(listed, key=int)
    item = stored(live, "DEMO-1", "readme.txt")
    assert (first / "readme.txt").read_bytes() == live.content(item["id"])
    assert all(r["status"] != 401 for r in live.requests())


def cp(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cp", str(source), str(target)], capture_output=True, text=True, check=False)


def test_an_upload_refused_as_too_large_is_efbig_and_a_forbidden_one_eacces(
    mount: Callable[..., Mount], live: EmulatorProcess, tmp_path: Path
) -> None:
    mounted = mount()
    directory = mounted.path / "demo" / "DEMO-5"
    os.listdir(directory)
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(4096))
    too_large = {
        "_type": "Error",
        "errorIdentifier": "urn:openproject-org:api:v3:errors:PropertyConstraintViolation",
        "message": "File is too large (maximum size is 1024 Bytes).",
    }
    live.fault(path=UPLOAD, method="POST", status=422, body=too_large, count=1)
    copy = subprocess.run(
        ["cp", str(source), str(directory / "big.bin")], capture_output=True, text=True, check=False
    )
    assert copy.returncode != 0 and "File too large" in copy.stderr, copy.stderr
    live.config(create_attachments=False)
    copy = subprocess.run(
        ["cp", str(source), str(directory / "denied.bin")], capture_output=True, text=True, check=False
    )
    assert copy.returncode != 0 and "Permission denied" in copy.stderr, copy.stderr
    assert [a for a in live.attachments() if a["issue"] == "DEMO-5"] == []
