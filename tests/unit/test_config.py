"""Profiles and secret sources: what is accepted and the one-line errors for the rest."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import trustme

from tests.support.mount import write_config
from trackerfs.backends import REGISTRY, make_tracker
from trackerfs.config import GENERAL_KEYS, SecretSource, backend_options, load_profile, profile_from_table
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
    assert profile.options == {"user": "me@x", "flavour": "cloud"}, "user is Jira's key, not a general one"
    assert (profile.timeout, profile.deadline, profile.max_concurrency) == (30.0, 30.0, 32)
    assert (profile.max_issues, profile.ca_file) == (0, None)


def test_http_limits_are_general_keys(tmp_path: Path) -> None:
    table = {"tracker": "jira", "url": "http://x", "token_env": "T", "deadline": 2, "max_concurrency": 256}
    profile = load_profile(write_config(tmp_path / "c.toml", "p", table), "p")
    assert (profile.deadline, profile.max_concurrency, profile.options) == (2.0, 256, {})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_issues", True, "max_issues must be a whole number"),
        ("page_size", False, "page_size must be a whole number"),
        ("max_issues", 1.5, "max_issues must be a whole number"),
        ("max_issues", -1, "max_issues must be a whole number, 0 or more"),
        ("jql", 3, "jql must be a string"),
        ("page_size", 0, "page_size must be from 1 to 1000"),
        ("page_size", 1001, "page_size must be from 1 to 1000"),
        ("flavour", "server", 'flavour must be one of "cloud", "datacenter"'),
        ("download", "proxy", 'download must be one of "direct", "redirect"'),
    ],
)
def test_a_backend_option_of_the_wrong_type_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, key: str, value: object, message: str
) -> None:
    monkeypatch.setenv("TRACKERFS_UNIT_TOKEN", "t0ken")
    table = {
        "tracker": "jira",
        "url": "http://x",
        "token_env": "TRACKERFS_UNIT_TOKEN",
        "user": "u",
        key: value,
    }
    with pytest.raises(ConfigError, match=message):
        make_tracker(profile_from_table("p", table))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tracker": "jira", "url": "x", "token_env": "T"}, "must start with http"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "token_file": "f"}, "exactly one"),
        ({"tracker": "jira", "url": "http://x"}, "exactly one"),
        ({"url": "http://x", "token_env": "T"}, "tracker must be"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "metadata_ttl": -1}, "non-negative"),
        ({"tracker": "jira", "url": "http://", "token_env": "T"}, "name a host"),
        ({"tracker": "jira", "url": "https://:443/x", "token_env": "T"}, "name a host"),
        ({"tracker": "jira", "url": "http://x:port", "token_env": "T"}, "name a host"),
        ({"tracker": "jira", "url": "ftp://x", "token_env": "T"}, "must start with http"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "deadline": 0}, "deadline must be"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "deadline": True}, "deadline must be"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "max_concurrency": 0}, "1 to 256"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "max_concurrency": 257}, "1 to 256"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "max_concurrency": 2.5}, "1 to 256"),
        ({"tracker": "jira", "url": "http://x", "token_env": "T", "max_concurrency": True}, "1 to 256"),
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
    # One that cannot be read as text is a config error, not a crash.
    token.write_bytes(b"\xff\xfe")
    token.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot be read"):
        SecretSource("file", str(token)).read()
    command = f"{sys.executable} -c \"print('from-command')\""
    assert SecretSource("command", command).read() == "from-command"
    with pytest.raises(ConfigError, match="exited with 3"):
        SecretSource("command", f"{sys.executable} -c \"import sys; print('part'); sys.exit(3)\"").read()


def test_a_systemd_credential_is_read_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = SecretSource("credential", "jira-token")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY is not set.*LoadCredential="):
        source.read()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="'jira-token' cannot be read"):
        source.read()
    (tmp_path / "jira-token").write_text("from-systemd\n")
    assert source.read() == "from-systemd"
    with pytest.raises(ConfigError, match="not a credential name"):
        SecretSource("credential", "../jira-token").read()
    profile = profile_from_table(
        "svc", {"tracker": "jira", "url": "http://x", "token_credential": "jira-token"}
    )
    assert profile.secret == source


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


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("flavor", "unknown key 'flavor' for tracker 'jira' (did you mean 'flavour'?)"),
        ("metdata_ttl", "unknown key 'metdata_ttl' for tracker 'jira' (did you mean 'metadata_ttl'?)"),
        ("max_isues", "unknown key 'max_isues' for tracker 'jira' (did you mean 'max_issues'?)"),
        ("zzz", "unknown key 'zzz' for tracker 'jira' (known keys: attr_timeout, auth, "),
    ],
)
def test_an_unknown_key_is_named_with_the_closest_known_one(
    monkeypatch: pytest.MonkeyPatch, key: str, message: str
) -> None:
    monkeypatch.setenv("TRACKERFS_UNIT_TOKEN", "t0ken")
    table = {"tracker": "jira", "url": "http://x", "token_env": "TRACKERFS_UNIT_TOKEN", "user": "u", key: 1}
    with pytest.raises(ConfigError) as caught:
        make_tracker(profile_from_table("p", table))
    assert str(caught.value).startswith(f"profile 'p': {message}")


def test_user_belongs_to_the_backends_that_declare_it() -> None:
    profile = profile_from_table("p", {"tracker": "other", "url": "http://x", "token_env": "T", "user": "me"})
    with pytest.raises(ConfigError, match="unknown key 'user' for tracker 'other'"):
        backend_options(profile, {})
    assert "user" not in GENERAL_KEYS and "user" in REGISTRY["jira"].profile_keys


def test_backend_keys_get_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKERFS_UNIT_TOKEN", "t0ken")
    profile = profile_from_table(
        "p", {"tracker": "jira", "url": "http://x", "token_env": "TRACKERFS_UNIT_TOKEN", "user": "u"}
    )
    options = backend_options(profile, REGISTRY["jira"].profile_keys)
    assert (options.text("flavour"), options.whole("page_size"), options.text("jql")) == ("cloud", 100, "")


def test_a_ca_file_must_hold_a_certificate(tmp_path: Path) -> None:
    table = {"tracker": "jira", "url": "https://x", "token_env": "T", "ca_file": str(tmp_path / "none.pem")}
    with pytest.raises(ConfigError, match=r"ca_file .*none.pem does not exist"):
        profile_from_table("p", table)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"ca_file .*junk.pem holds no PEM certificate"):
        profile_from_table("p", {**table, "ca_file": str(tmp_path / "junk.pem")})
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    assert (
        profile_from_table("p", {**table, "ca_file": str(tmp_path / "ca.pem")}).ca_file == tmp_path / "ca.pem"
    )


def test_the_configuration_doc_describes_every_key() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")}
    missing = set(GENERAL_KEYS) - rows
    for backend in REGISTRY.values():
        missing |= {key for key in backend.profile_keys if key not in rows}
    assert not missing, f"keys not in docs/configuration.md: {sorted(missing)}"
