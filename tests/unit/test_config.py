"""Profiles and secret sources: what is accepted and the one-line errors for the rest."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tests.support.mount import write_config
from trackerfs.config import SecretSource, load_profile
from trackerfs.errors import ConfigError
from trackerfs.logsetup import MASK, RedactingFormatter


def test_a_valid_profile(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.toml",
        "work",
        {
            "tracker": "jira",
            "url": "https://x.atlassian.net/",
            "user": "me@x",
            "token_env": "T",
            "metadata_ttl": 5,
            "flavour": "cloud",
        },
    )
    profile = load_profile(path, "work")
    assert profile.url == "https://x.atlassian.net"
    assert profile.cache.metadata_ttl == 5.0
    assert profile.options == {"flavour": "cloud"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tracker": "jira", "url": "x", "token_env": "T"}, "must start with http"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "token_file": "f"}, "exactly one"),
        ({"tracker": "jira", "url": "http://x"}, "exactly one"),
        ({"url": "http://x", "token_env": "T"}, "tracker must be"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "metadata_ttl": -1}, "non-negative"),
    ],
)
def test_bad_profiles(tmp_path: Path, table: dict, message: str) -> None:
    path = write_config(tmp_path / "c.toml", "p", table)
    with pytest.raises(ConfigError, match=message):
        load_profile(path, "p")


def test_readable_config_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", "p", {"tracker": "jira", "url": "http://x", "token_env": "T"})
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_profile(path, "p")


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKERFS_UNIT_TOKEN", " from-env \n")
    assert SecretSource("env", "TRACKERFS_UNIT_TOKEN").read() == "from-env"
    token = tmp_path / "token"
    token.write_text("from-file\n")
    token.chmod(0o600)
    assert SecretSource("file", str(token)).read() == "from-file"
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        SecretSource("file", str(token)).read()
    command = f"{sys.executable} -c \"print('from-command')\""
    assert SecretSource("command", command).read() == "from-command"
    with pytest.raises(ConfigError, match="exited with 3"):
        SecretSource("command", f"{sys.executable} -c \"import sys; print('part'); sys.exit(3)\"").read()


def test_secrets_never_reach_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKERFS_UNIT_SECRET", "hunter2-very-secret")
    secret = SecretSource("env", "TRACKERFS_UNIT_SECRET").read()
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError(f"bad token {secret}")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "using %s", (secret,), sys.exc_info())
    text = formatter.format(record)
    assert secret not in text and MASK in text
