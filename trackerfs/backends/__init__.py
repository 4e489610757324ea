"""Tracker backends: the registry and how a mount opens one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import httpx

from trackerfs.backends.asana import AsanaTracker
from trackerfs.backends.base import Tracker
from trackerfs.backends.jira import JiraTracker
from trackerfs.backends.openproject import OpenProjectTracker
from trackerfs.backends.waldur import WaldurTracker
from trackerfs.backends.yandex import YandexTracker
from trackerfs.config import BackendOptions, Profile, ProfileKey, backend_options
from trackerfs.errors import ConfigError


class Backend(Protocol):
    """A backend class: the keys it reads from a profile, and its constructor."""

    name: str
    profile_keys: Mapping[str, ProfileKey]

    def __call__(
        self, profile: Profile, options: BackendOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Tracker: ...


#: tracker name in a profile → backend class
REGISTRY: dict[str, Backend] = {
    JiraTracker.name: JiraTracker,
    AsanaTracker.name: AsanaTracker,
    YandexTracker.name: YandexTracker,
    OpenProjectTracker.name: OpenProjectTracker,
    WaldurTracker.name: WaldurTracker,
}


def make_tracker(profile: Profile, *, transport: httpx.AsyncBaseTransport | None = None) -> Tracker:
    """The backend a profile names, its keys checked; ConfigError for an unknown tracker or key."""
    try:
        backend = REGISTRY[profile.tracker]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(
            f"profile {profile.name!r}: unknown tracker {profile.tracker!r} (known: {known})"
        ) from None
    return backend(profile, backend_options(profile, backend.profile_keys), transport=transport)


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
