"""fstab and `mount -t fuse.trackerfs`: mount(8) running the `mount.fuse.trackerfs` helper.

mount(8) looks for helpers only in /sbin (and runs them without PATH), so the test links
the helper the virtualenv installed there, as the install instructions say, and removes
the link afterwards if it made it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import CASES
from tests.support.emulator import EmulatorProcess
from tests.support.mount import write_config
from tests.support.waiting import wait_for
from trackerfs.mounthelper import mount_arguments

pytestmark = pytest.mark.mount

CASE = CASES[0]
HELPER = Path(sys.executable).parent / "mount.fuse.trackerfs"
SBIN = Path("/sbin/mount.fuse.trackerfs")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(*CASE.emulator_args) as running:
        yield running


@pytest.fixture(scope="module")
def helper_in_sbin() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mount -t and a helper in /sbin need root (the suite runs as root in CI)")
    assert HELPER.exists(), f"{HELPER} is missing: the package's console scripts are not installed"
    made = not SBIN.exists()
    if made:
        SBIN.symlink_to(HELPER)
    yield SBIN
    if made:
        SBIN.unlink()


@pytest.fixture
def config(emulator: EmulatorProcess, tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text(emulator.token + "\n")
    token.chmod(0o600)
    table = {
        "tracker": CASE.tracker,
        "url": emulator.base_url,
        "token_file": str(token),
        "spool_dir": str(tmp_path / "state"),
        "cache_dir": str(tmp_path / "cache"),
        **CASE.profile,
    }
    return write_config(tmp_path / "config.toml", "work", table)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    # mount(8) gets no PATH, as from systemd's automount or a boot-time mount.
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={}, check=False)


def unmounted(mountpoint: Path, config: Path) -> None:
    assert run("/usr/bin/umount", str(mountpoint)).returncode == 0
    status = [sys.executable, "-m", "trackerfs", "status", "--config", str(config), "work"]
    wait_for(
        lambda: "not mounted" in subprocess.run(status, capture_output=True, text=True, check=False).stdout,
        "the daemon to leave after umount",
    )


def test_mount_t_runs_the_helper_without_path(helper_in_sbin: Path, config: Path, tmp_path: Path) -> None:
    mountpoint = tmp_path / "tracker"
    mountpoint.mkdir()
    done = run("/usr/bin/mount", "-t", "fuse.trackerfs", "work", str(mountpoint), "-o", f"config={config}")
    assert done.returncode == 0, done.stderr
    try:
        assert os.path.ismount(mountpoint)
        assert CASE.project in os.listdir(mountpoint)
    finally:
        unmounted(mountpoint, config)
    assert not os.path.ismount(mountpoint)


def test_an_fstab_line_mounts_with_systemd_and_network_options(
    helper_in_sbin: Path, config: Path, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "tracker"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"work {mountpoint} fuse.trackerfs noauto,x-systemd.automount,_netdev,nofail,config={config} 0 0\n"
    )
    done = run("/usr/bin/mount", "--fstab", str(fstab), str(mountpoint))
    assert done.returncode == 0, done.stderr
    try:
        assert CASE.project in os.listdir(mountpoint)
    finally:
        unmounted(mountpoint, config)


def test_a_mistyped_mount_option_is_one_line_and_no_mount(
    helper_in_sbin: Path, config: Path, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "tracker"
    mountpoint.mkdir()
    done = run("/usr/bin/mount", "-t", "fuse.trackerfs", "work", str(mountpoint), "-o", f"confg={config}")
    assert done.returncode != 0
    assert "unknown mount option 'confg=" in done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.ismount(mountpoint)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["p", "/m", "-o", "rw,noauto,config=/c.toml"], ["mount", "--config", "/c.toml", "p", "/m"]),
        (["p", "/m", "-n", "-o", "_netdev,x-systemd.automount,debug"], ["mount", "--debug", "p", "/m"]),
        (["p", "/m", "-olog_file=/l,quiet"], ["mount", "--log-file", "/l", "--quiet", "p", "/m"]),
        (["p", "/m", "-o", "comment=x-gvfs-show,lazytime,strictatime"], ["mount", "p", "/m"]),
    ],
)
def test_mount_options_become_command_line_options(argv: list[str], expected: list[str]) -> None:
    assert mount_arguments(argv) == expected
