"""Run the built-in tracker emulator as a subprocess and drive its control API.

Independent of any mount: the mount helpers import this, never the other way round.
"""

from __future__ import annotations

import os
import queue
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = "TRACKERFS_EMULATOR_TOKEN"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class EmulatorStartError(RuntimeError):
    """The emulator did not print its addresses in time."""


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    # Keep reading after start-up so that later output can never fill the pipe.
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


class EmulatorProcess:
    """``python -m trackerfs.emulator --port 0 …`` in a subprocess.

    The token goes through the environment, never argv. Use as a context manager or call
    ``stop()``. ``names`` says what the mount calls the seed's projects and issues, by
    their keys in the store, where that is not the key (a tracker without keys names them
    by their titles): the store's records then speak of them by those names.
    """

    def __init__(
        self,
        *extra_args: str,
        tracker: str | None = None,
        token: str | None = None,
        start_timeout: float = START_TIMEOUT,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.names = dict(names or {})
        self._keys = {name: key for key, name in self.names.items()}
        self.token = token or secrets.token_urlsafe(16)
        env = dict(os.environ)
        env[TOKEN_ENV] = self.token
        # The package may not be installed yet: make the repo importable.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "trackerfs.emulator", "--port", "0"]
        if tracker is not None:
            command += ["--tracker", tracker]
        self.process = subprocess.Popen(
            [*command, *extra_args],
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=REPO_ROOT,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=_pump_lines, args=(self.process.stdout, self._lines), daemon=True).start()
        try:
            fields = self._read_banner(start_timeout)
        except BaseException:
            self.stop()
            raise
        self.base_url = fields["url"]
        self.media_url = fields["media"]
        if fields["token"] != self.token:
            self.stop()
            raise EmulatorStartError("the emulator did not take the token from the environment")
        self._control = httpx.Client(base_url=f"{self.base_url}/_emulator", timeout=30.0)

    def _read_banner(self, timeout: float) -> dict[str, str]:
        fields: dict[str, str] = {}
        while not {"url", "media", "token"} <= fields.keys():
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise EmulatorStartError(f"no address within {timeout}s: {self.output}") from None
            if line is None:
                raise EmulatorStartError(
                    f"emulator exited ({self.process.wait()}) before starting: {self.output}"
                )
            self.output.append(line)
            name, sep, value = line.partition(": ")
            if sep and name in ("url", "media", "token"):
                fields[name] = value.strip()
        return fields

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self) -> int:
        """Terminate the emulator and wait (kill after a timeout); returns its exit status."""
        control = getattr(self, "_control", None)
        if control is not None:
            control.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control API ----------------------------------------------------------------------
    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._control.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    @property
    def auth(self) -> tuple[str, str]:
        """Basic credentials the emulator accepts (any user, the token as password)."""
        return ("tester@example.com", self.token)

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        result: list[dict[str, Any]] = self._json("GET", "/requests")
        return result

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._json("DELETE", "/requests")

    def reset(self) -> None:
        """Back to the start-up seed; log, faults and config cleared."""
        self._json("POST", "/reset")

    def attachments(self) -> list[dict[str, Any]]:
        """Every attachment in the store (id, project, issue, filename, size, sha256, …)."""
        result: list[dict[str, Any]] = self._json("GET", "/attachments")
        for record in result:
            record["project"] = self.names.get(record["project"], record["project"])
            record["issue"] = self.names.get(record["issue"], record["issue"])
        return result

    def content(self, attachment_id: str) -> bytes:
        """The stored bytes of an attachment."""
        response = self._control.get(f"/attachments/{attachment_id}/content")
        response.raise_for_status()
        return response.content

    def add_many_attachments(self, issue: str, count: int, prefix: str) -> None:
        """Attach `count` small files `PREFIXnnnnn.txt` (holding their name and a newline)."""
        self._json(
            "POST", f"/issues/{self._keys.get(issue, issue)}/attachments", {"count": count, "prefix": prefix}
        )

    def misstate_size(self, attachment_id: str, size: int) -> None:
        """List an attachment with `size` while its content keeps its real bytes."""
        self._json("POST", f"/attachments/{attachment_id}/size", {"size": size})

    def config(self, **changes: Any) -> dict[str, Any]:
        """Change runtime settings (page_size, upload_limit, range_support, media_ttl)."""
        result: dict[str, Any] = self._json("POST" if changes else "GET", "/config", changes or None)
        return result

    def fault(self, **rule: Any) -> list[dict[str, Any]]:
        """Add a fault rule (see docs/emulator.md); returns the active rules."""
        result: list[dict[str, Any]] = self._json("POST", "/faults", rule)
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The active fault rules, each with how many faults it injected so far."""
        result: list[dict[str, Any]] = self._json("GET", "/faults")
        return result

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._json("DELETE", "/faults")

    def add_project(self, key: str, name: str | None = None) -> dict[str, str]:
        """Create a project."""
        result: dict[str, str] = self._json("POST", "/projects", {"key": key, "name": name or key})
        return result

    def add_issues(self, project: str, count: int, attachments: int) -> list[str]:
        """Create `count` issues of `attachments` small files each, in one call; their keys."""
        body = {"project": self._keys.get(project, project), "count": count, "attachments": attachments}
        result: dict[str, Any] = self._json("POST", "/issues", body)
        return [str(key) for key in result["keys"]]

    def add_issue(self, project: str, summary: str = "Issue") -> dict[str, str]:
        """Create the next issue of ``project`` (its key or name); returns ``{key, id}``."""
        body = {"project": self._keys.get(project, project), "summary": summary}
        result: dict[str, str] = self._json("POST", "/issues", body)
        return result
