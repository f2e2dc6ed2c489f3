"""The container backend: everything edibuild knows about LXD (and Incus) lives here."""
