"""Ansible connection to an LXD container through edibuild's container backend.

ansible-core ships no LXD connection (community.general's is not installed here), so
edibuild brings this small one: commands run through the exec API, files move through
the file API (edibuild.lxd), so it works for local sockets and remote HTTPS endpoints
alike. Large stdin payloads over the exec websocket are unreliable, so there is no
pipelining: Ansible pushes each module as a file and runs it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.connection import ConnectionBase  # type: ignore[import-untyped]

from edibuild.lxd.client import open_endpoint
from edibuild.lxd.endpoints import Endpoint
from edibuild.lxd.errors import BackendError, Unreachable
from edibuild.lxd.protocol import Executed, Instance

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
    has_pipelining = False
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
                if in_data is None:
                    return self._exec_via_files(box, cmd)
                result = box.execute(["/bin/sh", "-c", cmd], stdin=in_data)
                break
            except Unreachable as exc:
                # Seen once under load right after a container booted: the exec websocket
                # broke before the command ran. Try again; give up with a clear failure.
                if attempt + 1 == EXEC_ATTEMPTS:
                    raise AnsibleConnectionFailure(f"lost the LXD exec connection: {exc}") from exc
                self._display.vvv(f"exec connection broke ({exc}); retrying")
                time.sleep(1 + attempt)
        return result

    def _exec_via_files(self, box: Instance, cmd: str) -> Executed:
        """Run `cmd` with its output in files, then read them over the file API.

        The exec websockets can lose output when the command ends before they catch
        up (seen under load: an empty answer from Ansible's `mkdir` of its temp dir); the
        exit code comes from the operation and is reliable, and so are files.
        """
        base = f"/run/edibuild-exec-{secrets.token_hex(8)}"
        wrapped = f'( {cmd}\n) >"{base}.out" 2>"{base}.err" </dev/null'
        result = box.execute(["/bin/sh", "-c", wrapped])
        try:
            out = box.read(f"{base}.out")
            err = box.read(f"{base}.err")
        finally:
            with contextlib.suppress(BackendError):  # /run is never exported: harmless if left
                # The file API's DELETE: one HTTP request, cheaper than an `rm` over exec.
                for name in (f"{base}.out", f"{base}.err"):
                    box.delete_file(name)
        return Executed(result.code, out, err)

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
