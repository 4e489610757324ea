"""The read side through a real mount, as a person uses it: ls, stat, cat, cp, dd, find."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

MiB = 1 << 20
PROBES = [".Trash-0", ".Trash", ".directory", ".hidden", "Thumbs.db", "desktop.ini", "autorun.inf", ".git"]


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def by_id(mount_dir: Path) -> dict[str, Path]:
    """The files of an issue directory keyed by their attachment id (an xattr)."""
    return {os.getxattr(path, "user.trackerfs.id").decode(): path for path in mount_dir.iterdir()}


def store_of(emulator: EmulatorProcess, case: TrackerCase, issue: str) -> list[dict]:
    return [item for item in emulator.attachments() if item["issue"] == issue]


def content_requests(emulator: EmulatorProcess, case: TrackerCase) -> list[dict]:
    return [r for r in emulator.requests() if case.content_path in r["path"] or r["origin"] == "media"]


def test_root_lists_projects(mounted: Path, emulator: EmulatorProcess) -> None:
    projects = {item["project"] for item in emulator.attachments()}
    assert projects <= set(os.listdir(mounted))
    assert {"DEMO", "OPS"} <= set(os.listdir(mounted))


def test_project_listing_is_complete_across_pages(mounted: Path, case: TrackerCase) -> None:
    assert len(case.issues) > 2 * case.page_size
    assert sorted(os.listdir(mounted / case.project)) == sorted(case.issues)


def test_stat_sizes_and_times_come_from_metadata(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    issue_dir = mounted / case.project / case.rich_issue
    files = by_id(issue_dir)
    store = store_of(emulator, case, case.rich_issue)
    assert len(files) == len(store) >= 6
    for item in store:
        info = files[item["id"]].stat()
        assert info.st_size == item["size"]
        assert abs(info.st_mtime - _epoch(item["created"])) < 1
        assert info.st_mode & 0o777 == 0o644
        assert info.st_uid == os.getuid()
    assert (mounted / case.project).stat().st_mode & 0o777 == 0o755
    assert (mounted / case.project / case.rich_issue).stat().st_mode & 0o777 == 0o755


def test_every_attachment_reads_back_exactly(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    checked = 0
    for issue in {item["issue"] for item in emulator.attachments() if item["project"] == case.project}:
        files = by_id(mounted / case.project / issue)
        for item in store_of(emulator, case, issue):
            assert sha256(files[item["id"]]) == item["sha256"], (issue, item["filename"])
            checked += 1
    assert checked >= 15


def test_user_tools_work(mounted: Path, case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path) -> None:
    issue_dir = mounted / case.project / case.rich_issue
    listing = subprocess.run(["ls", "-l", str(issue_dir)], capture_output=True, text=True, check=True).stdout
    assert "archive.zip" in listing and "big.bin" in listing
    names = subprocess.run(
        ["unzip", "-l", str(issue_dir / "archive.zip")], capture_output=True, text=True, check=True
    )
    assert "docs/" in names.stdout or "/" in names.stdout
    kind = subprocess.run(
        ["file", "-b", str(issue_dir / "diagram.png")], capture_output=True, text=True, check=True
    )
    assert "PNG image" in kind.stdout
    pdf = subprocess.run(
        ["file", "-b", str(issue_dir / "spec.pdf")], capture_output=True, text=True, check=True
    )
    assert "PDF document" in pdf.stdout
    subprocess.run(["cp", str(issue_dir / "readme.txt"), str(tmp_path / "copy.txt")], check=True)
    store = {item["filename"]: item for item in store_of(emulator, case, case.rich_issue)}
    assert hashlib.sha256((tmp_path / "copy.txt").read_bytes()).hexdigest() == store["readme.txt"]["sha256"]
    shutil.copy(issue_dir / "report.docx", tmp_path / "report.docx")
    assert sha256(tmp_path / "report.docx") == store["report.docx"]["sha256"]
    digest = subprocess.run(
        ["sha256sum", str(issue_dir / "big.bin")], capture_output=True, text=True, check=True
    )
    assert digest.stdout.split()[0] == store["big.bin"]["sha256"]
    paged = subprocess.run(
        ["less", str(issue_dir / "readme.txt")],
        capture_output=True,
        check=True,
        env=dict(os.environ, TERM="dumb"),
    )
    assert hashlib.sha256(paged.stdout).hexdigest() == store["readme.txt"]["sha256"]


def test_duplicate_names_are_disambiguated_stably(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    issue_dir = mounted / case.project / case.duplicates_issue
    store = sorted(store_of(emulator, case, case.duplicates_issue), key=lambda item: item["created"])
    older, newer = (item for item in store if item["filename"] == "notes.txt")
    created = datetime.fromisoformat(older["created"].replace("Z", "+00:00"))
    older_name = f"notes ({created:%Y-%m-%d %H.%M}).txt"
    names = sorted(os.listdir(issue_dir))
    assert names == sorted(["notes (2).txt", older_name, "notes.txt"])
    files = by_id(issue_dir)
    assert files[newer["id"]].name == "notes.txt"
    assert files[older["id"]].name == older_name
    real = next(item for item in store if item["filename"] == "notes (2).txt")
    assert files[real["id"]].name == "notes (2).txt"
    assert sorted(os.listdir(issue_dir)) == names


def test_hostile_names_come_out_safe_and_unique(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    issue_dir = mounted / case.project / case.hostile_issue
    raw = os.listdir(os.fsencode(issue_dir))
    store = store_of(emulator, case, case.hostile_issue)
    assert len(raw) == len(set(raw)) == len(store)
    for name in raw:
        assert b"/" not in name and b"\0" not in name and name not in (b".", b"..", b"")
        assert len(name) <= 255
        name.decode("utf-8")  # valid UTF-8
        assert not any(byte < 0x20 for byte in name)
    files = by_id(issue_dir)
    for item in store:
        assert sha256(files[item["id"]]) == item["sha256"]
        if item["filename"]:
            original = os.getxattr(files[item["id"]], "user.trackerfs.original_name")
            assert original == item["filename"].encode("utf-8", "surrogateescape")
    assert not (mounted / case.project / "x").exists()


def test_missing_things_are_enoent(mounted: Path, case: TrackerCase) -> None:
    for path in (
        mounted / "NOPE",
        mounted / case.project / case.missing_issue,
        mounted / case.project / "not-an-issue",
        mounted / case.project / case.rich_issue / "nope.txt",
    ):
        with pytest.raises(FileNotFoundError):
            path.stat()
    with pytest.raises(OSError) as caught:
        os.listdir(mounted / case.project / case.rich_issue / "readme.txt")
    assert caught.value.errno == errno.ENOTDIR


def test_probe_names_cost_no_request(mounted: Path, case: TrackerCase, emulator: EmulatorProcess) -> None:
    dirs = [mounted, mounted / case.project, mounted / case.project / case.plain_issue]
    for directory in dirs:
        os.listdir(directory)
        for probe in PROBES:
            assert not (directory / probe).exists()
    emulator.clear_requests()
    for directory in dirs:
        for probe in PROBES:
            with pytest.raises(FileNotFoundError):
                os.stat(directory / probe)
    assert emulator.requests() == []


def test_xattrs_show_metadata(mounted: Path, case: TrackerCase, emulator: EmulatorProcess) -> None:
    path = mounted / case.project / case.rich_issue / "diagram.png"
    item = next(i for i in store_of(emulator, case, case.rich_issue) if i["filename"] == "diagram.png")
    names = set(os.listxattr(path))
    assert {
        "user.trackerfs.id",
        "user.trackerfs.mime_type",
        "user.trackerfs.author",
        "user.trackerfs.created",
        "user.trackerfs.url",
    } <= names
    assert os.getxattr(path, "user.trackerfs.id").decode() == item["id"]
    assert os.getxattr(path, "user.trackerfs.mime_type") == b"image/png"
    assert os.getxattr(path, "user.trackerfs.author").decode() == item["author"]
    assert os.getxattr(path, "user.trackerfs.url").startswith(b"http://127.0.0.1")
    dumped = subprocess.run(["getfattr", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    assert f'user.trackerfs.id="{item["id"]}"' in dumped
    issue_url = os.getxattr(mounted / case.project / case.rich_issue, "user.trackerfs.url").decode()
    assert issue_url.endswith(f"/browse/{case.rich_issue}")
    with pytest.raises(OSError) as caught:
        os.getxattr(path, "user.trackerfs.nothing")
    assert caught.value.errno == errno.ENODATA


def test_statfs_answers(mounted: Path) -> None:
    info = os.statvfs(mounted)
    assert info.f_namemax == 255
    assert info.f_blocks > 0 and info.f_bsize > 0
    subprocess.run(["df", "-h", str(mounted)], check=True, capture_output=True)


def test_random_read_fetches_only_nearby_blocks(
    make_mount: Callable[..., Mount], case: TrackerCase, emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = next(i for i in store_of(emulator, case, case.rich_issue) if i["filename"] == case.big_file)
    offset = 5 * MiB + 12345
    os.listdir(big.parent)
    emulator.clear_requests()
    with big.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(4096)
    expected = emulator.content(item["id"])[offset : offset + 4096]
    assert data == expected
    fetched = content_requests(emulator, case)
    assert fetched, "no content request reached the tracker"
    total = sum(r["bytes_sent"] for r in fetched)
    assert total <= 2 * MiB, f"fetched {total} bytes for a 4 KiB read"
    for request in fetched:
        first = int(request["range"].split("=")[1].split("-")[0])
        assert offset - MiB <= first <= offset + 2 * MiB, request["range"]


def test_dd_skip_reads_the_right_bytes(mounted: Path, case: TrackerCase, emulator: EmulatorProcess) -> None:
    big = mounted / case.project / case.rich_issue / case.big_file
    item = next(i for i in store_of(emulator, case, case.rich_issue) if i["filename"] == case.big_file)
    out = subprocess.run(
        ["dd", f"if={big}", "bs=65536", "skip=37", "count=3", "status=none"], capture_output=True, check=True
    ).stdout
    assert out == emulator.content(item["id"])[37 * 65536 : 40 * 65536]


def test_find_costs_pages_not_issues(
    make_mount: Callable[..., Mount], case: TrackerCase, emulator: EmulatorProcess
) -> None:
    emulator.clear_requests()
    mount = make_mount()
    found = subprocess.run(
        ["find", str(mount.path / case.project)], capture_output=True, text=True, check=True
    )
    assert f"{case.rich_issue}/readme.txt" in found.stdout
    requests = emulator.requests()
    pages = [r for r in requests if r["path"].startswith(case.search_path)]
    per_issue = [r for r in requests if r["path"].startswith(case.issue_path)]
    assert len(pages) == -(-len(case.issues) // case.page_size)
    assert per_issue == []


def test_unlisted_issue_opens_by_key(
    make_mount: Callable[..., Mount], case: TrackerCase, emulator: EmulatorProcess
) -> None:
    mount = make_mount(max_issues=3)
    listed = os.listdir(mount.path / case.project)
    assert sorted(listed) == sorted(case.issues[:3])
    hidden = case.issues[9]
    assert hidden not in listed
    files = os.listdir(mount.path / case.project / hidden)
    assert sorted(files) == sorted(item["filename"] for item in store_of(emulator, case, hidden))


def test_server_ignoring_range_still_gives_right_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.config(range_support=False)
    mount = make_mount()
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = next(i for i in store_of(clean_emulator, case, case.rich_issue) if i["filename"] == case.big_file)
    with big.open("rb") as handle:
        handle.seek(3 * MiB + 7)
        data = handle.read(10000)
    assert data == clean_emulator.content(item["id"])[3 * MiB + 7 : 3 * MiB + 10007]
    assert sha256(big) == item["sha256"]


def test_redirect_to_media_host_never_carries_credentials(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.id != "jira-cloud":
        pytest.skip("only Jira Cloud redirects content to a media host")
    item = next(i for i in store_of(clean_emulator, case, case.rich_issue) if i["filename"] == "spec.pdf")
    with httpx.Client(auth=("tester@example.com", clean_emulator.token)) as client:
        answer = client.get(f"{clean_emulator.base_url}{case.content_path}{item['id']}")
    assert answer.status_code == 303
    clean_emulator.fault(
        path=f"{case.content_path}{item['id']}$",
        status=303,
        headers={"Location": answer.headers["Location"]},
        count=-1,
    )
    mount = make_mount()
    clean_emulator.clear_requests()
    assert sha256(mount.path / case.project / case.rich_issue / "spec.pdf") == item["sha256"]
    media = [r for r in clean_emulator.requests() if r["origin"] == "media"]
    assert media, "the redirect was not followed"
    assert all(not r["authorized"] for r in media)
    assert all(r["status"] in (200, 206) for r in media)


def test_expired_ttl_shows_attachment_added_behind_the_mount(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(metadata_ttl=1, attr_timeout=0.2, negative_ttl=0.2)
    issue_dir = mount.path / case.project / case.plain_issue
    before = set(os.listdir(issue_dir))
    added = case.attach_behind(clean_emulator, case.plain_issue, "late.txt", b"added later\n")
    assert set(os.listdir(issue_dir)) == before, "a cached listing must not change within its TTL"

    deadline = time.monotonic() + 15
    while "late.txt" not in os.listdir(issue_dir):
        assert time.monotonic() < deadline, "the new attachment never appeared"
        time.sleep(0.1)
    assert (issue_dir / "late.txt").read_bytes() == b"added later\n"
    assert os.getxattr(issue_dir / "late.txt", "user.trackerfs.id").decode() == added


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def big_via_media(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> tuple[Path, dict]:
    """The big file on a mount that follows Jira's 303 to the media host, and its record."""
    if case.id != "jira-cloud":
        pytest.skip("only Jira Cloud redirects content to a media host")
    mount = make_mount(download="redirect")
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = next(i for i in store_of(clean_emulator, case, case.rich_issue) if i["filename"] == case.big_file)
    os.listdir(big.parent)
    return big, item


def test_download_via_media_redirect(
    big_via_media: tuple[Path, dict], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    big, item = big_via_media
    clean_emulator.clear_requests()
    assert sha256(big) == item["sha256"]
    requests = clean_emulator.requests()
    media = [r for r in requests if r["origin"] == "media"]
    assert media and all(not r["authorized"] and r["status"] == 206 for r in media)
    asked = [r for r in requests if r["origin"] == "api" and case.content_path in r["path"]]
    assert len(asked) < len(media), "a signed target is reused for the next ranges"


def test_rejected_signed_url_is_asked_for_again(
    big_via_media: tuple[Path, dict], clean_emulator: EmulatorProcess
) -> None:
    big, item = big_via_media
    content = clean_emulator.content(item["id"])
    with big.open("rb") as handle:
        assert handle.read(4096) == content[:4096]
        clean_emulator.clear_requests()
        clean_emulator.fault(origin="media", path="/file/", status=403, count=1)
        handle.seek(6 * MiB)
        assert handle.read(4096) == content[6 * MiB : 6 * MiB + 4096]
    # Fetches run in the background: wait until the one that was refused has finished.
    deadline = time.monotonic() + 10
    while True:
        sequence = [(r["origin"], r["status"]) for r in clean_emulator.requests()]
        refused = sequence.index(("media", 403))
        asked = sequence.index(("api", 303), refused) if ("api", 303) in sequence[refused:] else None
        if asked is not None and ("media", 206) in sequence[asked:]:
            break
        assert time.monotonic() < deadline, sequence
        time.sleep(0.05)
