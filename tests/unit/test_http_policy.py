"""The HTTP policy: retry waits, Retry-After, credentials only to the tracker's origin."""

from __future__ import annotations

import httpx
import pytest

from trackerfs.backends.http import (
    HttpClient,
    RetryPolicy,
    describe_generic_error,
    error_for_status,
    loggable,
    origin_of,
    parse_retry_after,
)
from trackerfs.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    TemporaryError,
    TooLargeError,
)


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
