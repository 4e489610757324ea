"""Checks shared by every backend for JSON that arrives from a server.

A tracker's JSON is untrusted input: a missing field or a wrong type must become a clear
BadResponseError (or a skipped record with a warning), never a KeyError in a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from trackerfs.errors import BadResponseError

log = logging.getLogger(__name__)

#: No attachment is larger: a listed size above it is a tracker's error, not a file.
MAX_ATTACHMENT_SIZE = 1 << 50


def expect_dict(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else BadResponseError."""
    if not isinstance(value, dict):
        raise BadResponseError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def expect_list(value: Any, what: str) -> list[Any]:
    """`value` if it is a JSON array, else BadResponseError."""
    if not isinstance(value, list):
        raise BadResponseError(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def records(items: Iterable[Any], what: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects among `items` that have every `required` key; others are logged, skipped."""
    kept: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and all(item.get(key) not in (None, "") for key in required):
            kept.append(item)
        else:
            log.warning("skipping a malformed %s record from the tracker", what)
    return kept


def attachment_size(value: Any, what: str) -> int:
    """An attachment's byte count as a tracker lists it: a JSON integer from 0 to 1 PiB.

    Anything else (negative, absurd, not a number) is BadResponseError: served as it is,
    it would show a file of no bytes or one no read can finish.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ATTACHMENT_SIZE:
        raise BadResponseError(f"{what}: {str(value)[:40]!r} is not a size in bytes")
    return value


def iso_time(value: Any) -> float:
    """Seconds since the epoch from an ISO 8601 time with `Z` or an offset (0 when missing
    or unreadable: a record's time is for show, never worth refusing the record)."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        log.warning("unparseable time %r", value)
        return 0.0
