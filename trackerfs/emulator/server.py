"""Assembling and serving the emulator: the API app, the media app, two listeners."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework
from starlette.applications import Starlette
from starlette.middleware import Middleware

from trackerfs.emulator.control import control_routes
from trackerfs.emulator.dialects import dialect_class
from trackerfs.emulator.media import media_error, media_routes
from trackerfs.emulator.middleware import RecorderMiddleware
from trackerfs.emulator.options import EmulatorOptions
from trackerfs.emulator.routing import install_convertors
from trackerfs.emulator.state import EmulatorState

E = TypeVar("E", bound=BaseException)


class EmulatorStartError(Exception):
    """The emulator cannot start as asked (a busy port, an unusable data directory)."""


@dataclass(frozen=True, slots=True)
class EmulatorInfo:
    """Where a started emulator listens, and its state for in-process inspection."""

    base_url: str
    media_url: str
    token: str
    data_dir: Path
    state: EmulatorState


def create_app(state: EmulatorState) -> Starlette:
    """The API origin: the vendor dialect plus the control API, behind the recorder."""
    install_convertors()
    dialect = state.dialect_type(state)
    return Starlette(
        routes=[*control_routes(state), *dialect.routes()],
        middleware=[
            Middleware(
                RecorderMiddleware,
                state=state,
                origin="api",
                error=dialect.error_response,
                logged_headers=dialect.logged_headers,
            )
        ],
    )


def create_media_app(state: EmulatorState) -> Starlette:
    """The media origin that content redirects point to (the dialect's own storage, if any)."""
    own = state.dialect_type(state).media_routes()
    return Starlette(
        routes=media_routes(state) if own is None else own,
        middleware=[Middleware(RecorderMiddleware, state=state, origin="media", error=media_error)],
    )


def _as_framework(app: Starlette) -> Framework:
    # Starlette's ASGI signature is looser than hypercorn's TypedDict one; same protocol.
    return cast(Framework, app)


def _hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    config.graceful_timeout = 1.0
    return config


async def _listen(nursery: trio.Nursery, app: Starlette, host: str, port: int) -> str:
    """Serve `app` on host:port in `nursery`; the bound URL, or EmulatorStartError."""
    try:
        binds: list[str] = await nursery.start(
            partial(serve, _as_framework(app), _hypercorn_config(host, port))
        )
    except Exception as exc:
        error = error_in(exc, OSError)
        if error is None:
            raise
        raise EmulatorStartError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return binds[0]


def error_in(exc: BaseException, kind: type[E]) -> E | None:
    """The `kind` error that `exc` is or holds (trio wraps a task's error in groups)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = error_in(inner, kind)
            if found is not None:
                return found
    return None


@contextlib.contextmanager
def open_data_dir(requested: Path | None) -> Iterator[Path]:
    """The given data directory (kept), or a temporary one removed on exit."""
    if requested is not None:
        try:
            requested.mkdir(parents=True, exist_ok=True)
            (requested / "blobs").mkdir(exist_ok=True)
        except OSError as exc:
            raise EmulatorStartError(f"cannot use --data-dir {requested}: {exc.strerror or exc}") from None
        yield requested
        return
    with tempfile.TemporaryDirectory(prefix="trackerfs-emulator-") as temporary:
        yield Path(temporary)


async def serve_emulator(
    options: EmulatorOptions,
    *,
    task_status: trio.TaskStatus[EmulatorInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API and media origins until cancelled.

    Both listeners are bound (port 0 = a free port, read back from the bound socket, so
    there is no race) before ``task_status.started(EmulatorInfo)``.
    """
    dialect_class(options.tracker)  # an unknown name fails before anything is bound
    with open_data_dir(options.data_dir) as data_dir:
        state = EmulatorState(options, data_dir)
        async with trio.open_nursery() as nursery:
            # The media origin first: the API's redirects need its URL.
            state.media_url = await _listen(
                nursery, create_media_app(state), options.host, options.media_port
            )
            base_url = await _listen(nursery, create_app(state), options.host, options.port)
            task_status.started(
                EmulatorInfo(
                    base_url=base_url,
                    media_url=state.media_url,
                    token=state.token,
                    data_dir=data_dir,
                    state=state,
                )
            )
