"""Ansible connection to an LXD container through the LXD API (pylxd), for edibuild.

ansible-core ships no LXD connection (community.general's is not installed here), so
edibuild brings this small one: commands run through the exec API, files move through
the file API, so it works for local sockets and remote HTTPS endpoints alike. Large
stdin payloads over the exec websocket are unreliable in pylxd, so there is no
pipelining: Ansible pushes each module as a file and runs it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

import pylxd
from ansible.errors import AnsibleConnectionFailure, AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.connection import ConnectionBase  # type: ignore[import-untyped]

DOCUMENTATION = """
    name: edibuild_lxd
    short_description: run tasks in an LXD container through the LXD API
    description:
        - Runs commands and copies files through pylxd (local unix socket or HTTPS).
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
        self._instance: Any = None

    def _connect(self) -> Connection:
        """Open the pylxd client and look the container up."""
        if self._instance is not None:
            return self
        spec = self.get_option("endpoint")
        spec = json.loads(spec) if isinstance(spec, str) else dict(spec)
        cert = tuple(spec["cert"]) if spec.get("cert") else None
        name = self.get_option("remote_addr")
        try:
            client = pylxd.Client(endpoint=spec["url"], cert=cert, verify=spec.get("verify", True))
            self._instance = client.instances.get(name)
        except Exception as exc:
            raise AnsibleConnectionFailure(f"cannot reach LXD container {name}: {exc}") from exc
        self._connected = True
        return self

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        """Run a shell command line in the container."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        self._display.vvv(f"EXEC {cmd}", host=self.get_option("remote_addr"))
        for attempt in range(EXEC_ATTEMPTS):
            try:
                if in_data is None:
                    return self._exec_via_files(cmd)
                result = self._instance.execute(
                    ["/bin/sh", "-c", cmd], decode=False, stdin_payload=in_data
                )
                break
            except (BrokenPipeError, ConnectionResetError) as exc:
                # Seen once under load right after a container booted: the exec websocket
                # broke before the command ran. Try again; give up with a clear failure.
                if attempt + 1 == EXEC_ATTEMPTS:
                    raise AnsibleConnectionFailure(f"lost the LXD exec connection: {exc}") from exc
                self._display.vvv(f"exec connection broke ({exc}); retrying")
                time.sleep(1 + attempt)
        return int(result.exit_code), bytes(result.stdout), bytes(result.stderr)

    def _exec_via_files(self, cmd: str) -> tuple[int, bytes, bytes]:
        """Run `cmd` with its output in files, then read them over the file API.

        pylxd's exec websockets can lose output when the command ends before they catch
        up (seen under load: an empty answer from Ansible's `mkdir` of its temp dir); the
        exit code comes from the operation and is reliable, and so are files.
        """
        base = f"/run/edibuild-exec-{secrets.token_hex(8)}"
        wrapped = f'( {cmd}\n) >"{base}.out" 2>"{base}.err" </dev/null'
        result = self._instance.execute(["/bin/sh", "-c", wrapped], decode=False)
        try:
            out = bytes(self._instance.files.get(f"{base}.out"))
            err = bytes(self._instance.files.get(f"{base}.err"))
        finally:
            with contextlib.suppress(Exception):  # /run is never exported: harmless if left
                # The file API's DELETE: one HTTP request, cheaper than an `rm` over exec.
                for name in (f"{base}.out", f"{base}.err"):
                    self._instance.files.delete(name)
        return int(result.exit_code), out, err

    def put_file(self, in_path: str, out_path: str) -> None:
        """Copy a controller file into the container."""
        super().put_file(in_path, out_path)
        self._connect()
        try:
            with open(in_path, "rb") as f:
                self._instance.files.put(out_path, f.read())
        except Exception as exc:
            raise AnsibleError(f"failed to copy {in_path} to {out_path}: {exc}") from exc

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Copy a container file to the controller."""
        super().fetch_file(in_path, out_path)
        self._connect()
        try:
            data = self._instance.files.get(in_path)
        except Exception as exc:
            raise AnsibleError(f"failed to fetch {in_path}: {exc}") from exc
        with open(out_path, "wb") as f:
            f.write(data)

    def close(self) -> None:
        """Forget the client (nothing to tear down)."""
        self._instance = None
        self._connected = False
