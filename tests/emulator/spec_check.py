"""Check one emulator response against the vendor's OpenAPI operation it answers."""

from __future__ import annotations

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


def validate(
    openapi: OpenAPI,
    response: httpx.Response,
    path_pattern: str,
    *,
    host: str,
    status: int | None = None,
    content_type: str = "application/json",
) -> None:
    """Raise openapi-core's error when `response` breaks the schema of its operation.

    `host` is the spec's server (the emulator's own is not in the spec), `status`
    validates the body as that status instead (a server that answers 201 where the spec
    says 200), `content_type` is assumed when the response names none.
    """
    request = response.request
    mock_request = MockRequest(
        host,
        request.method.lower(),
        request.url.path,
        path_pattern=path_pattern,
        args=dict(request.url.params),
        headers={"Content-Type": "application/json"},
    )
    mock_response = MockResponse(
        response.content,
        status_code=status or response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("content-type", content_type),
    )
    openapi.validate_response(mock_request, mock_response)
