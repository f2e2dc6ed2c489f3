"""Why a stage would run (or ran), in plain words: which input changed, from what to what.

The installed manifest of a stage records what its outputs were built from (config slice,
plugin digests, upstream digests, code version); comparing it with the inputs the stage
would use now names every difference, without hashes in the answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from edibuild.errors import EdibuildError
from edibuild.fsutil import read_json, sha256_file
from edibuild.project import Json, Project
from edibuild.stage import Stage

if TYPE_CHECKING:
    from edibuild.engine import Engine

SHOWN = 60  # characters of a value shown before it is shortened


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


def _external_state(project: Project, stage: Stage, info: Mapping[str, Json]) -> list[str]:
    """[] while the external state the outputs stand for exists; else why not (or why unknown)."""
    try:
        if stage.intact(project, info):
            return []
    except EdibuildError as exc:  # LXD unreachable, say: the run stops with this error
        return [f"its external state cannot be checked: {exc.message}"]
    return ["external state it stands for is gone (see the stage's docs)"]


def reasons(engine: Engine, project: Project, stage: Stage, will_run: set[str]) -> list[str]:
    """Why `stage` must run for `project`; empty when it is up to date."""
    arts = engine.artifacts(project)
    manifest: Any = read_json(arts.manifest(stage.name))
    if not isinstance(manifest, dict) or arts.outputs(stage.name) is None:
        return ["it has not been built yet (or was cleaned)"]
    found: list[str] = []
    if not arts.intact(stage.name):
        found.append("an output file is missing or was changed in place")
    else:
        found += _external_state(project, stage, manifest.get("info") or {})
    if manifest.get("code_version") != stage.code_version:
        found.append(f"the code of the {stage.name} stage changed")
    found += [
        f"configuration: {c}" for c in config_changes(manifest.get("config"), stage.config(project))
    ]
    found += _plugin_changes(manifest.get("plugins") or {}, stage, project)
    for up in stage.upstream:
        if up in will_run:
            found.append(f"the {up} stage runs first (its output may change)")
            continue
        outputs = arts.outputs(up) or {}
        now = {n: o.sha256 for n, o in outputs.items()}
        if now != (manifest.get("upstream") or {}).get(up):
            found.append(f"the output of the {up} stage changed since this stage last ran")
    return found


def _plugin_changes(old: Mapping[str, str], stage: Stage, project: Project) -> list[str]:
    found = []
    now = {os.fspath(p): p for p in stage.plugins(project)}
    for path in sorted(now.keys() - old.keys()):
        found.append(f"plugin file {path} is new to this stage")
    for path in sorted(old.keys() - now.keys()):
        found.append(f"plugin file {path} is no longer used")
    for path in sorted(now.keys() & old.keys()):
        try:
            changed = sha256_file(now[path]) != old[path]
        except OSError:
            changed = True
        if changed:
            found.append(f"plugin file {path} changed")
    return found


def plan(engine: Engine, project: Project, targets: set[str]) -> list[tuple[Stage, list[str]]]:
    """Every stage (of `targets` and what they need, in order) that would run, with reasons."""
    stages = engine.enabled_stages(project)
    needed = _closure(stages, targets)
    will_run: set[str] = set()
    result = []
    for stage in stages:
        if stage.name not in needed:
            continue
        why = reasons(engine, project, stage, will_run)
        if why:
            will_run.add(stage.name)
            result.append((stage, why))
    return result


def _closure(stages: list[Stage], targets: set[str]) -> set[str]:
    by_name = {s.name: s for s in stages}
    todo, seen = [t for t in targets if t in by_name], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(by_name[name].upstream)
    return seen
