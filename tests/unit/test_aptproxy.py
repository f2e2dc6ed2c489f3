"""The apt proxy: mirror-only forwarding, blocked addresses, and its .deb cache."""

from __future__ import annotations

import http.client
import ipaddress
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edibuild.lxd import aptproxy


class _Mirror(BaseHTTPRequestHandler):
    """A fake mirror on loopback that counts what it served."""

    served: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).served.append(self.path)
        body = f"content of {self.path} for {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def mirror() -> Iterator[int]:
    """Run the fake mirror; yield its port."""
    _Mirror.served = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def fetch(proxy_port: int, url: str) -> tuple[int, bytes]:
    """GET `url` through the proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.request("GET", url, headers={"Host": url.split("/")[2].split(":")[0]})
    response = conn.getresponse()
    return response.status, response.read()


def test_caches_debs_but_not_indices(mirror: int, tmp_path: Path) -> None:
    """A .deb is fetched once and then served from the cache; InRelease always upstream."""
    with aptproxy.serving(["mirror.test"], tmp_path, lambda h: "127.0.0.1", mirror) as server:
        port = aptproxy.port_of(server)
        deb = f"http://mirror.test:{mirror}/debian/pool/main/h/hello/hello_1_amd64.deb"
        first = fetch(port, deb)
        second = fetch(port, deb)
        fetch(port, f"http://mirror.test:{mirror}/debian/dists/bookworm/InRelease")
        fetch(port, f"http://mirror.test:{mirror}/debian/dists/bookworm/InRelease")
    assert (
        first
        == second
        == (200, b"content of /debian/pool/main/h/hello/hello_1_amd64.deb for mirror.test")
    )
    assert _Mirror.served.count("/debian/pool/main/h/hello/hello_1_amd64.deb") == 1
    assert _Mirror.served.count("/debian/dists/bookworm/InRelease") == 2
    assert (tmp_path / "mirror.test/debian/pool/main/h/hello/hello_1_amd64.deb").is_file()
    assert (server.stats.hits, server.stats.misses) == (1, 3)


def test_refuses_other_hosts_and_tunnels(mirror: int, tmp_path: Path) -> None:
    """Hosts that are not the project's mirrors, and CONNECT, get 403/405."""
    with aptproxy.serving(["mirror.test"], tmp_path, lambda h: "127.0.0.1", mirror) as server:
        port = aptproxy.port_of(server)
        status, body = fetch(port, f"http://evil.test:{mirror}/x.deb")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("CONNECT", "mirror.test:443")
        connect_status = conn.getresponse().status
    assert status == 403 and b"not a public mirror" in body
    assert connect_status == 405
    assert _Mirror.served == []


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("10.1.2.3", True),
        ("172.20.0.1", True),
        ("192.168.1.1", True),
        ("127.0.0.1", True),
        ("169.254.1.1", True),
        ("100.64.0.1", True),
        ("fd00::1", True),
        ("::ffff:10.0.0.1", True),
        ("151.101.2.132", False),
        ("203.0.113.80", False),
        ("2a04:4e42::644", False),
    ],
)
def test_blocked_addresses(address: str, blocked: bool) -> None:
    """Private, loopback and link-local addresses are never forwarded to."""
    assert aptproxy.blocked(ipaddress.ip_address(address)) is blocked


def test_mirror_host_to_private_address_is_refused(mirror: int, tmp_path: Path) -> None:
    """A mirror name that resolves to a private address is refused (the real resolver)."""
    with aptproxy.serving(["localhost"], tmp_path, port=mirror) as server:
        status, _ = fetch(aptproxy.port_of(server), f"http://localhost:{mirror}/a.deb")
    assert status == 403
    assert _Mirror.served == []


def test_cache_paths_stay_inside(tmp_path: Path) -> None:
    """Paths with .. cannot escape the cache; http mirrors give their host names."""
    with aptproxy.serving(["m.test"], tmp_path, lambda h: None) as server:
        assert server.cache_file("m.test", "/a/../../etc/x.deb") is None
        assert server.cache_file("M.test", "/debian/x.deb") == tmp_path / "m.test/debian/x.deb"
    assert aptproxy.mirror_hosts(["http://deb.debian.org/debian", "https://x.org/"]) == [
        "deb.debian.org"
    ]
    assert aptproxy.cacheable("/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/ab")


class _Half(BaseHTTPRequestHandler):
    """A mirror that drops the connection halfway through a .deb."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.wfile.flush()
        self.connection.shutdown(2)


def test_a_dropped_mirror_connection_leaves_no_partial_file_and_no_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Half)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    half = int(server.server_address[1])
    try:
        proxy = aptproxy.serving(["mirror.test"], tmp_path, lambda h: "127.0.0.1", half)
        with proxy as running, pytest.raises(http.client.IncompleteRead):
            fetch(aptproxy.port_of(running), f"http://mirror.test:{half}/pool/a_1_amd64.deb")
    finally:
        server.shutdown()
        server.server_close()
    assert not list(tmp_path.rglob("*.deb")) and not list(tmp_path.rglob(".part-*"))
    assert "Traceback" not in capfd.readouterr().err


def test_partial_downloads_of_ended_proxies_are_swept(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    folder = tmp_path / "deb.debian.org" / "pool"
    folder.mkdir(parents=True)
    dead = folder / f".part-{ended.pid}@{aptproxy.HOST}-abc"
    other = folder / f".part-{ended.pid}@elsewhere-abc"
    dead.write_text("half")
    other.write_text("half")
    assert aptproxy.sweep_parts(tmp_path) == [dead]
    assert other.exists()
