"""Ansible connection to an LXD container through edibuild's container backend.

ansible-core ships no LXD connection (community.general's is not installed here), so
edibuild brings this small one: commands run through the exec API, files move through
the file API (edibuild.lxd), so it works for local sockets and remote HTTPS endpoints
alike. It pipelines: Ansible hands the module to `python3` as input, which goes in as a
file (edibuild.lxd.instance: no websockets), so a task costs one command in the container
instead of four (make a temporary directory, make the module executable, run it, remove
the directory), each a process start in the container (under qemu-user for a foreign
architecture) and a round trip to LXD. Every command gets edibuild's bytecode cache on its
PYTHONPATH (edibuild.ansible.bytecode), so a module's imports compile once per boot.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.connection import ConnectionBase  # type: ignore[import-untyped]

from edibuild.ansible import bytecode
from edibuild.lxd.client import open_endpoint
from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import BackendError, Unreachable
from edibuild.lxd.protocol import Instance

DOCUMENTATION = """
    name: edibuild_lxd
    short_description: run tasks in an LXD container through the LXD API
    description:
        - Runs commands and copies files through edibuild's LXD backend (unix socket or HTTPS).
    author: edibuild
    options:
        remote_addr:
            description: The container name.
            default: inventory_hostname
            vars:
                - name: inventory_hostname
                - name: ansible_host
        endpoint:
            description: JSON object with url, cert ([cert, key] or null) and verify.
            default: '{"url": "/var/lib/lxd/unix.socket", "cert": null, "verify": true}'
            vars:
                - name: edibuild_lxd_endpoint
"""


EXEC_ATTEMPTS = 3


class Connection(ConnectionBase):  # type: ignore[misc]
    """Run commands and copy files in an LXD container over the LXD API."""

    transport = "edibuild_lxd"
    has_pipelining = True
    default_user = "root"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._box: Instance | None = None

    def _instance(self) -> Instance:
        """Connect to LXD and look the container up (once)."""
        if self._box is not None:
            return self._box
        spec = self.get_option("endpoint")
        spec = json.loads(spec) if isinstance(spec, str) else dict(spec)
        name = self.get_option("remote_addr")
        try:
            box = open_endpoint(Endpoint.from_json(spec), timeout=None).instance(name)
        except BackendError as exc:
            raise AnsibleConnectionFailure(f"cannot reach LXD container {name}: {exc}") from exc
        if box is None:
            raise AnsibleConnectionFailure(f"cannot reach LXD container {name}: it does not exist")
        self._box = box
        self._connected = True
        return box

    def _connect(self) -> Connection:
        """Open the backend and look the container up."""
        self._instance()
        return self

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        """Run a shell command line in the container."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        box = self._instance()
        self._display.vvv(f"EXEC {cmd}", host=self.get_option("remote_addr"))
        for attempt in range(EXEC_ATTEMPTS):
            try:
                return box.execute(["/bin/sh", "-c", cmd], stdin=in_data, env=bytecode.ENVIRONMENT)
            except Unreachable as exc:
                # Seen once under load right after a container booted: the connection to
                # LXD broke before the command ran. Try again; give up with a clear failure.
                if attempt + 1 == EXEC_ATTEMPTS:
                    raise AnsibleConnectionFailure(f"lost the LXD exec connection: {exc}") from exc
                self._display.vvv(f"exec connection broke ({exc}); retrying")
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def put_file(self, in_path: str, out_path: str) -> None:
        """Copy a controller file into the container."""
        super().put_file(in_path, out_path)
        box = self._instance()
        try:
            with open(in_path, "rb") as f:
                box.push(out_path, f.read())
        except (OSError, BackendError) as exc:
            raise AnsibleError(f"failed to copy {in_path} to {out_path}: {exc}") from exc

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Copy a container file to the controller."""
        super().fetch_file(in_path, out_path)
        box = self._instance()
        try:
            data = box.read(in_path)
        except BackendError as exc:
            raise AnsibleError(f"failed to fetch {in_path}: {exc}") from exc
        with open(out_path, "wb") as f:
            f.write(data)

    def close(self) -> None:
        """Forget the backend (nothing to tear down)."""
        self._box = None
        self._connected = False
