"""Logging for the command line and the daemon, with secrets kept out of every record."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "********"
#: Loggers of libraries that would print full request URLs (signed query strings).
NOISY = ("httpx", "httpcore", "hpack", "hypercorn.access")

_secrets: set[str] = set()


def add_secret(value: str) -> None:
    """Mask `value` wherever it would appear in a log record from now on."""
    if len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret masked."""
    for secret in _secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """Masks secrets in the whole formatted record, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingFilter(logging.Filter):
    """Replaces every registered secret in a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def setup_logging(*, debug: bool = False, quiet: bool = False, log_file: Path | None = None) -> None:
    """Log to stderr (or a file) at INFO, DEBUG with `debug`, WARNING with `quiet`."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
