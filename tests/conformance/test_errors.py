"""Tracker failures through a real mount: the errno a user sees, and the daemon survives."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import attachment, file_sha256, sha256_of

pytestmark = pytest.mark.mount


@pytest.fixture
def fresh(make_mount: Callable[..., Mount], clean_emulator: EmulatorProcess) -> Mount:
    return make_mount()


def read_errno(path: Path) -> int:
    with pytest.raises(OSError) as caught:
        path.read_bytes()
    return caught.value.errno  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, errno.EIO), (403, errno.EACCES), (404, errno.ENOENT), (401, errno.EACCES), (400, errno.EINVAL)],
)
def test_content_errors_map_to_errno_and_the_mount_keeps_serving(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess, status: int, expected: int
) -> None:
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    issue_dir = fresh.path / case.project / case.rich_issue
    os.listdir(issue_dir)
    clean_emulator.fault(
        **case.content_of(item).rule(),
        status=status,
        count=-1,
        headers={"Retry-After": "0"},
        body=case.error_body(f"injected {status}"),
    )
    assert read_errno(issue_dir / "readme.txt") == expected
    clean_emulator.clear_faults()
    assert sha256_of((issue_dir / "readme.txt").read_bytes()) == item["sha256"]
    assert "Traceback" not in fresh.log_text()


@pytest.mark.parametrize(
    ("location", "said"),
    [("{path}", "too many redirects"), ("ftp://127.0.0.1/{name}", "redirected to a ftp: URL")],
    ids=["loop", "ftp"],
)
def test_a_content_redirect_loop_or_to_another_scheme_is_eio_and_the_mount_keeps_serving(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess, location: str, said: str
) -> None:
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    issue_dir = fresh.path / case.project / case.rich_issue
    os.listdir(issue_dir)
    target = location.format(path=case.content_path(item), name=item["filename"])
    clean_emulator.fault(
        **case.content_of(item).rule(), status=302, count=-1, headers={"Location": target}, body=""
    )
    assert read_errno(issue_dir / "readme.txt") == errno.EIO
    assert said in fresh.log_text()
    # Not retried: a redirect that goes nowhere is not a passing failure.
    asked = [r for r in clean_emulator.requests() if case.content_of(item).matches(r)]
    assert len(asked) <= 2 * 6, len(asked)
    clean_emulator.clear_faults()
    assert sha256_of((issue_dir / "readme.txt").read_bytes()) == item["sha256"]
    assert "Traceback" not in fresh.log_text()


def test_rate_limit_is_retried_after_retry_after(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    item = attachment(clean_emulator, case.rich_issue, "spec.pdf")
    issue_dir = fresh.path / case.project / case.rich_issue
    os.listdir(issue_dir)
    clean_emulator.clear_requests()
    clean_emulator.fault(**case.content_of(item).rule(status=429, count=2, headers={"Retry-After": "0"}))
    assert file_sha256(issue_dir / "spec.pdf") == item["sha256"]
    statuses = [r["status"] for r in clean_emulator.requests() if case.content_of(item).matches(r)]
    # after the two refusals, the content itself, or the redirect to where it always is
    answered = (302, 303, 307) if case.content_always_redirected else (200, 206)
    assert statuses[:2] == [429, 429] and statuses[2] in answered, statuses


@pytest.mark.parametrize("action", ["drop", "truncate"])
def test_dropped_connections_are_retried(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess, action: str
) -> None:
    item = attachment(clean_emulator, case.rich_issue, case.big_file)
    issue_dir = fresh.path / case.project / case.rich_issue
    os.listdir(issue_dir)
    clean_emulator.fault(**case.content_of(item).rule(action=action, count=1))
    assert file_sha256(issue_dir / case.big_file) == item["sha256"]


def test_malformed_listing_is_eio_then_recovers(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.fault(
        **case.listing.rule(),
        status=200,
        body="<html>not json",
        count=-1,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(OSError) as caught:
        os.listdir(fresh.path / case.project)
    assert caught.value.errno == errno.EIO
    clean_emulator.clear_faults()
    assert sorted(os.listdir(fresh.path / case.project)) == sorted(case.issues)
    assert "malformed JSON" in fresh.log_text()


def test_server_errors_on_listing_are_retried(
    fresh: Mount, case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    clean_emulator.fault(**case.listing.rule(status=503, count=2, headers={"Retry-After": "0"}))
    assert sorted(os.listdir(fresh.path / case.project)) == sorted(case.issues)


def test_a_tracker_that_does_not_answer_is_etimedout(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(timeout=0.5)
    item = attachment(clean_emulator, case.rich_issue, "readme.txt")
    issue_dir = mount.path / case.project / case.rich_issue
    os.listdir(issue_dir)
    clean_emulator.fault(**case.content_of(item).rule(action="delay", delay=3, count=-1))
    assert read_errno(issue_dir / "readme.txt") == errno.ETIMEDOUT
    clean_emulator.clear_faults()
    assert os.listdir(issue_dir)
