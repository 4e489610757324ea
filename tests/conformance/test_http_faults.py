"""What the HTTP policy makes of a misbehaving tracker, seen through a real mount.

Cut-off answers are retried where that is safe, a redirect answered to a change is a
failure, one deadline bounds a call, and `max_concurrency` bounds what is in flight.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import Route, TrackerCase
from tests.support.commands import one_line_error, profile_config, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, Mount
from tests.support.store import attachment, deletes, file_sha256
from tests.support.waiting import wait_for

pytestmark = pytest.mark.mount


def hits(emulator: EmulatorProcess, route: Route) -> list[dict]:
    """The requests of one kind in the log."""
    return [r for r in emulator.requests() if route.matches(r)]


def test_a_listing_cut_short_is_retried(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    clean_emulator.fault(**case.listing.rule(action="truncate", count=1))
    assert sorted(os.listdir(mount.path / case.project)) == sorted(case.issues)
    searches = hits(clean_emulator, case.listing)
    assert searches[0].get("truncated") is True
    assert not any(r.get("truncated") for r in searches[1:])


def test_an_account_check_cut_short_is_retried(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.fault(**case.account_check.rule(action="truncate", count=1))
    mount = make_mount()
    assert case.listed_project(case.project) in os.listdir(mount.path)
    checks = hits(clean_emulator, case.account_check)
    assert [bool(r.get("truncated")) for r in checks] == [True, False]


def test_an_account_check_always_cut_short_is_one_clear_line(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    clean_emulator.fault(**case.account_check.rule(action="truncate", count=-1))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV)
    env = dict(os.environ, **{TOKEN_ENV: clean_emulator.token})
    background = trackerfs("mount", "--config", str(config), "p", str(mnt), env=env)
    assert background.returncode == 1
    line = one_line_error(background)
    assert re.search(case.account_check.path, line) and "cut short" in line, line
    assert "httpx" not in line and "Error(" not in line
    # In the foreground stderr is also the log (retry warnings); the failure is its last line.
    foreground = trackerfs("mount", "--foreground", "--config", str(config), "p", str(mnt), env=env)
    assert foreground.returncode == 1 and "Traceback" not in foreground.stderr
    assert foreground.stderr.strip().splitlines()[-1] == line
    assert not os.path.ismount(mnt)


def test_a_delete_answered_with_a_redirect_fails_and_the_file_stays(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    target = mount.path / case.project / case.rich_issue / "readme.txt"
    os.stat(target)
    for status in (302, 307):
        clean_emulator.fault(
            method=case.delete.method,
            path=f"/{item['id']}/?$",
            status=status,
            headers={"Location": "http://127.0.0.1:9/elsewhere"},
            body="",
        )
        with pytest.raises(OSError) as caught:
            os.unlink(target)
        assert caught.value.errno == errno.EIO
        assert item["id"] in {a["id"] for a in clean_emulator.attachments()}
    assert [r["status"] for r in deletes(clean_emulator, case)] == [302, 307]
    assert "redirecting to http://127.0.0.1:9" in mount.log_text()


def test_a_stalled_tracker_fails_a_read_within_one_deadline(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(deadline=2, timeout=1.5)
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    path = mount.path / case.project / case.rich_issue / case.big_file
    os.stat(path)
    clean_emulator.clear_requests()
    clean_emulator.fault(**case.content_of(item).rule(action="delay", delay=30, count=-1))
    with path.open("rb") as handle, pytest.raises(OSError) as caught:
        handle.read(4096)
    assert caught.value.errno == errno.ETIMEDOUT
    # 1.5 s, a short wait, then what is left of 2 s: two attempts per range at most,
    # however often the kernel repeats the failed read.
    ranges = Counter(r["range"] for r in clean_emulator.requests() if case.content_of(item).matches(r))
    assert ranges and max(ranges.values()) <= 2, ranges
    clean_emulator.clear_faults()
    other = attachment(clean_emulator, case.rich_issue, "readme.txt")
    assert file_sha256(path.parent / "readme.txt") == other["sha256"]


def test_max_concurrency_bounds_the_requests_in_flight(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(max_concurrency=2)
    issue_dir = mount.path / case.project / case.rich_issue
    names = sorted(os.listdir(issue_dir))
    assert len(names) >= 4
    clean_emulator.clear_requests()
    clean_emulator.fault(**case.content.rule(action="delay", delay=1.0, count=-1))
    readers = [threading.Thread(target=(issue_dir / name).read_bytes) for name in names]
    for reader in readers:
        reader.start()
    most = 0

    def all_answered() -> bool:
        nonlocal most
        log = hits(clean_emulator, case.content)
        most = max(most, sum(1 for r in log if r["status"] is None))
        return len(log) >= len(names) and all(r["status"] is not None for r in log)

    wait_for(all_answered, "every file to be fetched", timeout=60)
    for reader in readers:
        reader.join()
    assert most == 2
