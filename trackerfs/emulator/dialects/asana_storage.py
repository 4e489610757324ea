"""Asana's file storage: S3-style pre-signed URLs on the media origin.

Asana answers ``download_url`` with a pre-signed URL on its storage (Amazon S3) that is
valid for about two minutes. This origin behaves like S3 does for such a URL:

* it takes no credentials: a request carrying ``Authorization`` gets S3's 400
  ``InvalidArgument`` "Only one auth mechanism allowed" (the header's value is never
  echoed, unlike S3, so no token reaches a log);
* an expired URL gets 403 ``AccessDenied`` "Request has expired", a forged or altered one
  403 ``SignatureDoesNotMatch``, an unsigned one 403 ``AccessDenied``, a deleted object 404
  ``NoSuchKey``; error bodies are S3's XML;
* Range is honoured (206, 416 ``InvalidRange``); a malformed Range is ignored (200), as S3
  ignores it; ``ETag`` is the md5, as for an object uploaded in one part.

The signature is the emulator's HMAC (``state.signer``) over the object, the signing time,
the lifetime and the response headers asked for, written in SigV4's query parameters.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trackerfs.emulator.content import MalformedRangeError, blob_response, parse_range
from trackerfs.emulator.store import Attachment

if TYPE_CHECKING:
    from trackerfs.emulator.state import EmulatorState

BUCKET = "asana-user-private-us-east-1"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
CREDENTIAL_KEY = "AKIAEMULATOREXAMPLE"
ONE_AUTH = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
    "string parameter or the Authorization header should be specified"
)


def s3_error(status: int, code: str, message: str, **details: str) -> Response:
    """S3's XML error body."""
    fields = {"Code": code, "Message": message, **details, "RequestId": secrets.token_hex(8).upper()}
    inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'
    return Response(body, status_code=status, media_type="application/xml")


def storage_error(status: int, message: str) -> Response:
    """An S3 error for a status alone (range errors of the shared content code)."""
    codes = {400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey", 416: "InvalidRange"}
    return s3_error(status, codes.get(status, "InternalError"), message)


def _message(blob_name: str, lifetime: int, disposition: str) -> str:
    # The signer adds the expiry, which with the lifetime fixes the signing time too.
    return f"{blob_name}\n{lifetime}\n{disposition}"


def _hex(mac: str) -> str:
    return base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)).hex()


def _mac(signature: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(signature)).rstrip(b"=").decode()


def _disposition(filename: str) -> str:
    # surrogateescape: a stored name may hold undecodable bytes (the seed's DEMO-3 does)
    return f"attachment; filename*=UTF-8''{quote(filename, safe='', errors='surrogateescape')}"


def presigned_url(state: EmulatorState, attachment: Attachment) -> str:
    """A fresh pre-signed URL of ``attachment``'s bytes, valid for ``config.media_ttl``."""
    assert attachment.blob_name is not None
    if state.options.media_base:
        return state.media_location(attachment.blob_name)
    lifetime = int(state.config.media_ttl)
    disposition = _disposition(attachment.filename)
    token = state.signer.sign(_message(attachment.blob_name, lifetime, disposition), lifetime)
    expires_text, _, mac = token.partition(".")
    signed_at = int(expires_text) - lifetime
    stamp = datetime.fromtimestamp(signed_at, UTC)
    query = urlencode(
        {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{CREDENTIAL_KEY}/{stamp:%Y%m%d}/us-east-1/s3/aws4_request",
            "X-Amz-Date": stamp.strftime(AMZ_DATE),
            "X-Amz-Expires": str(lifetime),
            "X-Amz-SignedHeaders": "host",
            "response-content-disposition": disposition,
            "X-Amz-Signature": _hex(mac),
        },
        quote_via=quote,
    )
    return f"{state.media_url}/{BUCKET}/assets/{attachment.blob_name}?{query}"


def storage_routes(state: EmulatorState) -> list[BaseRoute]:
    """Routes of the storage origin."""

    async def get_object(request: Request) -> Response:
        if "authorization" in request.headers:
            return s3_error(400, "InvalidArgument", ONE_AUTH, ArgumentName="Authorization")
        params = request.query_params
        blob_name = request.path_params["blob"]
        try:
            signed_at = int(datetime.strptime(params["X-Amz-Date"], AMZ_DATE).replace(tzinfo=UTC).timestamp())
            lifetime = int(params["X-Amz-Expires"])
            signature = params["X-Amz-Signature"]
            disposition = params["response-content-disposition"]
        except (KeyError, ValueError):
            return s3_error(403, "AccessDenied", "Access Denied")
        expires = signed_at + lifetime
        now = time.time()
        if expires < now:
            return s3_error(
                403,
                "AccessDenied",
                "Request has expired",
                **{"X-Amz-Expires": str(lifetime)},
                Expires=f"{datetime.fromtimestamp(expires, UTC):%Y-%m-%dT%H:%M:%SZ}",
                ServerTime=f"{datetime.fromtimestamp(now, UTC):%Y-%m-%dT%H:%M:%SZ}",
            )
        try:
            token = f"{expires}.{_mac(signature)}"
        except ValueError:
            token = ""
        if not token or not state.signer.verify(_message(blob_name, lifetime, disposition), token):
            message = (
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method."
            )
            return s3_error(403, "SignatureDoesNotMatch", message)
        attachment = state.store.attachment_by_blob(blob_name)
        if attachment is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=f"assets/{blob_name}")
        return _object_response(request, state, attachment, disposition)

    async def not_found(request: Request) -> Response:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")

    return [
        Route(f"/{BUCKET}/assets/{{blob}}", get_object, methods=["GET", "HEAD"]),
        Route("/{rest:path}", not_found),
    ]


def _object_response(
    request: Request, state: EmulatorState, attachment: Attachment, disposition: str
) -> Response:
    ranges = state.config.range_support
    headers = {
        "etag": f'"{attachment.md5}"',
        "last-modified": format_datetime(attachment.created.astimezone(UTC), usegmt=True),
        "content-disposition": disposition,
        "x-amz-request-id": secrets.token_hex(8).upper(),
    }
    header = request.headers.get("range")
    if ranges and header is not None:
        try:
            parse_range(header, state.store.stored_size(attachment))
        except MalformedRangeError:
            # S3 ignores a Range it cannot parse and sends the whole object.
            ranges = False
            headers["accept-ranges"] = "bytes"
        except ValueError:
            pass  # unsatisfiable: blob_response answers 416
    return blob_response(
        request,
        state.store.blob_path(attachment),
        size=state.store.stored_size(attachment),
        media_type=attachment.mime_type,
        range_support=ranges,
        error=storage_error,
        extra_headers=headers,
    )
