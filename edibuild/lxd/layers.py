"""Layered configure: the container state after each playbook, cached as an LXD image.

The state after playbook i is named by a chained *layer key*: the key of the state
before it (at the start: the imported image's fingerprint, configure's code version and
the configuration every playbook sees), plus playbook i's node key, parameters and the
digest of every file of its directory (of what the playbook says as YAML, of the other
files' bytes: edibuild/store/yamldigest.py). Editing playbook 3 of 5 so changes the keys of
states 3..5 only, and configure restarts from the image of state 2; editing playbook 1,
the profiles, the parameters or the bootstrap changes every key (a run from scratch).

A layer is an LXD image published from the stopped container, zstd-compressed, aliased
`edibuild-layer-<project>-<key16>` (see edibuild/lxd/names.py). The state after the
last playbook is never published (it is the stage's output anyway). Saving a layer costs
a stop, a publish and a start (about 8 s for a VM image on 2 cores), so by default
(`layers: true`) a state is saved only where that pays: after the last playbook but one
on a run from scratch (the playbook a user edits most is late), and after any playbook
once the playbooks run since the last saved state (or the start) took WORTH_SECONDS (a
run after an edit saves no cheap state after the edited playbook: the next edit is
likely that playbook again, whose start is cached); `layers: every` saves after each
playbook but the last. Which states were saved never changes a result: a run starts
from the longest cached prefix, whatever gaps the chain has. Per project, the
layers of the current chain plus the `SPARE` most recently used others are kept;
`remove_all` (from configure's `clean_external`) removes every layer of the project. No
other LXD image is touched: only aliases matching the project's exact pattern count as
its layers.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edibuild.config.project import Node, Project
from edibuild.data import Json
from edibuild.lxd import names
from edibuild.lxd.errors import Refused
from edibuild.lxd.protocol import ContainerBackend, Image, Instance
from edibuild.store.fsutil import digest_json, sha256_file
from edibuild.store.yamldigest import file_digest

# Bump when what a layer holds changes meaning (invalidates every cached layer).
LAYER_FORMAT = 2
# Layers of a project kept besides those of the chain the last build used or made.
SPARE = 2
# A layer uploaded or used this recently is never pruned: another build of the same
# project (another checkout, another terminal) may be about to launch from it.
RECENT_SECONDS = 600
COMPRESSION = "zstd"
# Playbook seconds since the last saved state that make the next state worth saving.
WORTH_SECONDS = 10.0


def enabled(project: Project) -> bool:
    """True unless the project opts out with `lxd: {layers: false}`."""
    return project.lxd.layers != "off"


def every(project: Project) -> bool:
    """True when the project asks for a layer after each playbook (`layers: every`)."""
    return project.lxd.layers == "every"


def node_files(node: Node) -> list[Path]:
    """The files a playbook may read: itself and, in its own directory, every file.

    A playbook directly in a shared `playbooks/` or `projects/` folder counts alone
    (the same rule as configure's plugin list; found and bounded at load, see
    edibuild/config/paths.py).
    """
    return sorted({node.path, *node.files})


def files_digest(files: Sequence[Path], base: Path, parsed: Path | None = None) -> dict[str, str]:
    """Map each file (relative to `base` when below it) to its digest: of what it says for
    `parsed` (the playbook, YAML), of its bytes for the others (templates, files)."""
    result = {}
    for path in files:
        name = path.relative_to(base) if path.is_relative_to(base) else path
        result[str(name)] = file_digest(path, path == parsed)
    return result


def step_input(node: Node) -> Json:
    """What one playbook step depends on: its node key, parameters and files."""
    return {
        "key": node.key,
        "parameters": dict(node.parameters),
        "files": files_digest(node_files(node), node.path.parent, parsed=node.path),
    }


def chain_keys(start: Json, steps: Sequence[Json]) -> tuple[str, ...]:
    """Return the key of the state after each step; each key covers every step before."""
    key = digest_json({"format": LAYER_FORMAT, "start": start})
    keys = []
    for step in steps:
        key = digest_json({"after": key, "step": step})
        keys.append(key)
    return tuple(keys)


def layer_keys(
    project: Project, fingerprint: str, code: str, common: Json, shared: Sequence[Path]
) -> tuple[str, ...]:
    """Keys of the states after each of the project's playbooks.

    `common` is configuration every playbook sees (parameters, extra vars, profiles);
    `shared` are files any playbook may read (profile plugins, ssh_pub_keys/...).
    """
    start = {
        "image": fingerprint,
        "code": code,
        "common": common,
        "shared": {str(p): sha256_file(p) for p in sorted(shared)},
    }
    return chain_keys(start, [step_input(n) for n in project.playbooks])


def alias(project: Project, key: str) -> str:
    """The LXD image alias of the project's layer with key `key`."""
    return names.layer_alias(project.name, key)


def alias_pattern(project: Project) -> re.Pattern[str]:
    """Matches exactly the aliases of this project's layers (not of `<project>-x`)."""
    return names.layer_pattern(project.name)


@dataclass
class Plan:
    """Where a configure run starts and which states it saves as layers."""

    keys: tuple[str, ...]
    start: int = 0
    source: str = ""
    use_layers: bool = True
    every: bool = False
    made: list[dict[str, Json]] = field(default_factory=list)

    def publishes(self, index: int, unsaved: float) -> bool:
        """True when the state after playbook `index` (0-based) is saved as a layer, given
        the seconds the playbooks since the last saved state (or the start) took."""
        if not self.use_layers or index >= len(self.keys) - 1:
            return False
        last_but_one = index == len(self.keys) - 2 and self.start == 0
        return self.every or last_but_one or unsaved >= WORTH_SECONDS

    def info(self, project: Project) -> Json:
        """What the run did with layers, for the stage manifest."""
        skipped = [n.key for n in project.playbooks[: self.start]]
        return {
            "enabled": self.use_layers,
            "started_after": skipped[-1] if skipped else None,
            "skipped": skipped,
            "source": self.source,
            "published": self.made,
        }


def plan(
    backend: ContainerBackend, project: Project, keys: Sequence[str], image: str, use: bool
) -> Plan:
    """Find the longest cached prefix of layers: launch from it, run the rest."""
    result = Plan(tuple(keys), 0, image, use, every(project))
    if not use:
        return result
    for index in range(len(keys) - 2, -1, -1):
        found = backend.image_by_alias(alias(project, keys[index]))
        if found is not None:
            result.start, result.source = index + 1, found.fingerprint
            break
    return result


def publish(
    backend: ContainerBackend,
    box: Instance,
    project: Project,
    key: str,
    after: str,
    image_of: Callable[[str], tuple[str, str]] | None = None,
) -> dict[str, Json]:
    """Save the stopped container as the layer `key` (the state after `after`): through
    `image_of` (given the description, it makes the image and returns its fingerprint
    and how it was made), else by LXD's publish."""
    name = alias(project, key)
    started = time.monotonic()
    description = f"edibuild {project.name}: configure state after {after} (key {key[:16]})"
    if image_of is not None:
        fingerprint, way = image_of(description)
    else:
        fingerprint, way = box.publish(compression=COMPRESSION, description=description), "publish"
    try:
        backend.add_alias(fingerprint, name, description)
    except Refused:
        # Another build published the same layer meanwhile: keep theirs.
        backend.delete_image(fingerprint)
        existing = backend.image_by_alias(name)
        fingerprint = existing.fingerprint if existing is not None else ""
    seconds = round(time.monotonic() - started, 2)
    return {
        "after": after,
        "alias": name,
        "fingerprint": fingerprint,
        "seconds": seconds,
        "made_from": way,
    }


def project_layers(backend: ContainerBackend, project: Project) -> list[tuple[str, Image]]:
    """The project's layer images as (alias, image), most recently used first."""
    pattern = alias_pattern(project)
    found = [
        (name, image) for image in backend.images() for name in image.aliases if pattern.match(name)
    ]
    found.sort(key=lambda pair: _recency(pair[1]), reverse=True)
    return found


def _recency(image: Image) -> str:
    return max(image.uploaded_at[:19], image.last_used_at[:19])


def _recent(image: Image, now: float) -> bool:
    """True if the image was uploaded or used in the last RECENT_SECONDS."""
    try:
        stamp = calendar.timegm(time.strptime(_recency(image), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:  # no or an odd time stamp: treat it as old
        return False
    return now - stamp < RECENT_SECONDS


def prune(
    backend: ContainerBackend, project: Project, keep: Sequence[str], now: float | None = None
) -> list[str]:
    """Delete the project's layers outside `keep` (keys), sparing the SPARE newest and
    every layer uploaded or used in the last RECENT_SECONDS (a parallel build's)."""
    wanted = {alias(project, k) for k in keep}
    moment = time.time() if now is None else now
    spare = SPARE
    removed = []
    for name, image in project_layers(backend, project):
        if name in wanted or _recent(image, moment):
            continue
        if spare > 0:
            spare -= 1
            continue
        backend.delete_image(image.fingerprint)
        removed.append(name)
    return removed


def remove_all(backend: ContainerBackend, project: Project) -> list[str]:
    """Delete every layer image of the project; return their aliases."""
    removed = []
    for name, image in project_layers(backend, project):
        backend.delete_image(image.fingerprint)
        removed.append(name)
    return removed


def common_config(config: Mapping[str, Json]) -> Json:
    """Configure's config slice without the playbook list (the steps carry that)."""
    return {k: v for k, v in config.items() if k != "playbooks"}
