"""Tracker backends: the registry and how a mount opens one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from trackerfs.backends.base import Tracker
from trackerfs.backends.jira import JiraTracker
from trackerfs.config import Profile
from trackerfs.errors import ConfigError

BackendFactory = Callable[..., Tracker]

#: tracker name in a profile → backend class
REGISTRY: dict[str, BackendFactory] = {
    JiraTracker.name: JiraTracker,
}


def make_tracker(profile: Profile, *, transport: httpx.AsyncBaseTransport | None = None) -> Tracker:
    """The backend a profile names; ConfigError for an unknown tracker or bad options."""
    try:
        factory = REGISTRY[profile.tracker]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(
            f"profile {profile.name!r}: unknown tracker {profile.tracker!r} (known: {known})"
        ) from None
    return factory(profile, transport=transport)


@asynccontextmanager
async def open_tracker(
    profile: Profile, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Tracker]:
    """A backend for `profile`, closed on exit."""
    tracker = make_tracker(profile, transport=transport)
    try:
        yield tracker
    finally:
        await tracker.aclose()
