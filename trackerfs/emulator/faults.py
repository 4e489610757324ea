"""Fault injection: rules that make matching requests fail in a chosen way.

A rule matches on origin, method and a regular expression searched in the path; the first
``count`` matching requests (``-1``: all of them) get the fault instead of the normal
answer. Actions: ``respond`` (a canned status, headers and body), ``drop`` (close the
connection without any response), ``truncate`` (the real response, cut midway through
its body after the full ``Content-Length`` was announced) and ``delay`` (the real
response, after ``delay`` seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["respond", "drop", "truncate", "delay"]
Origin = Literal["api", "media"]
ACTIONS: tuple[Action, ...] = ("respond", "drop", "truncate", "delay")
FOREVER = -1


class FaultSpecError(ValueError):
    """A fault rule posted to the control API is malformed."""


@dataclass(slots=True)
class FaultRule:
    """One injected fault; ``remaining`` counts down per matching request."""

    path: re.Pattern[str]
    origin: Origin | None = None
    method: str | None = None
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    remaining: int = 1
    action: Action = "respond"
    delay: float = 0.0

    def matches(self, origin: str, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        return (
            self.remaining != 0
            and (self.origin is None or self.origin == origin)
            and (self.method is None or self.method == method)
            and self.path.search(path) is not None
        )

    def describe(self) -> dict[str, Any]:
        """The rule as JSON for the control API."""
        return {
            "origin": self.origin,
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "headers": self.headers,
            "body": self.body,
            "count": self.remaining,
            "action": self.action,
            "delay": self.delay,
        }


def parse_fault(spec: Any) -> FaultRule:
    """Build a rule from the JSON a test posted; raises FaultSpecError when malformed."""
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise FaultSpecError("a fault needs at least a 'path' regular expression")
    try:
        pattern = re.compile(spec["path"])
    except re.error as error:
        raise FaultSpecError(f"bad path pattern: {error}") from error
    origin = spec.get("origin")
    if origin not in (None, "api", "media"):
        raise FaultSpecError("origin must be 'api', 'media' or null")
    action = spec.get("action", "respond")
    if action not in ACTIONS:
        raise FaultSpecError(f"action must be one of {', '.join(ACTIONS)}")
    status = spec.get("status", 500)
    count = spec.get("count", 1)
    delay = spec.get("delay", 0)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise FaultSpecError("status must be an HTTP status code")
    if not isinstance(count, int) or (count < 1 and count != FOREVER):
        raise FaultSpecError("count must be a positive integer or -1")
    if not isinstance(delay, int | float) or delay < 0:
        raise FaultSpecError("delay must be a non-negative number of seconds")
    headers = spec.get("headers")
    if headers is None:
        # A rate limit without Retry-After is rare; give one unless the test set headers.
        headers = {"Retry-After": "1"} if status == 429 else {}
    if not isinstance(headers, dict):
        raise FaultSpecError("headers must be an object")
    method = spec.get("method")
    return FaultRule(
        path=pattern,
        origin=origin,
        method=method.upper() if isinstance(method, str) else None,
        status=status,
        headers={str(k): str(v) for k, v in headers.items()},
        body=spec.get("body"),
        remaining=count,
        action=action,
        delay=float(delay),
    )


class Faults:
    """The active fault rules, first match wins."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Append a rule."""
        self._rules.append(rule)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def take(self, origin: str, method: str, path: str) -> FaultRule | None:
        """The first matching rule, with one use consumed; ``None`` when none matches."""
        for rule in self._rules:
            if rule.matches(origin, method, path):
                if rule.remaining != FOREVER:
                    rule.remaining -= 1
                return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        """The rules still active, as JSON."""
        return [rule.describe() for rule in self._rules if rule.remaining != 0]
