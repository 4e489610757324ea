"""Writes a user can trust: refused overwrites, names, unlink while open, races, renames."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import deletes, sha256_of, stored, uploads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

MiB = 1 << 20


def spool_leftovers(mount: Mount) -> list[Path]:
    """Data files left in the spool or kept in the recovery folder."""
    return [
        p for p in mount.state.rglob("*") if p.is_file() and (p.suffix == ".data" or "recovered" in p.parts)
    ]


# -- item 2: an overwrite the tracker would only half do --------------------------------------


def test_overwrite_of_an_attachment_the_account_may_not_delete_fails_before_uploading(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if not case.permission_query:
        pytest.skip("capability permission_query: the tracker does not say ahead what the account may do")
    clean_emulator.config(delete_attachments="none")
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    target = directory / "readme.txt"
    [old] = stored(clean_emulator, case.rich_issue, "readme.txt")
    original = target.read_bytes()
    clean_emulator.clear_requests()
    new = tmp_path / "readme.txt"
    new.write_bytes(b"new bytes\n")
    copy = subprocess.run(["cp", str(new), str(target)], capture_output=True, text=True, check=False)
    assert copy.returncode != 0 and "Permission denied" in copy.stderr
    with pytest.raises(PermissionError):
        target.open("wb")
    with pytest.raises(PermissionError):
        os.truncate(target, 0)
    fd = os.open(target, os.O_RDWR)  # opening is fine: nothing changes until a write
    try:
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"EDIT", 0)
    finally:
        os.close(fd)
    (directory / "readme.txt.tmp").write_bytes(b"safe save\n")
    with pytest.raises(PermissionError):
        os.rename(directory / "readme.txt.tmp", target)
    assert uploads(clean_emulator, case) == [] and deletes(clean_emulator, case) == []
    [still] = stored(clean_emulator, case.rich_issue, "readme.txt")
    assert still["id"] == old["id"] and still["sha256"] == old["sha256"]
    assert target.read_bytes() == original
    assert "may not delete attachment" in mount.log_text()


def test_overwrite_of_an_own_attachment_works_when_only_own_ones_may_be_deleted(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.permission_query:
        pytest.skip("capability permission_query: the tracker does not say ahead what the account may do")
    clean_emulator.config(delete_attachments="own")
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    mine = directory / "mine.txt"
    mine.write_bytes(b"version one\n")
    mine.write_bytes(b"version two\n")
    [item] = stored(clean_emulator, case.rich_issue, "mine.txt")
    assert item["sha256"] == sha256_of(b"version two\n")
    with pytest.raises(PermissionError):
        (directory / "spec.pdf").open("wb")  # someone else's
    assert len(stored(clean_emulator, case.rich_issue, "spec.pdf")) == 1


def test_delete_refused_after_the_upload_leaves_the_name_on_the_new_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "readme.txt"
    [old] = stored(clean_emulator, case.rich_issue, "readme.txt")
    os.listdir(target.parent)
    # The permissions said yes; the tracker refuses the delete anyway.
    clean_emulator.fault(**case.delete.rule(status=403, count=1))
    new = tmp_path / "readme.txt"
    new.write_bytes(b"the new version\n")
    subprocess.run(["cp", str(new), str(target)], check=True)
    assert target.read_bytes() == b"the new version\n"
    versions = {a["id"]: a for a in stored(clean_emulator, case.rich_issue, "readme.txt")}
    assert old["id"] in versions and len(versions) == 2
    [warning] = [line for line in mount.log_text().splitlines() if "refused to delete" in line]
    assert "WARNING" in warning and old["id"] in warning


def test_create_is_refused_where_the_account_may_not_add_attachments(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.permission_query:
        pytest.skip("capability permission_query: the tracker does not say ahead what the account may do")
    clean_emulator.config(create_attachments=False)
    mount = make_mount()
    directory = mount.path / case.project / case.plain_issue
    with pytest.raises(PermissionError):
        (directory / "new.txt").write_bytes(b"x")
    assert "new.txt" not in os.listdir(directory)
    assert uploads(clean_emulator, case) == []
    assert "may not add attachments" in mount.log_text()


def test_create_is_refused_when_the_tracker_has_attachments_turned_off(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.permission_query:
        pytest.skip("capability permission_query: the tracker does not say ahead what the account may do")
    if not case.announces_attachments_off:
        pytest.skip("capability announces_attachments_off: attachments turned off look like a refusal")
    clean_emulator.config(attachments_enabled=False)
    mount = make_mount()
    directory = mount.path / case.project / case.plain_issue
    with pytest.raises(PermissionError):
        (directory / "new.txt").write_bytes(b"x")
    assert uploads(clean_emulator, case) == []
    assert "attachments are turned off" in mount.log_text()


# -- item 13: names the tracker cannot show back --------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (b"n" * 256, errno.ENAMETOOLONG),
        ("é".encode() * 128, errno.ENAMETOOLONG),
        (b"bad\xffname.txt", errno.EINVAL),
        (b"two\nlines.txt", errno.EINVAL),
        (b"tab\there.txt", errno.EINVAL),
    ],
    ids=["256-bytes", "256-bytes-utf8", "invalid-utf8", "newline", "tab"],
)
def test_names_the_tracker_cannot_show_back_are_refused(
    make_mount: Callable[..., Mount],
    case: TrackerCase,
    clean_emulator: EmulatorProcess,
    name: bytes,
    code: int,
) -> None:
    mount = make_mount()
    directory = os.fsencode(mount.path / case.project / case.plain_issue)
    target = directory + b"/" + name
    with pytest.raises(OSError) as created:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    assert created.value.errno == code
    source = directory + b"/ok.txt"
    with open(source, "wb") as handle:
        handle.write(b"fine")
    with pytest.raises(OSError) as renamed:
        os.rename(source, target)
    assert renamed.value.errno == code
    if code == errno.ENAMETOOLONG:
        with pytest.raises(OSError) as looked_up:
            os.stat(target)
        assert looked_up.value.errno == errno.ENAMETOOLONG
    assert os.listdir(directory) == [b"ok.txt"]
    assert [a["filename"] for a in stored(clean_emulator, case.plain_issue)] == ["ok.txt"]


def test_a_name_of_255_bytes_is_accepted(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a long name is cut by the tracker")
    mount = make_mount()
    name = "l" * 251 + ".txt"
    (mount.path / case.project / case.plain_issue / name).write_bytes(b"long")
    assert [a["filename"] for a in stored(clean_emulator, case.plain_issue)] == [name]


# -- item 12: unlink while open ---------------------------------------------------------------


def test_shell_reads_a_file_it_removed_while_holding_it_open(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.plain_issue
    done = subprocess.run(
        ["bash", "-c", "printf hi > w.txt; exec 3<w.txt; rm w.txt; cat <&3"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi", "")
    wait_for(lambda: stored(clean_emulator, case.plain_issue, "w.txt") == [], "the delete at the last close")
    assert "w.txt" not in os.listdir(directory)


def test_an_open_attachment_unlinked_is_deleted_at_the_last_close(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    target = directory / "spec.pdf"
    [item] = stored(clean_emulator, case.rich_issue, "spec.pdf")
    expected = clean_emulator.content(item["id"])
    clean_emulator.clear_requests()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.unlink(target)
        assert "spec.pdf" not in os.listdir(directory)
        with pytest.raises(FileNotFoundError):
            os.stat(target)
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, len(expected) + 1, 0) == expected
        assert deletes(clean_emulator, case) == []
        assert stored(clean_emulator, case.rich_issue, "spec.pdf")
    finally:
        os.close(fd)
    wait_for(
        lambda: stored(clean_emulator, case.rich_issue, "spec.pdf") == [], "the delete at the last close"
    )
    [delete] = deletes(clean_emulator, case)
    assert item["id"] in delete["path"]
    assert "is deleted when its last descriptor closes" in mount.log_text()


def test_writes_through_a_descriptor_of_an_unlinked_attachment_work_and_upload_nothing(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    target = directory / "readme.txt"
    original = target.read_bytes()
    clean_emulator.clear_requests()
    reader = os.open(target, os.O_RDONLY)
    fd = os.open(target, os.O_RDWR)
    try:
        os.unlink(target)
        os.pwrite(fd, b"GONE", 0)
        assert os.pread(fd, len(original), 0) == b"GONE" + original[4:]
        assert os.fstat(fd).st_nlink == 0
        assert "readme.txt" not in os.listdir(directory)
        os.close(fd)
        # A descriptor opened before the first write still reads what was written (from
        # the mount, not from pages the kernel kept).
        os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(reader, len(original), 0) == b"GONE" + original[4:]
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        os.close(reader)
    wait_for(
        lambda: stored(clean_emulator, case.rich_issue, "readme.txt") == [], "the delete at the last close"
    )
    assert uploads(clean_emulator, case) == []
    assert "readme.txt" not in os.listdir(directory)


def test_a_refused_delete_at_the_last_close_is_an_error_in_the_log(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    fd = os.open(directory / "spec.pdf", os.O_RDONLY)
    os.unlink(directory / "spec.pdf")
    clean_emulator.fault(**case.delete.rule(status=403, count=1))
    os.close(fd)
    wait_for(lambda: "was unlinked but the tracker kept it" in mount.log_text(), "the error line")
    assert "ERROR" in next(line for line in mount.log_text().splitlines() if "tracker kept it" in line)
    assert stored(clean_emulator, case.rich_issue, "spec.pdf")
    assert "spec.pdf" in os.listdir(directory)


# -- item 5: concurrent first writes ------------------------------------------------------------


def test_an_overwrite_that_starts_while_a_first_write_copies_uses_the_same_file(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a new version gets a name of the tracker's")
    # The kernel serializes writes and truncates of one file, but not an O_TRUNC open:
    # one arriving while the first write still copies the attachment in must wait for
    # that copy and then truncate the same local file, not start a second one.
    mount = mount_at(tmp_path / "w", case, clean_emulator).start()
    try:
        target = mount.path / case.project / case.rich_issue / case.big_file
        os.listdir(target.parent)
        clean_emulator.clear_requests()
        clean_emulator.fault(**case.content.rule(action="delay", delay=1.0, count=1))
        first = os.open(target, os.O_RDWR)
        writer = threading.Thread(target=os.pwrite, args=(first, b"FIRST", 0))
        writer.start()
        wait_for(
            lambda: any(case.content.matches(r) for r in clean_emulator.requests()),
            "the first write to start copying the attachment",
        )
        second = os.open(target, os.O_WRONLY | os.O_TRUNC)
        writer.join()
        os.pwrite(second, b"SECOND", 0)
        os.close(second)
        os.close(first)
        [item] = stored(clean_emulator, case.rich_issue, case.big_file)
        assert item["sha256"] == sha256_of(b"SECOND")
        assert target.read_bytes() == b"SECOND"
        assert mount.unmount() == 0
        assert spool_leftovers(mount) == []
    finally:
        mount.stop()


# -- item 6: rename over an attachment ----------------------------------------------------------


def test_failed_upload_of_a_rename_onto_attachments_leaves_them_on_the_tracker(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.rich_issue
    before = {a["filename"]: a["id"] for a in stored(clean_emulator, case.rich_issue)}
    clean_emulator.fault(**case.upload.rule(status=500, count=-1))
    # Overwriting readme.txt fails at close: the local file stays, replacing readme.txt.
    with pytest.raises(OSError), (directory / "readme.txt").open("wb") as handle:
        handle.write(b"new readme")
    # A safe save of report.docx from that file: the rename's upload fails too.
    with pytest.raises(OSError) as caught:
        os.rename(directory / "readme.txt", directory / "report.docx")
    assert caught.value.errno == errno.EIO
    # A safe save from a temporary name, likewise.
    (directory / "spec.pdf.tmp").write_bytes(b"new spec")
    with pytest.raises(OSError):
        os.rename(directory / "spec.pdf.tmp", directory / "spec.pdf")
    after = {a["filename"]: a["id"] for a in stored(clean_emulator, case.rich_issue)}
    assert after == before
    assert deletes(clean_emulator, case) == []
    kept = sorted(p.read_bytes() for p in spool_leftovers(mount))
    assert kept == [b"new readme", b"new spec"]
