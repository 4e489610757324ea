"""The mount's node table shrinks again once the kernel forgets what it looked up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount

pytestmark = pytest.mark.mount

#: The kernel sends its FORGETs shortly after the caches are dropped, not at once.
FORGET_DEADLINE = 20.0


def nodes(mount: Mount) -> int:
    """How many nodes the mount holds in memory (the root's `user.trackerfs.nodes`)."""
    return int(os.getxattr(mount.path, "user.trackerfs.nodes"))


def walk(directory: Path) -> list[str]:
    """Every path under a directory, as `find` prints them, with their inode numbers."""
    result = subprocess.run(["find", str(directory), "-printf", "%i %P\n"], capture_output=True, check=True)
    return sorted(result.stdout.decode().splitlines())


def drop_caches() -> None:
    """Make the kernel forget every unused dentry and inode (it then sends FORGETs)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("2\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping the kernel's caches needs root")
def test_forgotten_nodes_are_freed_and_inode_numbers_stay(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount(metadata_ttl=0.2, attr_timeout=0.1)
    start = nodes(mount)
    first = walk(mount.path / case.project)
    time.sleep(0.3)  # past the metadata TTL: the second walk sees fresh listings
    second = walk(mount.path / case.project)
    assert first == second, "inode numbers and names are the same on the second walk"
    files = sum(1 for line in first if line.count("/") == 1)
    assert files >= 3
    grown = nodes(mount)
    assert grown >= start + len(first)
    deadline = time.monotonic() + FORGET_DEADLINE
    while nodes(mount) > start + 2 and time.monotonic() < deadline:
        drop_caches()
        time.sleep(0.2)
    assert nodes(mount) <= start + 2, f"{grown} nodes after the walk, {nodes(mount)} after the kernel forgot"
    assert walk(mount.path / case.project) == first, "a re-lookup gets the same inode numbers"
