"""`trackerfs config check` and `config show`: a profile as trackerfs reads it, and a test of it.

`check` validates every key (general and the backend's) and signs in with the one
request a mount asks first, so a wrong URL, token, permission, workspace or certificate
is found before anything is mounted. `show` prints the profile with every default filled
in; the token is never read for it, and a token command shows only its program.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from trackerfs.backends import REGISTRY, open_tracker
from trackerfs.config import Profile, backend_options
from trackerfs.errors import ConfigError


async def check_profile(profile: Profile) -> str:
    """One line saying who the profile signs in as; a TrackerfsError when it cannot."""
    async with open_tracker(profile) as tracker:
        account = await tracker.check_account()
    who = account.name or account.id or "an unnamed account"
    ident = f" ({account.id})" if account.id and account.id != who else ""
    return f"profile {profile.name}: {profile.tracker} at {profile.url}: signed in as {who}{ident}"


def show_profile(profile: Profile) -> str:
    """The profile as TOML, every key resolved (defaults included), the secret left out."""
    backend = REGISTRY.get(profile.tracker)
    if backend is None:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"profile {profile.name!r}: unknown tracker {profile.tracker!r} (known: {known})")
    options = backend_options(profile, backend.profile_keys)
    cache = profile.cache
    values: dict[str, Any] = {
        "tracker": profile.tracker,
        "url": profile.url,
        f"token_{profile.secret.kind}": _secret_source(profile.secret.kind, profile.secret.where),
        "metadata_ttl": cache.metadata_ttl,
        "negative_ttl": cache.negative_ttl,
        "attr_timeout": cache.attr_timeout,
        "block_cache_mb": cache.block_cache_bytes / (1 << 20),
        "readahead_max_mb": cache.readahead_max_bytes / (1 << 20),
        "kernel_readahead_kb": cache.kernel_readahead_kb,
        "content_cache_mb": cache.content_cache_bytes / (1 << 20),
        "cache_dir": str(profile.content_dir),
        "spool_dir": str(profile.state_dir),
        "timeout": profile.timeout,
        "deadline": profile.deadline,
        "max_concurrency": profile.max_concurrency,
        "max_issues": profile.max_issues,
        "ca_file": str(profile.ca_file) if profile.ca_file else "",
    }
    values.update({key: options.value(key) for key in sorted(backend.profile_keys)})
    lines = [f"[profiles.{_toml_key(profile.name)}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items() if value != ""]
    return "\n".join(lines)


def _secret_source(kind: str, where: str) -> str:
    """Where the token comes from; a command's arguments may hold a secret: only its program."""
    if kind != "command":
        return where
    try:
        program = shlex.split(where)[0]
    except (ValueError, IndexError):
        program = "?"
    return f"{Path(program).name} …"


def _toml_key(name: str) -> str:
    bare = name.replace("-", "").replace("_", "").isalnum() and name.isascii()
    return name if bare else _toml_value(name)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
