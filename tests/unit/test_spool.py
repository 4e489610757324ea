"""The spool on disk: discarded files stay gone, manifests survive a power loss, nothing
with bytes is dropped, the state stays private, one mount holds a profile."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
import trio

from trackerfs.backends.multipart import FilePart, MultipartBody
from trackerfs.core.spool import PENDING, Manifest, Spool, describe_state, keep_orphans
from trackerfs.core.statedir import hold_profile_lock, make_private_dir, mount_holder
from trackerfs.errors import ConfigError
from trackerfs.logsetup import private_file_handler


def new_file(spool: Spool, data: bytes = b"") -> tuple[str, Path]:
    spooled = spool.create(Manifest("P", "P-1", "notes.txt"))
    spooled.pwrite(data, 0)
    return spooled.ident, spooled.data_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_discarded_file_never_comes_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "gone.txt"))
    spooled.pwrite(b"bytes", 0)
    spooled.discard()
    assert spooled.size() == 0
    assert spooled.pread(10, 0) == b""
    with pytest.raises(FileNotFoundError):
        spooled.pwrite(b"again", 0)
    spooled.sync()
    spooled.save(state=PENDING)
    assert list(spool.directory.iterdir()) == []


def test_a_data_file_removed_behind_the_spool_is_not_recreated(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    spooled.close()
    spooled.data_path.unlink()
    with pytest.raises(FileNotFoundError):
        spooled.size()
    assert not spooled.data_path.exists()


def test_manifest_is_replaced_whole_and_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    spooled.save(state=PENDING, size=5)
    manifest = spool.manifest_path(spooled.ident)
    assert json.loads(manifest.read_text())["state"] == PENDING
    assert sorted(p.name for p in spool.directory.iterdir()) == sorted(
        [manifest.name, spooled.data_path.name]
    )
    assert mode(manifest) == 0o600 and mode(spooled.data_path) == 0o600 and mode(spool.directory) == 0o700


def test_manifest_writing_syncs_the_file_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spooled.save(state=PENDING)
    assert synced == ["file", "dir"]


async def test_concurrent_asaves_leave_the_last_change_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    async with trio.open_nursery() as nursery:
        for size in range(1, 6):
            nursery.start_soon(lambda size=size: spooled.asave(size=size))
    # trio starts the tasks in any order: whichever changed the manifest last is on disk
    last = spooled.manifest.size
    assert last in range(1, 6)
    assert json.loads(spool.manifest_path(spooled.ident).read_text())["size"] == last


async def test_asave_after_a_discard_leaves_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    spooled.discard()
    await spooled.asave(state=PENDING)
    assert list(spool.directory.iterdir()) == []


def test_a_manifest_cut_short_sends_its_data_to_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "state" / "spool")
    ident, data = new_file(spool, b"precious")
    manifest = spool.manifest_path(ident)
    manifest.write_text(manifest.read_text()[:20])  # a power loss in the middle of a write
    found = spool.leftovers()
    assert found.files == [] and [o.data_path for o in found.orphans] == [data]
    assert list(spool.directory.iterdir())  # looking changed nothing
    with caplog.at_level(logging.WARNING):
        [kept] = keep_orphans(tmp_path / "state", found)
    assert kept.read_bytes() == b"precious"
    assert kept.parent == tmp_path / "state" / "recovered" / "unidentified"
    assert "unreadable" in caplog.text and str(kept) in caplog.text
    assert list(spool.directory.iterdir()) == []
    assert mode(kept) == 0o600 and mode(kept.parent) == 0o700


def test_data_without_a_manifest_is_kept_under_its_temp_manifest_name(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "state" / "spool")
    ident, _ = new_file(spool, b"half saved")
    manifest = spool.manifest_path(ident)
    manifest.rename(manifest.with_name(f"{ident}.json.tmp"))  # the rename never happened
    found = spool.leftovers()
    assert len(found.orphans) == 1 and len(found.strays) == 1
    [kept] = keep_orphans(tmp_path / "state", found)
    assert kept == tmp_path / "state" / "recovered" / "P" / "P-1" / "notes.txt"
    assert kept.read_bytes() == b"half saved"
    assert list(spool.directory.iterdir()) == []


def test_empty_orphans_and_lone_manifests_are_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "state" / "spool")
    ident, _ = new_file(spool)
    spool.manifest_path(ident).unlink()
    _, other_data = new_file(spool, b"x")
    other_data.unlink()
    assert keep_orphans(tmp_path / "state", spool.leftovers()) == []
    assert list(spool.directory.iterdir()) == []


def test_status_lists_orphans_without_touching_anything(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ident, data = new_file(spool, b"bytes")
    spool.manifest_path(ident).unlink()
    before = sorted(spool.directory.iterdir())
    lines = describe_state(tmp_path)
    assert any(str(data) in line and "no manifest" in line for line in lines)
    assert sorted(spool.directory.iterdir()) == before


def test_private_dirs_are_made_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        existing = tmp_path / "existing"
        existing.mkdir(mode=0o755)
        make_private_dir(existing)
        made = make_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert mode(existing) == 0o700 and mode(made) == 0o700 and mode(made.parent) == 0o700


def test_a_profile_is_locked_by_one_mount_at_a_time(tmp_path: Path) -> None:
    assert mount_holder(tmp_path) is None
    with hold_profile_lock(tmp_path, "work", Path("/mnt/a")):
        holder = mount_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid() and holder.mountpoint == "/mnt/a"
        with pytest.raises(ConfigError) as refused, hold_profile_lock(tmp_path, "work", Path("/mnt/b")):
            pass
        assert str(refused.value) == f"profile work is already mounted at /mnt/a by pid {os.getpid()}"
        assert mode(tmp_path / "mount.lock") == 0o600
    assert mount_holder(tmp_path) is None
    with hold_profile_lock(tmp_path, "work", Path("/mnt/b")):
        pass


async def test_upload_bodies_read_the_spool_in_worker_threads(tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.write_bytes(os.urandom(3 * (1 << 20) + 5))
    readers: set[int] = set()

    class Recording:
        def __init__(self) -> None:
            self.file = source.open("rb")

        def read(self, size: int) -> bytes:
            readers.add(threading.get_ident())
            return self.file.read(size)

        def close(self) -> None:
            self.file.close()

    body = MultipartBody([FilePart("file", "data", source.stat().st_size, Recording)])  # type: ignore[arg-type]
    pieces = [piece async for piece in body.stream()]
    assert sum(map(len, pieces)) == body.length
    assert source.read_bytes() in b"".join(pieces)
    assert readers and threading.get_ident() not in readers
    assert max(map(len, pieces)) == 1 << 20


async def test_asave_does_its_disk_work_off_the_trio_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool")
    spooled = spool.create(Manifest("P", "P-1", "x.txt"))
    writers: list[int] = []
    real = spool.write_manifest

    def recording(ident: str, payload: bytes) -> None:
        writers.append(threading.get_ident())
        real(ident, payload)

    monkeypatch.setattr(spool, "write_manifest", recording)
    await spooled.asave(state=PENDING)
    assert spooled.manifest.state == PENDING
    assert writers and writers[0] != threading.get_ident()


def test_the_log_file_is_private_and_an_unwritable_one_is_one_line(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        existing = tmp_path / "old.log"
        existing.write_text("from an older version\n")
        existing.chmod(0o644)
        for log_file in (existing, tmp_path / "new" / "trackerfs.log"):
            private_file_handler(log_file).close()
            assert mode(log_file) == 0o600
        assert mode(tmp_path / "new") == 0o700
    finally:
        os.umask(old)
    with pytest.raises(ConfigError, match="cannot write the log file"):
        private_file_handler(existing / "under-a-file.log")
