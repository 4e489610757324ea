"""Fixtures for the emulator's own tests: an in-process app and a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import EmulatorProcess
from trackerfs.emulator import EmulatorOptions, create_app, create_media_app
from trackerfs.emulator.state import EmulatorState

TOKEN = "test-token"
#: one of the user names the emulator accepts by default (Basic auth checks the user)
USER = "tester@example.com"
API = "http://jira.test"
MEDIA = "http://media.test"


@pytest.fixture
def state(tmp_path: Path) -> EmulatorState:
    """A demo-seeded emulator state whose redirects point at MEDIA."""
    emulator_state = EmulatorState(EmulatorOptions(token=TOKEN, page_size=5), tmp_path)
    emulator_state.media_url = MEDIA
    return emulator_state


@pytest.fixture
async def api(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the API app, in process."""
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=API, auth=(USER, TOKEN)) as client:
        yield client


@pytest.fixture
async def media(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the media app, in process, without credentials."""
    transport = httpx.ASGITransport(app=create_media_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=MEDIA) as client:
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    """A real emulator process, shared by a module; tests reset it."""
    with EmulatorProcess("--page-size", "5") as running:
        yield running


@pytest.fixture
def live(server: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The shared real emulator, reset before and after the test."""
    server.reset()
    yield server
    server.reset()
