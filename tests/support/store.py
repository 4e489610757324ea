"""What the emulator holds and what reached it: store lookups, digests, the log by kind.

Every conformance test compares the mount with these, so that "stored", "uploaded" and
"a content request" mean one thing across the suite and for every tracker case.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess

Record = dict[str, Any]


def sha256_of(data: bytes) -> str:
    """The hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks (a file on the mount is read through it)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stored(emulator: EmulatorProcess, issue: str, name: str | None = None) -> list[Record]:
    """The issue's attachments in the store (only those called `name`), oldest first."""
    items = [a for a in emulator.attachments() if a["issue"] == issue and name in (None, a["filename"])]
    return sorted(items, key=lambda a: a["created"])


def attachment(emulator: EmulatorProcess, issue: str, name: str) -> Record:
    """The first (oldest) attachment of the issue called `name`."""
    return stored(emulator, issue, name)[0]


def ids_by_path(directory: Path) -> dict[str, Path]:
    """The files of an issue directory keyed by their attachment id (an xattr)."""
    return {os.getxattr(path, "user.trackerfs.id").decode(): path for path in directory.iterdir()}


def uploads(emulator: EmulatorProcess, case: TrackerCase) -> list[Record]:
    """The upload requests in the log, oldest first."""
    return [r for r in emulator.requests() if case.upload.matches(r)]


def uploaded_names(emulator: EmulatorProcess, case: TrackerCase) -> list[str]:
    """The file names the uploads in the log carried, in order (form fields carry none)."""
    return [
        part["filename"]
        for r in uploads(emulator, case)
        if r.get("upload")
        for part in r["upload"]
        if part["filename"] is not None
    ]


def upload_reached(emulator: EmulatorProcess, case: TrackerCase) -> bool:
    """Whether an upload reached the emulator (a fault aimed at uploads then applies)."""
    return bool(uploads(emulator, case))


def deletes(emulator: EmulatorProcess, case: TrackerCase) -> list[Record]:
    """The attachment deletes in the log, oldest first."""
    return [r for r in emulator.requests() if case.delete.matches(r)]


def content_requests(emulator: EmulatorProcess, case: TrackerCase) -> list[Record]:
    """Content downloads in the log: from the tracker's content route or the media origin."""
    return [r for r in emulator.requests() if case.content.matches(r) or r["origin"] == "media"]
