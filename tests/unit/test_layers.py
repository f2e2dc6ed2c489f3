"""Layer keys, names, the cached-prefix lookup and pruning (LXD replaced by a fake)."""

from __future__ import annotations

import calendar
from pathlib import Path
from typing import Any

import pytest

from edibuild.config.paths import folder_files
from edibuild.config.project import Bootstrap, Node, Project
from edibuild.config.sections import with_settings
from edibuild.errors import ConfigError, Location
from edibuild.lxd import layers
from edibuild.lxd.protocol import Image
from tests.fake_backend import FakeBackend


def make_project(tmp: Path, names: list[str], sections: dict[str, Any] | None = None) -> Project:
    """A project whose playbooks each live in their own directory under `tmp`."""
    nodes = []
    for index, name in enumerate(names):
        folder = tmp / "plugins" / name
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "main.yml").exists():
            (folder / "main.yml").write_text(f"- hosts: {name}\n")
        files = folder_files(folder, (tmp,), key="playbooks", location=Location(folder))
        nodes.append(Node(f"{index + 1}0_{name}", folder / "main.yml", {"n": index}, files))
    return with_settings(
        Project(
            name="demo",
            file=tmp / "demo.yml",
            description="",
            parameters={},
            bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
            lxd_profiles=(),
            playbooks=tuple(nodes),
            sections=sections or {},
        )
    )


def keys(project: Project, image: str = "img", common: Any = None) -> tuple[str, ...]:
    return layers.layer_keys(project, image, "code", common or {"p": 1}, [])


def test_editing_the_third_playbook_keeps_the_first_two_keys(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"])
    before = keys(project)
    (tmp_path / "plugins" / "c" / "main.yml").write_text("- hosts: edited\n")
    after = keys(project)
    assert before[:2] == after[:2]
    assert before[2] != after[2]


def test_a_file_next_to_a_playbook_counts_for_it(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"])
    before = keys(project)
    (tmp_path / "plugins" / "b" / "templates").mkdir()
    (tmp_path / "plugins" / "b" / "templates" / "motd.j2").write_text("hi\n")
    after = keys(make_project(tmp_path, ["a", "b", "c"]))  # files are listed at load
    assert before[0] == after[0]
    assert before[1] != after[1] and before[2] != after[2]


def test_first_playbook_image_or_common_config_change_every_key(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"])
    base = keys(project)
    assert all(k not in base for k in keys(project, image="other"))
    assert all(k not in base for k in keys(project, common={"p": 2}))
    (tmp_path / "plugins" / "a" / "main.yml").write_text("- hosts: edited\n")
    assert all(k not in base for k in keys(project))


def test_node_parameters_and_order_count(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b"])
    base = keys(project)
    changed = Node(project.playbooks[1].key, project.playbooks[1].path, {"n": 99})
    edited = Project(**{**project.__dict__, "playbooks": (project.playbooks[0], changed)})
    assert keys(edited)[0] == base[0] and keys(edited)[1] != base[1]
    swapped = Project(**{**project.__dict__, "playbooks": project.playbooks[::-1]})
    assert not set(keys(swapped)) & set(base)


def test_playbooks_in_a_shared_folder_count_alone(tmp_path: Path) -> None:
    shared = tmp_path / "playbooks"
    shared.mkdir()
    (shared / "one.yml").write_text("# one\n")
    (shared / "two.yml").write_text("# two\n")
    assert layers.node_files(Node("10_one", shared / "one.yml")) == [shared / "one.yml"]


def test_alias_pattern_matches_only_the_projects_own_layers() -> None:
    project = make_project(Path("/nonexistent"), [])
    other = Project(**{**project.__dict__, "name": "demo-x"})
    mine = layers.alias(project, "0123456789abcdef" * 4)
    theirs = layers.alias(other, "0123456789abcdef" * 4)
    assert mine == "edibuild-layer-demo-0123456789abcdef"
    assert layers.alias_pattern(project).match(mine)
    assert not layers.alias_pattern(project).match(theirs)
    assert not layers.alias_pattern(project).match("edibuild-0123456789abcdef")


def test_layers_opt_out_and_bad_value(tmp_path: Path) -> None:
    assert layers.enabled(make_project(tmp_path, []))
    assert not layers.enabled(make_project(tmp_path, [], {"lxd": {"layers": False}}))
    assert layers.every(make_project(tmp_path, [], {"lxd": {"layers": "every"}}))
    assert not layers.every(make_project(tmp_path, [], {"lxd": {"layers": True}}))
    for bad in ("no", 1, ["every"]):
        with pytest.raises(ConfigError, match=r"lxd\.layers"):
            make_project(tmp_path, [], {"lxd": {"layers": bad}})  # refused at load


# -- against a fake LXD image store --------------------------------------------------


def test_plan_starts_after_the_longest_cached_prefix(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c", "d"])
    chain = keys(project)
    backend = FakeBackend()
    backend.add_image(layers.alias(project, chain[0]), "2026-01-01T00:00:00Z")
    backend.add_image(layers.alias(project, chain[2]), "2026-01-01T00:00:00Z")
    # The last state is never a layer, even if an image with its alias existed.
    backend.add_image(layers.alias(project, chain[3]), "2026-01-01T00:00:00Z")
    plan = layers.plan(backend, project, chain, "base", True)
    assert plan.start == 3 and plan.source.endswith(layers.alias(project, chain[2]))
    assert [plan.publishes(i, 60.0) for i in range(4)] == [True, True, True, False]
    assert plan.info(project)["skipped"] == ["10_a", "20_b", "30_c"]
    off = layers.plan(backend, project, chain, "base", False)
    assert (off.start, off.source, off.publishes(0, 60.0)) == (0, "base", False)


def test_by_default_a_state_is_saved_where_it_pays(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c", "d"])
    plan = layers.plan(FakeBackend(), project, keys(project), "base", True)
    cheap = layers.WORTH_SECONDS - 1
    # From scratch, the last but one always (the one edited most is late), never the last.
    assert [plan.publishes(i, cheap) for i in range(4)] == [False, False, True, False]
    assert plan.publishes(0, layers.WORTH_SECONDS) and plan.publishes(1, layers.WORTH_SECONDS)
    plan.start = 2  # after an edit of the third: a cheap state after it is not kept
    assert not plan.publishes(2, cheap) and plan.publishes(2, layers.WORTH_SECONDS)


def test_layers_every_saves_after_each_playbook_but_the_last(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"], {"lxd": {"layers": "every"}})
    plan = layers.plan(FakeBackend(), project, keys(project), "base", layers.enabled(project))
    assert [plan.publishes(i, 0.0) for i in range(3)] == [True, True, False]


def test_plan_without_layers_starts_from_the_image(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b"])
    plan = layers.plan(FakeBackend(), project, keys(project), "base", True)
    assert (plan.start, plan.source) == (0, "base")
    assert plan.info(project)["started_after"] is None


def test_prune_keeps_the_chain_and_the_newest_spares_only(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"])
    other = Project(**{**project.__dict__, "name": "demo-x"})
    backend = FakeBackend()
    chain = keys(project)[:2]
    for n, key in enumerate(chain):
        backend.add_image(layers.alias(project, key), f"2026-01-0{n + 1}T00:00:00Z")
    old = [f"{n:016x}" for n in range(5)]
    for n, key in enumerate(old):
        backend.add_image(layers.alias(project, key), f"2025-01-0{n + 1}T00:00:00Z")
    backend.add_image(layers.alias(other, old[0]), "2020-01-01T00:00:00Z")
    backend.add_image("edibuild-0123456789abcdef", "2020-01-01T00:00:00Z")
    removed = layers.prune(backend, project, chain)
    assert sorted(removed) == sorted(layers.alias(project, k) for k in old[:3])
    kept = {layers.alias(project, k) for k in [*chain, *old[3:]]}
    assert set(backend.aliases()) == kept | {
        layers.alias(other, old[0]),
        "edibuild-0123456789abcdef",
    }
    assert len(layers.remove_all(backend, project)) == 4
    assert backend.aliases() == ["edibuild-0123456789abcdef", layers.alias(other, old[0])]


def test_prune_spares_what_a_parallel_build_just_made_or_used(tmp_path: Path) -> None:
    """Another checkout's fresh layers of the same project are not pruned under it."""
    project = make_project(tmp_path, ["a", "b"])
    backend = FakeBackend()
    now = calendar.timegm((2026, 12, 2, 12, 0, 0, 0, 0, 0))
    fresh = [f"{n:016x}" for n in range(4)]
    for n, key in enumerate(fresh):
        backend.add_image(layers.alias(project, key), f"2026-12-02T11:5{5 + n}:00Z")
    stale = layers.alias(project, "f" * 16)
    backend.add_image(stale, "2026-12-01T00:00:00Z")
    backend.add_image(layers.alias(project, "e" * 16), "2026-11-30T00:00:00Z")
    backend.add_image(layers.alias(project, "d" * 16), "2026-11-29T00:00:00Z")
    removed = layers.prune(backend, project, [], now=now)
    assert removed == [layers.alias(project, "d" * 16)]  # two old spares kept, fresh all kept
    assert stale in backend.aliases()


class FakeBox:
    """A stopped container whose publish adds an image without alias to the backend."""

    name = "box"

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    def publish(self, *, compression: str, description: str = "") -> str:
        assert compression == layers.COMPRESSION and "configure state after" in description
        fingerprint = f"published{len(self.backend.store)}"
        self.backend.store[fingerprint] = Image(fingerprint)
        return fingerprint


def test_publish_aliases_the_layer_or_keeps_the_one_published_meanwhile(tmp_path: Path) -> None:
    project = make_project(tmp_path, ["a", "b", "c"])
    chain = keys(project)
    backend = FakeBackend()
    made = layers.publish(backend, FakeBox(backend), project, chain[0], "10_a")
    found = backend.image_by_alias(layers.alias(project, chain[0]))
    assert found is not None and made["fingerprint"] == found.fingerprint
    assert (made["after"], made["alias"]) == ("10_a", layers.alias(project, chain[0]))
    theirs = backend.add_image(layers.alias(project, chain[1]))  # another build was quicker
    made = layers.publish(backend, FakeBox(backend), project, chain[1], "20_b")
    assert made["fingerprint"] == theirs.fingerprint
    assert len(backend.store) == 2  # ours was deleted again, nothing without an alias is left


def test_a_layer_made_another_way_is_aliased_the_same(tmp_path: Path) -> None:
    """configure passes `image_of` (read from the pool, imported): no publish then."""
    project = make_project(tmp_path, ["a", "b"])
    chain = keys(project)
    backend = FakeBackend()
    asked: list[str] = []

    def image_of(description: str) -> tuple[str, str]:
        asked.append(description)
        backend.store["imported"] = Image("imported")
        return "imported", "storage pool"

    class NoPublish(FakeBox):
        def publish(self, *, compression: str, description: str = "") -> str:
            raise AssertionError("published although the image was made another way")

    made = layers.publish(backend, NoPublish(backend), project, chain[0], "10_a", image_of)
    assert made["fingerprint"] == "imported" and "configure state after 10_a" in asked[0]
    assert layers.publish(backend, FakeBox(backend), project, chain[1], "20_b")["made_from"] == (
        "publish"
    )
    assert made["made_from"] == "storage pool"
    found = backend.image_by_alias(layers.alias(project, chain[0]))
    assert found is not None and found.fingerprint == "imported"
