"""Logging for the command line and the daemon, with secrets kept out of every record."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

from trackerfs.core.statedir import make_private_dir
from trackerfs.errors import ConfigError

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


def private_file_handler(log_file: Path) -> logging.Handler:
    """A handler appending to `log_file`, readable by its owner only (it names files).

    Missing directories are created 0700; an existing regular log file is set to 0600.
    A log file that cannot be written is a ConfigError (one line, not a traceback).
    """
    try:
        if not log_file.parent.exists():
            make_private_dir(log_file.parent)
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        if stat.S_ISREG(os.stat(log_file).st_mode):
            os.chmod(log_file, 0o600)
        return logging.FileHandler(log_file, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {log_file}: {exc.strerror or exc}") from None


def setup_logging(*, debug: bool = False, quiet: bool = False, log_file: Path | None = None) -> None:
    """Log to stderr (or a file) at INFO, DEBUG with `debug`, WARNING with `quiet`."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = private_file_handler(log_file) if log_file is not None else logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
