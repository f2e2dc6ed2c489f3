"""Loading projects: rendering, includes, merge order, nodes, plugin lookup and overlays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edibuild.config import Host, describe_plugins, dump_config, load_project, load_projects
from edibuild.config.host import debian_architecture
from edibuild.config.project import Project

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "projects"
SHIPPED = FIXTURES / "shipped"
LAYERED = FIXTURES / "layered"
TESTER = Host(architecture="riscv64", user="tester", hostname="testhost")


def demo(host: Host = TESTER) -> Project:
    """Load the layered fixture project."""
    return load_project(LAYERED / "demo.yml", shipped_dir=SHIPPED, host=host)


def test_builtins_are_rendered() -> None:
    """The project file sees the built-in variables."""
    project = demo()
    assert project.name == "demo"
    assert project.file == LAYERED / "demo.yml"
    assert project.description == "Demo project demo on riscv64"
    assert project.playbooks[-1].parameters == {"who": "tester"}


def test_host_detection_follows_sudo_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """SUDO_USER wins over the login name; architectures use Debian names."""
    monkeypatch.setenv("SUDO_USER", "alice")
    host = Host.detect()
    assert host.user == "alice"
    assert host.hostname
    builtins = host.builtins(Path("/p/x.yml"))
    assert builtins["edibuild_project_name"] == "x"
    assert builtins["edibuild_project_dir"] == "/p"
    assert builtins["edibuild_user"] == "alice"
    assert debian_architecture("x86_64") == "amd64"
    assert debian_architecture("aarch64") == "arm64"


def test_merge_order_includes_then_project_then_overlays() -> None:
    """shared.yml < common/base.yml < demo.yml < overlays; mappings merge deeply."""
    project = demo(Host("amd64", "nobody", "elsewhere"))  # only overlays/global.yml applies
    section = project.sections["boottest"]
    assert section == {"timeout": 1, "expect": "global"}
    assert project.where("boottest", "timeout").file == SHIPPED / "common" / "shared.yml"
    assert project.where("boottest", "expect").file == LAYERED / "overlays" / "global.yml"
    assert project.boottest is not None and project.boottest.expect == "global"  # typed too
    boot = project.bootstrap
    assert boot.mirror == "http://global.example/debian"
    assert boot.packages == ("python3",)  # lists are replaced, not appended
    assert boot.components == ("main",)
    assert (boot.architecture, boot.suite) == ("arm64", "bookworm")


def test_node_parameters_merge_across_layers() -> None:
    """A node's parameters merge key by key; its path comes from the include."""
    base = {node.key: node for node in demo().playbooks}["100_base"]
    assert base.parameters == {"greeting": "from-global", "fixed": 1, "extra": True}
    assert base.path == SHIPPED / "playbooks" / "base.yml"


def test_nodes_are_ordered_by_number_then_name_and_skip_removes() -> None:
    """9 < 100_another < 100_base < 200; a skipped inherited node disappears."""
    project = demo()
    keys = [node.key for node in project.playbooks]
    assert keys == ["9_first", "100_another", "100_base", "200_app"]
    assert list(project.sections["playbooks"]) == [node.key for node in project.playbooks]
    assert [node.key for node in project.lxd_profiles] == ["20_default"]
    assert "50_skipme" not in project.sections["lxd_profiles"]
    assert ("lxd_profiles", "50_skipme") not in project.locations
    assert all("skip" not in node for node in project.sections["playbooks"].values())


def test_plugin_lookup_prefers_the_project_folder() -> None:
    """app.yml exists in both places: the project's own wins; base.yml falls back to shipped."""
    paths = {node.key: node.path for node in demo().playbooks}
    assert paths["200_app"] == LAYERED / "playbooks" / "app.yml"
    assert paths["100_base"] == SHIPPED / "playbooks" / "base.yml"
    assert demo().lxd_profiles[0].path == SHIPPED / "profiles" / "default.yml"


def test_postprocessing_keeps_the_whole_node() -> None:
    """Postprocessing nodes keep their extra keys; a path, if given, is resolved."""
    post = demo().sections["postprocessing"]
    assert list(post) == ["10_note", "300_report"]
    assert post["10_note"] == {"message": "only data, no plugin"}
    assert post["300_report"] == {
        "path": str(SHIPPED / "scripts" / "report.sh"),
        "output": "report.txt",
    }


@pytest.mark.parametrize(
    ("host", "mirror"),
    [
        (Host("amd64", "nobody", "elsewhere"), "http://global.example/debian"),
        (Host("amd64", "nobody", "testhost"), "http://testhost.example/debian"),
        (Host("amd64", "tester", "testhost"), "file:///home/tester/mirror"),
        (Host("amd64", "tester", "elsewhere"), "file:///home/tester/mirror"),
    ],
)
def test_overlays_global_then_host_then_user(host: Host, mirror: str) -> None:
    """Each overlay applies only on its host/user, and later overlays win."""
    project = demo(host)
    assert project.bootstrap.mirror == mirror
    assert project.parameters["greeting"] == "from-global"


def test_overlay_parameters_render_includes(tmp_path: Path) -> None:
    """An overlay's parameter changes what an included file renders (the mirror use case)."""
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays" / "global.yml").write_text("parameters:\n  mirror: http://m.example/d\n")
    for name in ("qemu-bookworm-amd64.yml", "pi3-buster-arm64.yml"):
        (tmp_path / name).write_text((REPO / "projects" / name).read_text())
    projects = load_projects(tmp_path, shipped_dir=REPO / "projects", host=TESTER)
    assert [p.bootstrap.mirror for p in projects] == ["http://m.example/d"] * 2
    assert projects[0].where("parameters", "mirror").file == tmp_path / "overlays" / "global.yml"


def test_sections_are_plain_json_without_include() -> None:
    """sections round-trips through JSON (doit's config_changed needs that)."""
    project = demo()
    assert "include" not in project.sections
    assert json.loads(json.dumps(project.sections)) == project.sections
    assert list(project.sections)[:3] == ["description", "parameters", "bootstrap"]


def test_yaml_dates_become_iso_strings(tmp_path: Path) -> None:
    """Exotic YAML scalars are converted to JSON data."""
    text = (
        "bootstrap: {architecture: amd64, suite: bookworm}\nparameters:\n  released: 2024-05-01\n"
    )
    (tmp_path / "p.yml").write_text(text)
    project = load_project(tmp_path / "p.yml", shipped_dir=SHIPPED, host=TESTER)
    assert project.parameters == {"released": "2024-05-01"}


def test_jinja_blocks_and_lines(tmp_path: Path) -> None:
    """Blocks render cleanly (trim_blocks) and keys keep the line the user wrote."""
    text = (
        "{% set arch = 'arm64' %}\n"
        "bootstrap:\n"
        "{% for key in ['suite'] %}\n"
        "  {{ key }}: bookworm\n"
        "{% endfor %}\n"
        "  architecture: {{ arch }}\n"
    )
    (tmp_path / "p.yml").write_text(text)
    project = load_project(tmp_path / "p.yml", shipped_dir=SHIPPED, host=TESTER)
    assert project.bootstrap.architecture == "arm64"
    assert project.where("bootstrap", "suite").line == 4
    assert project.where("bootstrap", "architecture").line == 6


def test_defaults_and_keyring(tmp_path: Path) -> None:
    """Unset bootstrap keys get their defaults; a keyring is resolved like a plugin."""
    (tmp_path / "keys.gpg").write_bytes(b"")
    text = "bootstrap:\n  architecture: amd64\n  suite: trixie\n  keyring: keys.gpg\n"
    (tmp_path / "p.yml").write_text(text)
    project = load_project(tmp_path / "p.yml", shipped_dir=SHIPPED, host=TESTER)
    boot = project.bootstrap
    assert boot.mirror == "http://deb.debian.org/debian"
    assert (boot.components, boot.variant, boot.packages, boot.tool) == (
        ("main",),
        "minbase",
        (),
        "debootstrap",
    )
    assert boot.keyring == tmp_path / "keys.gpg"
    assert project.plugin_files == (tmp_path / "keys.gpg",)
    assert project.description == "p"


def test_dump_and_describe() -> None:
    """--config and --plugins equivalents show the merged data and resolved plugin files."""
    project = demo()
    dumped = dump_config(project)
    assert dumped.startswith("# project demo ")
    assert "mirror: file:///home/tester/mirror" in dumped
    assert "include" not in dumped
    plugins = describe_plugins(project)
    assert f"playbooks/200_app          {LAYERED / 'playbooks' / 'app.yml'}" in plugins
    assert f"(set at {LAYERED / 'demo.yml'}:12)" in plugins
    assert "postprocessing/300_report" in plugins
    assert "10_note" not in plugins


def test_load_projects_reads_top_level_files_only() -> None:
    """Subfolders (common/, overlays/, playbooks/) hold no projects."""
    projects = load_projects(LAYERED, shipped_dir=SHIPPED, host=TESTER)
    assert [project.name for project in projects] == ["demo"]


def test_shipped_projects() -> None:
    """All shipped projects load; pi3 and pi4 of one release share one bootstrap."""
    projects = {p.name: p for p in load_projects(REPO / "projects", shipped_dir=REPO / "projects")}
    assert {"qemu-bookworm-amd64", "pi3-bookworm-arm64", "pi4-bookworm-arm64",
            "pi3-buster-arm64"} <= set(projects)  # fmt: skip
    pi3, pi4 = projects["pi3-bookworm-arm64"], projects["pi4-bookworm-arm64"]
    assert pi3.bootstrap == pi4.bootstrap
    assert pi3.sections["bootstrap"] == pi4.sections["bootstrap"]
    buster = projects["pi3-buster-arm64"].bootstrap
    assert (buster.suite, buster.mirror) == ("buster", "http://archive.debian.org/debian")
    qemu = projects["qemu-bookworm-amd64"].bootstrap
    assert (qemu.architecture, qemu.suite) == ("amd64", "bookworm")
    assert {"python3", "systemd-sysv"} <= set(qemu.packages)
    assert all(p.description and "\n" not in p.description for p in projects.values())


def test_a_file_parsed_twice_gives_independent_layers(tmp_path: Path) -> None:
    """Identical includes parse once per process; each caller still owns its data."""
    from edibuild.config.render import Rendered
    from edibuild.config.yamlpos import parse

    rendered = Rendered("a: {b: [1, 2]}\n", (1,))
    first = parse(rendered, tmp_path / "x.yml")
    first.data["a"]["b"].append(3)
    second = parse(rendered, tmp_path / "x.yml")
    assert second.data == {"a": {"b": [1, 2]}}
    assert second.where("a", "b") == first.where("a", "b")


def test_paths_are_remembered_only_inside_one_load(tmp_path: Path) -> None:
    from edibuild.config.paths import real, remembering

    link = tmp_path / "link"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    link.symlink_to(tmp_path / "one")
    with remembering():
        assert real(link) == tmp_path / "one"
        link.unlink()
        link.symlink_to(tmp_path / "two")
        assert real(link) == tmp_path / "one"  # remembered for this load
    assert real(link) == tmp_path / "two"
