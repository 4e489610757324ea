"""Everything one running emulator holds: store, runtime config, request log, faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trackerfs.emulator.dialects import dialect_class
from trackerfs.emulator.dialects.base import DEFAULT_MEDIA_TTL
from trackerfs.emulator.faults import Faults
from trackerfs.emulator.options import EmulatorOptions
from trackerfs.emulator.store import Store, User, user_for_login

#: The request log keeps this many of the newest entries.
MAX_LOG_ENTRIES = 10_000
#: Whose attachments the token's user may delete: anyone's, only its own, none.
DELETE_RIGHTS = ("all", "own", "none")


@dataclass(slots=True)
class RuntimeConfig:
    """Settings a test may change while the emulator runs (``/_emulator/config``).

    ``switches`` are the dialect's own on/off settings; they appear beside the shared keys.
    """

    page_size: int
    upload_limit: int
    range_support: bool = True
    media_ttl: float = DEFAULT_MEDIA_TTL
    #: the site's attachment switch (Jira's `/attachment/meta` `enabled`)
    attachments_enabled: bool = True
    #: whether the signed-in user may add attachments
    create_attachments: bool = True
    #: whose attachments the signed-in user may delete (DELETE_RIGHTS)
    delete_attachments: str = "all"
    switches: dict[str, bool] = field(default_factory=dict)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial JSON update; raises ValueError on unknown keys or bad types."""
        for key, value in changes.items():
            if key in ("page_size", "upload_limit"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{key} must be a positive integer")
            elif key in ("range_support", "attachments_enabled", "create_attachments"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
            elif key == "delete_attachments":
                if value not in DELETE_RIGHTS:
                    raise ValueError(f"delete_attachments must be one of {', '.join(DELETE_RIGHTS)}")
            elif key == "media_ttl":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ValueError("media_ttl must be a number of seconds")
                setattr(self, key, float(value))
                continue
            elif key in self.switches:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                self.switches[key] = value
                continue
            else:
                raise ValueError(f"unknown config key {key!r}")
            setattr(self, key, value)

    def describe(self) -> dict[str, Any]:
        """The config as JSON."""
        described = asdict(self)
        switches: dict[str, bool] = described.pop("switches")
        return described | switches


class RequestLog:
    """What reached the emulator, in order, for tests to assert on.

    Bounded, so that a long soak cannot grow the emulator without limit: past `limit`
    entries the oldest are dropped (the sequence numbers of those kept show the gap).
    """

    def __init__(self, limit: int = MAX_LOG_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0

    def open_entry(self, **fields: Any) -> dict[str, Any]:
        """Start an entry; the caller completes it (status, bytes_sent) as the response goes."""
        self._seq += 1
        entry: dict[str, Any] = {"seq": self._seq, **fields}
        self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """The entries kept, oldest first."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget all entries (sequence numbers keep increasing)."""
        self._entries.clear()


class MediaSigner:
    """Short-lived HMAC tokens that let the media origin serve a blob without credentials."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _mac(self, blob_name: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{blob_name}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, blob_name: str, ttl: float) -> str:
        """A token for ``blob_name`` valid for ``ttl`` seconds."""
        expires = int(time.time() + ttl)
        return f"{expires}.{self._mac(blob_name, expires)}"

    def verify(self, blob_name: str, token: str) -> bool:
        """Whether ``token`` was issued for ``blob_name`` and has not expired."""
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or int(expires_text) < time.time():
            return False
        return hmac.compare_digest(mac, self._mac(blob_name, int(expires_text)))


class EmulatorState:
    """The mutable state shared by the API app, the media app and the control API."""

    def __init__(self, options: EmulatorOptions, data_dir: Path) -> None:
        self.options = options
        self.token = options.token
        self.dialect_type = dialect_class(options.tracker)
        self.flavour = options.flavour or self.dialect_type.flavours[0]
        if self.flavour not in self.dialect_type.flavours:
            raise ValueError(f"{options.tracker} has no flavour {self.flavour!r}")
        if not options.users:
            raise ValueError("the emulator needs at least one user")
        #: accepted user names → their records; the first owns the token
        self.users: dict[str, User] = {login: user_for_login(login) for login in options.users}
        self.store = Store(data_dir / "blobs", self.dialect_type.format_id)
        self.config = self._initial_config()
        self.log = RequestLog()
        self.faults = Faults()
        self.faults.load(options.faults)
        self.signer = MediaSigner()
        self.upload_dir = data_dir / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        # Known only once the media listener is bound; create_app users may set it.
        self.media_url = "http://media.invalid"
        self.dialect_type.seed(self.store, options.seed)

    def media_location(self, blob_name: str) -> str:
        """Where a content redirect sends the client for ``blob_name``."""
        if self.options.media_base:
            return f"{self.options.media_base.rstrip('/')}/{blob_name}"
        token = self.signer.sign(blob_name, self.config.media_ttl)
        return f"{self.media_url}/file/{blob_name}/binary?token={token}&client=emulator"

    def reset(self) -> None:
        """Back to the start-up seed and fault plan; log and config cleared."""
        self.store.clear()
        self.dialect_type.seed(self.store, self.options.seed)
        self.log.clear()
        self.faults.clear()
        self.faults.load(self.options.faults)
        self.config = self._initial_config()

    def _initial_config(self) -> RuntimeConfig:
        return RuntimeConfig(
            self.options.page_size,
            self.options.upload_limit,
            media_ttl=self.dialect_type.media_ttl,
            switches=dict(self.dialect_type.switches),
        )

    @property
    def token_owner(self) -> User:
        """The user a bearer token belongs to."""
        return next(iter(self.users.values()))
