"""Prepare the machine edibuild runs on: Debian packages, the virtualenv, LXD and emulation."""
