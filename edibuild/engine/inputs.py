"""What a stage's outputs depend on, gathered once: the key, the manifest and `why` read it.

A stage's input key is the digest of its StageInputs: the stage and its code version,
its configuration slice, the digests of its plugin files and of its upstream outputs, and
the source date epoch (every stage's tools see it as SOURCE_DATE_EPOCH).
The build uses it to look up the cache and records it in the manifest; the explanation
compares it with what the installed outputs were built from.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage
from edibuild.image.reproducible import source_date_epoch
from edibuild.store.fsutil import digest_json
from edibuild.store.yamldigest import file_digest

# stage -> output name -> sha256
Digests = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class StageInputs:
    """Everything one stage's outputs depend on (for one project, at one moment)."""

    stage: str
    code: str
    config: Json
    plugins: Mapping[str, str]  # plugin file -> digest (inputs.plugin_digests), in order
    upstream: Digests
    epoch: int  # the source date epoch the stage's outputs are clamped to

    @functools.cached_property
    def key(self) -> str:
        """The input key: equal inputs, equal key, whichever project or checkout asks."""
        return digest_json(
            {
                "stage": self.stage,
                "code": self.code,
                "config": self.config,
                "plugins": list(self.plugins.values()),
                "upstream": {up: dict(sorted(d.items())) for up, d in self.upstream.items()},
                "epoch": self.epoch,
            }
        )

    def as_manifest(self) -> dict[str, Json]:
        """The part of a stage manifest that records what the outputs were built from."""
        return {
            "key": self.key,
            "code_version": self.code,
            "config": self.config,
            "plugins": dict(self.plugins),
            "upstream": {up: dict(d) for up, d in self.upstream.items()},
            "source_date_epoch": self.epoch,
        }


def plugin_digests(stage: Stage, project: Project) -> dict[str, str]:
    """The digest of every plugin file the stage uses, in its order: of what it says for
    the files the stage parses as YAML (playbooks), of its bytes for the others."""
    parsed = set(stage.parsed_plugins(project))
    return {os.fspath(p): file_digest(p, p in parsed) for p in stage.plugins(project)}


def gather(stage: Stage, project: Project, config: Json, upstream: Digests) -> StageInputs:
    """The inputs of `stage` for `project`, given its config slice and upstream digests.

    An upstream stage missing from `upstream` (its outputs are not known yet) is left out:
    such inputs explain, but their key names nothing.
    """
    return StageInputs(
        stage=stage.name,
        code=stage.code_version,
        config=config,
        plugins=plugin_digests(stage, project),
        upstream={up: dict(upstream[up]) for up in stage.upstream if up in upstream},
        epoch=source_date_epoch(project),
    )
