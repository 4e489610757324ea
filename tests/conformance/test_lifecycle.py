"""Mounting and unmounting as an operator does it, and the one-line errors they get."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import mount_at, one_line_error, profile_config, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, force_unmount, wait_mounted

pytestmark = pytest.mark.mount


def test_sigterm_unmounts_cleanly(case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path) -> None:
    mount = mount_at(tmp_path, case, emulator)
    with mount:
        assert os.listdir(mount.path)
        assert mount.process is not None
        mount.process.send_signal(signal.SIGTERM)
        assert mount.process.wait(timeout=30) == 0
        assert not os.path.ismount(mount.path)
    assert "unmounted" in mount.log_text()


def test_fusermount_u_ends_the_daemon(case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path) -> None:
    with mount_at(tmp_path, case, emulator) as mount:
        os.listdir(mount.path / case.project)
        assert mount.unmount() == 0
        assert not os.path.ismount(mount.path)


def test_background_mount_returns_once_mounted(
    case: TrackerCase, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(
        tmp_path / "config.toml",
        "bg",
        case,
        emulator.base_url,
        token_env=TOKEN_ENV,
        spool_dir=str(tmp_path / "state"),
    )
    env = dict(os.environ, **{TOKEN_ENV: emulator.token})
    try:
        done = trackerfs("mount", "--config", str(config), "bg", str(mnt), env=env)
        assert done.returncode == 0, done.stderr
        assert os.path.ismount(mnt)
        assert case.listed_project(case.project) in os.listdir(mnt)
        assert (tmp_path / "state" / "trackerfs.log").exists()
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        force_unmount(mnt)


def test_demo_mounts_sample_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    mnt = tmp_path / "tracker"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "trackerfs", "demo", str(mnt)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_mounted(mnt, demo, log)  # type: ignore[arg-type]
        assert {"DEMO", "OPS"} <= set(os.listdir(mnt))
        assert "readme.txt" in os.listdir(mnt / "DEMO" / "DEMO-1")
        deadline = time.monotonic() + 10
        while "Press Ctrl-C" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = log.read_text()
        assert "url" in text.lower() or "http://127.0.0.1:" in text
        assert "token" in text
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        assert not os.path.ismount(mnt)
    finally:
        if demo.poll() is None:
            demo.kill()
        force_unmount(mnt)


def test_config_errors_are_one_clear_line(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    missing = trackerfs("mount", "--config", str(tmp_path / "nope.toml"), "x", str(mnt))
    assert missing.returncode == 2 and "does not exist" in one_line_error(missing)

    config = profile_config(
        tmp_path / "c.toml", "p", case, emulator.base_url, token_env="UNSET_TOKEN_VARIABLE"
    )
    no_profile = trackerfs("mount", "--config", str(config), "other", str(mnt))
    assert no_profile.returncode == 2 and "no profile 'other'" in one_line_error(no_profile)

    unset = trackerfs("mount", "--foreground", "--config", str(config), "p", str(mnt))
    assert unset.returncode == 2 and "UNSET_TOKEN_VARIABLE" in one_line_error(unset)

    config.chmod(0o644)
    readable = trackerfs("mount", "--config", str(config), "p", str(mnt))
    assert readable.returncode == 2 and "chmod 600" in one_line_error(readable)
    config.chmod(0o600)

    no_dir = trackerfs(
        "mount",
        "--foreground",
        "--config",
        str(config),
        "p",
        str(tmp_path / "absent"),
        env=dict(os.environ, UNSET_TOKEN_VARIABLE="x"),
    )
    assert no_dir.returncode == 2 and "does not exist" in one_line_error(no_dir)


def test_token_file_readable_by_others_is_refused(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    token = tmp_path / "token"
    token.write_text(emulator.token)
    token.chmod(0o644)
    config = profile_config(tmp_path / "c.toml", "p", case, emulator.base_url, token_file=str(token))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = trackerfs("mount", "--foreground", "--config", str(config), "p", str(mnt))
    assert done.returncode == 2
    line = one_line_error(done)
    assert "token file" in line and "chmod 600" in line
    assert emulator.token not in done.stderr


def test_wrong_credentials_and_unreachable_tracker(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(tmp_path / "c.toml", "p", case, emulator.base_url, token_env=TOKEN_ENV)
    wrong = trackerfs(
        "mount",
        "--foreground",
        "--config",
        str(config),
        "p",
        str(mnt),
        env=dict(os.environ, **{TOKEN_ENV: "wrong-token-value"}),
    )
    assert wrong.returncode == 1
    assert "refused the credentials" in one_line_error(wrong)
    assert "wrong-token-value" not in wrong.stderr
    assert not os.path.ismount(mnt)

    closed = profile_config(tmp_path / "d.toml", "p", case, "http://127.0.0.1:9", token_env=TOKEN_ENV)
    down = trackerfs(
        "mount", "--config", str(closed), "p", str(mnt), env=dict(os.environ, **{TOKEN_ENV: "t0ken"})
    )
    assert down.returncode == 1
    assert "cannot connect" in one_line_error(down)
    assert not os.path.ismount(mnt)
