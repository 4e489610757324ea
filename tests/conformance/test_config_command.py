"""`trackerfs config check` and `config show`: a profile tested and shown without mounting.

One line and exit 0 when the profile signs in; one line on stderr and a non-zero exit for
each way it cannot (2 for the file, 1 for the tracker); never the token.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.cases import TrackerCase
from tests.support.commands import one_line_error, profile_config, trackerfs
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV

pytestmark = pytest.mark.mount


def check(config: Path, token: str) -> tuple[int, str, str]:
    done = trackerfs("config", "check", "--config", str(config), "p", env={TOKEN_ENV: token})
    return done.returncode, done.stdout, done.stderr


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_good_profile_signs_in_with_one_request(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    config = profile_config(tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV)
    clean_emulator.clear_requests()
    code, out, err = check(config, clean_emulator.token)
    assert (code, err) == (0, ""), err
    [line] = out.splitlines()
    assert line.startswith(f"profile p: {case.tracker} at {clean_emulator.base_url}: signed in as ")
    assert clean_emulator.token not in out
    api = [r for r in clean_emulator.requests() if r["origin"] == "api"]
    assert api and all(case.account_check.matches(r) for r in api), [r["path"] for r in api]


def test_a_wrong_token_and_a_wrong_url_are_one_line_each(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    config = profile_config(tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV)
    wrong = "not-the-token-" + clean_emulator.token[::-1]
    done = trackerfs("config", "check", "--config", str(config), "p", env={TOKEN_ENV: wrong})
    assert done.returncode == 1
    assert "refused the credentials" in one_line_error(done)
    assert wrong not in done.stderr + done.stdout
    nowhere = profile_config(
        tmp_path / "n.toml", "p", case, f"http://127.0.0.1:{closed_port()}", token_env=TOKEN_ENV
    )
    done = trackerfs("config", "check", "--config", str(nowhere), "p", env={TOKEN_ENV: clean_emulator.token})
    assert done.returncode == 1
    assert "cannot connect" in one_line_error(done)


def test_a_bad_key_is_exit_2_before_any_request(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    config = profile_config(
        tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_env=TOKEN_ENV, metdata_ttl=5
    )
    clean_emulator.clear_requests()
    done = trackerfs("config", "check", "--config", str(config), "p", env={TOKEN_ENV: clean_emulator.token})
    assert done.returncode == 2
    assert "did you mean 'metadata_ttl'" in one_line_error(done)
    assert clean_emulator.requests() == []


def test_show_fills_in_every_default_and_never_reads_the_token(
    case: TrackerCase, clean_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    secret = "inline-" + clean_emulator.token
    config = profile_config(
        tmp_path / "c.toml", "p", case, clean_emulator.base_url, token_command=f"printf {secret}"
    )
    done = trackerfs("config", "show", "--config", str(config), "p")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[profiles.p]"
    assert f'tracker = "{case.tracker}"' in lines
    assert 'token_command = "printf …"' in lines
    assert "metadata_ttl = 60" in lines and "max_concurrency = 32" in lines
    for key in case.profile:
        assert any(line.startswith(f"{key} = ") for line in lines), key
