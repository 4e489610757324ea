"""The servers of a run: nginx as the media host, the emulator as Jira behind it.

Jira answers a content request with a 303 to its media host. The emulator's
``--media-base`` points that redirect at nginx, which serves the emulator's blob directory
with sendfile, so what is measured is trackerfs (or curl, httpx, rclone), not the
emulator's Python HTTP stack.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.scale import PAGE_SIZE, UPLOAD_LIMIT
from tests.support.emulator import EmulatorProcess

START_TIMEOUT = 10.0
QUIET = 0.1
#: One access-log line: request line, status, body bytes sent, Range header; tab-separated.
LOG_FORMAT = "$request\\t$status\\t$body_bytes_sent\\t$http_range"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Access:
    """One request nginx served."""

    method: str
    path: str
    status: int
    bytes_sent: int
    range: str


@dataclass(frozen=True, slots=True)
class Traffic:
    """What nginx served in an interval."""

    requests: int
    bytes_sent: int

    @staticmethod
    def of(entries: list[Access]) -> Traffic:
        """The totals of some access-log entries."""
        return Traffic(len(entries), sum(entry.bytes_sent for entry in entries))


class Nginx:
    """``nginx -g 'daemon off;'`` with a generated config, serving `root` on 127.0.0.1.

    `aliases` adds directories under ``/NAME/`` (rclone gets one holding only the files
    under test, so that its listing does not HEAD every blob of the emulator).
    `max_ranges` 0 makes nginx ignore Range and send whole files, as Waldur's media
    endpoint does.
    """

    def __init__(
        self, prefix: Path, root: Path, aliases: dict[str, Path], *, max_ranges: int | None = None
    ) -> None:
        self.prefix = prefix
        self.max_ranges = max_ranges
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = prefix / "access.log"
        prefix.mkdir(parents=True, exist_ok=True)
        for directory in ("logs", "body", "proxy"):
            (prefix / directory).mkdir(exist_ok=True)
        self.access_log.touch()
        self.config = prefix / "nginx.conf"
        self.config.write_text(self._config(root, aliases), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self, root: Path, aliases: dict[str, Path]) -> str:
        locations = "".join(
            f"    location /{name}/ {{ alias {path}/; autoindex on; }}\n" for name, path in aliases.items()
        )
        ranges = f"  max_ranges {self.max_ranges};\n" if self.max_ranges is not None else ""
        return (
            "worker_processes 1;\n"
            f"pid {self.prefix}/nginx.pid;\n"
            f"error_log {self.prefix}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"  log_format bench '{LOG_FORMAT}';\n"
            f"  access_log {self.access_log} bench;\n"
            "  default_type application/octet-stream;\n"
            "  sendfile on;\n"
            "  tcp_nopush on;\n"
            f"{ranges}"
            f"  client_body_temp_path {self.prefix}/body;\n"
            f"  proxy_temp_path {self.prefix}/proxy;\n"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            f"    root {root};\n"
            "    autoindex on;\n"
            f"{locations}"
            "  }\n"
            "}\n"
        )

    def start(self) -> Nginx:
        """Start nginx and wait until it accepts connections."""
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.prefix), "-c", str(self.config), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.prefix / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self._errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx is not listening: {self._errors()}") from None
                time.sleep(0.05)

    def _errors(self) -> str:
        return " ".join(
            path.read_text(errors="replace")
            for path in (self.prefix / "stderr.log", self.prefix / "error.log")
            if path.exists()
        )

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def mark(self) -> int:
        """A position in the access log; `since(mark)` gives the requests after it.

        nginx writes a line when a response has been sent, a moment after the client has
        the last byte: wait until the log has been still for `QUIET` seconds.
        """
        size = self.access_log.stat().st_size
        while True:
            time.sleep(QUIET)
            now = self.access_log.stat().st_size
            if now == size:
                return size
            size = now

    def since(self, mark: int) -> list[Access]:
        """The requests logged after `mark` (nginx writes each line when a response ends)."""
        with self.access_log.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        entries = []
        for line in lines:
            request, status, sent, byte_range = line.split("\t")
            method, _, rest = request.partition(" ")
            entries.append(Access(method, rest.rpartition(" ")[0], int(status), int(sent), byte_range))
        return entries

    def traffic(self, mark: int) -> Traffic:
        """Requests and body bytes served since `mark`."""
        return Traffic.of(self.since(mark))


def start_emulator(data_dir: Path, media_base: str, tracker: str = "jira") -> EmulatorProcess:
    """The emulator with the benchmark's options, its content going to nginx (Jira: by a
    redirect; Waldur: as the attachments' `file` URL)."""
    return EmulatorProcess(
        "--seed",
        "empty",
        "--data-dir",
        str(data_dir),
        "--media-base",
        media_base,
        "--upload-limit",
        str(UPLOAD_LIMIT),
        "--page-size",
        str(PAGE_SIZE),
        tracker=tracker,
    )
