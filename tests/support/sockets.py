"""Small TCP servers on 127.0.0.1 for tests that need a peer misbehaving on purpose."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def accept_each(listener: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    """Accept connections on `listener` until it is closed, each served on a daemon thread."""

    def loop() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
