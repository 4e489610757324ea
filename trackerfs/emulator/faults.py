"""Fault injection: rules that make matching requests fail in a chosen way.

A rule matches on origin, method and a regular expression searched in the path; the first
``count`` matching requests (``-1``: all of them) get the fault instead of the normal
answer, or, with a ``rate`` below 1, that share of them (drawn from a generator seeded
by ``seed``, so a plan replays the same way). A rule counts the faults it injected.
Actions: ``respond`` (a canned status, headers and body), ``drop`` (close the
connection without any response), ``truncate`` (the real response, cut midway through
its body after the full ``Content-Length`` was announced) and ``delay`` (the real
response, after ``delay`` seconds).
"""

from __future__ import annotations

import random
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
    #: the share of matching requests that get the fault
    rate: float = 1.0
    #: what the rule is called in the list of rules (a soak counts faults by kind)
    name: str | None = None
    #: how many requests got the fault so far
    injected: int = 0
    draw: random.Random = field(default_factory=random.Random)

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
            "rate": self.rate,
            "name": self.name,
            "injected": self.injected,
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
    rate = spec.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise FaultSpecError("rate must be a number above 0 and at most 1")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FaultSpecError("seed must be an integer")
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise FaultSpecError("name must be a string")
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
        rate=float(rate),
        name=name,
        draw=random.Random(seed),
    )


def parse_plan(spec: Any) -> list[FaultRule]:
    """The rules of a fault plan: a JSON list of rules, as `--faults FILE` holds."""
    if not isinstance(spec, list):
        raise FaultSpecError("a fault plan is a JSON list of rules")
    return [parse_fault(rule) for rule in spec]


class Faults:
    """The active fault rules, first match wins."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Append a rule."""
        self._rules.append(rule)

    def load(self, plan: Any) -> None:
        """Append the rules of a fault plan (a JSON list; empty: none)."""
        for rule in parse_plan(list(plan)):
            self.add(rule)

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def take(self, origin: str, method: str, path: str) -> FaultRule | None:
        """The first matching rule, with one use consumed; ``None`` when none matches."""
        for rule in self._rules:
            if rule.matches(origin, method, path):
                if rule.rate < 1 and rule.draw.random() >= rule.rate:
                    continue
                if rule.remaining != FOREVER:
                    rule.remaining -= 1
                rule.injected += 1
                return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        """The rules still active, as JSON."""
        return [rule.describe() for rule in self._rules if rule.remaining != 0]
