"""Hostile input through a real mount: from the server, and from the user.

Each gets a clear errno and a log line, never a traceback, never wrong bytes, and the
mount serves on afterwards.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.scenarios import Written, judge, settle, write_file
from tests.support.cases import TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import attachment, file_sha256, sha256_of, stored

pytestmark = pytest.mark.mount

KiB = 1 << 10


def test_json_nested_deeper_than_the_stack_is_eio_and_one_line(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    depth = 200_000
    clean_emulator.fault(**case.listing.rule(status=200, body="[" * depth + "]" * depth, count=1))
    with pytest.raises(OSError) as caught:
        os.listdir(mount.path / case.project)
    assert caught.value.errno == errno.EIO
    log = mount.log_text()
    assert "nested too deeply" in log
    assert "Traceback" not in log and "unexpected" not in log
    assert sorted(os.listdir(mount.path / case.project)) == sorted(case.issues)


@pytest.mark.parametrize("change", [1000, -10], ids=["larger", "smaller"])
def test_a_listed_size_the_bytes_do_not_have_is_eio_never_other_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, change: int
) -> None:
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    clean_emulator.misstate_size(item["id"], item["size"] + change)
    mount = make_mount()
    path = mount.path / case.project / case.rich_issue / "readme.txt"
    assert os.stat(path).st_size == item["size"] + change
    with pytest.raises(OSError) as caught:
        path.read_bytes()
    assert caught.value.errno == errno.EIO
    log = mount.log_text()
    assert "its content has" in log
    assert "Traceback" not in log and "unexpected" not in log
    # The other files of the issue are served as ever.
    other = attachment(clean_emulator, case.rich_issue, case.big_file)
    assert file_sha256(path.parent / case.big_file) == other["sha256"]


@pytest.mark.parametrize("size", [-5, 1 << 62], ids=["negative", "absurd"])
def test_an_absurd_listed_size_is_refused_with_a_log_line(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, size: int
) -> None:
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    clean_emulator.misstate_size(item["id"], size)
    mount = make_mount()
    issue = mount.path / case.project / case.rich_issue
    # Not shown: no size means no file a read could finish; the skip is one warning.
    assert "readme.txt" not in os.listdir(issue)
    log = mount.log_text()
    assert "is not a size in bytes" in log
    assert "Traceback" not in log and "unexpected" not in log
    assert (
        file_sha256(issue / case.big_file)
        == attachment(clean_emulator, case.rich_issue, case.big_file)["sha256"]
    )


def test_ten_thousand_attachments_in_one_issue_are_listed_and_read(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    count = 10_000
    clean_emulator.add_many_attachments(case.plain_issue, count, "bulk-")
    clean_emulator.config(page_size=100)  # the vendors' own page sizes, not the suite's 5
    mount = make_mount()
    issue = mount.path / case.project / case.plain_issue
    names = sorted(name for name in os.listdir(issue) if name.startswith("bulk-"))
    assert names == [f"bulk-{number:05}.txt" for number in range(count)]
    for number in (0, 4321, count - 1):
        name = f"bulk-{number:05}.txt"
        assert (issue / name).read_bytes() == f"{name}\n".encode()
    assert "Traceback" not in mount.log_text()


def test_a_write_far_past_the_upload_limit_is_efbig_and_costs_no_disk(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.announces_upload_limit:
        pytest.skip("capability announces_upload_limit: the limit is known only from a refusal")
    mount = make_mount()
    target = mount.path / case.project / case.plain_issue / "sparse.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, b"head", 0)
    with pytest.raises(OSError) as caught:
        os.pwrite(fd, b"tail", 1 << 40)  # a TiB in: a sparse file, or a mistake
    assert caught.value.errno == errno.EFBIG
    with pytest.raises(OSError) as cut:
        os.ftruncate(fd, 1 << 40)
    assert cut.value.errno == errno.EFBIG
    # A file a write was refused to is incomplete: the close says so, and nothing is sent.
    with pytest.raises(OSError) as closed:
        os.close(fd)
    assert closed.value.errno == errno.EFBIG
    assert stored(clean_emulator, case.plain_issue, "sparse.bin") == []
    spooled = sum(path.stat().st_blocks * 512 for path in (mount.state / "spool").glob("*"))
    assert spooled < 1 << 20
    assert target.read_bytes() == b"head"


def test_a_file_moved_back_and_forth_ends_as_one_attachment_with_its_bytes(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    issue = mount.path / case.project / case.plain_issue
    data = os.urandom(40 * KiB)
    (issue / "loop-a.bin").write_bytes(data)
    for _ in range(3):
        for old, new in (("loop-a.bin", "loop-b.bin"), ("loop-b.bin", "loop-a.bin")):
            done = subprocess.run(
                ["mv", str(issue / old), str(issue / new)], capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, done.stderr
    assert [record["sha256"] for record in stored(clean_emulator, case.plain_issue, "loop-a.bin")] == [
        sha256_of(data)
    ]
    assert stored(clean_emulator, case.plain_issue, "loop-b.bin") == []
    assert (issue / "loop-a.bin").read_bytes() == data
    assert not (issue / "loop-b.bin").exists()


def test_hundreds_of_files_created_at_once_are_each_on_the_tracker_once(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    count, writers = 120, 8
    files = [
        Written(case.plain_issue, f"many-{number:03}.txt", sha256_of(f"file {number}\n".encode()), 9)
        for number in range(count)
    ]
    with mount_at(tmp_path / "w", case, clean_emulator) as mount:
        issue = mount.path / case.project / case.plain_issue

        def write(first: int) -> None:
            for record in files[first::writers]:
                number = int(record.name[5:8])
                write_file(issue / record.name, f"file {number}\n".encode(), record)

        threads = [threading.Thread(target=write, args=(first,)) for first in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([name for name in os.listdir(issue) if name.startswith("many-")]) == count
    # A tracker that holds a burst back (a request budget) may fail some closes in time:
    # those stay in the spool, and the next mount uploads them.
    with mount_at(tmp_path / "w", case, clean_emulator) as again:
        settle(again)
        verdict = judge(clean_emulator, again.state / "recovered", files)
    assert verdict.problems == []
    assert verdict.confirmed + verdict.on_tracker_after_failure == count
