"""The interface every vendor dialect implements, and what dialects share about auth.

A dialect is one vendor's API over the shared state (store, config, media signer). The
shared core (server, middleware, control API, media origin, seeds) asks it only what
this class declares; everything else about the vendor stays in its module.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from trackerfs.emulator.content import blob_response
from trackerfs.emulator.seed import apply_seed
from trackerfs.emulator.store import Attachment, Issue, Kind, Store, User

#: How long a signed content URL lives unless the dialect or ``/_emulator/config`` says otherwise.
DEFAULT_MEDIA_TTL = 300.0

if TYPE_CHECKING:
    from trackerfs.emulator.state import EmulatorState


class Dialect(ABC):
    """One vendor's API: its routes, credentials, error body, ids and upload rules."""

    #: the name ``--tracker`` selects (the backend module's name)
    name: ClassVar[str]
    #: the ``--flavour`` values this vendor knows; the first is the default
    flavours: ClassVar[tuple[str, ...]] = ("default",)
    #: request headers the request log keeps for this vendor, besides the shared ones
    logged_headers: ClassVar[tuple[str, ...]] = ()
    #: whether the vendor's content endpoints honour Range at all (Waldur's do not)
    range_support: ClassVar[bool] = True
    #: on/off switches of this vendor's behaviour, settable through ``/_emulator/config``
    switches: ClassVar[Mapping[str, bool]] = {}
    #: seconds a signed content URL stays valid by default (Asana's: two minutes)
    media_ttl: ClassVar[float] = DEFAULT_MEDIA_TTL

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    @staticmethod
    @abstractmethod
    def format_id(kind: Kind, serial: int) -> str:
        """The vendor's id for the ``serial``-th record of the store (unique across kinds)."""

    @staticmethod
    @abstractmethod
    def error_response(status: int, message: str) -> Response:
        """The vendor's error body with ``status`` (also used for injected faults)."""

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """Every route of the vendor API."""

    @abstractmethod
    def authenticate(self, request: Request) -> User | None:
        """The user whose valid credentials the request carries, else ``None``."""

    @classmethod
    def seed(cls, store: Store, name: str) -> None:
        """Load seed ``name``: the shared one, which a vendor may extend with its own records
        (workspaces, blank keys, comments, link attachments) after calling this."""
        apply_seed(store, name)

    def media_routes(self) -> list[BaseRoute] | None:
        """The media origin's routes where the vendor's storage is not the shared media host
        (Asana's S3-style pre-signed URLs); ``None`` serves the shared one."""
        return None

    def upload_name(self, issue: Issue, requested: str) -> str:
        """The name the tracker stores an upload under (Waldur sanitises and dedupes)."""
        return requested

    def serve_attachment(
        self,
        request: Request,
        attachment: Attachment,
        *,
        media_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An attachment's bytes, Range as this vendor honours it, errors in its body."""
        return blob_response(
            request,
            self.state.store.blob_path(attachment),
            size=self.state.store.stored_size(attachment),
            media_type=media_type or attachment.mime_type or "application/octet-stream",
            range_support=self.serves_ranges(),
            error=self.error_response,
            extra_headers=headers,
        )

    def serves_ranges(self) -> bool:
        """Whether content answers honour Range now (the vendor's rule and the test switch)."""
        return self.range_support and self.state.config.range_support

    def switch(self, name: str) -> bool:
        """The current value of one of this dialect's ``switches``."""
        return self.state.config.switches[name]


#: Django's storage names: at most this many characters (FileField's default max_length).
STORED_NAME_MAX = 100
SUFFIX_ALPHABET = string.ascii_letters + string.digits


def stored_file_name(requested: str, taken: Collection[str]) -> str:
    r"""The name a Django file storage (Waldur's) keeps an upload under.

    Spaces become ``_`` and characters outside ``[-\w.]`` are dropped
    (``get_valid_filename``); a name already ``taken`` gets ``_`` and 7 random letters
    before its extension, and a long name is cut to 100 characters, extension kept
    (``get_available_name``).
    """
    cleaned = re.sub(r"(?u)[^-\w.]", "", requested.strip().replace(" ", "_")) or "file"
    stem, dot, extension = cleaned.rpartition(".")
    if not dot or not stem:
        stem, extension = cleaned, ""
    tail = f".{extension}" if extension else ""
    name = _fit(stem, tail)
    while name in taken:
        suffix = "_" + "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(7))
        name = _fit(stem, suffix + tail)
    return name


def _fit(stem: str, tail: str) -> str:
    return stem[: max(1, STORED_NAME_MAX - len(tail))] + tail


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """``(user, password)`` of an HTTP Basic ``Authorization`` header, else ``None``."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(request: Request, scheme: str = "bearer") -> str | None:
    """The token of an ``Authorization: <scheme> TOKEN`` header (Bearer, OAuth), else ``None``."""
    given, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if given.lower() == scheme.lower() else None
