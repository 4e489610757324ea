"""``python -m trackerfs.emulator``."""

from __future__ import annotations

import sys

from trackerfs.emulator.cli import main

sys.exit(main())
