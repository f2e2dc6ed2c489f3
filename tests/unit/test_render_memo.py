"""Rendered project files are remembered across runs: same text and variables, no Jinja2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edibuild.config import rendermemo
from edibuild.config.render import Rendered, remembering, render
from edibuild.config.rendermemo import RenderMemo
from edibuild.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FILE = Path("/virtual/p.yml")
TEMPLATE = "a: {{ x }}\n{% if y %}\nb: 2\n{% endif %}\nc: 3\n"


def test_a_remembered_render_equals_a_fresh_one(tmp_path: Path) -> None:
    fresh = render(TEMPLATE, FILE, {"x": 1, "y": False})
    memo = RenderMemo(tmp_path / "rendered.json")
    with remembering(memo):
        first = render(TEMPLATE, FILE, {"x": 1, "y": False})
    memo.save()
    again = RenderMemo(tmp_path / "rendered.json")
    key = again.key(TEMPLATE, FILE, {"x": 1, "y": False})
    assert key is not None and again.get(key) == fresh == first
    assert fresh.text == "a: 1\nc: 3\n" and fresh.lines[:2] == (1, 5)


def test_other_text_variables_or_file_are_other_entries(tmp_path: Path) -> None:
    memo = RenderMemo(tmp_path / "rendered.json")
    base = memo.key(TEMPLATE, FILE, {"x": 1})
    assert base == memo.key(TEMPLATE, FILE, {"x": 1})
    others = {
        memo.key(TEMPLATE + " ", FILE, {"x": 1}),
        memo.key(TEMPLATE, FILE, {"x": 2}),
        memo.key(TEMPLATE, FILE, {"x": "1"}),
        memo.key(TEMPLATE, Path("/virtual/q.yml"), {"x": 1}),
    }
    assert base not in others and len(others) == 4
    assert memo.key(TEMPLATE, FILE, {"x": object()}) is None  # not JSON: never remembered


def test_the_memo_serves_what_it_holds(tmp_path: Path) -> None:
    """A hit is taken as it is (so it must only ever hold what was rendered)."""
    memo = RenderMemo(tmp_path / "rendered.json")
    key = memo.key(TEMPLATE, FILE, {"x": 1})
    assert key is not None
    memo.put(key, Rendered("remembered: yes\n", (1, 2)))
    with remembering(memo):
        assert render(TEMPLATE, FILE, {"x": 1}).text == "remembered: yes\n"
        assert render(TEMPLATE, FILE, {"x": 2, "y": 0}).text == "a: 2\nc: 3\n"


def test_errors_are_not_remembered(tmp_path: Path) -> None:
    memo = RenderMemo(tmp_path / "rendered.json")
    with remembering(memo):
        for _ in range(2):
            with pytest.raises(ConfigError, match="undefined"):
                render("a: {{ missing }}\n", FILE, {})
    memo.save()
    assert not (tmp_path / "rendered.json").exists()  # nothing new: nothing written


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": 99, "entries": {}}', '{"format": 1, "entries": {"k": 3}}',
     '{"format": 1, "entries": {"k": {"text": "a", "lines": ["1"]}}}'],
)  # fmt: skip
def test_a_malformed_memo_is_an_empty_one(tmp_path: Path, content: str) -> None:
    (tmp_path / "rendered.json").write_text(content)
    memo = RenderMemo(tmp_path / "rendered.json")
    assert memo.get("k") is None
    with remembering(memo):
        assert render(TEMPLATE, FILE, {"x": 1, "y": True}).text == "a: 1\nb: 2\nc: 3\n"
    memo.save()
    assert json.loads((tmp_path / "rendered.json").read_text())["format"] == rendermemo.FORMAT


def test_the_memo_keeps_the_most_recently_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendermemo, "MAX_ENTRIES", 3)
    path = tmp_path / "rendered.json"
    for run in (range(3), range(3, 5)):
        memo = RenderMemo(path)
        with remembering(memo):
            for x in run:
                render(TEMPLATE, FILE, {"x": x, "y": 1})
        memo.save()
    memo = RenderMemo(path)
    kept = [x for x in range(5) if memo.get(memo.key(TEMPLATE, FILE, {"x": x, "y": 1}) or "")]
    assert kept == [2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["rendered.json"]  # no partial left


def test_a_warm_load_imports_no_jinja2(tmp_path: Path) -> None:
    """The second load of unchanged projects renders nothing: Jinja2 stays unloaded."""
    script = "import sys\nfrom edibuild.dodo import load\nload()\nprint('jinja2' in sys.modules)\n"
    env = dict(
        os.environ, EDIBUILD_STATE=str(tmp_path / "state"), EDIBUILD_ARTIFACTS=str(tmp_path / "a")
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, check=True, timeout=120).stdout.split()[-1]
        for _ in range(2)
    ]  # fmt: skip
    assert runs == ["True", "False"]
    assert (tmp_path / "state" / "rendered.json").is_file()
