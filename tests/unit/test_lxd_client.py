"""The pylxd client's failures reach the user typed and hinted (against loopback servers)."""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edibuild.lxd import client
from edibuild.lxd.errors import Unreachable
from tests.fake_lxd import Status, serving


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that nobody trusts, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edibuild-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Untrusting(http.server.BaseHTTPRequestHandler):
    """Answers GET /1.0 like an LXD that does not trust the client."""

    def do_GET(self) -> None:
        body = {"type": "sync", "status_code": 200, "metadata": {"auth": "untrusted"}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_lxd(tmp_path: Path) -> Iterator[str]:
    """An https 'LXD' on loopback with a self-signed certificate; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Untrusting)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_certificate_nobody_trusts_is_unreachable_with_a_hint(https_lxd: str) -> None:
    with pytest.raises(Unreachable) as caught:
        client.connect({"remote": https_lxd}, env={})
    assert https_lxd in str(caught.value) and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert caught.value.hint and "lxd.verify" in caught.value.hint


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_daemon_that_does_not_trust_us_is_unreachable_with_a_hint(https_lxd: str) -> None:
    """`verify: false` holds even where REQUESTS_CA_BUNDLE is set (it is on this host)."""
    with pytest.raises(Unreachable, match="does not trust this client") as caught:
        client.connect({"remote": https_lxd, "verify": False}, env={})
    assert caught.value.hint and "lxc config trust add" in caught.value.hint


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unreachable, match=f"cannot reach LXD at https://127.0.0.1:{port}"):
        client.connect({"remote": f"https://127.0.0.1:{port}"}, env={})


def test_a_daemon_answering_with_an_error_is_unreachable_with_a_hint(short_tmp: Path) -> None:
    """An LXD that is stopping answers /1.0 with HTTP 500 (seen: "sql: database is closed");
    that is one hinted message, not an unexpected pylxd exception."""
    routes = {"/1.0": Status(500, "Failed to begin transaction: sql: database is closed")}
    with serving(short_tmp / "unix.socket", routes), pytest.raises(Unreachable) as caught:
        client.connect(env={"LXD_DIR": str(short_tmp)})
    assert "database is closed" in str(caught.value)
    assert caught.value.hint and "still running" in caught.value.hint
