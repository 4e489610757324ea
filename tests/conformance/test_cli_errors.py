"""Every way a command can fail before it serves is one line on stderr and the right exit.

2 for a bad command line, configuration or mount point; 1 when the tracker fails. Never a
traceback, never a secret.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import one_line_error, profile_config, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, force_unmount, wait_mounted

pytestmark = pytest.mark.mount


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_emulate_and_demo_on_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    emulate = trackerfs("emulate", "--port", str(busy_port))
    assert emulate.returncode == 2
    assert f"cannot listen on 127.0.0.1:{busy_port}" in one_line_error(emulate)
    demo = trackerfs("demo", "--port", str(busy_port), str(tmp_path / "tracker"))
    assert demo.returncode == 2
    assert f"127.0.0.1:{busy_port}" in one_line_error(demo)
    assert not os.path.ismount(tmp_path / "tracker")


def test_emulate_with_an_unusable_data_dir() -> None:
    done = trackerfs("emulate", "--data-dir", "/proc/nope")
    assert done.returncode == 2
    assert "--data-dir /proc/nope" in one_line_error(done)


def test_demo_mount_points_that_cannot_be_used(tmp_path: Path, mounted: Path, case: TrackerCase) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    for where, reason in [
        (afile / "tracker", "cannot create the mount point"),
        (mounted / case.project / "tracker", "cannot create the mount point"),
        (occupied, "is not empty"),
        (afile, "is not a directory"),
    ]:
        done = trackerfs("demo", str(where))
        assert done.returncode == 2, where
        assert reason in one_line_error(done), where
    assert (occupied / "mine.txt").read_text() == "keep me"


def test_demo_mounts_on_an_existing_empty_directory(tmp_path: Path) -> None:
    mnt = tmp_path / "empty"
    mnt.mkdir()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "trackerfs", "demo", str(mnt)], stdout=out, stderr=out)
    try:
        wait_mounted(mnt, demo, log)  # type: ignore[arg-type]
        assert "DEMO" in os.listdir(mnt)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
        force_unmount(mnt)


def test_mount_refuses_a_mount_point_that_is_not_empty(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "notes.txt").write_text("mine")
    config = profile_config(tmp_path / "c.toml", "p", case, emulator.base_url, token_env=TOKEN_ENV)
    env = dict(os.environ, **{TOKEN_ENV: emulator.token})
    try:
        for mode in (["--foreground"], []):
            done = trackerfs("mount", *mode, "--config", str(config), "p", str(mnt), env=env, timeout=20)
            assert done.returncode == 2
            assert f"{mnt} is not empty" in one_line_error(done)
            assert not os.path.ismount(mnt)
            assert os.listdir(mnt) == ["notes.txt"]
    finally:
        force_unmount(mnt)  # should the refusal ever fail, leave no mount behind


def test_a_log_file_that_cannot_be_written(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(tmp_path / "c.toml", "p", case, emulator.base_url, token_env=TOKEN_ENV)
    env = dict(os.environ, **{TOKEN_ENV: emulator.token})
    for mode in (["--foreground"], []):
        done = trackerfs(
            "mount", *mode, "--log-file", "/proc/nope/t.log", "--config", str(config), "p", str(mnt), env=env
        )
        assert done.returncode == 2, done.stderr
        assert "cannot write the log file /proc/nope/t.log" in one_line_error(done)
        assert not os.path.ismount(mnt)


def test_a_url_without_a_host_is_a_config_error(tmp_path: Path, case: TrackerCase) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = profile_config(tmp_path / "c.toml", "p", case, "http://", token_env=TOKEN_ENV)
    done = trackerfs(
        "mount", "--config", str(config), "p", str(mnt), env=dict(os.environ, **{TOKEN_ENV: "t0ken"})
    )
    assert done.returncode == 2
    assert "url must start with http:// or https:// and name a host" in one_line_error(done)


def test_https_to_a_plain_http_port_says_why(
    tmp_path: Path, emulator: EmulatorProcess, case: TrackerCase
) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    url = emulator.base_url.replace("http://", "https://")
    config = profile_config(tmp_path / "c.toml", "p", case, url, token_env=TOKEN_ENV)
    done = trackerfs(
        "mount", "--config", str(config), "p", str(mnt), env=dict(os.environ, **{TOKEN_ENV: emulator.token})
    )
    assert done.returncode == 1
    line = one_line_error(done)
    assert "cannot connect to 127.0.0.1: TLS handshake failed: " in line, line
    assert not line.endswith(": ")


def test_a_refusal_that_echoes_the_token_never_shows_it(
    tmp_path: Path, clean_emulator: EmulatorProcess, case: TrackerCase
) -> None:
    token = clean_emulator.token
    # What a Basic Authorization header carries, echoed as some servers do.
    basic = base64.b64encode(f"{case.basic_user or ''}:{token}".encode()).decode()
    shown = [token] if case.basic_user is None else [token, basic]
    clean_emulator.fault(
        **case.account_check.rule(
            status=401, count=-1, body=case.error_body(f"token {token} (Basic {basic}) is not valid")
        )
    )
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    state = tmp_path / "state"
    config = profile_config(
        tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV, spool_dir=str(state)
    )
    env = dict(os.environ, **{TOKEN_ENV: token})
    foreground = trackerfs("mount", "--foreground", "--config", str(config), "p", str(mnt), env=env)
    background = trackerfs("mount", "--config", str(config), "p", str(mnt), env=env)
    status = trackerfs("status", "--config", str(config), "p", env=env)
    for done in (foreground, background):
        assert done.returncode == 1
        assert "refused the credentials" in done.stderr.strip().splitlines()[-1]
    assert "refused the credentials" in one_line_error(background)
    log = (state / "trackerfs.log").read_text()
    assert "is not valid" in log
    for text in (foreground.stderr, background.stderr, log, status.stdout, status.stderr):
        assert not [secret for secret in shown if secret in text]
