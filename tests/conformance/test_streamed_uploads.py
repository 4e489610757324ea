"""Large files written in order are uploaded while they are written (where the tracker
takes a body of unknown length), and anything but an in-order write gives that up safely.

Every case runs for every tracker: where the tracker needs each upload's length, the
same writes end in the same single attachment, uploaded at close.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import crash, mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import sha256_of, stored, uploads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount

MiB = 1 << 20
#: larger than the size from which a file written in order is streamed
FIRST = 12 * MiB


def open_uploads(emulator: EmulatorProcess, case: TrackerCase) -> list[dict[str, Any]]:
    """Upload requests the emulator has begun to receive and not answered yet."""
    return [r for r in uploads(emulator, case) if r["status"] is None]


def write_first_part(handle: BinaryIO, data: bytes, emulator: EmulatorProcess, case: TrackerCase) -> None:
    """Write `data` in 1 MiB pieces; where the tracker takes growing uploads, wait for one."""
    for start in range(0, len(data), MiB):
        handle.write(data[start : start + MiB])
    handle.flush()
    if case.grows_uploads:
        wait_for(lambda: open_uploads(emulator, case), "the upload to start while the file is written")
    else:
        assert uploads(emulator, case) == [], "nothing is sent before the close"


def only_attachment(emulator: EmulatorProcess, case: TrackerCase, name: str) -> dict[str, Any]:
    [item] = stored(emulator, case.plain_issue, name)
    return item


def test_a_large_file_written_in_order_is_sent_while_it_is_written(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    data = os.urandom(FIRST + 5 * MiB + 7)
    target = mount.path / case.project / case.plain_issue / "export.bin"
    clean_emulator.clear_requests()
    with target.open("wb") as handle:
        write_first_part(handle, data[:FIRST], clean_emulator, case)
        handle.write(data[FIRST:])
    assert only_attachment(clean_emulator, case, "export.bin")["sha256"] == sha256_of(data)
    [request] = uploads(clean_emulator, case)
    case.upload_check(request)
    assert request["status"] in (200, 201)
    if case.grows_uploads:
        assert request["headers"].get("transfer-encoding") == "chunked"
        assert "content-length" not in request["headers"]
    else:
        assert int(request["headers"]["content-length"]) > len(data)
    assert target.stat().st_size == len(data)
    assert target.read_bytes() == data


def test_a_small_file_is_uploaded_at_close_with_its_length(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    data = os.urandom(3 * MiB)
    clean_emulator.clear_requests()
    (mount.path / case.project / case.plain_issue / "small.bin").write_bytes(data)
    [request] = uploads(clean_emulator, case)
    assert int(request["headers"]["content-length"]) > len(data)
    assert only_attachment(clean_emulator, case, "small.bin")["sha256"] == sha256_of(data)


def test_a_write_into_bytes_already_sent_stores_only_the_final_bytes_once(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    data = bytearray(os.urandom(FIRST + 2 * MiB))
    target = mount.path / case.project / case.plain_issue / "edited.bin"
    with target.open("wb") as handle:
        write_first_part(handle, bytes(data[:FIRST]), clean_emulator, case)
        handle.seek(10)
        handle.write(b"CHANGED")
        data[10:17] = b"CHANGED"
        handle.seek(FIRST)
        handle.write(data[FIRST:])
    assert only_attachment(clean_emulator, case, "edited.bin")["sha256"] == sha256_of(bytes(data))
    assert target.read_bytes() == data
    if case.grows_uploads:
        assert "given up (a write at byte 10" in mount.log_text()


def test_a_truncate_while_sending_stores_the_truncated_file(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    data = os.urandom(FIRST)
    target = mount.path / case.project / case.plain_issue / "cut.bin"
    with target.open("wb") as handle:
        write_first_part(handle, data, clean_emulator, case)
        handle.truncate(FIRST - MiB)
    assert only_attachment(clean_emulator, case, "cut.bin")["sha256"] == sha256_of(data[: FIRST - MiB])


def test_a_rename_while_sending_stores_the_file_under_its_new_name_only(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    data = os.urandom(FIRST + MiB)
    directory = mount.path / case.project / case.plain_issue
    with (directory / "draft.bin").open("wb") as handle:
        write_first_part(handle, data[:FIRST], clean_emulator, case)
        os.rename(directory / "draft.bin", directory / "final.bin")
        handle.write(data[FIRST:])
    assert stored(clean_emulator, case.plain_issue, "draft.bin") == []
    assert only_attachment(clean_emulator, case, "final.bin")["sha256"] == sha256_of(data)
    names = {path.name for path in directory.iterdir()}
    assert "final.bin" in names and "draft.bin" not in names


def test_a_file_removed_while_sending_reaches_the_tracker_not_at_all(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    directory = mount.path / case.project / case.plain_issue
    before = {item["id"] for item in stored(clean_emulator, case.plain_issue)}
    with (directory / "scratch.bin").open("wb") as handle:
        write_first_part(handle, os.urandom(FIRST), clean_emulator, case)
        os.unlink(directory / "scratch.bin")
        handle.write(os.urandom(MiB))
    assert {item["id"] for item in stored(clean_emulator, case.plain_issue)} == before
    assert not (directory / "scratch.bin").exists()
    wait_for(lambda: not open_uploads(clean_emulator, case), "the cut upload to end on the tracker")
    assert {item["id"] for item in stored(clean_emulator, case.plain_issue)} == before


def test_an_answer_lost_after_the_whole_body_is_checked_then_sent_again_once(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.grows_uploads:
        pytest.skip("capability grows_uploads: uploads at close are covered by test_recovery.py")
    mount = make_mount()
    data = os.urandom(FIRST + MiB)
    clean_emulator.fault(**case.upload.rule(action="drop", count=1))
    with (mount.path / case.project / case.plain_issue / "lost.bin").open("wb") as handle:
        write_first_part(handle, data[:FIRST], clean_emulator, case)
        handle.write(data[FIRST:])
    assert only_attachment(clean_emulator, case, "lost.bin")["sha256"] == sha256_of(data)
    assert [r["status"] for r in uploads(clean_emulator, case)][-1] in (200, 201)
    assert len(uploads(clean_emulator, case)) == 2


def test_a_tracker_that_wants_the_length_gets_it_at_close_from_then_on(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    if not case.grows_uploads:
        pytest.skip("capability grows_uploads: every upload of this tracker has its length already")
    mount = make_mount()
    clean_emulator.fault(**case.upload.rule(status=411, count=1))
    directory = mount.path / case.project / case.plain_issue
    first, second = os.urandom(FIRST), os.urandom(FIRST)
    with (directory / "one.bin").open("wb") as handle:
        write_first_part(handle, first, clean_emulator, case)
    (directory / "two.bin").write_bytes(second)
    assert only_attachment(clean_emulator, case, "one.bin")["sha256"] == sha256_of(first)
    assert only_attachment(clean_emulator, case, "two.bin")["sha256"] == sha256_of(second)
    statuses = [(r["status"], "content-length" in r["headers"]) for r in uploads(clean_emulator, case)]
    assert statuses == [(411, False), (200, True), (200, True)]
    assert "wants the length of every upload" in mount.log_text()


def test_a_crash_while_sending_stores_nothing_and_keeps_the_bytes(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if not case.grows_uploads:
        pytest.skip("capability grows_uploads: uploads at close are covered by test_recovery.py")
    data = os.urandom(FIRST)
    first = mount_at(tmp_path / "w", case, clean_emulator).start()
    handle = (first.path / case.project / case.plain_issue / "half.bin").open("wb")
    write_first_part(handle, data, clean_emulator, case)
    before = {item["id"] for item in stored(clean_emulator, case.plain_issue)}
    crash(first)
    with contextlib.suppress(OSError):
        handle.close()
    wait_for(lambda: not open_uploads(clean_emulator, case), "the cut upload to end on the tracker")
    assert {item["id"] for item in stored(clean_emulator, case.plain_issue)} == before
    with mount_at(tmp_path / "w", case, clean_emulator) as second:
        kept = next((second.state / "recovered").rglob("half.bin"))
        assert kept.read_bytes() == data
        assert stored(clean_emulator, case.plain_issue, "half.bin") == []
