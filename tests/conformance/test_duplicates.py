"""Versions of one name through a real mount: the newest holds the plain name, older
ones keep a name of their own creation time, whatever is uploaded or overwritten."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import file_sha256, stored
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount


def dated(item: dict, stem: str, ext: str, *, seconds: bool = False) -> str:
    """The name a user expects for an older version: its creation time in UTC, no colons."""
    created = datetime.fromisoformat(item["created"].replace("Z", "+00:00"))
    return f"{stem} ({created:%Y-%m-%d %H.%M{'.%S' if seconds else ''}}){ext}"


def ids_by_name(issue_dir: Path) -> dict[str, str]:
    return {path.name: os.getxattr(path, "user.trackerfs.id").decode() for path in issue_dir.iterdir()}


def fresh_listing(issue_dir: Path, emulator: EmulatorProcess, case: TrackerCase) -> list[str]:
    """List the directory until the mount has asked the tracker again (its TTL ran out)."""
    emulator.clear_requests()
    names: list[str] = []

    def listed_afresh() -> bool:
        names[:] = sorted(os.listdir(issue_dir))
        return any(case.refreshes_listing(r) for r in emulator.requests())

    wait_for(listed_afresh, "the listing to be fetched again", timeout=15)
    return names


@pytest.fixture
def short_ttl(make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess) -> Mount:
    """A mount whose listings expire after a second."""
    if not case.duplicate_names_allowed:
        pytest.skip("capability duplicate_names_allowed: one issue holds one attachment per name")
    return make_mount(metadata_ttl=1, attr_timeout=0.2, negative_ttl=0.2)


def test_overwriting_the_plain_name_keeps_the_users_bytes_there(
    short_ttl: Mount, case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    issue_dir = short_ttl.path / case.project / case.duplicates_issue
    older, newer = stored(clean_emulator, case.duplicates_issue, "notes.txt")
    older_name = dated(older, "notes", ".txt")
    assert ids_by_name(issue_dir) == {
        "notes.txt": newer["id"],
        older_name: older["id"],
        "notes (2).txt": stored(clean_emulator, case.duplicates_issue, "notes (2).txt")[0]["id"],
    }
    mine = tmp_path / "my.txt"
    mine.write_bytes(b"my new version of the notes\n" * 50)
    subprocess.run(["cp", str(mine), str(issue_dir / "notes.txt")], check=True)
    versions = stored(clean_emulator, case.duplicates_issue, "notes.txt")
    assert [v["id"] for v in versions][:1] == [older["id"]] and len(versions) == 2
    assert versions[1]["sha256"] == file_sha256(mine)

    names = fresh_listing(issue_dir, clean_emulator, case)
    assert names == sorted(["notes.txt", older_name, "notes (2).txt"])
    assert file_sha256(issue_dir / "notes.txt") == file_sha256(mine)
    assert os.getxattr(issue_dir / "notes.txt", "user.trackerfs.id").decode() == versions[1]["id"]
    assert file_sha256(issue_dir / older_name) == older["sha256"]
    assert os.getxattr(issue_dir / older_name, "user.trackerfs.id").decode() == older["id"]


def test_a_new_version_uploaded_elsewhere_dates_only_the_previous_one(
    short_ttl: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    issue_dir = short_ttl.path / case.project / case.duplicates_issue
    before = ids_by_name(issue_dir)
    _, newer = stored(clean_emulator, case.duplicates_issue, "notes.txt")
    added = case.attach_behind(clean_emulator, case.duplicates_issue, "notes.txt", b"third version\n")
    fresh_listing(issue_dir, clean_emulator, case)
    after = ids_by_name(issue_dir)
    assert after == {
        **{name: ident for name, ident in before.items() if name != "notes.txt"},
        "notes.txt": added,
        dated(newer, "notes", ".txt"): newer["id"],
    }
    assert (issue_dir / "notes.txt").read_bytes() == b"third version\n"


def test_removing_an_older_version_leaves_every_other_name(
    short_ttl: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    issue_dir = short_ttl.path / case.project / case.duplicates_issue
    before = ids_by_name(issue_dir)
    older, _ = stored(clean_emulator, case.duplicates_issue, "notes.txt")
    name = dated(older, "notes", ".txt")
    os.unlink(issue_dir / name)
    assert older["id"] not in {a["id"] for a in stored(clean_emulator, case.duplicates_issue)}
    fresh_listing(issue_dir, clean_emulator, case)
    assert ids_by_name(issue_dir) == {n: ident for n, ident in before.items() if n != name}


def test_a_real_attachment_named_like_a_dated_one_takes_that_name(
    short_ttl: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    issue_dir = short_ttl.path / case.project / case.duplicates_issue
    older, _ = stored(clean_emulator, case.duplicates_issue, "notes.txt")
    name = dated(older, "notes", ".txt")
    assert ids_by_name(issue_dir)[name] == older["id"]
    real = case.attach_behind(clean_emulator, case.duplicates_issue, name, b"really named so\n")
    fresh_listing(issue_dir, clean_emulator, case)
    after = ids_by_name(issue_dir)
    assert after[name] == real and (issue_dir / name).read_bytes() == b"really named so\n"
    moved = dated(older, "notes", ".txt", seconds=True)
    assert after[moved] == older["id"] and file_sha256(issue_dir / moved) == older["sha256"]


def test_an_attachment_named_like_a_file_being_written_shows_beside_it(
    short_ttl: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    issue_dir = short_ttl.path / case.project / case.plain_issue
    with (issue_dir / "draft.txt").open("wb") as handle:
        handle.write(b"mine, not uploaded yet\n")
        handle.flush()
        theirs = case.attach_behind(clean_emulator, case.plain_issue, "draft.txt", b"someone else's\n")
        [item] = stored(clean_emulator, case.plain_issue, "draft.txt")
        beside = dated(item, "draft", ".txt")
        assert fresh_listing(issue_dir, clean_emulator, case) == [beside, "draft.txt"]
        assert (issue_dir / beside).read_bytes() == b"someone else's\n"
        assert (issue_dir / "draft.txt").read_bytes() == b"mine, not uploaded yet\n"
    # Uploaded at close, the local file is the newest "draft.txt" and keeps the plain name.
    assert fresh_listing(issue_dir, clean_emulator, case) == [beside, "draft.txt"]
    assert (issue_dir / "draft.txt").read_bytes() == b"mine, not uploaded yet\n"
    assert ids_by_name(issue_dir)[beside] == theirs
