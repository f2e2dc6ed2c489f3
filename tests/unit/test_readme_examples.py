"""Every YAML example of the README loads as (part of) a project: the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edibuild.config import Host, load_project
from edibuild.engine.session import Session
from edibuild.store.workspace import Workspace
from stages import all_stages
from tests.conftest import REPO

BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLES = BLOCK.findall((REPO / "README.md").read_text())
# A fragment (sections of later stages) is checked on top of a shipped base.
BASE = "parameters: {architecture: amd64, suite: bookworm}\ninclude: [common/debian.yml]\n"


def test_the_readme_has_yaml_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_loads_and_validates(tmp_path: Path, index: int) -> None:
    text = EXAMPLES[index]
    if "include:" not in text and "bootstrap:" not in text:
        text = BASE + text
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "example.yml").write_text(text)
    host = Host("amd64", "tester", "testhost")
    project = load_project(projects / "example.yml", shipped_dir=REPO / "projects", host=host)
    workspace = Workspace.from_environment(tmp_path)
    session = Session(workspace, [project], all_stages())
    session.validate()  # every enabled stage's section, as `doit list` does
