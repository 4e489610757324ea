"""The write side through a real mount: cp in, rm, overwrite, safe-save, rsync, tar, mv."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import deletes, file_sha256, sha256_of, stored, uploaded_names, uploads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture
def issue_dir(make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess) -> Path:
    """A fresh mount's directory of an issue without attachments."""
    mount = make_mount()
    path = mount.path / case.project / case.plain_issue
    assert os.listdir(path) == []
    clean_emulator.clear_requests()
    return path


def test_cp_in_uploads_once_with_the_right_bytes(
    issue_dir: Path, case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(os.urandom(3 * MiB + 17))
    subprocess.run(["cp", str(source), str(issue_dir)], check=True)
    [item] = stored(clean_emulator, case.plain_issue, "report.pdf")
    assert item["sha256"] == file_sha256(source)
    target = issue_dir / "report.pdf"
    assert os.getxattr(target, "user.trackerfs.id").decode() == item["id"]
    assert target.stat().st_size == source.stat().st_size
    assert file_sha256(target) == file_sha256(source)
    [upload] = uploads(clean_emulator, case)
    case.upload_check(upload)


def test_non_ascii_and_odd_names_arrive_intact(
    issue_dir: Path, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    names = ["résumé ünïcode.txt", "with space & 'quote'.txt", "日本語.md", ".env"]
    for index, name in enumerate(names):
        (issue_dir / name).write_bytes(f"file {index}\n".encode())
    kept = sorted(a["filename"] for a in stored(clean_emulator, case.plain_issue))
    if not case.renames_uploads:
        assert kept == sorted(names)
    # Where the tracker chose other names, the listing shows its choice.
    assert sorted(os.listdir(issue_dir)) == kept


def test_empty_file_is_uploaded_once(
    issue_dir: Path, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.accepts_empty_files:
        pytest.skip("capability accepts_empty_files: the tracker refuses an empty file")
    (issue_dir / "empty.txt").touch()
    # An empty file is uploaded when its last descriptor is released, just after close.
    wait_for(lambda: stored(clean_emulator, case.plain_issue, "empty.txt"), "the empty file to arrive", 10)
    [item] = stored(clean_emulator, case.plain_issue, "empty.txt")
    assert item["size"] == 0
    assert uploaded_names(clean_emulator, case) == ["empty.txt"]


def test_rm_deletes_the_attachment(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "spec.pdf"
    [item] = stored(clean_emulator, case.rich_issue, "spec.pdf")
    subprocess.run(["rm", str(target)], check=True)
    assert stored(clean_emulator, case.rich_issue, "spec.pdf") == []
    assert item["id"] in deletes(clean_emulator, case)[-1]["path"]
    assert "spec.pdf" not in os.listdir(target.parent)
    with pytest.raises(FileNotFoundError):
        target.unlink()


def test_rm_refused_is_eacces_and_rm_of_a_vanished_attachment_succeeds(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "spec.pdf"
    os.listdir(target.parent)
    clean_emulator.fault(**case.delete.rule(status=403, count=1))
    with pytest.raises(PermissionError):
        target.unlink()
    assert stored(clean_emulator, case.rich_issue, "spec.pdf")
    assert "spec.pdf" in os.listdir(target.parent)
    # Deleted by someone else meanwhile (or a retried DELETE whose first answer was lost):
    # the file is gone either way, which is what rm asked for.
    clean_emulator.fault(**case.delete.rule(status=404, count=1))
    target.unlink()
    assert "spec.pdf" not in os.listdir(target.parent)


def test_overwrite_replaces_the_attachment(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "readme.txt"
    [old] = stored(clean_emulator, case.rich_issue, "readme.txt")
    new = tmp_path / "readme.txt"
    new.write_bytes(b"new readme\n" * 100)
    subprocess.run(["cp", str(new), str(target)], check=True)
    [item] = stored(clean_emulator, case.rich_issue, "readme.txt")
    assert item["id"] != old["id"] and item["sha256"] == file_sha256(new)
    assert target.read_bytes() == new.read_bytes()
    with target.open("w") as handle:
        handle.write("shell redirect\n")
    [item] = stored(clean_emulator, case.rich_issue, "readme.txt")
    assert target.read_bytes() == b"shell redirect\n" and item["size"] == 15


def test_partial_overwrite_copies_then_uploads(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "big.bin"
    [old] = stored(clean_emulator, case.rich_issue, "big.bin")
    original = clean_emulator.content(old["id"])
    with target.open("r+b") as handle:
        handle.seek(1 * MiB)
        handle.write(b"PATCHED")
    expected = original[:MiB] + b"PATCHED" + original[MiB + 7 :]
    [item] = stored(clean_emulator, case.rich_issue, "big.bin")
    assert item["sha256"] == sha256_of(expected)
    assert file_sha256(target) == sha256_of(expected)


def test_open_rdwr_fsync_close_without_writing_uploads_nothing(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "report.docx"
    os.listdir(target.parent)
    clean_emulator.clear_requests()
    fd = os.open(target, os.O_RDWR)
    os.fsync(fd)
    os.close(fd)
    assert uploaded_names(clean_emulator, case) == [] and deletes(clean_emulator, case) == []


def test_vim_style_save(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    target = directory / "readme.txt"
    os.listdir(directory)
    clean_emulator.clear_requests()
    swap = directory / ".readme.txt.swp"
    swap.write_bytes(b"\0" * 4096)
    probe = directory / "4913"
    probe.touch()
    probe.unlink()
    with pytest.raises(OSError) as caught:
        os.rename(target, directory / "readme.txt~")  # vim tries rename first …
    assert caught.value.errno == errno.EXDEV
    shutil.copyfile(target, directory / "readme.txt~")  # … then backs up by copying
    with target.open("wb") as handle:
        handle.write(b"edited in vim\n")
    os.unlink(directory / "readme.txt~")
    os.unlink(swap)
    assert uploaded_names(clean_emulator, case) == ["readme.txt"]
    [item] = stored(clean_emulator, case.rich_issue, "readme.txt")
    assert item["sha256"] == sha256_of(b"edited in vim\n")
    assert sorted(os.listdir(directory)) == sorted(
        a["filename"] for a in stored(clean_emulator, case.rich_issue)
    )


def test_libreoffice_style_save(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    import fcntl

    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    os.listdir(directory)
    clean_emulator.clear_requests()
    lock = directory / ".~lock.report.docx#"
    lock.write_text("user,host,date\n")
    temp = directory / "lu4711abc.tmp"
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"new document bytes" * 1000, 0)
    os.fsync(fd)
    fcntl.lockf(fd, fcntl.LOCK_UN)
    os.close(fd)
    os.rename(temp, directory / "report.docx")
    fd = os.open(directory / "report.docx", os.O_RDWR)
    os.fsync(fd)
    os.close(fd)
    lock.unlink()
    assert uploaded_names(clean_emulator, case) == ["report.docx"]
    [item] = stored(clean_emulator, case.rich_issue, "report.docx")
    assert item["sha256"] == sha256_of(b"new document bytes" * 1000)
    assert len(deletes(clean_emulator, case)) == 1
    assert not lock.exists() and not temp.exists()


def test_lock_and_temp_files_are_listed_but_never_uploaded(
    issue_dir: Path, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    for name in (".~lock.a.odt#", "~$doc.docx", "x.tmp", "download.part", ".notes.txt.swp"):
        (issue_dir / name).write_text("local only")
        assert name in os.listdir(issue_dir)
        assert (issue_dir / name).read_text() == "local only"
    assert uploaded_names(clean_emulator, case) == []


def test_rsync_a_and_cp_p_and_tar(
    issue_dir: Path, case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: names with spaces get names of the tracker's")
    source = tmp_path / "src"
    source.mkdir()
    files = {
        "a b.txt": b"one",
        "ünï.csv": b"two,2\n",
        ".hidden.cfg": b"x=1",
        "data.bin": os.urandom(200 * KiB),
    }
    for name, data in files.items():
        (source / name).write_bytes(data)
    subprocess.run(["rsync", "-a", f"{source}/", f"{issue_dir}/"], check=True, capture_output=True)
    names = uploaded_names(clean_emulator, case)
    assert sorted(names) == sorted(files), "rsync's temporary names must never be uploaded"
    for name, data in files.items():
        assert (issue_dir / name).read_bytes() == data
    subprocess.run(["cp", "-p", str(source / "a b.txt"), str(issue_dir / "copied.txt")], check=True)
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source / "ünï.csv", arcname="from-tar.csv")
    subprocess.run(["tar", "-x", "-f", str(archive), "-C", str(issue_dir)], check=True)
    assert (issue_dir / "from-tar.csv").read_bytes() == files["ünï.csv"]
    assert {a["filename"] for a in stored(clean_emulator, case.plain_issue)} == set(files) | {
        "copied.txt",
        "from-tar.csv",
    }


def test_mv_across_issues_copies_then_deletes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a copy of a taken name gets one of the tracker's")
    mount = make_mount()
    source = mount.path / case.project / case.rich_issue / "diagram.png"
    [item] = stored(clean_emulator, case.rich_issue, "diagram.png")
    target_dir = mount.path / case.project / case.plain_issue
    subprocess.run(["mv", str(source), str(target_dir)], check=True)
    assert stored(clean_emulator, case.rich_issue, "diagram.png") == []
    [moved] = stored(clean_emulator, case.plain_issue, "diagram.png")
    assert moved["sha256"] == item["sha256"]


def test_directories_and_links_are_refused(
    issue_dir: Path, make_mount: Callable[..., Mount], case: TrackerCase
) -> None:
    for call in (
        lambda: os.mkdir(issue_dir / "sub"),
        lambda: os.rmdir(issue_dir),
        lambda: os.symlink("x", issue_dir / "link"),
    ):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno in (errno.EPERM, errno.EACCES)
    with pytest.raises(OSError) as caught:
        (issue_dir.parent / "file-in-project.txt").write_text("no")
    assert caught.value.errno in (errno.EPERM, errno.EACCES)
    subprocess.run(["chmod", "600", str(issue_dir.parent.parent)], check=False)


def test_known_upload_limit_fails_cp_with_efbig_before_uploading(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if not case.announces_upload_limit:
        pytest.skip("capability announces_upload_limit: the limit is known only from a refusal")
    clean_emulator.config(upload_limit=256 * KiB)
    mount = make_mount()
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(MiB))
    before = file_sha256(source)
    clean_emulator.clear_requests()
    done = subprocess.run(
        ["cp", str(source), str(mount.path / case.project / case.plain_issue)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "too large" in done.stderr.lower()
    assert uploaded_names(clean_emulator, case) == []
    assert file_sha256(source) == before


def test_server_413_fails_close_with_efbig(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    clean_emulator.config(upload_limit=1 * KiB)  # lowered after the mount read the limit
    target = mount.path / case.project / case.plain_issue / "big.txt"
    handle = target.open("wb")
    handle.write(b"x" * (8 * KiB))
    with pytest.raises(OSError) as caught:
        handle.close()
    assert caught.value.errno == errno.EFBIG
    assert stored(clean_emulator, case.plain_issue) == []
    assert "larger than" in mount.log_text() or "413" in mount.log_text()


def test_forbidden_upload_is_eacces_and_keeps_the_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    clean_emulator.fault(
        **case.upload.rule(
            status=403, count=-1, body=case.error_body("You do not have permission to create attachments")
        )
    )
    target = mount.path / case.project / case.plain_issue / "secret.txt"
    handle = target.open("wb")
    handle.write(b"precious bytes")
    with pytest.raises(PermissionError):
        handle.close()
    assert "permission to create attachments" in mount.log_text()
    spooled = [p for p in (mount.state / "spool").glob("*.data") if p.read_bytes() == b"precious bytes"]
    assert spooled, "the bytes of a failed upload must stay on disk"
    assert target.read_bytes() == b"precious bytes"
    clean_emulator.clear_faults()
    with target.open("ab") as again:
        again.write(b"!")
    [item] = stored(clean_emulator, case.plain_issue, "secret.txt")
    assert item["sha256"] == sha256_of(b"precious bytes!")
