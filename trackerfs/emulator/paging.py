"""Paging helpers every dialect shares: slicing a listing and opaque page tokens.

Vendors page by offset (``startAt``, ``offset``), by page number (OpenProject) or by an
opaque token (Jira's ``nextPageToken``, Asana's ``next_page.offset``). The emulator keeps
one offset underneath and encodes it in a token only where the vendor hands one out, so
a client that builds tokens itself or reuses one across queries is caught.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class BadPageTokenError(ValueError):
    """A page token that this emulator did not issue."""


def encode_token(offset: int) -> str:
    """An opaque token for the page starting at ``offset``."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The offset in a token from :func:`encode_token`; raises BadPageTokenError otherwise."""
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))["offset"]
    except (binascii.Error, ValueError, UnicodeError, KeyError, TypeError):
        raise BadPageTokenError(token) from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BadPageTokenError(token)
    return offset


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing: its items, where it starts, and whether more follow."""

    items: list[T]
    start: int
    size: int
    total: int

    @property
    def is_last(self) -> bool:
        """No item follows this page."""
        return self.start + self.size >= self.total

    @property
    def next_start(self) -> int:
        """The offset of the next page."""
        return self.start + self.size


def page_of(items: Sequence[T], start: int, wanted: int, limit: int) -> Page[T]:
    """The page of ``items`` from ``start``: ``wanted`` items, at most ``limit``, at least 1."""
    size = max(1, min(wanted, limit))
    return Page(list(items[start : start + size]), start, size, len(items))
