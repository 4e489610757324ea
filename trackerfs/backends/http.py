"""The HTTP client every backend uses: one policy for retries, redirects and credentials.

This is the only module that sees httpx exceptions and HTTP status codes; it turns them
into `trackerfs.errors.TrackerError` subclasses once, here.

Credentials are attached per request, and only when the request goes to the tracker's own
origin (scheme, host and port of its base URL). Redirects are followed by hand so that a
redirect to a media host or a pre-signed store never carries them.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
import trio
from cachetools import TTLCache

from trackerfs import __version__
from trackerfs.backends.multipart import MultipartBody
from trackerfs.errors import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    TemporaryError,
    TooLargeError,
    TrackerError,
    TrackerTimeoutError,
    UnreachableError,
    UnsupportedError,
)

log = logging.getLogger(__name__)

#: Statuses that say "try again later" for any method.
RETRY_ANY_METHOD = frozenset({429, 503})
#: Statuses worth retrying for requests that are safe to repeat.
RETRY_IDEMPOTENT = frozenset({500, 502, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
MAX_REDIRECTS = 5
#: How long a redirect target (a signed download URL) is reused before asking again;
#: well inside the validity of the signed URLs trackers hand out (minutes).
REDIRECT_TTL = 30.0
#: Answers from a remembered redirect target that mean "ask the tracker again".
STALE_REDIRECT = frozenset({401, 403, 404, 410})

ErrorDescriber = Callable[[httpx.Response], str]
#: Bytes asked of the socket per read. httpcore asks for 64 KiB; a content stream then
#: costs one parser round per 64 KiB, which on loopback caps Python near 1 GB/s.
WIDE_READ = 1 << 20


class _WideReadStream(httpcore.AsyncNetworkStream):
    """A network stream that reads up to WIDE_READ bytes whatever the parser asks for."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, WIDE_READ), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _WideReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _WideReadBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend with wide reads (httpcore's documented extension point)."""

    def __init__(self) -> None:
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WideReadStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return _WideReadStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def wide_read_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own transport over a connection pool whose streams read wide.

    httpx does not take a network backend, so its pool is replaced by an equivalent
    one that has ours (proxies from the environment are still mounted by the client).
    """
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_WideReadBackend(),
    )
    return transport


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a temporary failure.

    The wait before retry *n* (1-based) is `backoff * 2**(n-1)` with half jitter, capped
    by `max_wait`; a `Retry-After` header replaces it (capped by `max_retry_after`: the
    server knows best). `deadline` bounds the time spent on one call so that a blocked
    syscall returns within a minute; a wait that would pass it is not started.
    """

    attempts: int = 4
    backoff: float = 0.25
    max_wait: float = 8.0
    max_retry_after: float = 30.0
    deadline: float = 60.0

    def wait(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        """Seconds to wait before retry number `attempt`."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.max_wait, self.backoff * 2.0 ** (attempt - 1)) * (0.5 + rand() / 2)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def origin_of(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports made explicit."""
    parts = httpx.URL(str(url))
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, parts.host, port)


def loggable(url: str | httpx.URL, own_origin: tuple[str, str, int | None]) -> str:
    """A URL fit for a log line: a foreign (signed) URL loses its query string."""
    text = str(url)
    if origin_of(text) == own_origin:
        return text
    parts = urlsplit(text)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def error_for_status(status: int, message: str) -> TrackerError:
    """The TrackerError subclass for an HTTP error status."""
    cls: type[TrackerError]
    if status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status in (404, 410):
        cls = NotFoundError
    elif status == 413:
        cls = TooLargeError
    elif status in (400, 415, 416, 422):
        cls = BadRequestError
    elif status in (405, 501):
        cls = UnsupportedError
    elif status == 429:
        cls = RateLimitedError
    elif status >= 500:
        cls = TemporaryError
    else:
        cls = TrackerError
    return cls(message, status=status)


def describe_generic_error(response: httpx.Response) -> str:
    """Pull a human message out of an error body whatever its shape."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text and "<" not in text[:1] else response.reason_phrase
    return _message_from(body) or response.reason_phrase


def _message_from(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(filter(None, (_message_from(item) for item in body)))
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    for key in ("errorMessages", "errorMessage", "message", "detail", "errors", "error"):
        value = body.get(key)
        if isinstance(value, dict):
            parts.extend(f"{k}: {_message_from(v)}" for k, v in value.items())
        elif value:
            parts.append(_message_from(value))
    return "; ".join(p for p in parts if p)


class HttpClient:
    """An httpx.AsyncClient with the tracker's policy: auth by origin, retries, errors."""

    def __init__(
        self,
        base_url: str,
        *,
        auth_headers: Mapping[str, str],
        describe_error: ErrorDescriber = describe_generic_error,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.origin = origin_of(self.base_url)
        self._auth_headers = dict(auth_headers)
        self._describe_error = describe_error
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rand = rand
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": f"trackerfs/{__version__}"},
            transport=transport or wide_read_transport(limits),
        )
        self._redirects: TTLCache[str, httpx.URL] = TTLCache(1024, REDIRECT_TTL, timer=trio.current_time)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the base URL (absolute URLs pass)."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def _headers_for(self, url: str | httpx.URL, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if origin_of(url) == self.origin:
            headers.update(self._auth_headers)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: MultipartBody | None = None,
        ok: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send a request with retries; return the (read) response or raise TrackerError.

        A multipart `body` is streamed from its files, from the start again for a retry.
        Statuses in `ok` are returned instead of raised.
        """
        async with self._send(
            method, path, params=params, headers=headers, json=json, body=body, ok=ok
        ) as response:
            await response.aread()
            return response

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """GET and decode a JSON body."""
        response = await self.request("GET", path, params=params)
        return decode_json(response)

    @asynccontextmanager
    async def stream_range(
        self, path: str, start: int, stop: int, *, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Yield an iterator over exactly the bytes [start, stop) of a resource.

        A server that ignores Range (200) is read from the start and the prefix dropped;
        416 (range past the end) yields nothing. Stops early at the end of the resource.
        """
        headers = {"Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        async with self._send("GET", path, params=params, headers=headers, ok=frozenset({416})) as response:
            if response.status_code == 416:
                yield _empty()
            elif response.status_code == 206:
                first = _content_range_start(response.headers.get("Content-Range"))
                if first != start:
                    raise BadResponseError(f"asked for bytes from {start}, got a range starting at {first}")
                yield self._body(response, 0, stop - start)
            else:
                yield self._body(response, start, stop - start)

    async def _body(self, response: httpx.Response, skip: int, length: int) -> AsyncIterator[bytes]:
        try:
            async for raw in response.aiter_raw():
                chunk = raw
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                if len(chunk) >= length:
                    if length:
                        yield chunk[:length]
                    return
                length -= len(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise _transport_error(exc, response.request) from exc

    @asynccontextmanager
    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: MultipartBody | None = None,
        ok: frozenset[int] = frozenset(),
    ) -> AsyncIterator[httpx.Response]:
        retryable = RETRY_ANY_METHOD | (RETRY_IDEMPOTENT if method in IDEMPOTENT_METHODS else set())
        started = trio.current_time()
        attempt = 0
        while True:
            attempt += 1
            url: str | httpx.URL = self.url(path)
            current_params = params
            retry_after: float | None = None
            failure: TrackerError
            try:
                response = await self._send_following(method, url, current_params, headers, json, body)
            except TrackerError as exc:
                failure = exc
                transient = isinstance(exc, TrackerTimeoutError | UnreachableError | TemporaryError)
                # A request that never reached the server may always be repeated.
                if not (transient and (method in IDEMPOTENT_METHODS or _not_sent(exc))):
                    raise
            else:
                status = response.status_code
                if status < 400 or status in ok:
                    try:
                        yield response
                    finally:
                        await response.aclose()
                    return
                await response.aread()
                await response.aclose()
                failure = self._error(response)
                if status not in retryable:
                    raise failure
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt >= self.retry.attempts:
                log.warning("giving up on %s %s after %d attempts: %s", method, path, attempt, failure)
                raise failure
            wait = self.retry.wait(attempt, retry_after, self._rand)
            if trio.current_time() + wait - started > self.retry.deadline:
                raise failure
            log.warning("%s %s failed (%s); retry %d in %.2fs", method, path, failure, attempt, wait)
            await self._sleep(wait)

    async def _send_following(
        self,
        method: str,
        url: str | httpx.URL,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        body: MultipartBody | None,
    ) -> httpx.Response:
        """Send, following redirects by hand (credentials only to the tracker's origin).

        Where a GET was redirected lately (a download sent to a media host with a signed
        URL), the next GET of the same URL goes straight to that target; if the target no
        longer takes it (expired), the original URL is asked again.
        """
        first = self._client.build_request(method, url, params=params)
        remembered = self._redirects.get(str(first.url)) if method == "GET" else None
        if remembered is not None:
            response = await self._follow(method, remembered, None, headers, json, body, origin_key=None)
            if response.status_code not in STALE_REDIRECT:
                return response
            await response.aclose()
            self._redirects.pop(str(first.url), None)
        return await self._follow(method, url, params, headers, json, body, origin_key=str(first.url))

    async def _follow(
        self,
        method: str,
        url: str | httpx.URL,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        body: MultipartBody | None,
        *,
        origin_key: str | None,
    ) -> httpx.Response:
        for hop in range(MAX_REDIRECTS + 1):
            all_headers = self._headers_for(url, headers)
            if body is not None:
                all_headers.update(body.headers)
            request = self._client.build_request(
                method,
                url,
                params=params,
                headers=all_headers,
                json=json,
                content=body.stream() if body is not None else None,
            )
            log.debug("%s %s", method, loggable(request.url, self.origin))
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, request) from exc
            if response.status_code not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                if hop and origin_key is not None and response.status_code < 400:
                    self._redirects[origin_key] = request.url
                return response
            location = response.headers.get("Location")
            await response.aclose()
            if not location:
                raise BadResponseError(f"{method} {request.url.path}: redirect without Location")
            url = request.url.join(location)
            params = None
            if _looks_like_login(url):
                raise AuthenticationError("the tracker redirected to its login page", status=302)
        raise BadResponseError(f"{method} {path_of(url)}: too many redirects")

    def _error(self, response: httpx.Response) -> TrackerError:
        try:
            detail = self._describe_error(response)
        except Exception:  # a broken error body must not hide the status
            detail = response.reason_phrase
        where = loggable(response.request.url, self.origin)
        return error_for_status(
            response.status_code,
            f"{response.request.method} {where}: {response.status_code} {detail}".rstrip(),
        )


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of a response, or BadResponseError."""
    try:
        return response.json()
    except ValueError as exc:
        raise BadResponseError(
            f"{response.request.method} {response.request.url.path}: malformed JSON "
            f"({response.headers.get('Content-Type', 'no content type')})"
        ) from exc


def path_of(url: str | httpx.URL) -> str:
    """The path of a URL, for messages."""
    return httpx.URL(str(url)).path


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/1000"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _looks_like_login(url: httpx.URL) -> bool:
    # Jira Server answers a refused bearer token with a redirect to its login page.
    return url.path.endswith(("/login.jsp", "/login"))


def _not_sent(exc: TrackerError) -> bool:
    return isinstance(exc, UnreachableError)


def _transport_error(exc: httpx.HTTPError, request: httpx.Request) -> TrackerError:
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, httpx.TimeoutException):
        return TrackerTimeoutError(f"{where}: timed out")
    if isinstance(exc, httpx.ConnectError):
        return UnreachableError(f"{where}: cannot connect to {request.url.host}: {exc}")
    if isinstance(exc, httpx.DecodingError):
        return BadResponseError(f"{where}: undecodable body: {exc}")
    return TemporaryError(f"{where}: connection lost: {exc or type(exc).__name__}")
