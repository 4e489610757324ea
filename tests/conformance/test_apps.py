"""Real applications on the mount: LibreOffice and vim open, convert and save in place."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import Mount
from tests.support.store import deletes, stored, uploaded_names

pytestmark = pytest.mark.mount


def soffice(profile: Path, *args: str) -> None:
    subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--norestore", *args],
        check=True,
        capture_output=True,
        timeout=180,
    )


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_converts_into_the_mount_and_saves_in_place(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    if case.renames_uploads:
        pytest.skip("capability renames_uploads: a save over a file gets a name of the tracker's")
    mount = make_mount()
    rich = mount.path / case.project / case.rich_issue
    plain = mount.path / case.project / case.plain_issue
    profile = tmp_path / "lo-profile"
    os.listdir(rich)
    clean_emulator.clear_requests()

    soffice(profile, "--convert-to", "pdf", "--outdir", str(plain), str(rich / "report.docx"))
    assert uploaded_names(clean_emulator, case) == ["report.pdf"]
    assert (plain / "report.pdf").read_bytes().startswith(b"%PDF")

    [old] = stored(clean_emulator, case.rich_issue, "report.docx")
    clean_emulator.clear_requests()
    soffice(profile, "--convert-to", "odt", "--outdir", str(rich), str(rich / "report.docx"))
    soffice(profile, "--convert-to", "docx", "--outdir", str(rich), str(rich / "report.odt"))
    assert uploaded_names(clean_emulator, case) == ["report.odt", "report.docx"], (
        "each save is one upload, no temp names"
    )
    deleted = [r["path"] for r in deletes(clean_emulator, case)]
    assert len(deleted) == 1 and old["id"] in deleted[0]
    names = [a["filename"] for a in stored(clean_emulator, case.rich_issue)]
    assert names.count("report.docx") == 1
    with zipfile.ZipFile(rich / "report.docx") as saved:
        assert "word/document.xml" in saved.namelist()


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_vim_saves_with_backup_and_swap_as_one_upload(
    make_mount: Callable[..., Mount], case: TrackerCase, clean_emulator: EmulatorProcess
) -> None:
    mount = make_mount()
    target = mount.path / case.project / case.rich_issue / "readme.txt"
    before = target.read_bytes()
    [old] = stored(clean_emulator, case.rich_issue, "readme.txt")
    clean_emulator.clear_requests()
    subprocess.run(
        [
            "vim",
            "-u",
            "NONE",
            "-N",
            "-i",
            "NONE",
            "-es",
            "-c",
            "set backup writebackup backupcopy=auto swapfile",
            "-c",
            "normal Goedited in vim",
            "-c",
            "wq",
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=60,
        cwd=target.parent,
    )
    assert target.read_bytes() == before + b"edited in vim\n"
    assert uploaded_names(clean_emulator, case) == ["readme.txt"], (
        "backup and swap files never reach the tracker"
    )
    deleted = [r["path"] for r in deletes(clean_emulator, case)]
    assert len(deleted) == 1 and old["id"] in deleted[0]
    assert sorted(os.listdir(target.parent)) == sorted(
        a["filename"] for a in stored(clean_emulator, case.rich_issue)
    )
