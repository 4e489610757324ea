"""The media origin: a second listener (another origin) serving blobs by signed token.

Like Atlassian's media host it takes no credentials: a request that carries an
``Authorization`` header is refused (403), which catches clients that leak the tracker's
credentials across a redirect. A missing, forged or expired token gets 401.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.content import blob_response
from trackerfs.emulator.responses import AsciiJSONResponse
from trackerfs.emulator.state import EmulatorState


def media_error(status: int, message: str) -> Response:
    """The media host's error body."""
    return AsciiJSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def media_routes(state: EmulatorState) -> list[BaseRoute]:
    """Routes of the media origin."""

    async def binary(request: Request) -> Response:
        if "authorization" in request.headers:
            return media_error(403, "Authorization header not allowed on the media origin")
        blob_name = request.path_params["blob"]
        token = request.query_params.get("token", "")
        if not state.signer.verify(blob_name, token):
            return media_error(401, "Missing, invalid or expired token")
        attachment = state.store.attachment_by_blob(blob_name)
        if attachment is None:
            return media_error(404, "File not found")
        return blob_response(
            request,
            state.store.blob_path(attachment),
            size=state.store.stored_size(attachment),
            media_type=attachment.mime_type,
            range_support=state.config.range_support,
            error=media_error,
        )

    async def not_found(request: Request) -> Response:
        return media_error(404, "Not found")

    return [
        Route("/file/{blob}/binary", binary, methods=["GET"]),
        Route("/{rest:path}", not_found),
    ]
