"""The threaded content transport against a scripted HTTP/1.1 server on 127.0.0.1.

Each connection the server accepts gets the next script: a function of (request head,
socket) that answers as a content host would, or misbehaves as one can (cuts a body,
stalls, closes a kept-alive connection). The assertions are what reached the client
(bytes, errors of httpx's classes) and what reached the server (connections, requests).
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trustme

from tests.support.sockets import accept_each
from trackerfs.backends import threaded
from trackerfs.backends.http import HttpClient, tls_context
from trackerfs.backends.threaded import ThreadedContentTransport
from trackerfs.core.reader import BLOCK_SIZE
from trackerfs.errors import TemporaryError, TrackerTimeoutError

BODY = os.urandom(3 << 20)
Script = Callable[[bytes, socket.socket], bool]


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data:
            return b""
        head += data
    return head


def ranged(head: bytes) -> tuple[int, int]:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"range: bytes="):
            first, _, last = line.split(b"=", 1)[1].partition(b"-")
            return int(first), int(last) + 1
    return 0, len(BODY)


def serve_range(head: bytes, conn: socket.socket, *, cut: int | None = None) -> bool:
    start, stop = ranged(head)
    part = BODY[start:stop]
    head = f"Content-Range: bytes {start}-{stop - 1}/{len(BODY)}\r\nContent-Length: {len(part)}\r\n\r\n"
    conn.sendall(b"HTTP/1.1 206 Partial Content\r\n" + head.encode())
    conn.sendall(part if cut is None else part[:cut])
    return cut is None


class Server:
    """Answers each connection with the next script (the last one repeats)."""

    def __init__(self, scripts: list[Script], context: ssl.SSLContext | None = None) -> None:
        self.scripts = scripts
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        accept_each(self.listener, self._serve)

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}/blob"

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            while head := read_head(conn):
                self.requests.append(head)
                if not script(head, conn):
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*scripts: Script, context: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(list(scripts), context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def transport(context: ssl.SSLContext | None = None) -> ThreadedContentTransport:
    inner = httpx.MockTransport(lambda request: httpx.Response(299, text="inner"))
    return ThreadedContentTransport(inner, context or tls_context())


async def fetch(client: httpx.AsyncClient, url: str, start: int, stop: int) -> bytes:
    headers = {"Range": f"bytes={start}-{stop - 1}"}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 206
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_ranges_arrive_whole_over_one_kept_alive_connection(serve: Callable[..., Server]) -> None:
    server = serve(serve_range)
    async with httpx.AsyncClient(transport=transport()) as client:
        for start, stop in [(0, len(BODY)), (123, 1 << 20), (len(BODY) - 10, len(BODY))]:
            got = await fetch(client, server.url, start, stop)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(BODY[start:stop]).hexdigest()
    assert len(server.requests) == 3
    assert server.connections == 1


async def test_requests_without_a_range_go_to_the_inner_transport(serve: Callable[..., Server]) -> None:
    server = serve(serve_range)
    async with httpx.AsyncClient(transport=transport()) as client:
        response = await client.get(server.url)
    assert (response.status_code, response.text) == (299, "inner")
    assert server.requests == []


async def test_a_body_cut_short_is_a_protocol_error_and_the_retry_gets_the_rest(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda head, conn: serve_range(head, conn, cut=700_000), serve_range)
    async with httpx.AsyncClient(transport=transport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(client, server.url, 0, len(BODY))
        assert await fetch(client, server.url, 0, len(BODY)) == BODY
    assert server.connections == 2, "a cut connection is never reused"


async def test_a_keep_alive_connection_the_server_closed_is_replaced_unseen(
    serve: Callable[..., Server],
) -> None:
    def once(head: bytes, conn: socket.socket) -> bool:
        serve_range(head, conn)
        return False  # close after one answer, without saying so

    server = serve(once)
    async with httpx.AsyncClient(transport=transport()) as client:
        for _ in range(3):
            assert await fetch(client, server.url, 10, 5000) == BODY[10:5000]
    assert server.connections == 3


async def test_a_stalled_body_times_out_as_httpx_does(serve: Callable[..., Server]) -> None:
    def stall(head: bytes, conn: socket.socket) -> bool:
        serve_range(head, conn, cut=300_000)
        time.sleep(3)
        return False

    server = serve(stall)
    async with httpx.AsyncClient(transport=transport(), timeout=0.5) as client:
        started = trio.current_time()
        with pytest.raises(httpx.ReadTimeout):
            await fetch(client, server.url, 0, len(BODY))
        assert trio.current_time() - started < 2.5


async def test_a_cancelled_read_returns_at_once_and_drops_the_connection(
    serve: Callable[..., Server],
) -> None:
    def stall(head: bytes, conn: socket.socket) -> bool:
        serve_range(head, conn, cut=300_000)
        time.sleep(5)
        return False

    server = serve(stall, serve_range)
    async with httpx.AsyncClient(transport=transport(), timeout=30) as client:
        started = trio.current_time()
        with trio.move_on_after(0.3):
            await fetch(client, server.url, 0, len(BODY))
        assert trio.current_time() - started < 1.5, "a blocked receive does not hold the cancel"
        assert await fetch(client, server.url, 0, 1000) == BODY[:1000]
    assert server.connections == 2


async def test_small_answers_are_read_with_their_headers_so_the_connection_is_reused(
    serve: Callable[..., Server],
) -> None:
    def redirect_then_range(head: bytes, conn: socket.socket) -> bool:
        if b"GET /blob?go" in head:
            conn.sendall(b"HTTP/1.1 303 See Other\r\nLocation: /blob\r\nContent-Length: 5\r\n\r\nmoved")
            return True
        return serve_range(head, conn)

    server = serve(redirect_then_range)
    async with httpx.AsyncClient(transport=transport()) as client:
        request = client.build_request("GET", server.url + "?go", headers={"Range": "bytes=0-99"})
        response = await client.send(request, stream=True)
        assert response.status_code == 303
        await response.aclose()  # nobody reads the body of a redirect
        assert await fetch(client, server.url, 0, 100) == BODY[:100]
    assert server.connections == 1


async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with httpx.AsyncClient(transport=transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await fetch(client, f"http://127.0.0.1:{port}/blob", 0, 10)


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_verifies_with_the_private_ca(serve: Callable[..., Server], tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = serve(serve_range, context=tls_server_context(ca))
    async with httpx.AsyncClient(transport=transport(tls_context(ca_file))) as client:
        assert await fetch(client, server.url, 5, 200_000) == BODY[5:200_000]


async def test_tls_refuses_a_certificate_no_trusted_authority_signed(serve: Callable[..., Server]) -> None:
    server = serve(serve_range, context=tls_server_context(trustme.CA()))
    async with httpx.AsyncClient(transport=transport()) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await fetch(client, server.url, 0, 10)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_through_the_client_policy_a_cut_is_resumable_and_a_stall_a_timeout(
    serve: Callable[..., Server],
) -> None:
    """What the reader sees: TemporaryError for a cut body, TrackerTimeoutError for a stall."""

    def stall(head: bytes, conn: socket.socket) -> bool:
        serve_range(head, conn, cut=200_000)
        time.sleep(3)
        return False

    cut = serve(lambda head, conn: serve_range(head, conn, cut=100_000))
    stalled = serve(stall)
    client = HttpClient(f"http://127.0.0.1:{cut.port}/", credentials={}, timeout=0.5)
    try:
        for server, error in ((cut, TemporaryError), (stalled, TrackerTimeoutError)):
            with pytest.raises(error):
                async with client.stream_range(server.url, 0, len(BODY)) as chunks:
                    async for _ in chunks:
                        pass
    finally:
        await client.aclose()


def test_pieces_are_the_readers_blocks() -> None:
    """Block-aligned fetches then arrive as whole blocks, which the reader takes uncopied."""
    assert threaded.PIECE == BLOCK_SIZE
    assert threaded.GATHER % BLOCK_SIZE == 0


async def test_a_body_left_early_ends_its_receiving_thread_and_its_connection(
    serve: Callable[..., Server],
) -> None:
    """The thread that runs ahead of the reader stops when the reader goes, even while it
    waits for room, and the half-read connection is never reused."""

    def serve_long(head: bytes, conn: socket.socket) -> bool:
        # Longer than the thread and both socket buffers hold, so each body is left unfinished.
        repeats = 64
        total = repeats * len(BODY)
        conn.sendall(
            b"HTTP/1.1 206 Partial Content\r\n"
            + f"Content-Range: bytes 0-{total - 1}/{total}\r\nContent-Length: {total}\r\n\r\n".encode()
        )
        for _ in range(repeats):
            conn.sendall(BODY)
        return True

    server = serve(serve_long, serve_long, serve_long, serve_range)
    async with httpx.AsyncClient(transport=transport()) as client:
        for _ in range(3):
            async with client.stream(
                "GET", server.url, headers={"Range": f"bytes=0-{len(BODY) - 1}"}
            ) as response:
                async for chunk in response.aiter_raw():
                    assert chunk == BODY[: len(chunk)]
                    break
            await trio.sleep(0.05)  # the thread, left with no room, waits; the close must end it
        assert await fetch(client, server.url, 0, 1000) == BODY[:1000]
    assert server.connections == 4
