"""The everyday commands as users type them: option order, list, info, why, config, trim."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from tests.engine.harness import BUILDS, Harness


@pytest.mark.parametrize(
    "args",
    [("clean", "--forget", "beta:proj"), ("clean", "beta:proj", "--forget")],
    ids=["option-first", "option-after-task"],
)
def test_clean_forget_works_in_both_orders(h: Harness, args: tuple[str, ...]) -> None:
    h.doit("image:proj")
    code, out = h.doit(*args)
    assert code == 0, out
    assert not h.art("beta.txt").exists()
    h.doit("image:proj")
    assert BUILDS["beta"] == 2  # forgotten, so it really ran again


def test_clean_dry_run_with_the_option_last_removes_nothing(h: Harness) -> None:
    h.doit("image:proj")
    code, out = h.doit("clean", "-n", "image:proj", "--forget")
    assert code == 0, out
    assert f"would remove {h.art('proj.img')}" in out
    assert h.art("proj.img").exists()
    code, out = h.doit("image:proj")
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS


@pytest.mark.parametrize("order", ["first", "last"])
def test_list_and_info_read_options_anywhere(h: Harness, order: str) -> None:
    h.doit("image:proj")
    args = ["list", "--all", "alpha"] if order == "first" else ["list", "alpha", "--all"]
    code, out = h.doit(*args)
    assert code == 0 and "alpha:proj" in out
    args = ["info", "--no-status", "alpha:proj"]
    code, out = h.doit(*(args if order == "first" else [args[0], args[2], args[1]]))
    assert code == 0 and "alpha:proj" in out


def test_bare_list_shows_stages_commands_and_projects(h: Harness) -> None:
    code, out = h.doit("list", projects=("proj", "twin"))
    assert code == 0
    assert out.index("alpha") < out.index("beta") < out.index("gamma")  # pipeline order
    assert "Fake project proj" in out and "Fake project twin" in out
    assert "doit list NAME" in out and "why" in out


def test_list_of_a_project_shows_its_tasks(h: Harness) -> None:
    code, out = h.doit("list", "twin", projects=("proj", "twin"))
    assert code == 0
    assert "alpha:twin" in out and "image:twin" in out and "alpha:proj" not in out


def test_info_explains_in_words_and_exits_1_when_the_task_would_run(h: Harness) -> None:
    code, out = h.doit("info", "beta:proj")
    assert code == 1
    assert "would run" in out and "has not been built yet" in out
    assert "functools.partial" not in out and "config_changed" not in out
    h.doit("image:proj")
    code, out = h.doit("info", "beta:proj")
    assert code == 0 and "up to date" in out and "beta.txt" in out
    (h.tmp / "playbook.yml").write_text("edited\n")
    code, out = h.doit("info", "beta:pr")  # a unique prefix works too
    assert code == 1 and "playbook.yml changed" in out


def test_why_says_restored_from_the_cache_when_the_inputs_were_built(h: Harness) -> None:
    h.doit("image:proj", projects=("proj", "twin"))
    code, out = h.doit("why:twin", projects=("proj", "twin"))
    assert code == 0
    # twin has the same inputs: every stage comes back from the cache, none is built.
    assert "alpha:twin would be restored from the cache" in out
    assert "gamma:twin would be restored from the cache" in out
    assert "would run" not in out
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS


def test_why_of_an_unknown_project_lists_the_projects(h: Harness) -> None:
    code, out = h.doit("why:nosuch", projects=("proj", "twin"))
    assert code == 3
    assert 'no project "nosuch"' in out and "proj" in out and "twin" in out


def test_config_prints_only_yaml_on_stdout(h: Harness) -> None:
    code, out = h.doit("config:proj")
    assert code == 0
    assert ".  config:proj" not in out
    assert yaml.safe_load(out) == {"alpha": {"value": "hello"}}


def test_bare_trim_is_a_dry_run_and_help_works(h: Harness) -> None:
    h.doit("image:proj")
    h.values["proj"] = "bye"
    h.doit("image:proj")
    entries = sorted((h.tmp / "cache" / "keys").rglob("*.json"))
    code, out = h.doit("trim")
    assert code == 0 and "would remove" in out and "dry run" in out
    assert sorted((h.tmp / "cache" / "keys").rglob("*.json")) == entries
    code, out = h.doit("trim", "--budget", "0", "--dry-run")
    assert code == 0 and "would remove 3 entries" in out
    assert sorted((h.tmp / "cache" / "keys").rglob("*.json")) == entries
    code, out = h.doit("trim", "--help")
    assert code == 0 and "--budget SIZE" in out
