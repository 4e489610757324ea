"""Random reads and uploads, measured the same way in every tracker's section.

Each tracker's section (6 to 9) calls these on its own emulator dialect, so that a
regression in one backend shows beside the Jira figures of sections 2 and 4:

- `random_reads`: fio 4 KiB random reads of the section's big file through a fresh
  mount: IOPS, the requests the daemon made (API and content), and the bytes it fetched
  per byte fio read (the daemon's own counts, `.trackerfs/status.json`): the figure a
  block size that adapts to the access pattern keeps low;
- `uploads`: the same file sent with `curl -F` to the vendor's own upload endpoint, and
  copied with `cp` into an issue through a mount; the ratio, and whether the tracker
  stored the bytes intact.

curl gets its headers from a config on its standard input: no token in any argv.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.benchmarks.report import Table, ratio, size_text
from tests.benchmarks.runners import MB, fio_random_read, mb_per_s, settle, timed

log = logging.getLogger(__name__)

#: The random read block size of the per-tracker rows (section 2 has 4 KiB and 128 KiB).
RANDOM_BLOCK = "4k"
#: The goal of issue "Performance, round two": at most this many bytes fetched per byte read.
FETCHED_GOAL = 4


@dataclass(frozen=True, slots=True)
class CurlUpload:
    """One multipart POST the way the vendor documents it, for curl."""

    url: str
    #: sent as `header = "NAME: VALUE"` lines of curl's config (standard input)
    headers: dict[str, str]
    #: the file's own form field
    file_field: str = "file"
    #: other `-F` arguments, in order (a `metadata` part before the file, an `issue` URL);
    #: `{filename}` in one is the file's name
    form: list[str] = field(default_factory=list)
    #: a query parameter that names the file as well (Yandex Tracker's `?filename=`)
    name_parameter: str = ""

    def run(self, path: Path, filename: str) -> tuple[float, Any]:
        """Send `path` as `filename`; the seconds taken and the tracker's JSON answer."""
        config = "".join(f'header = "{name}: {value}"\n' for name, value in self.headers.items())
        command = ["curl", "-s", "-S", "-f", "-K", "-"]
        for argument in self.form:
            command += ["-F", argument.format(filename=filename)]
        url = f"{self.url}?{urlencode({self.name_parameter: filename})}" if self.name_parameter else self.url
        command += ["-F", f"{self.file_field}=@{path};filename={filename}", url]
        settle()
        started = time.perf_counter()
        done = subprocess.run(command, input=config.encode(), capture_output=True, check=True)
        seconds = time.perf_counter() - started
        return seconds, json.loads(done.stdout) if done.stdout.strip() else None


def daemon_counts(root: Path) -> tuple[int, int]:
    """The bytes a mount's daemon has fetched for reads so far, and the requests it made."""
    status = json.loads((root / ".trackerfs" / "status.json").read_text(encoding="utf-8"))
    requests = sum(count for name, count in status["requests"].items() if name != "retries")
    return int(status["reads"]["bytes_fetched"]), int(requests)


def random_reads(
    table: Table | None, root: Path, path: Path, size: int, seconds: int, label: str = ""
) -> Table:
    """fio 4 KiB random reads of `path` on the fresh mount at `root`, a row of `table` (a
    new one when None)."""
    if table is None:
        table = Table(
            ["fio randread (one job, psync)", "IOPS", "MB/s", "requests", "fetched", "fetched / read"]
        )
    path.stat()
    fetched, requests = daemon_counts(root)
    result = fio_random_read(path, block_size=RANDOM_BLOCK, seconds=seconds, size=size)
    fetched_after, requests_after = daemon_counts(root)
    fetched = fetched_after - fetched
    log.info("fio %s on %s: %.0f IOPS, %d bytes fetched", RANDOM_BLOCK, path.name, result.iops, fetched)
    table.add(
        f"4 KiB over the {size_text(size)} file, {seconds} s, cold mount" + (f", {label}" if label else ""),
        f"{result.iops:.0f}",
        f"{result.bytes_per_s / MB:.1f}",
        requests_after - requests,
        size_text(fetched),
        f"{fetched / max(result.bytes_read, 1):.1f}× (goal ≤ {FETCHED_GOAL}×)",
    )
    return table


def uploads(
    local: Path,
    sha256: str,
    curl: CurlUpload,
    issue_dir: Path,
    stored: Callable[[str], str | None],
) -> Table:
    """`curl -F` against `cp` into `issue_dir` of the same local file; `stored(name)` is the
    sha256 the tracker holds for an attachment of that name (None: there is none)."""
    size = local.stat().st_size
    curl_seconds, _ = curl.run(local, "curl-upload.bin")
    cp_seconds = timed(["cp", str(local), str(issue_dir / "cp-upload.bin")])
    log.info("upload of %s: curl -F %.2f s, cp %.2f s", size_text(size), curl_seconds, cp_seconds)
    table = Table([f"upload of {size_text(size)}", "wall time", "MB/s", "ratio to curl -F", "stored intact"])
    curl_rate = mb_per_s(size, curl_seconds)
    for label, seconds, name in (
        ("`curl -F` to the upload endpoint", curl_seconds, "curl-upload.bin"),
        ("`cp` into the issue through trackerfs", cp_seconds, "cp-upload.bin"),
    ):
        rate = mb_per_s(size, seconds)
        table.add(
            label,
            f"{seconds:.2f} s",
            f"{rate:.0f}",
            ratio(rate, curl_rate),
            "yes" if stored(name) == sha256 else "NO",
        )
    return table


def stored_by_name(
    attachments: Callable[[], list[dict[str, Any]]], issue: str, key: str = "issue"
) -> Callable[[str], str | None]:
    """`stored` for `uploads`: the sha256 the emulator's store holds for a name in `issue`
    (matched against the records' `key`: the issue's key, or `issue_id`)."""

    def lookup(name: str) -> str | None:
        for item in attachments():
            if item[key] == issue and item["filename"] == name:
                return str(item["sha256"])
        return None

    return lookup
