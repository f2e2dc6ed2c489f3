"""The development container's parts: who the developer is, the id map, the accounts in
the container, ports, the apt proxy's life, package comparison and the rename dance; the
image, the profiles, the host side, leftovers, one build's facts and what it reports.

stages/container.py puts them together; each module here does one job and most are pure
(unit tested without LXD).
"""
