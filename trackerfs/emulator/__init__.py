"""The built-in tracker emulator: a real HTTP server on loopback speaking vendor APIs.

Used by tests, benchmarks and ``trackerfs demo``. It never imports the client side of
trackerfs (backends, core, fuse, cli); the client side never imports it.
"""

from __future__ import annotations

from trackerfs.emulator.options import EmulatorOptions
from trackerfs.emulator.server import EmulatorInfo, create_app, create_media_app, serve_emulator

__all__ = ["EmulatorInfo", "EmulatorOptions", "create_app", "create_media_app", "serve_emulator"]
