"""The HTTP policy: what is retried, the deadline of a call, redirects, credentials, errors."""

from __future__ import annotations

import base64
import errno
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trackerfs.backends.http import (
    HttpClient,
    RetryPolicy,
    connect_reason,
    describe_generic_error,
    error_for_status,
    loggable,
    origin_of,
    parse_retry_after,
)
from trackerfs.errors import (
    AuthenticationError,
    BadResponseError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitedError,
    TemporaryError,
    TooLargeError,
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


def test_credentials_go_only_to_the_trackers_origin() -> None:
    client = HttpClient("https://jira.example.com/base", auth_headers={"Authorization": "Basic s3cret"})
    assert client._headers_for("https://jira.example.com/rest/api/3/myself", None)["Authorization"]
    assert client._headers_for("https://jira.example.com:443/x", None)["Authorization"]
    for other in (
        "https://media.example.com/file",
        "http://jira.example.com/x",
        "https://jira.example.com:8443/x",
    ):
        assert "Authorization" not in client._headers_for(other, None), other


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
    return HttpClient(
        "https://jira.example.com",
        auth_headers={"Authorization": "Bearer s3cret-token"},
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
    client = HttpClient("https://jira.example.com", auth_headers={}, transport=gate, max_concurrency=2)
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
        "https://jira.example.com", auth_headers={"Authorization": f"Basic {encoded}"}, transport=script
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
