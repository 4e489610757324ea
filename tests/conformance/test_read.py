"""The read side through a real mount, as a person uses it: ls, stat, cat, cp, dd, find."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import attachment, content_requests, file_sha256, ids_by_path, sha256_of, stored
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

MiB = 1 << 20
PROBES = [".Trash-0", ".Trash", ".directory", ".hidden", "Thumbs.db", "desktop.ini", "autorun.inf", ".git"]


def test_root_lists_projects(mounted: Path, case: TrackerCase, emulator: EmulatorProcess) -> None:
    projects = {case.listed_project(item["project"]) for item in emulator.attachments()} - {None}
    assert projects <= set(os.listdir(mounted))
    assert {case.listed_project("DEMO"), case.listed_project("OPS")} <= set(os.listdir(mounted))


def test_project_listing_is_complete_across_pages(mounted: Path, case: TrackerCase) -> None:
    assert len(case.issues) > 2 * case.page_size
    assert sorted(os.listdir(mounted / case.project)) == sorted(case.issues)


def test_stat_sizes_and_times_come_from_metadata(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    issue_dir = mounted / case.project / case.rich_issue
    files = ids_by_path(issue_dir)
    store = stored(emulator, case.rich_issue)
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
        files = ids_by_path(mounted / case.project / issue)
        for item in stored(emulator, issue):
            assert file_sha256(files[item["id"]]) == item["sha256"], (issue, item["filename"])
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
    store = {item["filename"]: item for item in stored(emulator, case.rich_issue)}
    assert sha256_of((tmp_path / "copy.txt").read_bytes()) == store["readme.txt"]["sha256"]
    shutil.copy(issue_dir / "report.docx", tmp_path / "report.docx")
    assert file_sha256(tmp_path / "report.docx") == store["report.docx"]["sha256"]
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
    assert sha256_of(paged.stdout) == store["readme.txt"]["sha256"]


def test_duplicate_names_are_disambiguated_stably(
    mounted: Path, case: TrackerCase, emulator: EmulatorProcess
) -> None:
    if not case.duplicate_names_allowed:
        pytest.skip("capability duplicate_names_allowed: one issue holds one attachment per name")
    issue_dir = mounted / case.project / case.duplicates_issue
    store = stored(emulator, case.duplicates_issue)
    older, newer = (item for item in store if item["filename"] == "notes.txt")
    created = datetime.fromisoformat(older["created"].replace("Z", "+00:00"))
    older_name = f"notes ({created:%Y-%m-%d %H.%M}).txt"
    names = sorted(os.listdir(issue_dir))
    assert names == sorted(["notes (2).txt", older_name, "notes.txt"])
    files = ids_by_path(issue_dir)
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
    store = stored(emulator, case.hostile_issue)
    assert len(raw) == len(set(raw)) == len(store)
    for name in raw:
        assert b"/" not in name and b"\0" not in name and name not in (b".", b"..", b"")
        assert len(name) <= 255
        name.decode("utf-8")  # valid UTF-8
        assert not any(byte < 0x20 for byte in name)
    files = ids_by_path(issue_dir)
    for item in store:
        assert file_sha256(files[item["id"]]) == item["sha256"]
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
    item = attachment(emulator, case.rich_issue, "diagram.png")
    names = set(os.listxattr(path))
    assert {
        "user.trackerfs.id",
        "user.trackerfs.mime_type",
        "user.trackerfs.created",
        "user.trackerfs.url",
    } <= names
    assert os.getxattr(path, "user.trackerfs.id").decode() == item["id"]
    assert os.getxattr(path, "user.trackerfs.mime_type") == b"image/png"
    if case.attachment_authors:
        assert os.getxattr(path, "user.trackerfs.author").decode() == item["author"]
    else:
        assert "user.trackerfs.author" not in names
    assert os.getxattr(path, "user.trackerfs.url").startswith(b"http://127.0.0.1")
    dumped = subprocess.run(["getfattr", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    assert f'user.trackerfs.id="{item["id"]}"' in dumped
    issue_dir = mounted / case.project / case.rich_issue
    issue_url = os.getxattr(issue_dir, "user.trackerfs.url").decode()
    issue_id = os.getxattr(issue_dir, "user.trackerfs.id").decode()
    assert issue_url.endswith(case.issue_page.format(issue=case.rich_issue, id=issue_id))
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
    if not case.honours_range:
        pytest.skip("capability honours_range: every content answer is the whole file")
    mount = make_mount()
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = attachment(emulator, case.rich_issue, case.big_file)
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
    item = attachment(emulator, case.rich_issue, case.big_file)
    out = subprocess.run(
        ["dd", f"if={big}", "bs=65536", "skip=37", "count=3", "status=none"], capture_output=True, check=True
    ).stdout
    assert out == emulator.content(item["id"])[37 * 65536 : 40 * 65536]


def test_sequential_reads_reach_the_daemon_a_mebibyte_at_a_time(mounted: Path, case: TrackerCase) -> None:
    """The profile's kernel readahead (1 MiB) holds after the mount is up: `cat` of the 8 MiB
    file is about eight FUSE reads, not the 32 to 64 of the kernel's own 128 KiB."""
    if os.geteuid() != 0:
        pytest.skip("only root may set a mount's kernel readahead (kernel_readahead_kb)")
    device = mounted.stat().st_dev
    setting = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    assert setting.read_text().strip() == "1024"
    big = mounted / case.project / case.rich_issue / case.big_file
    with big.open("rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read by earlier tests
    before = _fuse_reads(mounted)
    size = len(big.read_bytes())
    reads = _fuse_reads(mounted) - before
    assert size // MiB <= reads <= size // MiB + 4, f"{reads} FUSE reads for {size} bytes"


def _fuse_reads(mounted: Path) -> int:
    status = json.loads((mounted / ".trackerfs" / "status.json").read_bytes())
    return int(status["reads"]["reads"])


def test_find_costs_pages_not_issues(
    make_mount: Callable[..., Mount], case: TrackerCase, emulator: EmulatorProcess
) -> None:
    if not case.embeds_attachments_in_listing:
        pytest.skip("capability embeds_attachments_in_listing: attachments cost a request per issue")
    emulator.clear_requests()
    mount = make_mount()
    found = subprocess.run(
        ["find", str(mount.path / case.project)], capture_output=True, text=True, check=True
    )
    assert f"{case.rich_issue}/readme.txt" in found.stdout
    requests = emulator.requests()
    pages = [r for r in requests if case.listing.matches(r)]
    per_issue = [r for r in requests if case.issue_lookup.matches(r)]
    assert len(pages) == -(-len(case.issues) // case.page_size)
    assert per_issue == []


def test_unlisted_issue_opens_by_key(
    make_mount: Callable[..., Mount], case: TrackerCase, emulator: EmulatorProcess
) -> None:
    if case.issue_cap_option is None:
        pytest.skip("capability issue_cap_option: no profile key caps a listing")
    if not case.issue_keys:
        pytest.skip("capability issue_keys: an unlisted issue has no key to open it by, only its id")
    mount = make_mount(**{case.issue_cap_option: 3})
    listed = os.listdir(mount.path / case.project)
    assert sorted(listed) == sorted(case.issues[:3])
    hidden = case.issues[9]
    assert hidden not in listed
    files = os.listdir(mount.path / case.project / hidden)
    assert sorted(files) == sorted(item["filename"] for item in stored(emulator, hidden))


def test_server_ignoring_range_still_gives_right_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.config(range_support=False)
    mount = make_mount()
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    with big.open("rb") as handle:
        handle.seek(3 * MiB + 7)
        data = handle.read(10000)
    assert data == clean_emulator.content(item["id"])[3 * MiB + 7 : 3 * MiB + 10007]
    assert file_sha256(big) == item["sha256"]


def test_a_server_found_ignoring_range_is_not_paid_again_for_every_block(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    """The first answer that comes back whole tells the mount to download once, whole.

    Without that, every block read out of order re-sends the file from byte 0.
    """
    clean_emulator.config(range_support=False)
    mount = make_mount()
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    assert item["size"] >= 8 * MiB, "the big file must span many blocks"
    clean_emulator.clear_requests()
    expected = clean_emulator.content(item["id"])
    with big.open("rb", buffering=0) as handle:
        for offset in (7 * MiB, 2 * MiB, item["size"] - 5000, 5 * MiB):
            handle.seek(offset)
            assert handle.read(4096) == expected[offset : offset + 4096]
    assert file_sha256(big) == item["sha256"]
    downloads = content_requests(clean_emulator, case)
    assert 1 <= len(downloads) <= 3, [(r["path"], r["status"]) for r in downloads]


def test_redirect_to_media_host_never_carries_credentials(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.media_redirect is None:
        pytest.skip("capability media_redirect: content never moves to another origin")
    item = attachment(clean_emulator, case.rich_issue, "spec.pdf")
    with case.api_client(clean_emulator) as client:
        answer = client.get(case.content_path(item))
    assert answer.is_redirect
    clean_emulator.fault(
        path=f"{case.content_path(item)}$",
        status=answer.status_code,
        headers={"Location": answer.headers["Location"]},
        count=-1,
    )
    mount = make_mount()
    clean_emulator.clear_requests()
    assert file_sha256(mount.path / case.project / case.rich_issue / "spec.pdf") == item["sha256"]
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

    wait_for(lambda: "late.txt" in os.listdir(issue_dir), "the new attachment to appear", timeout=15)
    assert (issue_dir / "late.txt").read_bytes() == b"added later\n"
    assert os.getxattr(issue_dir / "late.txt", "user.trackerfs.id").decode() == added


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def big_via_media(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> tuple[Path, dict]:
    """The big file on a mount that follows the redirect to another origin, and its record."""
    if case.media_redirect is None:
        pytest.skip("capability media_redirect: content never moves to another origin")
    mount = make_mount(**case.media_redirect)
    big = mount.path / case.project / case.rich_issue / case.big_file
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    os.listdir(big.parent)
    return big, item


def test_download_via_media_redirect(
    big_via_media: tuple[Path, dict], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    big, item = big_via_media
    clean_emulator.clear_requests()
    assert file_sha256(big) == item["sha256"]
    requests = clean_emulator.requests()
    media = [r for r in requests if r["origin"] == "media"]
    assert media and all(not r["authorized"] and r["status"] == 206 for r in media)
    asked = [r for r in requests if case.content.matches(r)]
    assert len(asked) < len(media), "a signed target is reused for the next ranges"


def test_rejected_signed_url_is_asked_for_again(
    big_via_media: tuple[Path, dict], case: TrackerCase, clean_emulator: EmulatorProcess
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
    wait_for(lambda: asked_again_after_refusal(clean_emulator, case), "a fresh signed target", timeout=10)


def asked_again_after_refusal(emulator: EmulatorProcess, case: TrackerCase) -> bool:
    """Whether the log shows a refused media fetch, then a new redirect, then bytes from it."""
    log = emulator.requests()
    steps = [
        lambda r: r["origin"] == "media" and r["status"] == 403,
        lambda r: case.content.matches(r) and 300 <= (r["status"] or 0) < 400,
        lambda r: r["origin"] == "media" and r["status"] == 206,
    ]
    position = 0
    for step in steps:
        position = next((i + 1 for i in range(position, len(log)) if step(log[i])), -1)
        if position < 0:
            return False
    return True
