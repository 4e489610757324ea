"""A socket standing in for systemd's notification socket (`sd_notify`, `NOTIFY_SOCKET`)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def notify_socket() -> Iterator[tuple[str, Callable[[], list[str]]]]:
    """A socket standing in for systemd's: its address, and the messages received so far."""
    folder = Path(tempfile.mkdtemp(prefix="tfs-notify-"))  # short: socket paths have a limit
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(folder / "notify"))
        sock.setblocking(False)

        def received() -> list[str]:
            with contextlib.suppress(BlockingIOError):
                while True:
                    messages.append(sock.recv(4096).decode())
            return messages

        try:
            yield str(folder / "notify"), received
        finally:
            shutil.rmtree(folder, ignore_errors=True)
