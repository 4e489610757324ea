"""What `.trackerfs/status.json` says, and what `.trackerfs/control` can be told.

The snapshot is built from the mount's own counters at the moment the file is opened:
the mount, the tracker and account, uploads in flight with their progress, files the
spool and the recovery folder hold, the caches and how often they were hit, requests by
kind, retries, and the last warnings and errors (secrets masked).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackerfs.config import Profile
from trackerfs.core.content_cache import ContentCache
from trackerfs.core.reader import Reader
from trackerfs.core.spool import describe_state
from trackerfs.core.writer import Writer
from trackerfs.fuse.control import FOLDER, STATUS, Command
from trackerfs.logsetup import redact
from trackerfs.model import Account

#: warnings and errors kept for the status file
RECENT_PROBLEMS = 20


class RecentProblems(logging.Handler):
    """The last warnings and errors of the mount's log, for the status file."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[dict[str, str]] = collections.deque(maxlen=RECENT_PROBLEMS)

    def emit(self, record: logging.LogRecord) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        self.records.append({"time": when, "level": record.levelname, "message": redact(record.getMessage())})


@dataclasses.dataclass(slots=True)
class MountStatus:
    """The parts of a running mount the status file reports on."""

    profile: Profile
    mountpoint: Path
    account: Account
    reader: Reader
    writer: Writer
    content: ContentCache
    problems: RecentProblems
    started: float = dataclasses.field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        """The status file's content."""
        namespace = self.writer.namespace
        reader = self.reader.statistics()
        content = self.content.statistics()
        return {
            "mountpoint": str(self.mountpoint),
            "url": self.profile.url,
            "profile": self.profile.name,
            "tracker": self.profile.tracker,
            "account": {"id": self.account.id, "name": self.account.name},
            "pid": os.getpid(),
            "mounted_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "uploads_in_flight": [upload.describe() for upload in self.writer.in_flight],
            "spool_and_recovery": describe_state(self.profile.state_dir),
            "metadata": dataclasses.asdict(namespace.statistics()),
            "block_cache": {
                **dataclasses.asdict(reader.cache),
                "hit_rate": _rate(reader.cache.hits, reader.cache.misses),
            },
            "reads": {key: value for key, value in dataclasses.asdict(reader).items() if key != "cache"},
            "content_cache": {
                **dataclasses.asdict(content),
                "budget": self.content.budget,
                "directory": str(self.content.directory),
                "hit_rate": _rate(content.hits, content.misses),
            },
            "requests": self.writer.tracker.request_statistics(),
            "recent_problems": list(self.problems.records),
        }

    def commands(self) -> Mapping[str, Command]:
        """What the control file accepts, by the line that asks for it."""
        return {"flush metadata": self._flush_metadata, "flush content": self._flush_content}

    async def _flush_metadata(self) -> str:
        self.writer.namespace.flush()
        return "every listing is asked of the tracker again"

    async def _flush_content(self) -> str:
        freed = await self.content.clear()
        return f"{freed} bytes of attachment content dropped from the disk cache"


def _rate(hits: int, misses: int) -> float | None:
    total = hits + misses
    return round(hits / total, 3) if total else None


def read_snapshot(mountpoint: Path) -> dict[str, Any]:
    """The status file of a mount (OSError when it is no trackerfs mount or does not answer)."""
    path = mountpoint / FOLDER / STATUS
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise OSError(f"{path} is not a status file: {exc}") from None
    if not isinstance(data, dict):
        raise OSError(f"{path} is not a status file")
    return data


def format_snapshot(data: Mapping[str, Any]) -> list[str]:
    """The status file as lines for `trackerfs status`: where, who, then what is going on."""
    account = data.get("account") or {}
    who = account.get("name") or account.get("id") or "?"
    lines = [
        f"mounted at {data.get('mountpoint')} by pid {data.get('pid')} since {data.get('mounted_since')}",
        f"tracker {data.get('tracker')} at {data.get('url')}, signed in as {who}",
    ]
    uploads = data.get("uploads_in_flight") or []
    lines.append(f"uploads in flight: {len(uploads) or 'none'}")
    for upload in uploads:
        lines.append(
            f"  {upload['issue']}/{upload['name']}  {_size(upload['sent'])} of {_size(upload['size'])}"
            f"  {_size(upload['bytes_per_second'])}/s  attempt {upload['attempts']}"
        )
    metadata = data.get("metadata") or {}
    lines.append(
        f"metadata: {metadata.get('nodes')} nodes, {metadata.get('listings_fetched')} listings fetched,"
        f" {metadata.get('lookups')} lookups ({metadata.get('negative_hits')} answered by the miss cache)"
    )
    block = data.get("block_cache") or {}
    lines.append(
        f"block cache: {_size(block.get('bytes', 0))} in memory, hit rate {_percent(block.get('hit_rate'))}"
    )
    content = data.get("content_cache") or {}
    lines.append(
        f"content cache: {content.get('entries')} attachments, {_size(content.get('bytes', 0))}"
        f" of {_size(content.get('budget', 0))}, hit rate {_percent(content.get('hit_rate'))}"
        f" ({content.get('directory')})"
    )
    requests = dict(data.get("requests") or {})
    retries = requests.pop("retries", 0)
    counted = ", ".join(f"{kind} ×{count}" for kind, count in requests.items()) or "none"
    lines.append(f"requests: {counted}; retries: {retries}")
    problems = data.get("recent_problems") or []
    lines.append(f"recent problems: {len(problems) or 'none'}")
    lines += [f"  {p['time']} {p['level']} {p['message']}" for p in problems[-5:]]
    return lines


def _size(amount: object) -> str:
    value = float(amount) if isinstance(amount, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _percent(rate: object) -> str:
    return f"{rate * 100:.0f} %" if isinstance(rate, int | float) else "—"
