"""The container backend: everything edibuild knows about LXD (and Incus) lives here.

Stages, layers, the dev container and the Ansible connection depend on the
`ContainerBackend` protocol (protocol.py), never on pylxd. One job per module:

- errors.py: the typed errors (BackendError; Unreachable, Denied; Refused, NotFound, Conflict).
- endpoints.py: where LXD answers (remote, $LXD_DIR, $INCUS_DIR, Debian, snap, Incus); the
  one install hint. Standard library only, shared with host setup.
- unixhttp.py: GET on a local unix socket (standard library only).
- probe.py: the cheap up-to-date questions (image there? instance there?) without pylxd.
- names.py: names and ownership labels of every object edibuild makes (the scheme).
- protocol.py: ContainerBackend and Instance, and the values they exchange.
- client.py, instance.py, translate.py: the implementation over pylxd (imported lazily).
- metadata.py, devices.py, boot.py: image metadata, device definitions, the boot wait.
"""
