"""Profiles from a TOML file, and the secrets they point to.

A profile names one tracker account and how to mount it::

    [profiles.work]
    tracker = "jira"
    url = "https://example.atlassian.net"
    token_env = "JIRA_API_TOKEN"      # or token_file = "…" or token_command = "…"
    user = "me@example.com"           # further keys belong to the backend
    flavour = "cloud"

The general keys are read here; the keys of a backend are declared by it (`ProfileKey`s in
its `profile_keys`) and checked by `backend_options`, so a key that neither knows is an
error that names it, whichever side it was meant for.

Secrets never come from the command line. A config or token file that others can read is
refused, with the chmod that fixes it.
"""

from __future__ import annotations

import difflib
import os
import shlex
import ssl
import stat
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from trackerfs.errors import ConfigError
from trackerfs.logsetup import add_secret

GENERAL_KEYS = frozenset(
    {
        "tracker",
        "url",
        "token_env",
        "token_file",
        "token_command",
        "token_credential",
        "metadata_ttl",
        "negative_ttl",
        "attr_timeout",
        "block_cache_mb",
        "content_cache_mb",
        "cache_dir",
        "readahead_max_mb",
        "spool_dir",
        "kernel_readahead_kb",
        "timeout",
        "deadline",
        "max_concurrency",
        "max_issues",
        "ca_file",
    }
)
SECRET_KEYS = ("token_env", "token_file", "token_command", "token_credential")
#: systemd names this folder of a service's credentials (`LoadCredential=`)
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
COMMAND_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_DEADLINE = 30.0
DEFAULT_MAX_CONCURRENCY = 32
MAX_CONCURRENCY_LIMIT = 256


def default_config_path() -> Path:
    """~/.config/trackerfs/config.toml (XDG_CONFIG_HOME honoured)."""
    return Path(platformdirs.user_config_dir("trackerfs")) / "config.toml"


def default_state_dir(profile: str) -> Path:
    """Where a profile keeps its spool and recovery folders (XDG state dir)."""
    return Path(platformdirs.user_state_dir("trackerfs")) / profile


def default_cache_dir(profile: str) -> Path:
    """Where a profile keeps attachment content on disk (XDG cache dir)."""
    return Path(platformdirs.user_cache_dir("trackerfs")) / profile


@dataclass(frozen=True, slots=True)
class SecretSource:
    """Where a token comes from: an environment variable, a file, a command's output, or a
    systemd credential (`LoadCredential=NAME:…`, read from `$CREDENTIALS_DIRECTORY/NAME`)."""

    kind: str
    where: str

    def read(self) -> str:
        """The secret, stripped of surrounding white space; ConfigError when unusable.

        The value is registered with the logging filter so that no log line shows it.
        """
        value = self._read()
        add_secret(value)
        return value

    def _read(self) -> str:
        if self.kind == "env":
            value = os.environ.get(self.where)
            if not value:
                raise ConfigError(f"environment variable {self.where} is not set or empty")
            return value.strip()
        if self.kind == "file":
            path = Path(self.where).expanduser()
            check_private(path, "token file")
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"token file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
                ) from None
            if not value:
                raise ConfigError(f"token file {path} is empty")
            return value
        if self.kind == "credential":
            return self._read_credential()
        return self._run_command()

    def _read_credential(self) -> str:
        folder = os.environ.get(CREDENTIALS_DIRECTORY)
        if not folder:
            raise ConfigError(
                f"token_credential {self.where!r}: ${CREDENTIALS_DIRECTORY} is not set "
                "(it is set by systemd for a unit with LoadCredential=)"
            )
        if not self.where or "/" in self.where or self.where in (".", ".."):
            raise ConfigError(f"token_credential {self.where!r} is not a credential name")
        path = Path(folder) / self.where
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"credential {self.where!r} cannot be read: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"credential {self.where!r} is empty")
        return value

    def _run_command(self) -> str:
        try:
            done = subprocess.run(
                shlex.split(self.where),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"token command could not run: {type(exc).__name__}") from None
        if done.returncode != 0:
            # The command's stderr may be shown; its stdout may hold a partial secret.
            reason = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise ConfigError(f"token command exited with {done.returncode}: {reason[0]}")
        value = done.stdout.strip()
        if not value:
            raise ConfigError("token command printed nothing")
        return value


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How long metadata is trusted and how much memory content may use."""

    metadata_ttl: float = 60.0
    negative_ttl: float = 30.0
    attr_timeout: float = 1.0
    block_cache_bytes: int = 96 << 20
    readahead_max_bytes: int = 64 << 20
    kernel_readahead_kb: int = 1024
    #: the on-disk content cache's budget; 0 turns it off
    content_cache_bytes: int = 2 << 30


@dataclass(frozen=True, slots=True)
class Profile:
    """One tracker account and how to mount it."""

    name: str
    tracker: str
    url: str
    secret: SecretSource
    cache: CacheSettings = field(default_factory=CacheSettings)
    spool_dir: Path | None = None
    cache_dir: Path | None = None
    #: seconds one HTTP socket operation may wait before the attempt counts as failed
    timeout: float = DEFAULT_TIMEOUT
    #: seconds all attempts of one HTTP call may take together (then ETIMEDOUT)
    deadline: float = DEFAULT_DEADLINE
    #: HTTP requests of one mount in flight at once
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: issues listed per project at most (0: all); issues left out still open by their key
    max_issues: int = 0
    #: a PEM file of certificate authorities trusted besides the usual ones (private CA)
    ca_file: Path | None = None
    #: the keys that are not general, for the backend to check (`backend_options`)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        """The profile's own state folder (spool, recovery)."""
        return self.spool_dir or default_state_dir(self.name)

    @property
    def content_dir(self) -> Path:
        """The profile's on-disk content cache folder."""
        return self.cache_dir or default_cache_dir(self.name)


def check_private(path: Path, what: str) -> None:
    """Refuse a file that does not exist or that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {shlex.quote(str(path))}"
        )


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    """The raw `[profiles.*]` tables of a config file."""
    check_private(path, "config file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ConfigError(f"config file {path} has no [profiles.NAME] table")
    return profiles


def load_profile(path: Path, name: str) -> Profile:
    """The named profile from a config file, validated."""
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {name!r} in {path} (profiles: {known})")
    table = profiles[name]
    if not isinstance(table, dict):
        raise ConfigError(f"profiles.{name} in {path} is not a table")
    return profile_from_table(name, table)


def profile_from_table(name: str, table: dict[str, Any]) -> Profile:
    """Validate one profile table; backend-specific keys are kept in `options`."""
    where = f"profile {name!r}"
    tracker = _string(table, "tracker", where)
    url = _url(table, where)
    given = [key for key in SECRET_KEYS if key in table]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(SECRET_KEYS)}")
    secret = SecretSource(given[0].removeprefix("token_"), _string(table, given[0], where))
    defaults = CacheSettings()
    cache = CacheSettings(
        metadata_ttl=_number(table, "metadata_ttl", defaults.metadata_ttl, where),
        negative_ttl=_number(table, "negative_ttl", defaults.negative_ttl, where),
        attr_timeout=_number(table, "attr_timeout", defaults.attr_timeout, where),
        block_cache_bytes=int(_number(table, "block_cache_mb", 96, where) * (1 << 20)),
        readahead_max_bytes=int(_number(table, "readahead_max_mb", 64, where) * (1 << 20)),
        kernel_readahead_kb=int(_number(table, "kernel_readahead_kb", 1024, where)),
        content_cache_bytes=int(_number(table, "content_cache_mb", 2048, where) * (1 << 20)),
    )
    spool = table.get("spool_dir")
    cache_dir = table.get("cache_dir")
    return Profile(
        name=name,
        tracker=tracker,
        url=url.rstrip("/"),
        secret=secret,
        cache=cache,
        spool_dir=Path(spool).expanduser() if spool else None,
        cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
        timeout=_number(table, "timeout", DEFAULT_TIMEOUT, where) or DEFAULT_TIMEOUT,
        deadline=_positive(table, "deadline", DEFAULT_DEADLINE, where),
        max_concurrency=_integer(
            table, "max_concurrency", DEFAULT_MAX_CONCURRENCY, where, MAX_CONCURRENCY_LIMIT
        ),
        max_issues=_count(table, "max_issues", where),
        ca_file=_ca_file(table, where),
        options={k: v for k, v in table.items() if k not in GENERAL_KEYS},
    )


def _string(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _url(table: dict[str, Any], where: str) -> str:
    """The tracker's base URL: http or https with a host (and a valid port, if any)."""
    url = _string(table, "url", where)
    # The URL itself is not repeated: it may carry a password (https://user:pw@host).
    problem = f"{where}: url must start with http:// or https:// and name a host"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(problem)
    return url


def _positive(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a number of seconds above 0")
    return float(value)


def _integer(table: dict[str, Any], key: str, default: int, where: str, highest: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise ConfigError(f"{where}: {key} must be a whole number from 1 to {highest}")
    return value


def _number(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}: {key} must be a non-negative number")
    return float(value)


def _count(table: dict[str, Any], key: str, where: str) -> int:
    value = table.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {key} must be a whole number, 0 or more")
    return value


def _ca_file(table: dict[str, Any], where: str) -> Path | None:
    """The private CA file, checked now: a mount must not start only to fail at its first TLS call."""
    value = table.get("ca_file")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: ca_file must be the path of a PEM file")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{where}: ca_file {path} does not exist or is not a file")
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except ssl.SSLError:
        raise ConfigError(f"{where}: ca_file {path} holds no PEM certificate") from None
    except OSError as exc:
        raise ConfigError(f"{where}: ca_file {path}: {exc.strerror or exc}") from None
    return path


# -- the keys of a backend -------------------------------------------------------------------

#: How a user reads the type a key wants.
TYPE_NAMES: dict[type, str] = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
}


@dataclass(frozen=True, slots=True)
class ProfileKey:
    """One profile key a backend reads: its type, default, allowed values and meaning.

    `kind` is matched exactly (`true` is no number, `10.0` no whole number); a float key
    also takes a whole number. `choices` limit a string; `low` and `high` bound a number.
    `meaning` is told with a refused value, so the line says what the key is for.
    """

    kind: type[str] | type[int] | type[float] | type[bool]
    default: str | int | float | bool
    meaning: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable for this key, or None."""
        matches = type(value) is self.kind or (self.kind is float and type(value) is int)
        if not matches:
            return f"must be {TYPE_NAMES[self.kind]}"
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(f'"{choice}"' for choice in self.choices)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return self._bounds()
        return None

    def _bounds(self) -> str:
        if self.low is not None and self.high is not None:
            return f"must be from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"must be {self.low:g} or more"
        return f"must be {self.high:g} or less"


class BackendOptions:
    """A backend's keys of one profile, checked, with the defaults of those not given."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def value(self, key: str) -> Any:
        """A key's value, whatever its type (for showing the profile)."""
        return self._values[key]

    def text(self, key: str) -> str:
        """A string key."""
        value = self._values[key]
        assert isinstance(value, str)
        return value

    def whole(self, key: str) -> int:
        """A whole-number key."""
        value = self._values[key]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    def flag(self, key: str) -> bool:
        """A true-or-false key."""
        value = self._values[key]
        assert isinstance(value, bool)
        return value

    def number(self, key: str) -> float:
        """A number key."""
        value = self._values[key]
        assert isinstance(value, int | float) and not isinstance(value, bool)
        return float(value)


def backend_options(profile: Profile, keys: Mapping[str, ProfileKey]) -> BackendOptions:
    """Check the profile's backend keys against what the backend declares.

    A key that is neither general nor the backend's is an error that names it and, when
    one is close, the known key it was probably meant to be (`metdata_ttl`).
    """
    where = f"profile {profile.name!r}"
    for key in sorted(profile.options):
        if key not in keys:
            hint = _hint(key, keys)
            raise ConfigError(f"{where}: unknown key {key!r} for tracker {profile.tracker!r}{hint}")
    values: dict[str, Any] = {}
    for key, spec in keys.items():
        value = profile.options.get(key, spec.default)
        problem = spec.check(value)
        if problem:
            raise ConfigError(f"{where}: {key} {problem} ({spec.meaning})")
        values[key] = value
    return BackendOptions(values)


def _hint(key: str, backend_keys: Iterable[str]) -> str:
    known = sorted(GENERAL_KEYS | set(backend_keys))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(known)})"
