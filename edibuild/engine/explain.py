"""Why a stage would run (or ran), in plain words: which input changed, from what to what.

The installed manifest of a stage records what its outputs were built from (config slice,
plugin digests, upstream digests, code version); comparing it with the StageInputs the
stage would use now names every difference, without hashes in the answer. A stage whose
inputs have an entry in the cache is restored from it, not built, and its outputs are
then known, so the stages after it are explained exactly too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edibuild.config.project import Project
from edibuild.data import Json, mapping
from edibuild.engine.inputs import Digests, StageInputs
from edibuild.engine.stage import Stage
from edibuild.engine.uptodate import external_state
from edibuild.store.artifacts import ProjectArtifacts
from edibuild.store.cache import Cache, Entry
from edibuild.store.fsutil import read_json

SHOWN = 60  # characters of a value shown before it is shortened
NOT_BUILT = "it has not been built yet (or was cleaned)"


def flatten(data: Json, prefix: str = "") -> dict[str, Json]:
    """{'a': {'b': 1}, 'l': [{'c': 2}]} -> {'a.b': 1, 'l[0].c': 2}; plain lists are leaves."""
    if isinstance(data, Mapping) and data:
        result: dict[str, Json] = {}
        for key, value in data.items():
            result.update(flatten(value, f"{prefix}{key}."))
        return result
    if isinstance(data, list) and data and any(isinstance(v, (dict, list)) for v in data):
        result = {}
        for index, value in enumerate(data):
            label = value.get("name", value.get("key", index)) if isinstance(value, dict) else index
            result.update(flatten(value, f"{prefix.rstrip('.')}[{label}]."))
        return result
    return {prefix.rstrip("."): data}


def _show(value: Json) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def config_changes(old: Json, new: Json) -> Iterator[str]:
    """Sentences naming each configuration key that differs."""
    before, after = flatten(old), flatten(new)
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            yield f"{key} was added ({_show(after[key])})"
        elif key not in after:
            yield f"{key} was removed (was {_show(before[key])})"
        elif before[key] != after[key]:
            yield f"{key} changed from {_show(before[key])} to {_show(after[key])}"


def plugin_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Sentences naming each plugin file that is new, gone or changed."""
    found = [f"plugin file {p} is new to this stage" for p in sorted(new.keys() - old.keys())]
    found += [f"plugin file {p} is no longer used" for p in sorted(old.keys() - new.keys())]
    changed = [p for p in sorted(new.keys() & old.keys()) if new[p] != old[p]]
    found += [f"plugin file {p} changed" for p in changed]
    return found


def epoch_change(old: Json, new: int) -> list[str]:
    """The source date epoch the outputs were clamped to, if it is no longer this one."""
    if old == new:
        return []
    if old is None:  # manifests of edibuild versions whose key did not hold the epoch
        return [f"the source date epoch ({new}) is not recorded with the outputs"]
    return [f"the source date epoch changed from {old} to {new}"]


def reasons(
    manifest: Any,
    inputs: StageInputs,
    *,
    outputs_intact: bool,
    external: Iterable[str] = (),
    runs_first: Iterable[str] = (),
) -> list[str]:
    """Why a stage must run; empty when its installed outputs were built from `inputs`.

    `external` says what is wrong with the state outside the artifacts (see
    `external_state`); `inputs.upstream` may lack the stages in `runs_first`, whose
    outputs are not known yet.
    """
    if not isinstance(manifest, dict):
        return [NOT_BUILT]
    found: list[str] = []
    if not outputs_intact:
        found.append("an output file is missing or was changed in place")
    else:
        found += external
    if manifest.get("code_version") != inputs.code:
        found.append(f"the code of the {inputs.stage} stage changed")
    found += [f"configuration: {c}" for c in config_changes(manifest.get("config"), inputs.config)]
    found += plugin_changes(manifest.get("plugins") or {}, inputs.plugins)
    found += epoch_change(manifest.get("source_date_epoch"), inputs.epoch)
    found += [f"the {up} stage runs first (its output may change)" for up in runs_first]
    recorded = manifest.get("upstream") or {}
    for up, digests in inputs.upstream.items():
        if dict(digests) != recorded.get(up):
            found.append(f"the output of the {up} stage changed since this stage last ran")
    return found


@dataclass(frozen=True)
class Step:
    """A stage that a build would not skip: why, and the cache entry it comes back from."""

    stage: Stage
    reasons: tuple[str, ...]
    cached: Entry | None = None

    @property
    def verdict(self) -> str:
        """`would run`, or `would be restored from the cache ...`."""
        if self.cached is None:
            return "would run"
        return (
            "would be restored from the cache, not built "
            f"(the same inputs were built before, key {self.cached.key[:12]})"
        )

    def headline(self, project: str) -> str:
        """`bootstrap:NAME would run:` (the line above the reasons)."""
        return f"{self.stage.name}:{project} {self.verdict}:"


InputsOf = Callable[[Stage, Digests], StageInputs]


def plan(
    project: Project,
    stages: Sequence[Stage],
    arts: ProjectArtifacts,
    cache: Cache,
    inputs_of: InputsOf,
) -> list[Step]:
    """The stages of `stages` (in order, with all they read) a build would not skip."""
    known: dict[str, dict[str, str]] = {}  # outputs each stage will have
    unknown: set[str] = set()  # stages that would run: outputs unknown until then
    steps: list[Step] = []
    for stage in stages:
        runs_first = [u for u in stage.upstream if u in unknown]
        upstream = {u: known[u] for u in stage.upstream if u in known}
        inputs = inputs_of(stage, upstream)
        manifest = read_json(arts.manifest(stage.name))
        intact = arts.intact(stage.name)
        info = manifest.get("info") if isinstance(manifest, dict) else None
        why = reasons(
            manifest,
            inputs,
            outputs_intact=intact,
            external=external_state(project, stage, info or {}) if intact else (),
            runs_first=runs_first,
        )
        if not why:
            known[stage.name] = {n: o.sha256 for n, o in (arts.outputs(stage.name) or {}).items()}
            continue
        entry = None if runs_first else cache.peek(stage.name, inputs.key)
        if entry is not None and external_state(project, stage, mapping(entry.info)):
            entry = None
        if entry is None:
            unknown.add(stage.name)
        else:
            known[stage.name] = {n: o.sha256 for n, o in entry.outputs.items()}
        steps.append(Step(stage, tuple(why), entry))
    return steps
