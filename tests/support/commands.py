"""trackerfs as an operator runs it: mounts of a case, its commands, a crash."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount, force_unmount, write_config


def mount_at(
    workdir: Path, case: TrackerCase, emulator: EmulatorProcess, *, name: str = "test", **profile: Any
) -> Mount:
    """A mount (not started) of profile `name` whose state and caches live in `workdir`, so a
    remount finds them; `profile` adds or overrides profile keys."""
    return Mount(
        workdir,
        url=emulator.base_url,
        token=emulator.token,
        tracker=case.tracker,
        profile={**case.profile, **profile},
        name=name,
    )


def crash(mount: Mount) -> None:
    """kill -9 the daemon and clear its dead mount point."""
    assert mount.process is not None
    mount.process.kill()
    mount.process.wait()
    force_unmount(mount.path)


def trackerfs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m trackerfs ARGS` to its end, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "trackerfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def status(mount: Mount) -> str:
    """What `trackerfs status` prints for the mount's profile."""
    done = trackerfs("status", "--config", str(mount.config), mount.name, env=mount.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def profile_config(path: Path, name: str, case: TrackerCase, url: str, **keys: Any) -> Path:
    """A private config file with one profile of `case`'s tracker at `url`.

    Its state and caches live beside the file, never in the home folder that other runs
    of the suite share (a mount of profile `p` there would refuse theirs).
    """
    places = {
        "spool_dir": str(path.parent / f"{path.stem}-state"),
        "cache_dir": str(path.parent / f"{path.stem}-cache"),
    }
    return write_config(path, name, {"tracker": case.tracker, "url": url, **places, **keys, **case.profile})


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single `trackerfs: …` line a failed command printed (asserting it is one line)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("trackerfs: ")
    return lines[0]


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`1m`) mounted at `path`: a disk that fills up."""
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    made = subprocess.run(command, capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
