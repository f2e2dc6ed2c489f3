"""User stages: a project's `postprocessing` nodes become stages of the same graph.

```yaml
postprocessing:
  100_compress:
    command: [zstd, -q, "-19", "{input:disk.image}", -o, "{output:image}"]
    inputs: [disk.image]                        # STAGE.OUTPUT names the command reads
    outputs: {image: "{{ edibuild_project_name }}.img.zst"}
  200_docs:
    path: plugins/postprocessing/docs.sh        # a script: its content is an input
    inputs: [export.rootfs]
    outputs: {docs: docs.tar.gz}
```
The command (or the script, when there is no command) runs in scratch space with
placeholders `{input:STAGE.OUTPUT}`, `{output:NAME}`, `{param:NAME}` and `{script}`
replaced, and the same values in the environment (EDIBUILD_INPUT_STAGE_OUTPUT,
EDIBUILD_OUTPUT_NAME, EDIBUILD_PARAM_NAME). Up-to-date rules are the built-in stages'.

Names follow edibuild/config/names.py: the stage name (the key without `NN_`) is a WORD and not
the name of a built-in stage, a helper task or a doit command; output names are WORDs,
output files NAMEs that no other stage of the project writes (nor `log`, `.state` or a
manifest). A stage it reads must run for the project: reading a switched-off stage
(`inputs: [mender.artifact]` without a `mender` section) is an error, not a silent drop.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edibuild.config import names
from edibuild.config.project import Project
from edibuild.config.reader import Reader
from edibuild.data import Json, mapping
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import ConfigError

NODE_KEYS = ("path", "command", "inputs", "outputs", "parameters", "skip")
PLACEHOLDER = re.compile(r"\{(input|output|param):([A-Za-z0-9_.-]+)\}|\{script\}")


def stage_name(key: str) -> str:
    """`100_compress` -> `compress`: the doit basename of a user stage."""
    return re.sub(r"^[0-9]+_", "", key)


def user_stages(project: Project, known: Sequence[Stage]) -> tuple[Stage, ...]:
    """Build one Stage per postprocessing node, checking names, inputs and outputs."""
    nodes = mapping(project.section("postprocessing"))
    stages: list[Stage] = []
    available = {s.name: s for s in known}
    running = _running(project, known)
    written = {
        file: stage for stage in running for file in available[stage].outputs(project).values()
    }
    for key, node in nodes.items():
        stage = _make_stage(project, key, node, available, running, written)
        available[stage.name] = stage
        running.add(stage.name)
        stages.append(stage)
    return tuple(stages)


def _running(project: Project, known: Sequence[Stage]) -> set[str]:
    """The built-in stages that run for the project (enabled, and all they read too)."""
    running: set[str] = set()
    for stage in known:
        if all(up in running for up in stage.upstream) and stage.enabled(project):
            running.add(stage.name)
    return running


def _error(project: Project, key: str, field: str, message: str, hint: str) -> ConfigError:
    """The error of field `field` of postprocessing node `key` (through the one Reader)."""
    return Reader(project.where, ("postprocessing", key), {}).error(message, hint=hint, field=field)


def _check_stage_name(project: Project, key: str, available: Mapping[str, Stage]) -> str:
    """The stage name of node `key`: a WORD no other stage, helper task or command has."""
    name = stage_name(key)
    location, dotted = project.where("postprocessing", key), f"postprocessing.{key}"
    what = "the stage name (the node key without its NN_ prefix)"
    names.check_name(name, what, location=location, key=dotted, word=True)
    taken = (
        "a built-in stage" if name in available else
        "a helper task or a doit command" if name in names.RESERVED_TASKS else None
    )  # fmt: skip
    if taken is not None:
        raise ConfigError(
            f"the stage name {name!r} is taken by {taken}",
            location=location,
            key=dotted,
            hint="rename the node (its name without the number is the stage name); taken: "
            + ", ".join(sorted({*available, *names.RESERVED_TASKS})),
        )
    return name


def _make_stage(
    project: Project,
    key: str,
    node: Any,
    available: Mapping[str, Stage],
    running: set[str],
    written: dict[str, str],
) -> Stage:
    name = _check_stage_name(project, key, available)
    unknown = sorted(set(node) - set(NODE_KEYS))
    if unknown:
        raise _error(
            project,
            key,
            unknown[0],
            f"unknown key {unknown[0]!r}",
            f"a postprocessing node has: {', '.join(NODE_KEYS)}",
        )
    outputs = _outputs(project, key, node.get("outputs"), name, written)
    inputs = _inputs(project, key, node.get("inputs") or [], available, running)
    command = _command(project, key, node)
    _check_placeholders(project, key, command or [], inputs, outputs, node)
    upstream = tuple(dict.fromkeys(stage for stage, _ in inputs))
    script = Path(node["path"]) if node.get("path") else None
    return Stage(
        name=name,
        doc=f"User stage {key} of the project's postprocessing",
        upstream=upstream,
        outputs=functools.partial(_names, outputs),
        config=functools.partial(_config, {k: v for k, v in node.items() if k != "path"}),
        build=functools.partial(_build, command, script, inputs, node.get("parameters") or {}),
        plugins=functools.partial(_plugins, script),
        needs_root=False,
        image_output=True,
    )


def _command(project: Project, key: str, node: Mapping[str, Any]) -> list[str] | None:
    """The node's argv list (None when it runs its script); ConfigError unless a list of text."""
    command = node.get("command")
    if command is None and not node.get("path"):
        raise _error(
            project,
            key,
            "command",
            "neither a command nor a script path",
            "give `command: [argv, ...]` or `path: a script`",
        )
    if command is not None and (
        not isinstance(command, list) or not all(isinstance(a, str) for a in command)
    ):
        raise _error(
            project,
            key,
            "command",
            "must be a list of strings (an argv list)",
            'write it as [zstd, "-19", "{input:disk.image}"] (quote what YAML reads as a '
            "number), never as a shell line",
        )
    return command


def _outputs(
    project: Project, key: str, raw: Any, stage: str, written: dict[str, str]
) -> dict[str, str]:
    """Check output names (WORDs) and files (NAMEs no other stage writes); record them."""
    if not isinstance(raw, dict) or not raw:
        raise _error(
            project,
            key,
            "outputs",
            "must map output names to file names",
            "e.g. outputs: {image: my-image.img.zst}",
        )
    env_names: dict[str, str] = {}
    for name, file in raw.items():
        location = project.where("postprocessing", key, "outputs", name)
        dotted = f"postprocessing.{key}.outputs.{name}"
        names.check_name(name, "the output name", location=location, key=dotted, word=True)
        names.check_name(file, "the output file", location=location, key=dotted)
        clash = _env_name("OUTPUT", name)
        if clash in env_names:
            raise ConfigError(
                f"outputs {env_names[clash]!r} and {name!r} would share {clash}",
                location=location,
                key=dotted,
                hint="give outputs names that differ in more than - and _",
            )
        env_names[clash] = name
        reserved = file in names.RESERVED_FILES or file.endswith(names.MANIFEST_SUFFIX)
        if reserved or file in written:
            owner = "edibuild's own files" if reserved else f"the {written[file]} stage"
            raise ConfigError(
                f"the output file {file!r} is taken by {owner}",
                location=location,
                key=dotted,
                hint="give it a file name of its own in artifacts/<project>/ (not log, "
                ".state, *.manifest.json or another stage's output)",
            )
        written[file] = stage
    return dict(raw)


def _inputs(
    project: Project,
    key: str,
    raw: Any,
    available: Mapping[str, Stage],
    running: set[str],
) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise _error(
            project,
            key,
            "inputs",
            "must be a list of STAGE.OUTPUT names",
            "e.g. inputs: [disk.image]",
        )
    inputs = []
    for item in raw:
        stage, _, output = item.partition(".")
        if stage not in available:
            raise _error(
                project,
                key,
                "inputs",
                f"no stage {stage!r} before this one",
                f"stages: {', '.join(available)}",
            )
        if stage not in running:
            raise _error(
                project,
                key,
                "inputs",
                f"the {stage} stage does not run for this project, so {item} is never made",
                f"give the project what {stage} needs (its section, e.g. `{stage}:`), or "
                f"read another stage; running: {', '.join(sorted(running))}",
            )
        outputs = available[stage].outputs(project)
        if output not in outputs:
            raise _error(
                project,
                key,
                "inputs",
                f"stage {stage} has no output {output!r}",
                f"its outputs: {', '.join(outputs)}",
            )
        inputs.append((stage, output))
    return inputs


def _check_placeholders(
    project: Project,
    key: str,
    command: list[str],
    inputs: list[tuple[str, str]],
    outputs: Mapping[str, str],
    node: Mapping[str, Any],
) -> None:
    known = {f"input:{s}.{o}" for s, o in inputs} | {f"output:{n}" for n in outputs}
    known |= {f"param:{n}" for n in node.get("parameters") or {}}
    if node.get("path"):
        known.add("script")
    for arg in command:
        for match in PLACEHOLDER.finditer(arg):
            if match.group(0)[1:-1] not in known:
                raise _error(
                    project,
                    key,
                    "command",
                    f"unknown placeholder {match.group(0)}",
                    "declare it under inputs, outputs or parameters",
                )


def _names(outputs: Mapping[str, str], project: Project) -> Mapping[str, str]:
    return outputs


def _config(node: Mapping[str, Json], project: Project) -> Json:
    return dict(node)


def _plugins(script: Path | None, project: Project) -> tuple[Path, ...]:
    return (script,) if script is not None else ()


def _build(
    command: list[str] | None,
    script: Path | None,
    inputs: list[tuple[str, str]],
    parameters: Mapping[str, Json],
    ctx: StageContext,
) -> Json:
    values: dict[str, str] = {}
    env = dict(ctx.env, EDIBUILD_PROJECT=ctx.project.name)
    for stage, output in inputs:
        path = os.fspath(ctx.input(stage, output))
        values[f"input:{stage}.{output}"] = path
        env[_env_name("INPUT", f"{stage}_{output}")] = path
    for name in ctx.output_names:
        path = os.fspath(ctx.output(name))
        values[f"output:{name}"] = path
        env[_env_name("OUTPUT", name)] = path
    for name, value in parameters.items():
        text = value if isinstance(value, str) else json.dumps(value)
        values[f"param:{name}"] = text
        env[_env_name("PARAM", name)] = text
    if script is not None:
        values["script"] = os.fspath(script)
    argv = command if command is not None else ["{script}"]
    ctx.run([_substitute(a, values) for a in argv], cwd=ctx.workdir, env=env)
    return {"command": [_substitute(a, values) for a in argv]}


def _env_name(kind: str, name: str) -> str:
    return f"EDIBUILD_{kind}_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _substitute(arg: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)[1:-1]
        if token not in values:
            raise ConfigError(
                f"unknown placeholder {match.group(0)} in a postprocessing command",
                hint="declare it under inputs, outputs or parameters",
            )
        return values[token]

    return PLACEHOLDER.sub(replace, arg)
