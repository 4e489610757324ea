"""A tracker on premises behind TLS with a private CA: `ca_file`, through a real mount.

The emulator is served behind a small TLS terminator on 127.0.0.1 whose certificate a
test CA (trustme) signed. With the CA in `ca_file` the mount reads the right bytes, all
of them through TLS; without it, or with a certificate that is wrong, the mount stops
with one line that says what is wrong with the certificate.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from tests.support.cases import TrackerCase
from tests.support.emulator import EmulatorProcess
from tests.support.mount import TOKEN_ENV, Mount, force_unmount, write_config
from tests.support.sockets import accept_each

pytestmark = pytest.mark.mount

RELAY_CHUNK = 1 << 16


class TlsTerminator:
    """Accepts TLS on 127.0.0.1 with `context` and relays each connection to `upstream`."""

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self.context = context
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.relayed = 0
        self._lock = threading.Lock()
        accept_each(self.listener, self._serve)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # the mount refused the certificate: what some tests want
            return
        server = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
        self._pump(server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, down: bool) -> None:
        try:
            while data := source.recv(RELAY_CHUNK):
                sink.sendall(data)
                if down:
                    with self._lock:
                        self.relayed += len(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def behind_tls(emulator: EmulatorProcess) -> Iterator[Callable[[trustme.LeafCert], TlsTerminator]]:
    """Put the session's emulator behind TLS with a given server certificate."""
    started: list[TlsTerminator] = []
    api = urlsplit(emulator.base_url)

    def start(certificate: trustme.LeafCert) -> TlsTerminator:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        terminator = TlsTerminator(context, (api.hostname or "127.0.0.1", api.port or 80))
        started.append(terminator)
        return terminator

    yield start
    for terminator in started:
        terminator.close()


def test_with_ca_file_a_tracker_behind_a_private_ca_reads_right(
    case: TrackerCase,
    emulator: EmulatorProcess,
    ca: trustme.CA,
    ca_file: Path,
    behind_tls: Callable[[trustme.LeafCert], TlsTerminator],
    tmp_path: Path,
) -> None:
    tls = behind_tls(ca.issue_cert("127.0.0.1"))
    item = next(
        entry
        for entry in emulator.attachments()
        if entry["issue"] == case.rich_issue and entry["filename"] == case.big_file
    )
    profile = {**case.profile, "ca_file": str(ca_file), "content_cache_mb": 0}
    with Mount(tmp_path, url=tls.url, token=emulator.token, tracker=case.tracker, profile=profile) as mount:
        path = mount.path / case.project / case.rich_issue / case.big_file
        with path.open("rb") as handle:
            assert hashlib.file_digest(handle, "sha256").hexdigest() == item["sha256"]
    # The content itself came through TLS (the fast read transport honours ca_file too),
    # where the tracker's own origin serves it; the listings did in any case.
    own_content = case.content.origin == "api" and not case.content_always_redirected
    assert tls.relayed > (item["size"] if own_content else 0)


def failed_mount(case: TrackerCase, emulator: EmulatorProcess, url: str, tmp_path: Path, **keys: str) -> str:
    """Mount in the background as a user would; the one line it fails with."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    config = write_config(
        tmp_path / "config.toml",
        "onprem",
        {
            "tracker": case.tracker,
            "url": url,
            "token_env": TOKEN_ENV,
            "spool_dir": str(tmp_path / "state"),
            **case.profile,
            **keys,
        },
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trackerfs", "mount", "--config", str(config), "onprem", str(mountpoint)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, **{TOKEN_ENV: emulator.token}),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        force_unmount(mountpoint)
    assert done.returncode == 1, done.stderr
    assert not os.path.ismount(mountpoint)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trackerfs: "), done.stderr
    assert "Traceback" not in done.stderr and emulator.token not in done.stderr
    return lines[0]


def test_without_ca_file_the_mount_says_the_certificate_is_not_trusted(
    case: TrackerCase,
    emulator: EmulatorProcess,
    ca: trustme.CA,
    behind_tls: Callable[[trustme.LeafCert], TlsTerminator],
    tmp_path: Path,
) -> None:
    tls = behind_tls(ca.issue_cert("127.0.0.1"))
    line = failed_mount(case, emulator, tls.url, tmp_path)
    assert "TLS certificate not accepted: unable to get local issuer certificate" in line
    assert "ca_file" in line


@pytest.mark.parametrize(
    ("wrong", "reason"),
    [
        ("another host", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
        ("another CA", "unable to get local issuer certificate"),
    ],
)
def test_a_wrong_certificate_is_refused_even_with_ca_file(
    case: TrackerCase,
    emulator: EmulatorProcess,
    ca: trustme.CA,
    ca_file: Path,
    behind_tls: Callable[[trustme.LeafCert], TlsTerminator],
    tmp_path: Path,
    wrong: str,
    reason: str,
) -> None:
    issuer = ca if wrong == "another host" else trustme.CA()
    certificate = issuer.issue_cert("tracker.example.org" if wrong == "another host" else "127.0.0.1")
    tls = behind_tls(certificate)
    line = failed_mount(case, emulator, tls.url, tmp_path, ca_file=str(ca_file))
    assert f"TLS certificate not accepted: {reason}" in line
