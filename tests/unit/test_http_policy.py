"""The HTTP policy: what is retried, the deadline of a call, redirects, credentials, errors."""

from __future__ import annotations

import base64
import errno
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trustme

from trackerfs.backends.http import (
    MAX_ANSWER_BYTES,
    Answer,
    AnswerClassifier,
    ContentLocation,
    Credentials,
    HttpClient,
    RetryPolicy,
    connect_reason,
    describe_generic_error,
    error_for_status,
    loggable,
    origin_of,
    parse_retry_after,
    tls_context,
    wide_read_transport,
)
from trackerfs.backends.jira import classify_answer as jira_answer
from trackerfs.config import SecretSource
from trackerfs.errors import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    NotFoundError,
    NotPermittedError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitedError,
    TemporaryError,
    TooLargeError,
    TrackerError,
    TrackerTimeoutError,
)
from trackerfs.logsetup import MASK, add_secret


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_waits_grow_and_respect_retry_after() -> None:
    policy = RetryPolicy(backoff=1.0, max_wait=8.0, max_retry_after=30.0)
    assert [policy.wait(n, None, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.wait(1, None, lambda: 0.0) == 0.5
    assert policy.wait(1, 20.0, lambda: 0.0) == 20.0
    assert policy.wait(1, 120.0, lambda: 0.0) == 30.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (410, NotFoundError),
        (413, TooLargeError),
        (429, RateLimitedError),
        (503, TemporaryError),
    ],
)
def test_status_maps_to_error(status: int, kind: type) -> None:
    assert type(error_for_status(status, "x")) is kind


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://jira.example.com/rest/api/3/myself", True),
        ("https://jira.example.com:443/x", True),
        ("https://media.example.com/file", False),
        ("http://jira.example.com/x", False),
        ("https://jira.example.com:8443/x", False),
    ],
)
async def test_credentials_and_api_headers_go_only_to_the_trackers_origin(url: str, sent: bool) -> None:
    script = Script(httpx.Response(200, content=b"ok"))
    client = HttpClient(
        "https://jira.example.com/base",
        credentials={"Authorization": "Basic s3cret"},
        headers={"X-Org-ID": "42"},
        transport=script,
    )
    await client.request("GET", url)
    headers = script.requests[0].headers
    assert ("Authorization" in headers, "X-Org-ID" in headers) == (sent, sent)


def test_foreign_urls_lose_their_query_in_logs() -> None:
    own = origin_of("https://jira.example.com")
    assert loggable("https://media.example.com/f/1?token=SECRET", own) == "https://media.example.com/f/1?…"
    assert loggable("https://jira.example.com/a?b=1", own) == "https://jira.example.com/a?b=1"


def test_error_messages_come_from_any_body_shape() -> None:
    def message(body: object) -> str:
        return describe_generic_error(httpx.Response(400, json=body))

    assert message({"errorMessages": ["Issue does not exist"], "errors": {}}) == "Issue does not exist"
    assert message({"errors": {"file": "too big"}}) == "file: too big"
    assert message({"detail": "Not found."}) == "Not found."
    assert message(["a", "b"]) == "a; b"
    assert describe_generic_error(httpx.Response(502, text="<html>bad gateway</html>")) == "Bad Gateway"


# -- one attempt = the request and its whole body; what is repeated ----------------------

BODY = b"x" * 100


class CutStream(httpx.AsyncByteStream):
    """A body that stops halfway although Content-Length announced all of it."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield BODY[:50]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def cut_answer() -> httpx.Response:
    return httpx.Response(200, headers={"Content-Length": str(len(BODY))}, stream=CutStream())


class Script(httpx.AsyncBaseTransport):
    """Answers each request with the next step (the last one repeats): an answer, a maker of
    one, or an exception to raise.

    `consume` says whether the request body is read before the step is taken (a request
    whose body was never read never reached the server).
    """

    def __init__(
        self, *steps: httpx.Response | Exception | Callable[[], httpx.Response], consume: bool = True
    ) -> None:
        self.steps = list(steps)
        self.consume = consume
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.consume:
            async for _ in request.stream:  # type: ignore[union-attr]
                pass
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step if isinstance(step, httpx.Response) else step()


class FakeClock:
    """Time that moves only when a test (or a sleep) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(
    transport: httpx.AsyncBaseTransport, clock: FakeClock | None = None, **options: Any
) -> HttpClient:
    clock = clock or FakeClock()
    options.setdefault("credentials", {"Authorization": "Bearer s3cret-token"})
    return HttpClient(
        "https://jira.example.com",
        transport=transport,
        sleep=clock.sleep,
        clock=clock,
        rand=lambda: 0.0,
        **options,
    )


async def test_a_get_whose_body_is_cut_short_is_retried() -> None:
    script = Script(cut_answer, httpx.Response(200, content=BODY))
    response = await client_for(script).request("GET", "/rest/api/3/myself")
    assert response.content == BODY
    assert len(script.requests) == 2


async def test_a_body_cut_on_every_attempt_is_one_tracker_error() -> None:
    script = Script(cut_answer)
    with pytest.raises(TemporaryError, match="cut short") as caught:
        await client_for(script).get_json("/rest/api/3/search/jql")
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert len(script.requests) == RetryPolicy().attempts


async def test_a_post_whose_answer_is_cut_is_not_repeated() -> None:
    script = Script(cut_answer, httpx.Response(200, content=BODY))
    with pytest.raises(OutcomeUnknownError, match="cut short"):
        await client_for(script).request("POST", "/rest/api/3/issue/X-1/attachments", json={})
    assert len(script.requests) == 1


async def test_a_post_declared_idempotent_is_retried() -> None:
    script = Script(cut_answer, httpx.Response(200, content=BODY))
    response = await client_for(script).request("POST", "/search", json={"q": 1}, idempotent=True)
    assert response.content == BODY
    assert len(script.requests) == 2


async def test_a_delete_declared_not_idempotent_is_not_repeated() -> None:
    script = Script(httpx.ReadError("connection reset by peer"), httpx.Response(204))
    with pytest.raises(OutcomeUnknownError):
        await client_for(script).request("DELETE", "/attachment/1", idempotent=False)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "lost",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
    ],
)
async def test_a_post_sent_in_full_whose_answer_is_lost_is_outcome_unknown(lost: Exception) -> None:
    script = Script(lost, httpx.Response(200, content=BODY))
    with pytest.raises(OutcomeUnknownError):
        await client_for(script).request("POST", "/upload", json={"a": 1})
    assert len(script.requests) == 1


async def test_a_post_that_never_went_out_in_full_is_repeated() -> None:
    script = Script(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(200, content=BODY),
        consume=False,
    )
    response = await client_for(script).request("POST", "/upload", json={"a": 1})
    assert response.content == BODY
    assert len(script.requests) == 2


async def test_a_post_that_could_not_connect_is_repeated() -> None:
    script = Script(httpx.ConnectError("connection refused"), httpx.Response(200, content=BODY))
    assert (await client_for(script).request("POST", "/upload", json={})).content == BODY


# -- the deadline of one call --------------------------------------------------------------


class Stalled(httpx.AsyncBaseTransport):
    """A tracker that never answers: each attempt uses up its whole read timeout."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.timeouts: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]["read"]
        self.timeouts.append(timeout)
        self.clock.now += timeout
        raise httpx.ReadTimeout("timed out")


async def test_the_deadline_bounds_all_attempts_of_a_call() -> None:
    clock = FakeClock()
    stalled = Stalled(clock)
    client = client_for(stalled, clock, timeout=1.5, deadline=2.0)
    started = clock.now
    with pytest.raises(TrackerTimeoutError) as caught:
        await client.request("GET", "/attachment/content/1")
    assert caught.value.errno == errno.ETIMEDOUT
    # 1.5 s, a 0.125 s wait, then only what is left of the 2 s; no third attempt.
    assert stalled.timeouts == [1.5, pytest.approx(0.375)]
    assert clock.now - started == pytest.approx(2.0)


async def test_a_wait_past_the_deadline_is_not_started() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(503, headers={"Retry-After": "20"}))
    with pytest.raises(TemporaryError):
        await client_for(script, clock, deadline=10.0).request("GET", "/x")
    assert len(script.requests) == 1 and clock.sleeps == []


class Slow(httpx.AsyncBaseTransport):
    """An upload whose bytes keep flowing for longer than the deadline, then succeeds."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async for _ in request.stream:  # type: ignore[union-attr]
            self.clock.now += 100.0
        return httpx.Response(200, json=[{"id": "1"}])


async def test_an_attempt_under_way_is_not_cut_by_the_deadline() -> None:
    clock = FakeClock()
    response = await client_for(Slow(clock), clock, deadline=5.0).request("POST", "/upload", json={"a": 1})
    assert response.json() == [{"id": "1"}]


# -- redirects answered to changes ----------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_answered_to_a_change_is_an_error(method: str, status: int) -> None:
    script = Script(
        httpx.Response(status, headers={"Location": "https://elsewhere.example.org:8443/x?sig=1"})
    )
    with pytest.raises(BadResponseError, match=f"{status}.*https://elsewhere.example.org:8443") as caught:
        await client_for(script).request(method, "/attachment/1")
    assert "sig=1" not in str(caught.value)
    assert [r.url.host for r in script.requests] == ["jira.example.com"]


async def test_a_get_still_follows_redirects_without_credentials() -> None:
    script = Script(
        httpx.Response(303, headers={"Location": "https://media.example.com/f?sig=1"}),
        httpx.Response(200, content=b"bytes"),
    )
    assert (await client_for(script).request("GET", "/attachment/content/1")).content == b"bytes"
    assert "Authorization" in script.requests[0].headers
    assert "Authorization" not in script.requests[1].headers


# -- at most max_concurrency requests in flight ---------------------------------------------


class Gate(httpx.AsyncBaseTransport):
    """Holds every request until released, counting how many are in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.release = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, content=b"ok")


async def test_at_most_max_concurrency_requests_are_in_flight() -> None:
    gate = Gate()
    client = HttpClient("https://jira.example.com", credentials={}, transport=gate, max_concurrency=2)
    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(client.request, "GET", f"/x/{n}")
        await trio.testing.wait_all_tasks_blocked()
        assert gate.in_flight == 2
        gate.release.set()
    assert gate.most == 2


# -- secrets and reasons in messages ---------------------------------------------------------


async def test_an_error_body_that_echoes_the_credentials_is_masked() -> None:
    add_secret("s3cret-token")
    encoded = base64.b64encode(b"me@example.com:s3cret-token").decode()
    script = Script(httpx.Response(401, json={"errorMessages": [f"bad token s3cret-token ({encoded})"]}))
    client = HttpClient(
        "https://jira.example.com", credentials={"Authorization": f"Basic {encoded}"}, transport=script
    )
    with pytest.raises(AuthenticationError) as caught:
        await client.request("GET", "/myself")
    assert "s3cret-token" not in str(caught.value) and encoded not in str(caught.value)
    assert MASK in str(caught.value)


def test_a_tls_failure_names_its_reason() -> None:
    try:
        try:
            raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("") from inner
    except httpx.ConnectError as exc:
        assert connect_reason(exc).startswith("TLS handshake failed: ")
    assert connect_reason(httpx.ConnectError("", request=None)) == "ConnectError"


async def test_a_read_that_ran_out_of_time_is_not_waited_for_twice_at_once() -> None:
    clock = FakeClock()
    stalled = Stalled(clock)
    client = client_for(stalled, clock, timeout=1.5, deadline=2.0)
    with pytest.raises(TrackerTimeoutError):
        await client.request("GET", "/attachment/content/1", headers={"Range": "bytes=0-131071"})
    asked = len(stalled.timeouts)
    # The kernel's immediate repeat of the failed read (one page) fails at once...
    with pytest.raises(TrackerTimeoutError):
        await client.request("GET", "/attachment/content/1", headers={"Range": "bytes=0-4095"})
    assert len(stalled.timeouts) == asked
    # ...once: the next read asks the tracker again.
    with pytest.raises(TrackerTimeoutError):
        await client.request("GET", "/attachment/content/1")
    assert len(stalled.timeouts) == 2 * asked


# -- content that expires or moves -----------------------------------------------------------

SIGNED = "https://media.example.com/file/1?token="


class Router(httpx.MockTransport):
    """httpx's MockTransport answering with `route(request)`, keeping every request it saw."""

    def __init__(self, route: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return route(request)

        super().__init__(handle)

    def hosts(self) -> list[str]:
        return [request.url.host for request in self.requests]


class SignedMedia:
    """A tracker that redirects content to a media host whose signed URLs expire.

    Each redirect signs a new token; the media host takes only tokens not yet expired.
    """

    def __init__(self) -> None:
        self.issued = 0
        self.valid: set[str] = set()

    def sign(self) -> str:
        self.issued += 1
        token = f"t{self.issued}"
        self.valid.add(token)
        return token

    def expire_all(self) -> None:
        self.valid.clear()

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "jira.example.com":
            return httpx.Response(303, headers={"Location": SIGNED + self.sign()})
        if "Authorization" in request.headers:
            return httpx.Response(403, json={"error": "credentials on the media host"})
        if request.url.params.get("token") not in self.valid:
            return httpx.Response(401, json={"error": "expired token"})
        return httpx.Response(
            206, headers={"Content-Range": "bytes 0-4/5"}, stream=httpx.ByteStream(b"bytes")
        )


async def read_range(client: HttpClient, source: Any) -> bytes:
    async with client.stream_range(source, 0, 5) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def test_a_redirect_target_is_reused_for_the_backends_ttl_only() -> None:
    media = SignedMedia()
    router = Router(media.route)
    clock = FakeClock()
    client = client_for(router, clock, location_ttl=30.0)
    assert await read_range(client, "/attachment/content/1") == b"bytes"
    assert await read_range(client, "/attachment/content/1") == b"bytes"
    assert router.hosts() == ["jira.example.com", "media.example.com", "media.example.com"]
    clock.now += 31
    assert await read_range(client, "/attachment/content/1") == b"bytes"
    assert router.hosts()[3:] == ["jira.example.com", "media.example.com"]


async def test_without_a_location_ttl_every_read_asks_the_tracker() -> None:
    media = SignedMedia()
    router = Router(media.route)
    client = client_for(router)
    for _ in range(2):
        assert await read_range(client, "/attachment/content/1") == b"bytes"
    assert router.hosts() == ["jira.example.com", "media.example.com"] * 2


@pytest.mark.parametrize("status", [401, 403, 404, 410])
async def test_an_expired_target_is_asked_for_again_once(status: int) -> None:
    media = SignedMedia()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "media.example.com" and request.url.params.get("token") not in media.valid:
            return httpx.Response(status)
        return media.route(request)

    router = Router(route)
    client = client_for(router, location_ttl=30.0)
    assert await read_range(client, "/attachment/content/1") == b"bytes"
    media.expire_all()
    assert await read_range(client, "/attachment/content/1") == b"bytes"
    assert router.hosts()[2:] == ["media.example.com", "jira.example.com", "media.example.com"]
    assert all("Authorization" not in r.headers for r in router.requests if r.url.host != "jira.example.com")


async def test_a_foreign_origin_that_keeps_refusing_gets_one_fresh_location() -> None:
    router = Router(
        lambda request: (
            httpx.Response(303, headers={"Location": SIGNED + "x"})
            if request.url.host == "jira.example.com"
            else httpx.Response(403, json={"error": "no"})
        )
    )
    with pytest.raises(PermissionDeniedError):
        await read_range(client_for(router, location_ttl=30.0), "/attachment/content/1")
    assert router.hosts() == ["jira.example.com", "media.example.com"] * 2


class DownloadUrls:
    """An Asana-like tracker: the attachment record names a signed URL on another host."""

    def __init__(self) -> None:
        self.media = SignedMedia()

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "jira.example.com":
            return httpx.Response(200, json={"data": {"download_url": SIGNED + self.media.sign()}})
        return self.media.route(request)


def download_url_of(client: HttpClient, gid: str) -> ContentLocation:
    async def resolve() -> str:
        record = await client.get_json(f"/api/1.0/attachments/{gid}", params={"opt_fields": "download_url"})
        return str(record["data"]["download_url"])

    return ContentLocation(f"attachment {gid}", resolve)


async def test_a_content_location_is_resolved_on_demand_and_again_when_it_expired() -> None:
    tracker = DownloadUrls()
    router = Router(tracker.route)
    client = client_for(router, location_ttl=100.0)
    location = download_url_of(client, "1201")
    assert await read_range(client, location) == b"bytes"
    assert await read_range(client, location) == b"bytes"
    assert router.hosts() == ["jira.example.com", "media.example.com", "media.example.com"]
    tracker.media.expire_all()
    assert await read_range(client, location) == b"bytes"
    assert router.hosts()[3:] == ["media.example.com", "jira.example.com", "media.example.com"]
    for request in router.requests:
        assert ("Authorization" in request.headers) == (request.url.host == "jira.example.com")


async def test_resolving_a_location_needs_no_second_connection_place() -> None:
    tracker = DownloadUrls()
    client = client_for(Router(tracker.route), location_ttl=100.0, max_concurrency=1)
    with trio.fail_after(10):  # a resolve waiting for the place its own read holds never ends
        assert await read_range(client, download_url_of(client, "1201")) == b"bytes"


def test_a_vendor_url_moves_onto_the_trackers_own_origin() -> None:
    client = HttpClient("https://jira.example.com/jira", credentials={})
    assert (
        client.on_own_origin("http://jira-internal:8080/jira/secure/attachment/7/a%20b.pdf")
        == "https://jira.example.com/jira/secure/attachment/7/a%20b.pdf"
    )
    assert (
        client.on_own_origin("http://10.0.0.5/secure/attachment/7/x?v=2")
        == "https://jira.example.com/jira/secure/attachment/7/x?v=2"
    )
    assert (
        HttpClient("https://h.example", credentials={}).on_own_origin("http://i/a/b")
        == "https://h.example/a/b"
    )


# -- what a vendor's answers mean --------------------------------------------------------------


def waldur_like(answer: Answer) -> TrackerError | None:
    """Waldur refuses a delete its support backend does not allow with a bare JSON list."""
    if answer.status == 400 and answer.json() == ["Destroying is not available."]:
        return NotPermittedError(answer.message, status=400)
    return None


def openproject_like(answer: Answer) -> TrackerError | None:
    """OpenProject says "too large" as a 422 constraint violation."""
    body = answer.json()
    if answer.status == 422 and isinstance(body, dict) and "File is too large" in str(body.get("message")):
        return TooLargeError(answer.message, status=422)
    return None


@pytest.mark.parametrize(
    ("classify", "answer", "kind", "code"),
    [
        (
            waldur_like,
            httpx.Response(400, json=["Destroying is not available."]),
            NotPermittedError,
            errno.EPERM,
        ),
        (
            waldur_like,
            httpx.Response(400, json={"issue": ["Invalid hyperlink"]}),
            BadRequestError,
            errno.EINVAL,
        ),
        (
            openproject_like,
            httpx.Response(
                422,
                json={
                    "_type": "Error",
                    "errorIdentifier": "urn:openproject-org:api:v3:errors:PropertyConstraintViolation",
                    "message": "File is too large (maximum size is 5242880 Bytes).",
                },
            ),
            TooLargeError,
            errno.EFBIG,
        ),
        (
            openproject_like,
            httpx.Response(422, json={"message": "Subject can't be blank."}),
            BadRequestError,
            errno.EINVAL,
        ),
    ],
)
async def test_a_backend_classifies_its_vendors_error_bodies(
    classify: AnswerClassifier, answer: httpx.Response, kind: type[TrackerError], code: int
) -> None:
    router = Router(lambda request: answer)
    with pytest.raises(TrackerError) as caught:
        await client_for(router, classify=classify).request("DELETE", "/api/support-attachments/ab12/")
    assert type(caught.value) is kind and caught.value.errno == code
    assert str(caught.value).startswith(
        f"DELETE https://jira.example.com/api/support-attachments/ab12/: {answer.status_code} "
    )
    assert len(router.requests) == 1


async def test_a_classified_error_is_retried_only_when_it_is_temporary() -> None:
    def maintenance(answer: Answer) -> TrackerError | None:
        return NotPermittedError(answer.message, status=503) if answer.status == 503 else None

    script = Script(httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, content=b"ok"))
    with pytest.raises(NotPermittedError):
        await client_for(script, classify=maintenance).request("GET", "/x")
    assert len(script.requests) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_jiras_login_page_redirect_is_refused_credentials(method: str) -> None:
    script = Script(
        httpx.Response(302, headers={"Location": "/login.jsp?permissionViolation=true&os_destination=x"})
    )
    with pytest.raises(AuthenticationError, match="login page") as caught:
        await client_for(script, classify=jira_answer).request(method, "/rest/api/2/myself")
    assert caught.value.errno == errno.EACCES
    assert len(script.requests) == 1, "the login page itself is never fetched"


async def test_jiras_anonymous_200_after_a_refused_login_is_refused_credentials() -> None:
    script = Script(httpx.Response(200, headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"}, json={}))
    with pytest.raises(AuthenticationError, match="refused"):
        await client_for(script, classify=jira_answer).request("GET", "/rest/api/2/myself")
    script = Script(httpx.Response(200, headers={"X-Seraph-LoginReason": "OK"}, json={"name": "me"}))
    assert (await client_for(script, classify=jira_answer).get_json("/rest/api/2/myself")) == {"name": "me"}


async def test_jiras_413_says_which_limits_it_stands_for() -> None:
    script = Script(httpx.Response(413, json={"errorMessages": ["too big"]}))
    with pytest.raises(TooLargeError, match=r"too big.*limit"):
        await client_for(script, classify=jira_answer).request("POST", "/rest/api/3/issue/A-1/attachments")


# -- credentials that expire -------------------------------------------------------------------


class Rotating(Credentials):
    """Credentials whose token a renewal replaces with the next one."""

    def __init__(self, *tokens: str) -> None:
        super().__init__({"Authorization": f"Bearer {tokens[0]}"})
        self.tokens = list(tokens[1:])
        self.asked = 0

    async def headers(self) -> Mapping[str, str]:
        self.asked += 1
        return await super().headers()

    async def renew(self, refused: Mapping[str, str]) -> bool:
        if not self.tokens:
            return False
        self._headers = {"Authorization": f"Bearer {self.tokens.pop(0)}"}
        return True


async def test_credentials_are_asked_before_each_request_and_renewed_once_after_a_401() -> None:
    credentials = Rotating("old-iam-token", "new-iam-token", "newer-iam-token")
    script = Script(httpx.Response(401, json={"message": "expired"}), httpx.Response(200, json={"ok": 1}))
    client = client_for(script, credentials=credentials)
    assert await client.get_json("/v2/myself") == {"ok": 1}
    assert [r.headers["Authorization"] for r in script.requests] == [
        "Bearer old-iam-token",
        "Bearer new-iam-token",
    ]
    assert credentials.asked == 2
    script.steps = [httpx.Response(401, json={"message": "expired"})]
    with pytest.raises(AuthenticationError):
        await client.get_json("/v2/myself")
    assert len(script.requests) == 4, "one renewal per call, then the 401 stands"


async def test_a_401_with_fixed_credentials_is_not_repeated() -> None:
    script = Script(httpx.Response(401, json={"message": "no"}), httpx.Response(200))
    with pytest.raises(AuthenticationError):
        await client_for(script).request("POST", "/upload", json={})
    assert len(script.requests) == 1


async def test_a_401_from_a_foreign_origin_never_renews_credentials() -> None:
    credentials = Rotating("a-token-1234", "b-token-1234")
    router = Router(
        lambda request: (
            httpx.Response(303, headers={"Location": SIGNED + "x"})
            if request.url.host == "jira.example.com"
            else httpx.Response(401)
        )
    )
    with pytest.raises(AuthenticationError):
        await read_range(client_for(router, credentials=credentials), "/attachment/content/1")
    assert credentials.tokens == ["b-token-1234"]


async def test_a_token_command_is_run_again_after_a_401(tmp_path: Path) -> None:
    current = tmp_path / "token"
    current.write_text("first-iam-token\n")
    secret = SecretSource("command", f"cat {current}")
    credentials = Credentials.from_secret(secret, lambda token: {"Authorization": f"Bearer {token}"})
    current.write_text("second-iam-token\n")
    script = Script(
        httpx.Response(401, json={"message": "token first-iam-token expired"}),
        httpx.Response(401, json={"message": "token second-iam-token refused"}),
    )
    with pytest.raises(AuthenticationError) as caught:
        await client_for(script, credentials=credentials).request("GET", "/v2/myself")
    assert [r.headers["Authorization"] for r in script.requests] == [
        "Bearer first-iam-token",
        "Bearer second-iam-token",
    ]
    assert "second-iam-token" not in str(caught.value), "a renewed token is masked like the first"


# -- TLS ------------------------------------------------------------------------------------


def test_the_fast_read_transport_verifies_with_the_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = tls_context(ca_file)
    subjects = [dict(item[0] for item in cert["subject"]) for cert in context.get_ca_certs()]
    assert any("trustme" in subject.get("organizationName", "") for subject in subjects)
    transport = wide_read_transport(httpx.Limits(), context)
    assert transport._pool._ssl_context is context


def certificate_refused() -> httpx.ConnectError:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLCertVerificationError as inner:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from inner
    except httpx.ConnectError as exc:
        return exc


async def test_a_refused_certificate_is_not_asked_again() -> None:
    script = Script(certificate_refused(), httpx.Response(200))
    with pytest.raises(TrackerError, match="TLS certificate not accepted") as caught:
        await client_for(script).request("GET", "/rest/api/3/myself")
    assert caught.value.errno == errno.EHOSTUNREACH
    assert len(script.requests) == 1


async def test_concurrent_401s_read_an_unchanged_token_source_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = f"sh -c 'echo run >> {runs}; echo same-iam-token'"
    credentials = Credentials.from_secret(
        SecretSource("command", command), lambda token: {"Authorization": f"Bearer {token}"}
    )
    client = client_for(Script(httpx.Response(401, json={"message": "expired"})), credentials=credentials)

    async def refused() -> None:
        with pytest.raises(AuthenticationError):
            await client.request("GET", "/v2/myself")

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(refused)
    assert runs.read_text().count("run") == 2, "once at start, once for all five 401s"


class EndlessBody(httpx.AsyncByteStream):
    """A chunked body that never ends (no Content-Length): a hostile or broken server."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"[" * (1 << 20)
        while True:
            self.sent += len(chunk)
            yield chunk


async def test_an_answer_larger_than_any_listing_is_refused_before_it_fills_the_memory() -> None:
    endless = EndlessBody()
    script = Script(lambda: httpx.Response(200, stream=endless))
    with pytest.raises(BadResponseError, match="an answer of more than"):
        await client_for(script).get_json("/rest/api/3/search/jql")
    assert endless.sent <= MAX_ANSWER_BYTES + (1 << 20)
    announced = Script(httpx.Response(200, headers={"Content-Length": str(1 << 40)}, content=b""))
    with pytest.raises(BadResponseError, match=f"an answer of {1 << 40} bytes"):
        await client_for(announced).get_json("/rest/api/3/search/jql")


async def test_a_read_answer_keeps_its_status_headers_and_json() -> None:
    script = Script(httpx.Response(201, headers={"X-Result-Count": "3"}, json={"id": "7"}))
    response = await client_for(script).request("POST", "/rest/api/3/issue/X-1/attachments", json={})
    assert response.status_code == 201 and response.headers["X-Result-Count"] == "3"
    assert response.json() == {"id": "7"}
