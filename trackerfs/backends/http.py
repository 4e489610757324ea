"""The HTTP client every backend uses: one policy for retries, redirects and credentials.

This is the only module that sees httpx exceptions and HTTP status codes; it turns them
into `trackerfs.errors.TrackerError` subclasses once, here.

Credentials (a `Credentials`, asked before each request and renewed once after a 401) and
the vendor's API headers are attached per request, and only when the request goes to the
tracker's own origin (scheme, host and port of its base URL). Redirects are followed by
hand so that a redirect to a media host or a pre-signed store never carries them, and only
for GET and HEAD: a redirect answered to anything else is an error, never a success.

Where the bytes of a resource are may change: a signed redirect target, or a location the
backend resolves from the vendor's record (`ContentLocation`, Asana's `download_url`).
Such a location is reused for the backend's `location_ttl` at most, and a 401, 403, 404
or 410 from it (or from any other origin) gets one more try with a fresh one.

What a vendor's answers mean beyond their status (an error body, a redirect to a login
page) is the backend's to say, through one hook (`AnswerClassifier`); the status table
`error_for_status` covers the rest.

One call (`request`, `stream_range`) is a series of attempts bounded together by one
deadline. An attempt is the request, its redirects and, for `request`, reading the whole
body: an answer cut short is a failed attempt like a dropped connection. What may be
repeated:

- a request that never reached the tracker (no connection, or its body not sent in full):
  always;
- a request declared idempotent (by default GET, HEAD, OPTIONS, PUT, DELETE; a search sent
  as POST may say so) after a lost answer, a timeout or 500/502/504;
- any request after 429 or 503 (the tracker did not act on it), or after a 401 that
  renewed credentials or a stale location that was resolved again (once each);
- nothing else: a request that is not idempotent and may have been carried out while its
  answer was lost (or answered 500/502/504, which a gateway sends for a request it may
  have passed on) raises OutcomeUnknownError, so its sender can check what happened.

A tracker that counts requests per token (Asana: 150 a minute on free plans) gets a
`RequestBudget`: each attempt to its origin waits for a place in the budget first, and a
429's Retry-After holds back every request, not only the refused one. The wait for a place
is not part of the call's deadline, which bounds the attempts themselves.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
import trio
from cachetools import TTLCache

from trackerfs import __version__
from trackerfs.backends.multipart import MultipartBody
from trackerfs.backends.threaded import ThreadedContentTransport
from trackerfs.config import Profile, SecretSource
from trackerfs.errors import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    ConfigError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitedError,
    TemporaryError,
    TooLargeError,
    TrackerError,
    TrackerTimeoutError,
    UnreachableError,
    UnsupportedError,
)
from trackerfs.logsetup import add_secret, redact

log = logging.getLogger(__name__)

#: Statuses that say "try again later" for any method.
RETRY_ANY_METHOD = frozenset({429, 503})
#: Statuses worth retrying for requests that are safe to repeat.
RETRY_IDEMPOTENT = frozenset({500, 502, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Only these methods follow a redirect; credentials or a body are never sent on blindly.
FOLLOWING_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 5
#: The largest answer read whole (listings, records, error bodies; content is streamed).
MAX_ANSWER_BYTES = 64 << 20
#: Connections of one mount in flight at once, unless the profile says otherwise.
DEFAULT_MAX_CONCURRENCY = 32
#: How long the next GET of a resource whose call ran out of time fails at once instead of
#: waiting again: the kernel repeats a failed readahead at once as a read of one page, which
#: would otherwise wait a whole deadline more, so one read() would take twice as long.
STALL_MEMORY = 2.0
#: Seconds after a token source gave nothing new before a 401 makes it read again.
RENEW_PAUSE = 10.0
#: Answers from a content location that mean "it expired or moved: resolve it again".
STALE_LOCATION = frozenset({401, 403, 404, 410})
#: The window a per-minute request budget counts in, with a second to spare for the time
#: a request takes to reach the tracker, whose own window starts when it arrives.
BUDGET_WINDOW = 61.0

#: OpenSSL's verify codes for a certificate whose issuer is not trusted here (unknown
#: issuer, self-signed, a self-signed root in the chain): what a private CA looks like.
UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20})
UNTRUSTED_HINT = " (not signed by an authority trusted here; a private CA goes in the profile's ca_file)"

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


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """What every connection of a client verifies against: httpx's roots, plus a private CA.

    The private CA is added, not substituted: a tracker on premises may still redirect
    downloads to a public store.
    """
    context = httpx.create_ssl_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_file {ca_file} cannot be used: {exc}") from None
    return context


def wide_read_transport(limits: httpx.Limits, context: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """httpx's own transport over a connection pool whose streams read wide.

    httpx does not take a network backend, so its pool is replaced by an equivalent
    one that has ours, with the client's TLS context (proxies from the environment are
    still mounted by the client, with the same context).
    """
    transport = httpx.AsyncHTTPTransport(verify=context, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
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
    server knows best). `deadline` bounds all attempts of one call together, counted from
    its start: each attempt's timeout is at most the time left, a wait that would pass the
    deadline is not started, and no attempt starts once it is spent.
    """

    attempts: int = 4
    backoff: float = 0.25
    max_wait: float = 8.0
    max_retry_after: float = 30.0
    deadline: float = 30.0

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
    except (ValueError, RecursionError):
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


class _SentBody(httpx.AsyncByteStream):
    """A request body that knows whether it was handed to the connection in full.

    A request whose body was not sent in full cannot have been carried out, whatever
    the method: repeating it is safe.
    """

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner
        self.complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
        self.complete = True

    async def aclose(self) -> None:
        await self._inner.aclose()


class Credentials:
    """The headers that say who the client is; they go to the tracker's own origin only.

    This class keeps one fixed set. Where tokens expire (IAM tokens, a rotated personal
    token), `renew` gets fresh ones: the client asks `headers()` before each request and
    calls `renew` once after a 401 from the tracker's origin, then repeats the request.
    """

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)
        _register_credentials(self._headers)

    async def headers(self) -> Mapping[str, str]:
        """The headers for the next request."""
        return self._headers

    async def renew(self, refused: Mapping[str, str]) -> bool:
        """Get fresh headers after the tracker refused `refused`; False when there are none."""
        return False

    @staticmethod
    def from_secret(secret: SecretSource, make: Callable[[str], Mapping[str, str]]) -> Credentials:
        """Headers made by `make` from a profile's token, read now and again after a 401.

        A token from an environment variable cannot change while the mount runs; one from
        a file or a command (`token_command = "yc iam create-token"`) may, so it is read
        again when the tracker refuses the current one.
        """
        if secret.kind == "env":
            return Credentials(make(secret.read()))
        return _RereadCredentials(secret, make)


class _RereadCredentials(Credentials):
    """Credentials whose token is read from its source again when the tracker refuses it."""

    def __init__(self, secret: SecretSource, make: Callable[[str], Mapping[str, str]]) -> None:
        super().__init__(make(secret.read()))
        self._secret = secret
        self._make = make
        self._lock = trio.Lock()
        #: when reading the source last gave nothing new: until RENEW_PAUSE has passed,
        #: the 401s of requests in flight with the same token do not run it again
        self._unchanged_at: float | None = None

    async def renew(self, refused: Mapping[str, str]) -> bool:
        async with self._lock:
            if self._headers != refused:
                return True  # another request renewed them while this one waited
            now = trio.current_time()
            if self._unchanged_at is not None and now - self._unchanged_at < RENEW_PAUSE:
                return False
            try:
                token = await trio.to_thread.run_sync(self._secret.read)
            except ConfigError as exc:
                log.warning("cannot read the token again: %s", exc)
                self._unchanged_at = now
                return False
            fresh = dict(self._make(token))
            if fresh == self._headers:
                self._unchanged_at = now
                return False
            self._unchanged_at = None
            log.info("the tracker refused the token; using the one its source gives now")
            _register_credentials(fresh)
            self._headers = fresh
            return True


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as a backend's `AnswerClassifier` sees it.

    `message` is what the client would report: method, URL (a foreign one without its
    query), status and the described error body, credentials masked. `location` is where
    a redirect points, resolved against the request.
    """

    response: httpx.Response
    message: str
    location: httpx.URL | None = None

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        """The answer's headers."""
        return self.response.headers

    def json(self) -> Any:
        """The decoded JSON body of an error answer; None if unread or not JSON."""
        if not self.response.is_stream_consumed:
            return None
        try:
            return self.response.json()
        except (ValueError, RecursionError):
            return None


#: What an answer means beyond its status, in the vendor's terms: the error to raise (a
#: Waldur 400 `["Destroying is not available."]` is EPERM), or None for the usual mapping.
#: Called for every answer of a request: redirects (with `location`), error answers (body
#: read), and successes (body not read, so headers only: Jira's failed-login header).
AnswerClassifier = Callable[[Answer], TrackerError | None]


class RequestBudget:
    """At most `per_minute` requests in any minute, and none while a 429 says to wait.

    Places are given in the order they are asked for (a fair lock), so a burst of
    listings queues instead of being refused by the tracker. `statistics()` counts the
    requests let through, the time spent waiting and the pauses 429s imposed.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = trio.current_time,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("a request budget needs at least one request a minute")
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._paused_until = float("-inf")
        self._lock = trio.Lock()
        self._granted = 0
        self._waited = 0.0
        self._pauses = 0

    async def take(self) -> float:
        """Wait until one more request fits in the budget; the seconds waited."""
        async with self._lock:
            started = self._clock()
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - BUDGET_WINDOW:
                    self._sent.popleft()
                wait = self._paused_until - now
                if len(self._sent) >= self.per_minute:
                    wait = max(wait, self._sent[0] + BUDGET_WINDOW - now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._sent.append(now)
            self._granted += 1
            waited = now - started
            self._waited += waited
            return waited

    def pause(self, seconds: float) -> None:
        """Hold back every request for `seconds` (the tracker answered 429 with Retry-After)."""
        self._pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def statistics(self) -> dict[str, float]:
        """Requests let through, seconds spent waiting, and 429 pauses, since the start."""
        return {"granted": self._granted, "waited": self._waited, "pauses": self._pauses}


@dataclass(frozen=True, slots=True)
class ContentLocation:
    """Bytes whose URL the backend must ask the tracker for, and which expires.

    `resolve` returns a current absolute URL, perhaps on another origin, so no credentials
    go there (Asana's `download_url`, valid about two minutes). `key` names the resource:
    the ranges of one download share one location for the client's `location_ttl`, and a
    401, 403, 404 or 410 from it makes the client resolve it again, once.
    """

    key: str
    resolve: Callable[[], Awaitable[str]]


@dataclass(slots=True)
class _Call:
    """One call: what it asks for, whether it may be repeated, and its deadline."""

    method: str
    path: str
    params: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    json: Any
    body: MultipartBody | None
    idempotent: bool
    started: float
    #: the resource asked for (URL with query, or a location's key), whatever the headers
    key: str
    location: ContentLocation | None = None
    #: the request of the latest attempt's last hop, and whether its body went out in full
    last_request: httpx.Request | None = None
    sent: _SentBody | None = None
    #: redirects followed by the latest attempt
    hops: int = 0
    #: whether the latest attempt went to a remembered location
    reused: bool = False
    #: the one fresh location and the one renewal of credentials a call may have
    refreshed: bool = False
    renewed: bool = False

    @property
    def where(self) -> str:
        """Method and path for messages (never a query string: it may be signed)."""
        return f"{self.method} {path_of(self.last_request.url) if self.last_request else self.path}"


class HttpClient:
    """An httpx.AsyncClient with the tracker's policy: auth by origin, retries, errors.

    The vendor's part: `credentials` and `headers` (sent only to the tracker's origin),
    `describe_error` (a message from an error body), `classify` (what an answer means),
    `location_ttl` (how long a redirect target or resolved content location is reused;
    0: ask every time), `budget` (a `RequestBudget` for the requests to its origin). The
    profile's part: `timeout` bounds each socket operation of an
    attempt (so an upload is never cut while its bytes flow), `deadline` all attempts of
    one call together, `max_concurrency` the requests in flight at once, `ca_file` a
    private CA every connection also trusts (`for_profile` reads all four).
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        describe_error: ErrorDescriber = describe_generic_error,
        classify: AnswerClassifier | None = None,
        location_ttl: float = 0.0,
        budget: RequestBudget | None = None,
        ca_file: Path | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        clock: Callable[[], float] = trio.current_time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.origin = origin_of(self.base_url)
        self._credentials = credentials if isinstance(credentials, Credentials) else Credentials(credentials)
        self._origin_headers = dict(headers or {})
        self._describe_error = describe_error
        self._classify = classify
        self.retry = retry or RetryPolicy()
        if deadline is not None:
            self.retry = dataclasses.replace(self.retry, deadline=deadline)
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._slots = trio.Semaphore(max_concurrency)
        limits = httpx.Limits(
            max_connections=max_concurrency, max_keepalive_connections=min(16, max_concurrency)
        )
        context = tls_context(ca_file)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": f"trackerfs/{__version__}"},
            verify=context,
            transport=transport or ThreadedContentTransport(wide_read_transport(limits, context), context),
        )
        self.location_ttl = location_ttl
        self.budget = budget
        self._locations: TTLCache[str, httpx.URL] = TTLCache(
            1024, location_ttl if location_ttl > 0 else 1.0, timer=clock
        )
        self._stalled: TTLCache[str, TrackerTimeoutError] = TTLCache(256, STALL_MEMORY, timer=clock)
        #: content sources (`_range_source`) whose server answered a Range with the whole body
        self._ignores_range: set[str] = set()
        #: attempts by method and answer (`GET 206`, `POST failed`), and `retries`
        self._counts: Counter[str] = Counter()

    @classmethod
    def for_profile(
        cls,
        profile: Profile,
        *,
        credentials: Credentials | Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        describe_error: ErrorDescriber = describe_generic_error,
        classify: AnswerClassifier | None = None,
        location_ttl: float = 0.0,
        budget: RequestBudget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> HttpClient:
        """A client for `profile` (URL, timeout, deadline, concurrency, CA file) and a vendor."""
        return cls(
            profile.url,
            credentials=credentials,
            headers=headers,
            describe_error=describe_error,
            classify=classify,
            location_ttl=location_ttl,
            budget=budget,
            ca_file=profile.ca_file,
            timeout=profile.timeout,
            deadline=profile.deadline,
            max_concurrency=profile.max_concurrency,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    def statistics(self) -> dict[str, int]:
        """Attempts so far by method and answer (`GET 200`, `POST failed`), and `retries`."""
        return dict(sorted(self._counts.items()))

    def honours_range(self, source: str | ContentLocation) -> bool:
        """Whether the server of `source` has sent only the part a Range asked for so far.

        It is learnt from the answers: once a ranged `stream_range` of a source's origin
        (or of a location's key) came back whole, this says False for good, so that a
        backend can tell the reader to download its attachments once, whole, instead of
        paying for every byte before each block it reads.
        """
        return _range_source(self.url, source) not in self._ignores_range

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the base URL (absolute URLs pass)."""
        return urljoin(self.base_url, path.lstrip("/")) if "://" not in path else path

    def on_own_origin(self, url: str) -> str:
        """A URL the vendor gave for one of its own resources, moved onto the base URL.

        A tracker may name itself by another origin than the one configured (http behind a
        TLS proxy, an internal host name); its path is used under the base URL, so that
        credentials still apply and nothing goes to a host the profile did not name. A path
        that already starts with the base URL's path (a context path) keeps it once.
        """
        parts = urlsplit(url)
        base_path = urlsplit(self.base_url).path.rstrip("/")
        path = parts.path
        if base_path and (path == base_path or path.startswith(base_path + "/")):
            path = path[len(base_path) :]
        moved = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        return f"{moved}?{parts.query}" if parts.query else moved

    def _headers_for(
        self, url: str | httpx.URL, extra: Mapping[str, str] | None, credentials: Mapping[str, str]
    ) -> dict[str, str]:
        headers = dict(extra or {})
        if origin_of(url) == self.origin:
            headers.update(self._origin_headers)
            headers.update(credentials)
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
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request with retries; return the (read) response or raise TrackerError.

        A multipart `body` is streamed from its files, from the start again for a retry.
        Statuses in `ok` are returned instead of raised. `idempotent` says whether the
        request may be repeated after its answer was lost (default: by its method).
        """
        call = self._call(method, path, params, headers, json, body, idempotent)
        async with self._send(call, read=True, ok=ok) as response:
            return response

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """GET and decode a JSON body."""
        response = await self.request("GET", path, params=params)
        return decode_json(response)

    @asynccontextmanager
    async def stream_range(
        self,
        source: str | ContentLocation,
        start: int,
        stop: int,
        *,
        params: Mapping[str, Any] | None = None,
        total: int | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Yield an iterator over exactly the bytes [start, stop) of a resource.

        `source` is a path or URL, or a `ContentLocation` the backend resolves. A server
        that ignores Range (200) is read from the start and the prefix dropped; 416 (range
        past the end) yields nothing. Stops early at the end of the resource. A body cut
        short raises TemporaryError from the iterator (the caller resumes). `total`, the
        size the tracker listed, must be the size the answer gives the whole resource
        (Content-Range's, or a 200's Content-Length): else BadResponseError, never bytes
        of a file other than the one listed.
        """
        headers = {"Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        if isinstance(source, ContentLocation):
            call = self._call("GET", source.key, None, headers, None, None, None)
            call.location = source
        else:
            call = self._call("GET", source, params, headers, None, None, None)
        async with self._send(call, read=False, ok=frozenset({416})) as response:
            if response.status_code == 416:
                yield _empty()
            elif response.status_code == 206:
                first, whole = _content_range(response.headers.get("Content-Range"))
                if first != start:
                    raise BadResponseError(f"asked for bytes from {start}, got a range starting at {first}")
                _check_total(call, total, whole)
                yield self._body(call, response, 0, stop - start)
            else:
                length = response.headers.get("Content-Length", "")
                _check_total(call, total, int(length) if length.isdigit() else None)
                self._learn_range_ignored(source, response, start, stop)
                yield self._body(call, response, start, stop - start)

    def _learn_range_ignored(
        self, source: str | ContentLocation, response: httpx.Response, start: int, stop: int
    ) -> None:
        """Remember a server that sent a whole body for a part (a 200 for the whole is no news)."""
        length = response.headers.get("Content-Length")
        whole = start > 0 or (length is not None and length.isdigit() and int(length) > stop - start)
        key = _range_source(self.url, source)
        if whole and key not in self._ignores_range:
            self._ignores_range.add(key)
            log.info("%s ignores Range: its attachments are downloaded whole, once", _origin_text(key))

    def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        body: MultipartBody | None,
        idempotent: bool | None,
    ) -> _Call:
        repeatable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        key = f"{method} {httpx.URL(self.url(path), params=params)}"
        return _Call(method, path, params, headers, json, body, repeatable, self._clock(), key)

    async def _body(
        self, call: _Call, response: httpx.Response, skip: int, length: int
    ) -> AsyncIterator[bytes]:
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
            raise _transport_error(exc, call, in_body=True) from exc

    @asynccontextmanager
    async def _send(self, call: _Call, *, read: bool, ok: frozenset[int]) -> AsyncIterator[httpx.Response]:
        """Attempts of one call until one succeeds, one must not be repeated, or time is up.

        The answer yielded has a success status (or one in `ok`); with `read` its body has
        been read in full within the attempt. Where the request goes and with which
        credentials is settled before an attempt takes its place among `max_concurrency`:
        resolving a location is a request of its own.
        """
        retryable = RETRY_ANY_METHOD | (RETRY_IDEMPOTENT if call.idempotent else frozenset())
        stalled = self._stalled.pop(call.key, None) if call.method == "GET" else None
        if stalled is not None:
            raise TrackerTimeoutError(f"{stalled} (moments ago; not asked again yet)")
        attempt = 0
        while True:
            target, params = await self._target(call)
            credentials = await self._credentials.headers()
            retry_after: float | None = None
            failure: TrackerError
            await self._take_budget(call, target)
            async with self._slot(call):
                try:
                    response = await self._attempt(call, target, params, credentials, read=read)
                except TrackerError as exc:
                    self._counts[f"{call.method} failed"] += 1
                    if not _repeatable(exc):
                        raise
                    failure = exc
                    repeat = True
                else:
                    self._counts[f"{call.method} {response.status_code}"] += 1
                    verdict = self._verdict(response, ok)
                    if verdict is None:
                        self._remember(call)
                        try:
                            yield response
                        finally:
                            await response.aclose()
                        return
                    await response.aclose()
                    failure = verdict
                    repeat = response.status_code in retryable and isinstance(
                        failure, TemporaryError | RateLimitedError
                    )
                    if response.status_code in RETRY_IDEMPOTENT and not call.idempotent:
                        # A gateway's 502/504 (or a 500 part-way) may follow a change the
                        # tracker made: its sender must check rather than trust the status.
                        failure = OutcomeUnknownError(
                            f"{failure}; the tracker may have carried it out", status=response.status_code
                        )
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if self.budget is not None and response.status_code == 429:
                        self._pause_budget(response, retry_after, attempt)
            if await self._ask_again(call, failure, credentials):
                continue
            if not repeat:
                raise failure
            attempt += 1
            if attempt >= self.retry.attempts:
                raise self._give_up(call, failure, f"after {attempt} attempts")
            wait = self.retry.wait(attempt, retry_after, self._rand)
            if self._time_left(call) - wait <= 0:
                raise self._give_up(call, failure, f"its {self.retry.deadline:g}s deadline is spent")
            log.warning("%s failed (%s); retry %d in %.2fs", call.where, failure, attempt, wait)
            self._counts["retries"] += 1
            await self._sleep(wait)

    def _pause_budget(self, response: httpx.Response, retry_after: float | None, attempt: int) -> None:
        """A 429 from the tracker holds back every request, for its Retry-After or a backoff."""
        if self.budget is not None and origin_of(response.request.url) == self.origin:
            self.budget.pause(
                retry_after if retry_after is not None else self.retry.wait(attempt + 1, None, self._rand)
            )

    async def _take_budget(self, call: _Call, target: str | httpx.URL) -> None:
        """Wait for a place in the budget before an attempt to the tracker's origin.

        The wait moves the call's start: the deadline bounds attempts, not the queue.
        """
        if self.budget is None or origin_of(self.url(str(target))) != self.origin:
            return
        call.started += await self.budget.take()

    async def _target(self, call: _Call) -> tuple[str | httpx.URL, Mapping[str, Any] | None]:
        """Where the next attempt goes: a remembered location, a resolved one, or the path."""
        remembered = self._locations.get(call.key) if call.method == "GET" else None
        call.reused = remembered is not None
        if remembered is not None:
            return remembered, None
        if call.location is not None:
            return await call.location.resolve(), None
        return self.url(call.path), call.params

    def _remember(self, call: _Call) -> None:
        """Keep where a GET's bytes were found, if that was a redirect or a resolved location."""
        moved = call.hops > 0 or call.location is not None
        if self.location_ttl > 0 and moved and not call.reused and call.last_request is not None:
            self._locations[call.key] = call.last_request.url

    async def _ask_again(self, call: _Call, failure: TrackerError, credentials: Mapping[str, str]) -> bool:
        """Whether a failed attempt is repeated at once: stale location, renewed credentials.

        Each happens once per call, and neither counts as a retry: the tracker did nothing.
        """
        if call.last_request is None or failure.status is None:
            return False
        own = origin_of(call.last_request.url) == self.origin
        if failure.status in STALE_LOCATION and (call.reused or not own) and not call.refreshed:
            call.refreshed = True
            self._locations.pop(call.key, None)
            log.info("%s: %s; asking where the content is again", call.where, failure.status)
            return True
        if failure.status == 401 and own and not call.renewed:
            call.renewed = True
            return await self._credentials.renew(credentials)
        return False

    def _give_up(self, call: _Call, failure: TrackerError, why: str) -> TrackerError:
        """The error that ends a call; a GET that timed out is remembered for one repeat."""
        log.warning("giving up on %s: %s (%s)", call.where, why, failure)
        if call.method == "GET" and isinstance(failure, TrackerTimeoutError):
            self._stalled[call.key] = failure
        return failure

    def _time_left(self, call: _Call) -> float:
        return self.retry.deadline - (self._clock() - call.started)

    @asynccontextmanager
    async def _slot(self, call: _Call) -> AsyncIterator[None]:
        """Hold one of the `max_concurrency` places for an attempt, waiting within the deadline.

        Only the wait is bounded: an attempt under way is never cut by the deadline.
        """
        acquired = False
        with trio.move_on_after(max(self._time_left(call), 0.0)):
            await self._slots.acquire()
            acquired = True
        if not acquired:
            raise TrackerTimeoutError(
                f"{call.where}: no connection free within the {self.retry.deadline:g}s deadline"
            )
        try:
            yield
        finally:
            self._slots.release()

    async def _attempt(
        self,
        call: _Call,
        target: str | httpx.URL,
        params: Mapping[str, Any] | None,
        credentials: Mapping[str, str],
        *,
        read: bool,
    ) -> httpx.Response:
        """One attempt; a success answer is returned open (read in full with `read`).

        An error answer is always read (for its message).
        """
        timeout = max(min(self.timeout, self._time_left(call)), 0.001)
        response = await self._follow(
            call, target, params, credentials, httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )
        try:
            if response.status_code >= 400 or read:
                return await _read_bounded(response, call)
        except httpx.HTTPError as exc:
            await response.aclose()
            raise _transport_error(exc, call, in_body=True) from exc
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _follow(
        self,
        call: _Call,
        url: str | httpx.URL,
        params: Mapping[str, Any] | None,
        credentials: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Response:
        """Send, following redirects by hand (credentials only to the tracker's origin)."""
        for hop in range(MAX_REDIRECTS + 1):
            call.hops = hop
            request = self._build(call, url, params, credentials, timeout)
            log.debug("%s %s", call.method, loggable(request.url, self.origin))
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, call, in_body=False) from exc
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            await response.aclose()
            if not location:
                raise BadResponseError(f"{call.where}: redirect without Location")
            url = request.url.join(location)
            params = None
            if url.scheme not in ("http", "https"):
                # httpx would call it a transport failure and the policy would retry it.
                raise BadResponseError(
                    f"{call.where}: the tracker redirected to a {url.scheme or 'relative'}: URL, not http(s)",
                    status=response.status_code,
                )
            refusal = self._classified(response, self._message(response, response.reason_phrase), url)
            if refusal is not None:
                raise refusal
            if call.method not in FOLLOWING_METHODS:
                # Following would resend the body (and maybe credentials) elsewhere, and
                # taking the redirect as success would report a change that never happened.
                scheme, host, port = origin_of(url)
                raise BadResponseError(
                    f"{call.where}: the tracker answered {response.status_code} redirecting to "
                    f"{scheme}://{host}:{port}; not followed, nothing was changed",
                    status=response.status_code,
                )
        raise BadResponseError(f"{call.where}: too many redirects")

    def _build(
        self,
        call: _Call,
        url: str | httpx.URL,
        params: Mapping[str, Any] | None,
        credentials: Mapping[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Request:
        headers = self._headers_for(url, call.headers, credentials)
        if call.body is not None:
            headers.update(call.body.headers)
        request = self._client.build_request(
            call.method,
            url,
            params=params,
            headers=headers,
            json=call.json,
            content=call.body.stream() if call.body is not None else None,
            timeout=timeout,
        )
        if isinstance(request.stream, httpx.AsyncByteStream):
            call.sent = _SentBody(request.stream)
            request.stream = call.sent
        call.last_request = request
        return request

    def _verdict(self, response: httpx.Response, ok: frozenset[int]) -> TrackerError | None:
        """The error an answer means, or None for a success (or a status in `ok`)."""
        status = response.status_code
        if status < 400 or status in ok:
            return self._classified(response, self._message(response, response.reason_phrase))
        try:
            detail = self._describe_error(response)
        except Exception:  # a broken error body must not hide the status
            detail = response.reason_phrase
        message = self._message(response, detail)
        return self._classified(response, message) or error_for_status(status, message)

    def _message(self, response: httpx.Response, detail: str) -> str:
        where = loggable(response.request.url, self.origin)
        # A body may echo what was sent (a refused token): mask it before it goes anywhere.
        return redact(f"{response.request.method} {where}: {response.status_code} {detail}".rstrip())

    def _classified(
        self, response: httpx.Response, message: str, location: httpx.URL | None = None
    ) -> TrackerError | None:
        if self._classify is None:
            return None
        return self._classify(Answer(response, message, location))


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of a response, or BadResponseError."""
    try:
        return response.json()
    except ValueError as exc:
        raise BadResponseError(
            f"{response.request.method} {response.request.url.path}: malformed JSON "
            f"({response.headers.get('Content-Type', 'no content type')})"
        ) from exc
    except RecursionError:
        # json's decoder recurses per level: a hostile answer nests deeper than the stack.
        raise BadResponseError(
            f"{response.request.method} {response.request.url.path}: JSON nested too deeply"
        ) from None


def path_of(url: str | httpx.URL) -> str:
    """The path of a URL, for messages."""
    return httpx.URL(str(url)).path


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _read_bounded(response: httpx.Response, call: _Call) -> httpx.Response:
    """The answer with its body read in full, if that is at most `MAX_ANSWER_BYTES`.

    Only listings, records and error bodies are read whole (content is streamed): an
    answer larger than any of them is a broken or hostile server, refused before it can
    fill the memory. The body comes back as a new, closed response holding it.
    """
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        await response.aclose()
        raise BadResponseError(f"{call.where}: an answer of {int(length)} bytes, more than any listing holds")
    parts: list[bytes] = []
    total = 0
    async for part in response.aiter_bytes():
        total += len(part)
        if total > MAX_ANSWER_BYTES:
            await response.aclose()
            raise BadResponseError(f"{call.where}: an answer of more than {MAX_ANSWER_BYTES} bytes")
        parts.append(part)
    await response.aclose()
    # The body is decoded already: the new response must not decode it again.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(parts),
        request=response.request,
        extensions=response.extensions,
    )


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """The first byte and the whole size of "bytes 100-199/1000" (None where unreadable or `*`)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, whole = value[6:].partition("/")
    try:
        first = int(span.split("-", 1)[0])
    except ValueError:
        first = None
    return first, int(whole) if whole.strip().isdigit() else None


def _check_total(call: _Call, listed: int | None, answered: int | None) -> None:
    """BadResponseError when the answer's whole size is not the one the tracker listed."""
    if listed is not None and answered is not None and answered != listed:
        raise BadResponseError(
            f"{call.where}: the tracker lists the attachment at {listed} bytes, its content has {answered}"
        )


def _register_credentials(headers: Mapping[str, str]) -> None:
    """Mask an Authorization value, and its credentials alone, in everything shown to a user.

    The raw token is masked already; this covers what is derived from it (Basic's base64).
    """
    for name, value in headers.items():
        if name.lower() != "authorization":
            continue
        add_secret(value)
        scheme, _, credentials = value.partition(" ")
        if credentials and scheme.isalpha():
            add_secret(credentials)


class _CertificateRefusedError(UnreachableError):
    """The tracker's TLS certificate was not accepted: asking again cannot change that."""


def _repeatable(exc: TrackerError) -> bool:
    """Whether a failed attempt may be repeated (the mapping below decided what was sent)."""
    if isinstance(exc, OutcomeUnknownError | _CertificateRefusedError):
        return False
    return isinstance(exc, TrackerTimeoutError | UnreachableError | TemporaryError)


def _transport_error(exc: httpx.HTTPError, call: _Call, *, in_body: bool) -> TrackerError:
    """The one mapping of an httpx error of an attempt to a TrackerError.

    Whether the attempt may be repeated follows from the class: a request that never
    reached the tracker, or one that is idempotent, gets a repeatable error; one that
    may have been carried out gets OutcomeUnknownError.
    """
    where = call.where
    if isinstance(exc, httpx.DecodingError):
        return BadResponseError(f"{where}: undecodable body: {exc}")
    if isinstance(exc, httpx.ConnectError):
        kind = _CertificateRefusedError if _cause(exc, ssl.SSLCertVerificationError) else UnreachableError
        return kind(f"{where}: cannot connect to {_host(call)}: {connect_reason(exc)}")
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return TrackerTimeoutError(f"{where}: timed out connecting to {_host(call)}")
    sent = call.sent is None or call.sent.complete
    if in_body:
        what = (
            "the answer was cut short"
            if not isinstance(exc, httpx.TimeoutException)
            else "the answer stalled"
        )
    elif isinstance(exc, httpx.TimeoutException):
        what = "timed out" if not sent else "no answer in time"
    else:
        what = "connection lost"
    reason = f"{what}: {exc}" if str(exc) else what
    if sent and not call.idempotent:
        return OutcomeUnknownError(f"{where}: {reason}; the tracker may have carried it out")
    if isinstance(exc, httpx.TimeoutException):
        return TrackerTimeoutError(f"{where}: {reason}")
    return TemporaryError(f"{where}: {reason}")


def _host(call: _Call) -> str:
    return call.last_request.url.host if call.last_request is not None else "the tracker"


def _cause(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is among the causes (or contexts) of `exc`, itself included."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, from the innermost cause (httpx often says nothing)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    reason = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            hint = UNTRUSTED_HINT if getattr(current, "verify_code", None) in UNTRUSTED_ISSUER else ""
            return (
                f"TLS certificate not accepted: {getattr(current, 'verify_message', None) or current}{hint}"
            )
        if isinstance(current, ssl.SSLError):
            # WRONG_VERSION_NUMBER (an https URL on a plain http port) reads as words.
            code = getattr(current, "reason", None)
            return f"TLS handshake failed: {code.replace('_', ' ').lower() if code else current}"
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        elif str(current) and not reason:
            reason = str(current)
        current = current.__cause__ or current.__context__
    return reason or type(exc).__name__


def _range_source(url: Callable[[str], str], source: str | ContentLocation) -> str:
    """What `honours_range` remembers of a source: a location's key, else its URL's origin."""
    if isinstance(source, ContentLocation):
        return f"location {source.key}"
    parts = urlsplit(url(source))
    return f"{parts.scheme}://{parts.netloc}"


def _origin_text(key: str) -> str:
    """A remembered source for a log line (a location's key names no host)."""
    return "the content host" if key.startswith("location ") else key
