"""JSON responses that survive any string a tracker may hold."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


class AsciiJSONResponse(Response):
    r"""JSON with non-ASCII escaped, so names with lone surrogates (``\udcff``) still encode."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialise ``content``."""
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def discard_body(request: Request) -> None:
    """Read and drop the rest of a request body.

    Answering an upload early without reading it makes the client's send fail with a
    broken pipe before it sees the status; real servers in front of trackers read on.
    """
    try:
        async for _ in request.stream():
            pass
    except RuntimeError:
        # Already consumed (or disconnected): nothing left to read.
        return
