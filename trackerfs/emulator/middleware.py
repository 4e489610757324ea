"""ASGI middleware shared by every origin: the request log and fault injection.

It sits outside the dialect's routes so that faults and the log work the same for every
vendor. The control API (``/_emulator``) is neither logged nor subject to faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any
from urllib.parse import parse_qsl

import trio
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trackerfs.emulator.content import ErrorFactory
from trackerfs.emulator.faults import FaultRule
from trackerfs.emulator.state import EmulatorState

CONTROL_PREFIX = "/_emulator"
#: headers every origin logs; a dialect adds its vendor's (``Dialect.logged_headers``)
LOGGED_HEADERS = ("content-type", "content-length", "transfer-encoding", "range", "user-agent")


class _TruncatedError(Exception):
    """Raised inside the send wrapper to stop the app midway through a body."""


def _header_selection(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    selection = {name: headers[name] for name in names if name in headers}
    if "authorization" in headers:
        # Never the value: tests only need to know whether credentials were sent.
        selection["authorization"] = "present"
    return selection


def _drop_connection(scope: Scope) -> bool:
    """Shut down the TCP connection of this request so the client gets no response.

    ASGI has no way to close a connection without answering, so find the server's socket
    by its addresses among this process's sockets. Linux only, like FUSE.
    """
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return False
    wanted = (tuple(client), tuple(server))
    for descriptor in _socket_descriptors():
        try:
            probe = _borrow_socket(descriptor)
        except OSError:
            continue  # closed meanwhile
        with probe:
            if _addresses(probe) != wanted:
                continue
            with contextlib.suppress(OSError):  # the client may have gone already
                # shutdown acts on the shared socket, not just on this duplicate
                probe.shutdown(socket.SHUT_RDWR)
            return True
    return False


def _addresses(probe: socket.socket) -> tuple[Any, Any] | None:
    """(peer, local) address of a connected socket; None for a listener or a closed one."""
    try:
        return (probe.getpeername()[:2], probe.getsockname()[:2])
    except OSError:
        return None


def _socket_descriptors() -> list[int]:
    """This process's descriptors that are sockets, read from /proc without opening any."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed since the listing
                if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    found.append(int(name))
    return found


def _borrow_socket(descriptor: int) -> socket.socket:
    """A socket object on a duplicate of `descriptor`, which its caller closes.

    A duplicate, so that closing the object leaves the server's own descriptor open; it
    is closed here too when the socket object cannot be made.
    """
    copy = os.dup(descriptor)
    try:
        probe = socket.socket(fileno=copy)
    except BaseException:
        os.close(copy)
        raise
    if probe.type != socket.SOCK_STREAM:
        probe.close()
        raise OSError(f"descriptor {descriptor} is not a stream socket")
    return probe


class RecorderMiddleware:
    """Logs every non-control request and applies the first matching fault rule."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: EmulatorState,
        origin: str,
        error: ErrorFactory,
        logged_headers: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.state = state
        self.origin = origin
        self.error = error
        self.logged_headers = (*logged_headers, *LOGGED_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one request."""
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        entry = self.state.log.open_entry(
            origin=self.origin,
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(query, keep_blank_values=True)),
            range=headers.get("range"),
            status=None,
            bytes_sent=0,
            authorized="authorization" in headers,
            headers=_header_selection(headers, self.logged_headers),
            upload=None,
        )
        scope.setdefault("state", {})["log_entry"] = entry
        rule = self.state.faults.take(self.origin, scope["method"], scope["path"])
        if rule is not None and rule.delay:
            await trio.sleep(rule.delay)
        limit: int | None = None

        async def recording_send(message: Message) -> None:
            nonlocal limit
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                if rule is not None and rule.action == "truncate":
                    length = dict(message.get("headers", [])).get(b"content-length", b"0")
                    limit = int(length) // 2
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if limit is not None and entry["bytes_sent"] + len(body) >= limit:
                    cut = body[: limit - entry["bytes_sent"]]
                    entry["bytes_sent"] += len(cut)
                    await send({"type": "http.response.body", "body": cut, "more_body": True})
                    raise _TruncatedError
                entry["bytes_sent"] += len(body)
            await send(message)

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and entry["status"] is None:
                entry["status"] = "cut"  # the client went away before the answer began
            return message

        if rule is None or rule.action in ("truncate", "delay"):
            try:
                await self.app(scope, recording_receive, recording_send)
            except _TruncatedError:
                # Returning without the final body message makes the server close the
                # connection: the client sees fewer bytes than Content-Length announced.
                entry["truncated"] = True
            return
        await _drain(recording_receive)
        if rule.action == "drop":
            entry["status"] = "dropped"
            if not _drop_connection(scope):
                raise ConnectionAbortedError("fault: connection dropped")
            return
        await self._fault_response(rule)(scope, receive, recording_send)

    def _fault_response(self, rule: FaultRule) -> Response:
        if rule.body is None:
            response = self.error(rule.status, f"Injected fault: HTTP {rule.status}")
        elif isinstance(rule.body, str):
            response = Response(rule.body, status_code=rule.status, media_type="text/plain")
        else:
            response = Response(json.dumps(rule.body), status_code=rule.status, media_type="application/json")
        for name, value in rule.headers.items():
            response.headers[name] = value
        return response


async def _drain(receive: Receive) -> None:
    # Read the request body before a canned answer so that a client still sending an
    # upload gets the answer rather than a broken pipe.
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
