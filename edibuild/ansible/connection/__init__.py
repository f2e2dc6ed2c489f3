"""Ansible connection plugins shipped with edibuild (loaded through ANSIBLE_CONNECTION_PLUGINS)."""
