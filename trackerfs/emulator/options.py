"""Start-up options of the emulator (what the command line sets)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN_ENV = "TRACKERFS_EMULATOR_TOKEN"
DEFAULT_PAGE_SIZE = 50
DEFAULT_UPLOAD_LIMIT = 100 * 1024 * 1024
#: The users whose credentials the emulator accepts unless ``--user`` says otherwise: the
#: ones the tests, the benchmarks and ``trackerfs demo`` sign in as. The first owns the token.
DEFAULT_USERS = ("tester@example.com", "other@example.com", "demo@example.com", "bench@example.com")


def resolve_token(explicit: str | None) -> str:
    """The API token: the explicit one, else the environment's, else a fresh random one."""
    return explicit or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class EmulatorOptions:
    """How to start an emulator; ``port=0`` means any free port.

    ``flavour`` ``None`` is the dialect's default flavour; ``users`` are the accepted
    user names (the first is the one a bearer token belongs to); ``org_id`` ``None`` is
    the dialect's default organisation (Yandex Tracker's ``X-Org-ID``).
    """

    tracker: str = "jira"
    flavour: str | None = None
    org_id: str | None = None
    users: tuple[str, ...] = DEFAULT_USERS
    host: str = "127.0.0.1"
    port: int = 0
    media_port: int = 0
    seed: str = "demo"
    token: str = field(default_factory=lambda: resolve_token(None))
    page_size: int = DEFAULT_PAGE_SIZE
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    data_dir: Path | None = None
    media_base: str | None = None
    #: the fault plan in force from the start (and after a reset): JSON rules
    faults: tuple[Any, ...] = ()
