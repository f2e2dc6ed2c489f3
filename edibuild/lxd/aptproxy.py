"""A small caching HTTP forward proxy on the host loopback, for apt inside containers.

Containers here have no network device; an LXD proxy device connects 127.0.0.1:3142
inside the container to this proxy. It forwards plain-HTTP GET/HEAD requests only to
the mirror hosts the project uses (never to private, loopback or link-local
addresses), and keeps immutable downloads (.deb files and by-hash indices) under
the cache directory so the next build does not fetch them again.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from edibuild import orphans
from edibuild.errors import StageFailed
from edibuild.lxd.mirrors import mirror_hosts as mirror_hosts  # re-exported

HOP_HEADERS = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "proxy-authorization",
    "te",
    "upgrade",
)
CACHEABLE_SUFFIXES = (".deb", ".udeb")
PART_PREFIX = ".part-"
HOST = socket.gethostname()
TIMEOUT = 60
# Never forwarded to: private networks (RFC 1918, CGNAT, ULA), loopback, link-local,
# multicast, unspecified and reserved addresses.
BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def cache_root(cache_dir: Path) -> Path:
    """Return the proxy's cache directory inside the workspace's cache (`apt-proxy/`)."""
    return cache_dir / "apt-proxy"


def blocked(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address the proxy must never connect to (see BLOCKED)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in BLOCKED)


def public_address(host: str) -> str | None:
    """Return an address of `host` if none of its addresses is blocked (else None).

    The proxy connects to this very address, so a name that resolves differently a
    moment later (DNS rebinding) cannot lead it to a private network.
    """
    try:
        infos = socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)
    except OSError:
        return None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or any(blocked(a) for a in addresses):
        return None
    ipv4 = [a for a in addresses if a.version == 4]
    return str((ipv4 or addresses)[0])


def cacheable(path: str) -> bool:
    """True for files whose content never changes under their URL (.deb, by-hash)."""
    return path.endswith(CACHEABLE_SUFFIXES) or "/by-hash/" in path


@dataclass
class Stats:
    """Counts of requests answered from cache, fetched, and refused."""

    hits: int = 0
    misses: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, what: str) -> None:
        """Count one request of kind hits/misses/refused."""
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)


class _Handler(BaseHTTPRequestHandler):
    """Answers one proxied request (the server carries the policy and the cache)."""

    server: _ProxyServer
    protocol_version = "HTTP/1.1"
    answering = False  # the response's status and headers are sent

    def log_message(self, format: str, *args: object) -> None:
        """Keep quiet (apt's own output says what it fetched)."""

    def do_CONNECT(self) -> None:
        """Refuse tunnels: only plain HTTP is proxied."""
        self._refuse(405, "CONNECT is not supported")

    def do_HEAD(self) -> None:
        """Forward a HEAD request."""
        self._handle(head=True)

    def do_GET(self) -> None:
        """Forward a GET request, from the cache when possible."""
        self._handle(head=False)

    def _refuse(self, code: int, why: str) -> None:
        self.server.stats.add("refused")
        body = f"edibuild apt proxy: {why}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, head: bool) -> None:
        url = urlsplit(self.path)
        host = url.hostname or ""
        address = self.server.address_of(host, url.port or 80) if url.scheme == "http" else None
        if address is None:
            self._refuse(403, f"{host or self.path} is not a public mirror of this project")
            return
        path = url.path + (f"?{url.query}" if url.query else "")
        cached = self.server.cache_file(host, url.path) if cacheable(url.path) else None
        if cached is not None and cached.is_file():
            self.server.stats.add("hits")
            self._send_file(cached, head)
            return
        self.server.stats.add("misses")
        self.answering = False
        try:
            self._forward(address, host, path, head, None if head else cached)
        except (OSError, http.client.HTTPException) as exc:
            if self.answering:  # the mirror dropped mid-body: end the client's too, now
                self.close_connection = True
                return
            self._refuse(502, f"upstream {host}: {exc}")

    def _send_file(self, path: Path, head: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not head:
            with path.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def _forward(self, address: str, host: str, path: str, head: bool, cache: Path | None) -> None:
        upstream = http.client.HTTPConnection(address, self.server.port, timeout=TIMEOUT)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        headers["Host"] = host
        headers["Connection"] = "close"
        upstream.request("HEAD" if head else "GET", path, headers=headers)
        with contextlib.closing(upstream):
            response = upstream.getresponse()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_HEADERS:
                    self.send_header(key, value)
            if response.getheader("Content-Length") is None and not head:
                self.close_connection = True
            self.end_headers()
            self.answering = True  # from here on a failure can only close the connection
            if not head:
                keep = cache if response.status == 200 else None
                _relay(response, self.wfile.write, keep)


def _relay(
    response: http.client.HTTPResponse, write: Callable[[bytes], object], cache: Path | None
) -> None:
    """Copy the response body to the client, and into the cache if it is complete.

    A body that ends before its Content-Length (the mirror dropped the connection) is
    an error, so the client's connection is closed at once: apt then retries instead of
    waiting for bytes that never come.
    """
    expected = response.getheader("Content-Length")
    size = int(expected) if expected is not None and expected.isdigit() else None
    if cache is None:
        sent = 0
        while chunk := response.read(1 << 16):
            write(chunk)
            sent += len(chunk)
        _complete(sent, size)
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f"{PART_PREFIX}{os.getpid()}@{HOST}-")
    last = b""
    try:
        with os.fdopen(fd, "wb") as part:
            while chunk := response.read(1 << 16):
                part.write(chunk)
                write(last)
                last = chunk
        _complete(os.path.getsize(tmp), size)
        os.replace(tmp, cache)
        # The last bytes go out only once the file is in the cache: a client that asks
        # again as soon as it has the whole body finds it there.
        write(last)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _complete(got: int, expected: int | None) -> None:
    """Raise IncompleteRead when fewer bytes came than the mirror announced."""
    if expected is not None and got != expected:
        raise http.client.IncompleteRead(b"", expected - got)


class _ProxyServer(ThreadingHTTPServer):
    """The listening socket plus the policy: allowed hosts, cache, statistics."""

    daemon_threads = True

    def __init__(
        self,
        hosts: Iterable[str],
        cache: Path,
        resolve: Callable[[str], str | None],
        port: int = 80,
        listen: int = 0,
    ) -> None:
        super().__init__(("127.0.0.1", listen), _Handler)
        self.port = port
        self.hosts = {h.lower() for h in hosts}
        self.cache = cache
        self.resolve = resolve
        self.stats = Stats()

    def handle_error(self, request: object, client_address: object) -> None:
        """One line for a failed request instead of socketserver's traceback; none for a
        client or mirror that dropped the connection (apt reports that, and retries)."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError | http.client.HTTPException):
            print(f"edibuild: apt proxy: {type(error).__name__}: {error}", file=sys.stderr)

    def address_of(self, host: str, port: int) -> str | None:
        """Return the address to connect to for a project mirror (on our port), else None."""
        if host.lower() not in self.hosts or port != self.port:
            return None
        return self.resolve(host)

    def cache_file(self, host: str, path: str) -> Path | None:
        """Return where a cacheable URL is kept (None for paths that escape the cache)."""
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return None
        return self.cache / host.lower() / Path(*parts)


def sweep_parts(cache: Path) -> list[Path]:
    """Remove the partial downloads (`.part-PID@HOST-...`) of ended proxies of this host.

    A download completes into a temporary file that is renamed into place; a build
    killed meanwhile leaves the temporary file, which nothing else would remove.
    """
    removed = []
    for part in cache.rglob(f"{PART_PREFIX}*"):
        pid, _, rest = part.name[len(PART_PREFIX) :].partition("@")
        if not rest.startswith(f"{HOST}-") or not pid.isdigit() or orphans.alive(int(pid)):
            continue
        if part.is_file():
            with contextlib.suppress(OSError):
                part.unlink()
                removed.append(part)
    return removed


@contextlib.contextmanager
def serving(
    hosts: Iterable[str],
    cache: Path,
    resolve: Callable[[str], str | None] = public_address,
    port: int = 80,
) -> Iterator[_ProxyServer]:
    """Run the proxy on a free loopback port for the block; mirrors answer on `port`."""
    hosts = list(hosts)
    if not hosts:
        raise StageFailed(
            "no http:// mirror to proxy for the container",
            hint="give bootstrap.mirror as an http:// URL (apt verifies "
            "signatures, so https is not needed)",
        )
    cache.mkdir(parents=True, exist_ok=True)
    sweep_parts(cache)
    server = _ProxyServer(hosts, cache, resolve, port)
    thread = threading.Thread(target=server.serve_forever, name="edibuild-apt-proxy", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def port_of(server: _ProxyServer) -> int:
    """Return the port the proxy listens on (127.0.0.1)."""
    return int(server.server_address[1])
