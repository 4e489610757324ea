"""Desktop life through GIO, what GNOME's file manager and applications use.

`gio list` and `gio info` answer from the caches once a folder was listed (a file
manager opening a folder of 200 images costs nothing more until a file is read), `gio
copy` works both ways, `gio trash` fails cleanly (the file manager then offers a
permanent delete) and `gio mount -l` sees a mount in the home folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import deletes, file_sha256, sha256_of, stored

pytestmark = pytest.mark.mount

#: what a file manager asks of every file of a folder it shows
FILE_MANAGER_ATTRIBUTES = "standard::*,time::*,unix::*,access::*,owner::*,thumbnail::*,metadata::*"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4a10000000049454e44ae426082"
)


def gio(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("gio") is None:
        pytest.fail("gio is not installed (apt-get install libglib2.0-bin; make test installs it)")
    env = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run(["gio", *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_gio_list_and_info_answer_from_the_caches_after_the_first_listing(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    for number in range(200):
        case.attach_behind(clean_emulator, case.plain_issue, f"photo-{number:03}.png", PNG)
    mount = make_mount(metadata_ttl=300)
    folder = mount.path / case.project / case.plain_issue
    names = sorted(os.listdir(folder))  # the file manager's one listing
    assert len([name for name in names if name.endswith(".png")]) == 200
    clean_emulator.clear_requests()
    listed = gio("list", "-a", FILE_MANAGER_ATTRIBUTES, str(folder))
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == names
    for name in names[:50]:
        info = gio("info", "-a", FILE_MANAGER_ATTRIBUTES, str(folder / name))
        assert info.returncode == 0, info.stderr
        assert "standard::content-type: image/png" in info.stdout
    assert clean_emulator.requests() == [], "GIO asked the tracker although everything was cached"


def test_gio_copy_in_and_out(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    mount = make_mount()
    source = tmp_path / "from-the-desktop.bin"
    source.write_bytes(os.urandom(300_000))
    issue = mount.path / case.project / case.plain_issue
    done = gio("copy", str(source), str(issue) + "/")
    assert done.returncode == 0, done.stderr
    [item] = stored(clean_emulator, case.plain_issue, "from-the-desktop.bin")
    assert item["sha256"] == sha256_of(source.read_bytes())
    out = tmp_path / "back.bin"
    done = gio("copy", str(issue / "from-the-desktop.bin"), str(out))
    assert done.returncode == 0, done.stderr
    assert file_sha256(out) == item["sha256"]


def test_gio_trash_fails_cleanly_and_the_file_stays(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    issue = mount.path / case.project / case.rich_issue
    name = next(n for n in sorted(os.listdir(issue)) if not n.startswith("."))
    clean_emulator.clear_requests()
    done = gio("trash", str(issue / name))
    assert done.returncode != 0
    assert "trash" in done.stderr.lower() and "Traceback" not in done.stderr
    assert name in os.listdir(issue)
    assert deletes(clean_emulator, case) == []
    assert not (mount.path / ".Trash-0").exists() and not (mount.path / f".Trash-{os.getuid()}").exists()


def test_gio_mount_list_sees_a_mount_in_the_home_folder(
    make_mount: Callable[..., Mount], tmp_path: Path
) -> None:
    mount = make_mount()
    assert mount.path.is_relative_to(tmp_path)
    done = gio("mount", "-l", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"-> file://{mount.path}" in done.stdout, done.stdout
