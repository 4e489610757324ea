"""Fixtures: an emulator per tracker and real FUSE mounts of it.

Every mount runs `trackerfs mount --foreground` in a child process (a FUSE daemon must
never touch its own mount) and is unmounted after the test, even when the test fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cases import CASES, TrackerCase
from tests.support.commands import mount_at
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount


def fuse_available() -> str | None:
    """Why FUSE mounts cannot run here, or None."""
    if not shutil.which("fusermount3"):
        return "fusermount3 is not installed (apt-get install fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse cannot be opened: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = fuse_available()
    if reason is None:
        return
    # On a machine meant to run the suite a missing FUSE is a failure, not a skip.
    if os.environ.get("CI"):
        raise pytest.UsageError(f"FUSE tests cannot run: {reason}")
    for item in items:
        if "mount" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", params=CASES, ids=[case.id for case in CASES])
def case(request: pytest.FixtureRequest) -> TrackerCase:
    """The tracker under test."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def emulator(case: TrackerCase) -> Iterator[EmulatorProcess]:
    """One emulator per tracker for the session, with small pages so listings cross them."""
    with EmulatorProcess(
        *case.emulator_args, "--page-size", str(case.page_size), names=case.names
    ) as running:
        yield running


@pytest.fixture(scope="session")
def mounted(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A mount shared by the read-only tests of a tracker."""
    with mount_at(tmp_path_factory.mktemp(f"mount-{case.id}"), case, emulator) as mount:
        yield mount.path


@pytest.fixture
def clean_emulator(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The session emulator, reset to its seed before and after the test."""
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
def make_mount(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> Iterator[Callable[..., Mount]]:
    """Start a fresh mount of the tracker with extra profile settings."""
    mounts: list[Mount] = []

    def start(**profile: Any) -> Mount:
        mount = mount_at(tmp_path / f"m{len(mounts)}", case, emulator, **profile)
        mounts.append(mount)
        return mount.start()

    yield start
    for mount in mounts:
        mount.stop()
