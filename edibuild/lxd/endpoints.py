"""Where the LXD API answers: the one list of candidates, in the order edibuild tries them.

A remote endpoint, from the project (`lxd: {remote: https://..., cert: ..., key: ...,
verify: ...}`) or from `EDIBUILD_LXD_REMOTE` (with `EDIBUILD_LXD_CERT`,
`EDIBUILD_LXD_KEY`, `EDIBUILD_LXD_VERIFY`), is the only candidate when set. Otherwise the
unix sockets under `$LXD_DIR`, `$INCUS_DIR`, Debian's `/var/lib/lxd`, the snap's
`/var/snap/lxd/common/lxd` and Incus' `/var/lib/incus`, the first that answers.

Standard library only: host setup uses it from the system Python, before the virtualenv.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edibuild.lxd import unixhttp
from edibuild.lxd.errors import Denied, Unreachable

INSTALL_HINT = (
    "install LXD (Debian: apt-get install lxd lxd-client; elsewhere: snap install lxd; or "
    "Incus: apt-get install incus on Debian 13), start it (systemctl start lxd; without "
    "systemd: setsid -f lxd --group root, then lxd waitready) and initialise it once with "
    "lxd init (a storage pool named default and a root disk in the default profile); "
    "./edibuild.sh does all of this when run as root; or point EDIBUILD_LXD_REMOTE or the "
    "project's `lxd: {remote: ...}` at a remote LXD"
)
# (socket below the file system root, daemon kind, where it comes from)
WELL_KNOWN: tuple[tuple[str, str, str], ...] = (
    ("var/lib/lxd/unix.socket", "lxd", "the Debian package"),
    ("var/snap/lxd/common/lxd/unix.socket", "lxd", "the snap"),
    ("var/lib/incus/unix.socket", "incus", "Incus"),
)
FALSE = ("0", "false", "no", "off")
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Endpoint:
    """One place the LXD API may answer: a unix socket path or an https URL (client cert)."""

    url: str
    cert: tuple[str, str] | None = None
    verify: bool | str = True
    kind: str = "lxd"  # "lxd" or "incus": selects the admin tool
    origin: str = ""  # where this candidate comes from, for messages

    @classmethod
    def local(cls, socket: Path, kind: str = "lxd", origin: str = "") -> Endpoint:
        """The endpoint of a daemon listening on unix socket `socket`."""
        return cls(str(socket), kind=kind, origin=origin)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        """The endpoint `as_json` described (handed over to another process)."""
        cert = data.get("cert")
        pair = (str(cert[0]), str(cert[1])) if cert else None
        return cls(str(data["url"]), pair, data.get("verify", True))

    @property
    def is_local(self) -> bool:
        """True for a unix socket on this machine (proxy devices reach our loopback)."""
        return self.url.startswith("/")

    @property
    def socket(self) -> Path:
        """The unix socket of a local endpoint."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a unix socket")
        return Path(self.url)

    @property
    def env(self) -> dict[str, str]:
        """The environment that points this daemon's command-line tools at it."""
        var = "INCUS_DIR" if self.kind == "incus" else "LXD_DIR"
        return {var: str(self.socket.parent)}

    def command(self, *args: str) -> list[str]:
        """Return argv for this daemon's admin tool (`lxd ...` or `incus admin ...`)."""
        return ["incus", "admin", *args] if self.kind == "incus" else ["lxd", *args]

    def as_json(self) -> dict[str, Any]:
        """Plain data to hand to another process (the Ansible connection plugin)."""
        return {
            "url": self.url,
            "cert": list(self.cert) if self.cert else None,
            "verify": self.verify,
        }


def _verify(value: Any) -> bool | str:
    """`verify` as pylxd takes it: a bool, or the path of a CA bundle."""
    if isinstance(value, str) and value.lower() in FALSE + TRUE:
        return value.lower() in TRUE
    return value if isinstance(value, bool) else str(value)


def remote(settings: Mapping[str, Any] | None, env: Mapping[str, str]) -> Endpoint | None:
    """The remote endpoint the project's `lxd` section or the environment names, if any."""
    section = settings or {}
    url = section.get("remote") or env.get("EDIBUILD_LXD_REMOTE")
    if not url:
        return None
    cert = section.get("cert") or env.get("EDIBUILD_LXD_CERT")
    key = section.get("key") or env.get("EDIBUILD_LXD_KEY")
    verify = _verify(section.get("verify", env.get("EDIBUILD_LXD_VERIFY", True)))
    pair = (str(cert), str(key)) if cert and key else None
    origin = "the project" if section.get("remote") else "$EDIBUILD_LXD_REMOTE"
    return Endpoint(str(url), pair, verify, origin=origin)


def local_candidates(
    env: Mapping[str, str] | None = None, root: Path = Path("/")
) -> list[Endpoint]:
    """Every local socket edibuild tries, in order, whether it exists or not."""
    env = os.environ if env is None else env
    found = []
    if env.get("LXD_DIR"):
        found.append(Endpoint.local(Path(env["LXD_DIR"]) / "unix.socket", "lxd", "$LXD_DIR"))
    if env.get("INCUS_DIR"):
        found.append(Endpoint.local(Path(env["INCUS_DIR"]) / "unix.socket", "incus", "$INCUS_DIR"))
    found += [Endpoint.local(root / path, kind, origin) for path, kind, origin in WELL_KNOWN]
    return found


def candidates(
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> list[Endpoint]:
    """The endpoints to try: the remote one alone when configured, else the local sockets."""
    env = os.environ if env is None else env
    found = remote(settings, env)
    return [found] if found is not None else local_candidates(env, root)


def find_running(endpoints: Sequence[Endpoint]) -> Endpoint | None:
    """Return the first local endpoint whose daemon answers, or None.

    Raise Denied when a socket exists but refuses us (permissions): starting another
    daemon, or trying the next socket, would not help then.
    """
    for endpoint in endpoints:
        try:
            unixhttp.request(endpoint.socket, "/1.0", timeout=5.0)
        except Denied:
            raise
        except Unreachable:
            continue
        return endpoint
    return None


def find_endpoint(
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
) -> Endpoint:
    """The endpoint to use: the remote one, or the first local daemon that answers.

    A remote endpoint is not contacted here: the client checks it when it connects.
    """
    tried = candidates(settings, env, root)
    if not tried[0].is_local:
        return tried[0]
    found = find_running(tried)
    if found is None:
        names = ", ".join(e.url for e in tried)
        raise Unreachable(f"no LXD daemon answers (tried: {names})", hint=INSTALL_HINT)
    return found
