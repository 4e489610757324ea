"""Waldur through a real mount: what only Waldur has, beyond the shared suite.

A `find` over a project of 1,000 support issues costs pages (the sweep), read-only files
and issues that take no files refuse before any request, blank keys and twin project
names, uuids that open what no listing shows, and the whole-file media endpoint read once
into the content cache.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cases import waldur_attach
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

MiB = 1 << 20
MANY = 1000
API = "/api"


@pytest.fixture(scope="module")
def waldur() -> Iterator[EmulatorProcess]:
    with EmulatorProcess("--tracker", "waldur") as running:
        yield running


@pytest.fixture
def live(waldur: EmulatorProcess) -> Iterator[EmulatorProcess]:
    waldur.reset()
    waldur.clear_requests()
    yield waldur
    waldur.reset()


def mount(emulator: EmulatorProcess, workdir: Path, **profile: Any) -> Mount:
    return Mount(workdir, url=emulator.base_url, token=emulator.token, tracker="waldur", profile=profile)


def requests_to(emulator: EmulatorProcess, path: str, method: str = "GET") -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["path"] == path and r["method"] == method]


def twin_dir(root: Path) -> Path:
    [twin] = [p for p in root.iterdir() if p.name.startswith("Demo project (")]
    return twin


def test_find_over_a_thousand_issues_costs_pages_not_issues(live: EmulatorProcess, tmp_path: Path) -> None:
    live.add_project("MANY", "Many issues")
    keys = [live.add_issue("MANY", f"Request {n}")["key"] for n in range(MANY)]
    attached = {key: f"log-{key}.txt" for key in keys[::50]}
    for key, name in attached.items():
        waldur_attach(live, key, name, f"log of {key}\n".encode())
    total = len(live.attachments())
    live.clear_requests()
    with mount(live, tmp_path) as mounted:
        found = subprocess.run(
            ["find", str(mounted.path / "Many issues")], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    for key, name in attached.items():
        assert str(mounted.path / "Many issues" / key / name) in found
    assert len([line for line in found if line.count("/") == str(mounted.path).count("/") + 2]) == MANY
    issue_pages = requests_to(live, f"{API}/support-issues/")
    sweep = requests_to(live, f"{API}/support-attachments/")
    assert len(issue_pages) == -(-MANY // 300)
    assert len(sweep) == -(-total // 300)
    assert not any("issue_uuid" in r["query"] for r in sweep)
    assert not [
        r
        for r in live.requests()
        if r["path"].startswith(f"{API}/support-issues/") and r["path"] != f"{API}/support-issues/"
    ]


def test_read_only_files_and_closed_issues_refuse_before_any_request(
    live: EmulatorProcess, tmp_path: Path
) -> None:
    with mount(live, tmp_path) as mounted:
        twin = twin_dir(mounted.path)
        [closed] = [p for p in twin.iterdir() if p.name.startswith("Closed ticket (")]
        [frozen] = [p for p in twin.iterdir() if p.name.startswith("No more files (")]
        kept = closed / "final_report.txt"
        assert kept.stat().st_mode & 0o777 == 0o444
        assert kept.read_bytes() == b"resolved, keep for audit\n"
        source = tmp_path / "new.txt"
        source.write_bytes(b"more\n")
        live.clear_requests()
        with pytest.raises(PermissionError) as removed:
            kept.unlink()
        assert removed.value.errno == errno.EPERM
        copy = subprocess.run(["cp", str(source), str(frozen)], check=False, capture_output=True, text=True)
        assert copy.returncode != 0 and "Permission denied" in copy.stderr
        with pytest.raises(PermissionError) as created:
            (frozen / "direct.txt").write_bytes(b"x")
        assert created.value.errno == errno.EACCES
        changes = [r for r in live.requests() if r["method"] in ("POST", "DELETE")]
        assert changes == []
        assert kept.exists()
        assert os.listdir(frozen) == []
    assert [a["filename"] for a in live.attachments() if a["filename"] == "final_report.txt"] == [
        "final_report.txt"
    ]


def test_blank_keys_twin_projects_and_uuids_in_either_form(live: EmulatorProcess, tmp_path: Path) -> None:
    records = live.attachments()
    printer = next(a for a in records if a["filename"] == "printer.pdf")
    with mount(live, tmp_path, max_issues=1) as mounted:
        root = mounted.path
        assert {"Demo project", "Operations"} <= set(os.listdir(root))
        twin = twin_dir(root)
        twin_id = os.getxattr(twin, "user.trackerfs.id").decode()
        assert twin.name == f"Demo project ({twin_id})"
        assert os.getxattr(twin, "user.trackerfs.url").decode() == f"{live.base_url}{API}/projects/{twin_id}/"
        # max_issues=1 lists only the first support issue; the others open by uuid.
        [listed] = os.listdir(twin)
        assert listed == f"Printer on fire ({printer['issue_id'][:8]})"
        issue_dir = twin / listed
        assert os.getxattr(issue_dir, "user.trackerfs.id").decode() == printer["issue_id"]
        assert (
            os.getxattr(issue_dir, "user.trackerfs.url").decode()
            == f"{live.base_url}{API}/support-issues/{printer['issue_id']}/"
        )
        pdf = issue_dir / "printer.pdf"
        assert os.getxattr(pdf, "user.trackerfs.id").decode() == printer["id"]
        assert os.getxattr(pdf, "user.trackerfs.issue").decode() == printer["issue_id"]
        assert hashlib.sha256(pdf.read_bytes()).hexdigest() == printer["sha256"]
        closed = next(a for a in records if a["filename"] == "final_report.txt")
        for form in (str(uuid.UUID(closed["issue_id"])), closed["issue_id"].upper()):
            assert os.listdir(twin / form) == ["final_report.txt"]
        assert os.listdir(root / str(uuid.UUID(twin_id))) == [listed]
        live.clear_requests()
        for probe in (".directory", "Thumbs.db", "not an issue"):
            assert not (twin / probe).exists()
        assert live.requests() == []


def test_the_media_endpoint_is_read_once_and_never_again_after_a_remount(
    live: EmulatorProcess, tmp_path: Path
) -> None:
    big = next(a for a in live.attachments() if a["filename"] == "big.bin")
    expected = live.content(big["id"])
    media = f"{API}/media/{big['blob_name']}/"
    with mount(live, tmp_path) as first:
        path = first.path / "Demo project" / "DEMO-1" / "big.bin"
        os.listdir(path.parent)
        live.clear_requests()
        far = int(big["size"] * 0.9)
        with path.open("rb", buffering=0) as handle:
            assert os.pread(handle.fileno(), 65536, far) == expected[far : far + 65536]
            assert os.pread(handle.fileno(), 4096, 0) == expected[:4096]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == big["sha256"]
        downloads = requests_to(live, media)
        assert len(downloads) == 1
        assert downloads[0]["bytes_sent"] == big["size"]
        shutil.copy(path, tmp_path / "copy.bin")
        assert len(requests_to(live, media)) == 1
    live.clear_requests()
    with mount(live, tmp_path) as second:
        path = second.path / "Demo project" / "DEMO-1" / "big.bin"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == big["sha256"]
    assert requests_to(live, media) == []


def test_an_upload_over_the_proxys_limit_is_efbig_and_keeps_the_bytes(
    live: EmulatorProcess, tmp_path: Path
) -> None:
    live.config(upload_limit=MiB)
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(2 * MiB))
    with mount(live, tmp_path / "m") as mounted:
        target = mounted.path / "Demo project" / "DEMO-5"
        copy = subprocess.run(["cp", str(source), str(target)], check=False, capture_output=True, text=True)
        assert copy.returncode != 0 and "File too large" in copy.stderr
        assert "413" in mounted.log_text() and "<html>" not in mounted.log_text()
    assert not [a for a in live.attachments() if a["issue"] == "DEMO-5"]


def test_an_overwrite_lands_under_waldurs_name_and_the_users_name_keeps_working(
    live: EmulatorProcess, tmp_path: Path
) -> None:
    [old] = [a for a in live.attachments() if a["issue"] == "DEMO-1" and a["filename"] == "readme.txt"]
    new = tmp_path / "readme.txt"
    new.write_bytes(b"new readme\n" * 100)
    with mount(live, tmp_path / "first") as first:
        directory = first.path / "Demo project" / "DEMO-1"
        subprocess.run(["cp", str(new), str(directory / "readme.txt")], check=True)
        # readme.txt was still stored while the new version went up: Waldur gave it a suffix.
        [stored] = [
            a for a in live.attachments() if a["issue"] == "DEMO-1" and a["filename"].startswith("readme")
        ]
        assert stored["id"] != old["id"] and stored["sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()
        assert stored["filename"].startswith("readme_") and stored["filename"].endswith(".txt")
        listed = os.listdir(directory)
        assert stored["filename"] in listed and "readme.txt" not in listed
        # The editor that saved readme.txt opens it again and finds its bytes.
        assert (directory / "readme.txt").read_bytes() == new.read_bytes()
        assert os.getxattr(directory / "readme.txt", "user.trackerfs.id").decode() == stored["id"]
        # Saving again under the user's name replaces that version: still one file.
        (directory / "readme.txt").write_bytes(b"second save\n")
        assert (directory / "readme.txt").read_bytes() == b"second save\n"
        [again] = [
            a for a in live.attachments() if a["issue"] == "DEMO-1" and a["filename"].startswith("readme")
        ]
        assert again["sha256"] == hashlib.sha256(b"second save\n").hexdigest()
    with mount(live, tmp_path / "second") as second:
        directory = second.path / "Demo project" / "DEMO-1"
        assert (directory / again["filename"]).read_bytes() == b"second save\n"
        assert [name for name in os.listdir(directory) if name.startswith("readme")] == [again["filename"]]


def test_a_vim_style_save_is_one_upload_and_leaves_one_version(live: EmulatorProcess, tmp_path: Path) -> None:
    [old] = [a for a in live.attachments() if a["issue"] == "DEMO-1" and a["filename"] == "readme.txt"]
    with mount(live, tmp_path) as mounted:
        directory = mounted.path / "Demo project" / "DEMO-1"
        target = directory / "readme.txt"
        os.listdir(directory)
        live.clear_requests()
        (directory / ".readme.txt.swp").write_bytes(b"\0" * 4096)
        shutil.copyfile(target, directory / "readme.txt~")
        with target.open("wb") as handle:
            handle.write(b"edited in vim\n")
        os.unlink(directory / "readme.txt~")
        os.unlink(directory / ".readme.txt.swp")
        posts = requests_to(live, f"{API}/support-attachments/", "POST")
        assert [[p["filename"] for p in r["upload"] if p["filename"]] for r in posts] == [["readme.txt"]]
        assert target.read_bytes() == b"edited in vim\n"
    kept = [
        a for a in live.attachments() if a["issue"] == "DEMO-1" and a["filename"].startswith(("readme", "."))
    ]
    assert len(kept) == 1 and kept[0]["id"] != old["id"]
    assert kept[0]["sha256"] == hashlib.sha256(b"edited in vim\n").hexdigest()


def test_media_the_token_may_not_see_is_enoent(live: EmulatorProcess, tmp_path: Path) -> None:
    live.config(media_hidden=True)
    with mount(live, tmp_path) as mounted:
        path = mounted.path / "Demo project" / "DEMO-1" / "spec.pdf"
        with pytest.raises(FileNotFoundError):
            path.read_bytes()
        live.config(media_hidden=False)
        assert path.read_bytes()[:5] == b"%PDF-"
        assert "Traceback" not in mounted.log_text()
