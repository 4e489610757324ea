"""Content bodies received on worker threads: the trio thread only hands the bytes on.

A cold sequential read used to be bound by the CPU of one thread: every FUSE reply and
every socket read of the content stream ran on the trio thread, with h11 copying each
byte twice on the way. This transport serves the requests that fetch content (a GET
with a Range) over blocking sockets on worker threads: `http.client` parses the status
line and headers, and each body read is one `recv` straight into the bytes handed on,
with the GIL released while the kernel copies, so receiving overlaps with the FUSE
replies the trio thread sends. Every other request goes to the inner transport.

Its errors are httpx's own classes (`ConnectError` from the TLS error, `ReadTimeout`,
`RemoteProtocolError` for a body cut short, …), so the client's policy reads them as it
reads httpcore's. Connections are kept alive per origin, checked before reuse, and a
request that meets a keep-alive connection the server has just closed is sent once more
on a new one (a GET, so that is safe). A cancelled request abandons its thread after
shutting the socket down, which ends a blocked `recv` at once.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import trio

#: Bytes of one piece of a body: the reader's block size, so that a block-aligned fetch
#: arrives as whole blocks that need no copy to be joined.
PIECE = 128 << 10
#: A body read on the worker thread gathers this much (or the rest of the body) before
#: it is handed on: fewer hand-overs to the trio thread per megabyte. One kernel read at
#: the mount's 1 MiB readahead: each hand-over is a wake-up of both threads, and 512 KiB
#: made a cold whole download about 5 % slower.
GATHER = 8 * PIECE
#: Batches of GATHER bytes a body's receiving thread may have ready before the trio side
#: took them: the receiving runs ahead of the handing on, within bounds.
AHEAD = 4
#: An answer whose whole body is no larger is read with its head, in the same thread call:
#: a redirect or an error body (its connection is then reused even when nobody reads the
#: body), and the block or two of a random read (no thread of its own for that).
WITH_HEAD = GATHER
KEEPALIVE_EXPIRY = 5.0
MAX_IDLE_PER_ORIGIN = 8

Origin = tuple[str, str, int]
T = TypeVar("T")


def wants_thread(request: httpx.Request) -> bool:
    """Whether `request` fetches content: a GET with a Range, over http(s)."""
    return request.method == "GET" and "range" in request.headers and request.url.scheme in ("http", "https")


class _Connection:
    """One blocking HTTP/1.1 connection; `http.client` reads the answers."""

    def __init__(self, origin: Origin, sock: socket.socket) -> None:
        self.origin = origin
        self.http = http.client.HTTPConnection(origin[1], origin[2])
        self.http.sock = sock
        self.sock = sock
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        """Whether an idle connection may carry another request: open, fresh, not readable
        (a readable idle socket is one the server closed or wrote to unasked)."""
        if self.http.sock is None or now - self.idle_since > KEEPALIVE_EXPIRY:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def shutdown(self) -> None:
        """End any blocked receive on this connection (safe from another thread)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.http.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class _Exchange:
    """One request and its answer, shared by the trio side and the worker threads.

    `busy` is true while a worker thread uses the connection; `abort` from the trio side
    then only shuts the socket down and leaves the close to that thread.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: _Connection | None = None
        self.response: http.client.HTTPResponse | None = None
        self.busy = False
        self.aborted = False
        self.done = False
        #: an error met after pieces that were handed on first
        self.failure: httpx.TransportError | None = None

    def attach(self, connection: _Connection) -> None:
        with self.lock:
            if self.aborted:
                connection.close()
                raise httpx.ReadError("request cancelled")
            self.connection = connection

    def release(self) -> None:
        """A worker thread is done with the connection: closed if the exchange was aborted."""
        with self.lock:
            self.busy = False
            connection = self.connection if self.aborted else None
        if connection is not None:
            connection.close()

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            connection, busy = self.connection, self.busy
        if connection is None:
            return
        connection.shutdown()
        if not busy:
            connection.close()


class ThreadedContentTransport(httpx.AsyncBaseTransport):
    """Content GETs on worker threads over kept-alive blocking sockets; the rest to `inner`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._context = context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not wants_thread(request):
            return await self._inner.handle_async_request(request)
        exchange = _Exchange()
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        response, body = await self._run(exchange, self._open, request, exchange, timeouts)
        stream = _ThreadedBody(self, exchange, body)
        return httpx.Response(
            response.status,
            headers=response.getheaders(),
            stream=stream,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode("latin-1")},
        )

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            idle = [connection for connections in self._idle.values() for connection in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()
        await self._inner.aclose()

    async def _run(self, exchange: _Exchange, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on a worker thread; cancelled, the connection is shut down."""
        with exchange.lock:
            exchange.busy = True
        try:
            return await trio.to_thread.run_sync(
                self._in_thread, exchange, function, *args, abandon_on_cancel=True
            )
        except trio.Cancelled:
            exchange.abort()
            raise

    @staticmethod
    def _in_thread(exchange: _Exchange, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        finally:
            exchange.release()

    # -- on the worker thread ------------------------------------------------------------

    def _open(
        self, request: httpx.Request, exchange: _Exchange, timeouts: dict[str, float | None]
    ) -> tuple[http.client.HTTPResponse, list[bytes] | None]:
        """Send `request`; its answer's status and headers (and its body's pieces, if small)."""
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        connection = self._take_idle(origin)
        if connection is not None:
            try:
                exchange.attach(connection)
                return self._exchange(connection, request, exchange, timeouts)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()  # closed by the server while idle: once more, on a new one
        connection = self._connect(origin, timeouts)
        exchange.attach(connection)
        return self._exchange(connection, request, exchange, timeouts)

    def _exchange(
        self,
        connection: _Connection,
        request: httpx.Request,
        exchange: _Exchange,
        timeouts: dict[str, float | None],
    ) -> tuple[http.client.HTTPResponse, list[bytes] | None]:
        target = request.url.raw_path.decode("ascii")
        try:
            connection.sock.settimeout(timeouts.get("write"))
            connection.http.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                connection.http.putheader(name.decode("latin-1"), value)
            connection.http.endheaders()
            connection.sock.settimeout(timeouts.get("read"))
            response = connection.http.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if connection.reused:
                raise
            connection.close()
            raise httpx.RemoteProtocolError("the server closed the connection without an answer") from None
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout(str(exc) or "timed out waiting for the answer") from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        exchange.response = response
        length = response.length
        if length is not None and length <= WITH_HEAD:
            body = [_receive(response, min(PIECE, length - start)) for start in range(0, length, PIECE)]
            self._finish(exchange)
            return response, body
        return response, None

    def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeouts.get("connect"))
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            try:
                sock = self._context.wrap_socket(sock, server_hostname=host)
            except TimeoutError as exc:
                sock.close()
                raise httpx.ConnectTimeout(f"timed out in the TLS handshake with {host}:{port}") from exc
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise httpx.ConnectError(str(exc)) from exc
        return _Connection(origin, sock)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        now = time.monotonic()
        stale: list[_Connection] = []
        found = None
        with self._lock:
            connections = self._idle.get(origin, [])
            while connections:
                connection = connections.pop()
                if connection.usable(now):
                    found = connection
                    break
                stale.append(connection)
        for connection in stale:
            connection.close()
        if found is not None:
            found.reused = True
        return found

    def read(self, exchange: _Exchange) -> list[bytes]:
        """The next pieces of the body (GATHER bytes, or the rest); [] at its end.

        Pieces are PIECE bytes each, so that a reader whose blocks are that size takes
        them as they are. An error after some pieces arrived is raised by the next call,
        after those pieces were handed on.
        """
        response = exchange.response
        assert response is not None
        if exchange.failure is not None:
            raise exchange.failure
        pieces: list[bytes] = []
        gathered = 0
        while gathered < GATHER:
            try:
                piece = _receive(response, PIECE, exact=False)
            except httpx.TransportError as exc:
                if not pieces:
                    raise
                exchange.failure = exc
                break
            if not piece:
                self._finish(exchange)
                break
            pieces.append(piece)
            gathered += len(piece)
            if response.length == 0:
                self._finish(exchange)
                break
        return pieces

    def _finish(self, exchange: _Exchange) -> None:
        """The body was read in full: the connection goes back to the pool if it can."""
        connection = exchange.connection
        with exchange.lock:
            if exchange.done:
                return
            exchange.done = True
            keep = not exchange.aborted and connection is not None and connection.http.sock is not None
            if keep:
                exchange.connection = None
        if not keep or connection is None:
            return
        if exchange.response is not None:
            exchange.response.close()  # http.client sends no more requests until it is closed
        connection.idle_since = time.monotonic()
        with self._lock:
            if not self._closed:
                connections = self._idle.setdefault(connection.origin, [])
                if len(connections) < MAX_IDLE_PER_ORIGIN:
                    connections.append(connection)
                    return
        connection.close()


def _receive(response: http.client.HTTPResponse, size: int, *, exact: bool = True) -> bytes:
    """Up to `size` bytes of the body (fewer only at its end); all `size` when `exact`.

    A body that ends before its Content-Length said is a protocol error, as in httpx.
    """
    try:
        piece = response.read(size)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "the answer stalled") from exc
    except http.client.IncompleteRead as exc:
        raise httpx.RemoteProtocolError("the answer ended before its body did") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    short = len(piece) < size and (exact or not piece)
    if short and response.length:
        raise httpx.RemoteProtocolError(
            f"the connection closed with {response.length} bytes of the body still to come"
        )
    return piece


class _ThreadedBody(httpx.AsyncByteStream):
    """The body of one threaded answer, received by a thread of its own.

    The thread receives while the trio side hands on what arrived before: up to AHEAD
    batches of GATHER bytes wait for the trio side, which takes them in order. The thread
    posts each batch with `run_sync_soon` (no waiting for the trio side to run it).
    """

    def __init__(
        self, transport: ThreadedContentTransport, exchange: _Exchange, body: list[bytes] | None
    ) -> None:
        self._transport = transport
        self._exchange = exchange
        self._body = body
        self._ready: deque[list[bytes] | BaseException] = deque()
        self._arrived: trio.Event | None = None
        self._credits = threading.Semaphore(AHEAD)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            # Handed on one by one and let go at once: what holds this stream may be in a
            # reference cycle, and a piece kept with it would wait for the cyclic GC.
            while self._body:
                yield self._body.pop(0)
            return
        exchange = self._exchange
        token = trio.lowlevel.current_trio_token()
        with exchange.lock:
            exchange.busy = True
        trio.lowlevel.start_thread_soon(functools.partial(self._receive_all, token), _ignore)
        while True:
            while not self._ready:
                self._arrived = trio.Event()
                await self._arrived.wait()
            item = self._ready.popleft()
            self._credits.release()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            while item:
                yield item.pop(0)

    async def aclose(self) -> None:
        if not self._exchange.done:
            self._exchange.abort()
        self._credits.release()  # a receiving thread waiting for room sees the abort

    def _receive_all(self, token: trio.lowlevel.TrioToken) -> None:
        """On the body's own thread: receive batches until the end, an error or an abort."""
        exchange = self._exchange
        try:
            while not exchange.done:
                self._credits.acquire()
                if exchange.aborted:
                    return
                try:
                    pieces = self._transport.read(exchange)
                except BaseException as exc:  # httpx's errors, raised on the trio side
                    self._post(token, exc)
                    return
                if pieces:
                    self._post(token, pieces)
            self._post(token, [])
        finally:
            exchange.release()

    def _post(self, token: trio.lowlevel.TrioToken, item: list[bytes] | BaseException) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._deliver, item)

    def _deliver(self, item: list[bytes] | BaseException) -> None:
        """On the trio thread: a batch (or the error, or [] for the end) is ready."""
        self._ready.append(item)
        if self._arrived is not None:
            self._arrived.set()


def _ignore(outcome: object) -> None:
    """What a body's receiving thread returns is posted on the way; nothing is left."""
