"""Checks shared by every backend for JSON that arrives from a server.

A tracker's JSON is untrusted input: a missing field or a wrong type must become a clear
BadResponseError (or a skipped record with a warning), never a KeyError in a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from trackerfs.config import Profile
from trackerfs.errors import BadResponseError, ConfigError

log = logging.getLogger(__name__)

#: How a user reads the type an option wants.
TYPE_NAMES: dict[type, str] = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
}


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


def option(profile: Profile, key: str, default: Any, *, choices: Iterable[str] | None = None) -> Any:
    """A backend option from the profile, checked against `choices` and the default's type."""
    value = profile.options.get(key, default)
    if choices is not None and value not in set(choices):
        allowed = ", ".join(sorted(choices))
        raise ConfigError(f"profile {profile.name!r}: {key} must be one of {allowed}")
    # The exact type: bool is an int to Python, never to a user (`max_issues = true`).
    if type(value) is not type(default):
        kind = TYPE_NAMES.get(type(default), type(default).__name__)
        raise ConfigError(f"profile {profile.name!r}: {key} must be {kind}")
    return value
