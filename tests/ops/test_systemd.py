"""The systemd units: systemd's own check, and the daemon started exactly as they start it.

Each unit's `ExecStart=` runs with its specifiers expanded, its `Environment=` set and its
secret handed over the way the unit says (a `LoadCredential=` file, an `EnvironmentFile=`
line); only the places outside the test's folder (/etc, /srv, the installed command) are
moved into it. systemd's side of `Type=notify` is a socket the test reads.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cases import CASES
from tests.support.emulator import REPO_ROOT, EmulatorProcess
from tests.support.mount import force_unmount, write_config
from tests.support.notify import notify_socket

pytestmark = pytest.mark.mount

CASE = CASES[0]
PROFILE = "work"
SYSTEM_UNIT = REPO_ROOT / "systemd" / "trackerfs@.service"
USER_UNIT = REPO_ROOT / "systemd" / "user" / "trackerfs@.service"
#: the command as the virtualenv under test installed it
TRACKERFS = Path(sys.executable).parent / "trackerfs"


@dataclass(frozen=True)
class Unit:
    """The [Service] settings of a unit file, each key with all its values in order."""

    path: Path
    service: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        service: dict[str, list[str]] = {}
        section = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section == "[Service]":
                service.setdefault(key, []).append(value)
        return cls(path, service)

    def one(self, key: str) -> str:
        [value] = self.service[key]
        return value


@dataclass(frozen=True)
class Places:
    """Where the test puts what the unit expects elsewhere on the machine."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    def expand(self, text: str) -> str:
        """Specifiers (%i, %h, %S, %C) and fixed system paths, moved under the root."""
        for specifier, value in (
            ("%i", PROFILE),
            ("%h", str(self.home)),
            ("%S", str(self.root / "var-lib")),
            ("%C", str(self.root / "var-cache")),
        ):
            text = text.replace(specifier, value)
        for fixed in ("/etc/trackerfs", "/srv/tracker"):
            text = text.replace(fixed, str(self.root) + fixed)
        return text


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(*CASE.emulator_args) as running:
        yield running


def systemd_analyze() -> str:
    """The program, or a failure: the package list of `make test` installs it."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    return found


@pytest.mark.parametrize("source", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_systemd_finds_nothing_wrong_with_the_unit(source: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at the one under test.
    text = source.read_text(encoding="utf-8")
    for installed in ("/usr/local/bin/trackerfs", "%h/.local/bin/trackerfs"):
        text = text.replace(installed, str(TRACKERFS))
    (tmp_path / source.name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(tmp_path / f"trackerfs@{PROFILE}.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_system_unit_keeps_the_mount_visible_and_the_token_out_of_sight() -> None:
    unit = Unit.read(SYSTEM_UNIT)
    # A mount namespace of the service's own would hide the mount from everyone else.
    for hiding in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts"):
        assert hiding not in unit.service, hiding
    assert unit.one("Type") == "notify"
    assert unit.one("LoadCredential").startswith("token:")
    assert "token" not in unit.one("ExecStart").split("--config")[0]


def start_as_unit(unit: Unit, places: Places, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """ExecStart as systemd runs it: its command line, expanded, with the unit's environment."""
    argv = shlex.split(places.expand(unit.one("ExecStart")))
    assert Path(argv[0]).name == "trackerfs"
    for setting in unit.service.get("Environment", []):
        for pair in shlex.split(places.expand(setting)):
            key, _, value = pair.partition("=")
            env[key] = value
    log = (places.root / "daemon.log").open("wb")
    return subprocess.Popen([str(TRACKERFS), *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT)


def clean_environment(places: Places, notify: str) -> dict[str, str]:
    """What a service gets: no XDG folders of the person running the tests."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env.update(HOME=str(places.home), NOTIFY_SOCKET=notify)
    return env


def ready_then_stopped(
    process: subprocess.Popen[bytes], mountpoint: Path, received: Callable[[], list[str]]
) -> list[str]:
    """Wait for READY=1, check the mount answers at that moment, then stop as systemd does."""
    try:
        deadline = time.monotonic() + 60
        while "READY=1" not in received():
            assert process.poll() is None, "the daemon exited before READY=1"
            assert time.monotonic() < deadline, "no READY=1 within 60 s"
            time.sleep(0.01)
        assert os.path.ismount(mountpoint), "READY=1 came before the mount answered"
        assert CASE.project in os.listdir(mountpoint)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        force_unmount(mountpoint)
    assert not os.path.ismount(mountpoint)
    return received()


def profile_table(emulator: EmulatorProcess, **secret: str) -> dict[str, object]:
    return {"tracker": CASE.tracker, "url": emulator.base_url, **secret, **CASE.profile}


def test_the_system_unit_starts_a_daemon_that_is_ready_once_it_answers(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    unit = Unit.read(SYSTEM_UNIT)
    places = Places(tmp_path)
    etc = places.root / "etc/trackerfs"
    etc.mkdir(parents=True)
    write_config(etc / "config.toml", PROFILE, profile_table(emulator, token_credential="token"))
    # LoadCredential=token:/etc/trackerfs/%i.token: systemd copies the file for the service.
    name, _, source = unit.one("LoadCredential").partition(":")
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    Path(places.expand(source)).write_text(emulator.token + "\n")
    shutil.copy(places.expand(source), credentials / name)
    mountpoint = places.root / f"srv/tracker/{PROFILE}"
    mountpoint.mkdir(parents=True)  # ExecStartPre's install -d
    with notify_socket() as (address, received):
        env = clean_environment(places, address)
        env["CREDENTIALS_DIRECTORY"] = str(credentials)
        daemon = start_as_unit(unit, places, env)
        messages = ready_then_stopped(daemon, mountpoint, received)
    assert "STOPPING=1" in messages
    # StateDirectory= and CacheDirectory=, found through the unit's XDG variables.
    assert (places.root / f"var-lib/trackerfs/{PROFILE}").is_dir()
    log = (places.root / "daemon.log").read_text(errors="replace")
    assert emulator.token not in log


def test_the_user_unit_starts_a_daemon_that_is_ready_once_it_answers(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    unit = Unit.read(USER_UNIT)
    places = Places(tmp_path)
    config = places.home / ".config/trackerfs"
    config.mkdir(parents=True)
    write_config(config / "config.toml", PROFILE, profile_table(emulator, token_env="TRACKERFS_TOKEN"))
    # EnvironmentFile=-%h/.config/trackerfs/%i.env: KEY=VALUE lines systemd reads for the service.
    env_file = Path(places.expand(unit.one("EnvironmentFile").removeprefix("-")))
    env_file.write_text(f"TRACKERFS_TOKEN={emulator.token}\n")
    mountpoint = places.home / f"tracker/{PROFILE}"
    mountpoint.mkdir(parents=True)  # ExecStartPre's mkdir -p
    with notify_socket() as (address, received):
        env = clean_environment(places, address)
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        daemon = start_as_unit(unit, places, env)
        messages = ready_then_stopped(daemon, mountpoint, received)
    assert "STOPPING=1" in messages
    assert (places.home / f".local/state/trackerfs/{PROFILE}").is_dir()
