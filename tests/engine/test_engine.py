"""Engine tests: doit in-process on small fake stages (no root, no network)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from edibuild.config.project import Project
from edibuild.errors import EdibuildError
from tests.engine.harness import BUILDS, INTERRUPT, Harness, stages


def test_first_run_builds_everything_and_second_run_nothing(h: Harness) -> None:
    code, _ = h.doit("image:proj")
    assert code == 0
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    assert h.art("proj.img").read_text() == "image of HELLO- hosts: all\n"
    code, out = h.doit("image:proj")
    assert code == 0
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    assert "-- alpha:proj" in out and "-- gamma:proj" in out


def test_config_edit_reruns_that_stage_and_what_depends_on_its_output(h: Harness) -> None:
    h.doit("image:proj")
    h.values["proj"] = "bye"
    h.doit("image:proj")
    assert Counter(alpha=2, beta=2, gamma=2) == BUILDS
    assert h.art("proj.img").read_text().startswith("image of BYE")


def test_identical_output_cuts_off_downstream(h: Harness) -> None:
    h.doit("image:proj")
    # Change the configuration of alpha without changing its output bytes.
    original = stages()

    def extra_config(p: Project) -> Any:
        return {**p.sections["alpha"], "comment": "edited"}

    h.stages = (replace(original[0], config=extra_config), *original[1:])
    code, out = h.doit("image:proj")
    assert code == 0
    assert Counter(alpha=2, beta=1, gamma=1) == BUILDS
    assert "-- beta:proj" in out


def test_plugin_edit_reruns_from_the_stage_that_uses_it(h: Harness) -> None:
    h.doit("image:proj")
    (h.tmp / "playbook.yml").write_text("- hosts: all\n  tasks: []\n")
    h.doit("image:proj")
    assert Counter(alpha=1, beta=2, gamma=2) == BUILDS


def test_reverting_a_change_reuses_the_cache(h: Harness) -> None:
    h.doit("image:proj")
    h.values["proj"] = "bye"
    h.doit("image:proj")
    h.values["proj"] = "hello"
    code, _ = h.doit("image:proj")
    assert code == 0
    assert Counter(alpha=2, beta=2, gamma=2) == BUILDS  # nothing new was built
    assert h.art("proj.img").read_text().startswith("image of HELLO")


def test_second_project_shares_outputs_with_the_same_inputs(h: Harness) -> None:
    h.doit("image:proj", projects=("proj", "twin"))
    h.doit("image:twin", projects=("proj", "twin"))
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    twin = h.tmp / "artifacts" / "twin" / "twin.img"
    assert twin.read_text() == h.art("proj.img").read_text()
    h.doit("image:twin", projects=("proj", "twin"))
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    assert twin.is_file()


def test_deleted_output_is_rebuilt(h: Harness) -> None:
    h.doit("image:proj")
    h.art("beta.txt").unlink()
    code, _ = h.doit("image:proj")
    assert code == 0
    assert h.art("beta.txt").is_file()


def test_clean_forget_of_a_stage_rebuilds_it_and_what_follows(h: Harness) -> None:
    h.doit("image:proj")
    code, _ = h.doit("clean", "--forget", "beta:proj")
    assert code == 0
    assert not h.art("beta.txt").exists()
    assert h.art("alpha.txt").exists()
    h.doit("image:proj")
    # beta really ran again; its bytes are the same, so gamma is cut off (still valid).
    assert Counter(alpha=1, beta=2, gamma=1) == BUILDS
    (h.tmp / "playbook.yml").write_text("changed")
    h.doit("clean", "--forget", "beta:proj")
    h.doit("image:proj")
    assert Counter(alpha=1, beta=3, gamma=2) == BUILDS


def test_external_state_that_cannot_be_checked_stops_the_run_with_its_error(h: Harness) -> None:
    """LXD unreachable while checking a stage: its error with the hint, no rebuild."""
    h.doit("image:proj")

    def unreachable(project: Project, info: Any) -> bool:
        raise EdibuildError("no LXD daemon answers (tried: /x)", hint="install LXD")

    original = stages()
    h.stages = (original[0], replace(original[1], intact=unreachable), original[2])
    code, out = h.doit("image:proj")
    assert code != 0
    assert "beta:proj: no LXD daemon answers (tried: /x)\n  hint: install LXD" in out
    assert "Traceback" not in out
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    code, out = h.doit("why:proj")
    assert code == 0 and "Traceback" not in out
    assert "its external state cannot be checked: no LXD daemon answers" in out
    h.stages = original  # LXD is back: nothing was forgotten, nothing runs
    code, _ = h.doit("image:proj")
    assert code == 0 and Counter(alpha=1, beta=1, gamma=1) == BUILDS


def test_clean_image_keeps_earlier_stages(h: Harness) -> None:
    h.doit("image:proj")
    h.doit("clean", "--forget", "image:proj")
    assert not h.art("proj.img").exists()
    assert h.art("beta.txt").exists()
    h.doit("image:proj")
    assert Counter(alpha=1, beta=1, gamma=2) == BUILDS


def test_clean_dep_cleans_the_chain_and_globs_work(h: Harness) -> None:
    h.doit("image:proj")
    code, _ = h.doit("clean", "-c", "--forget", "image:pr*")
    assert code == 0
    assert not h.art("alpha.txt").exists()
    h.doit("image:proj")
    assert Counter(alpha=2, beta=2, gamma=2) == BUILDS


def test_interrupted_stage_leaves_nothing_mistaken_for_finished(h: Harness) -> None:
    h.doit("image:proj")
    h.values["proj"] = "second"
    INTERRUPT.add("beta")
    with pytest.raises(KeyboardInterrupt):
        h.doit("image:proj")
    # What is installed is still the earlier, complete build: never the half-written one.
    assert h.art("beta.txt").read_text() == "HELLO- hosts: all\n"
    assert list((h.tmp / "cache" / "tmp").iterdir()) == []
    INTERRUPT.clear()
    h.values["proj"] = "hello"  # back to the configuration that once succeeded
    code, _ = h.doit("image:proj")
    assert code == 0
    assert h.art("beta.txt").read_text() == "HELLO- hosts: all\n"


def test_unique_prefix_selects_a_task_and_ambiguity_lists_candidates(h: Harness) -> None:
    code, _ = h.doit("alpha:pr")
    assert code == 0
    assert Counter(alpha=1) == BUILDS
    code, out = h.doit("image:", projects=("proj", "twin"))
    assert code == 3
    assert "image:proj" in out and "image:twin" in out


def test_bare_doit_clean_and_forget_do_nothing(h: Harness) -> None:
    h.doit("image:proj")
    for args in ((), ("clean",), ("forget",)):
        code, _ = h.doit(*args)
        assert code == 0
    assert h.art("proj.img").exists()
    code, _out = h.doit("image:proj")
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS


def test_manifest_records_inputs_and_info(h: Harness) -> None:
    h.doit("image:proj")
    manifest = json.loads(h.art("beta.manifest.json").read_text())
    assert manifest["info"]["alpha_length"] == 5
    assert manifest["info"]["space"]["outputs"] == h.art("beta.txt").stat().st_size
    assert manifest["info"]["space"]["scratch"] >= 0
    timed = json.loads(h.art("gamma.manifest.json").read_text())["info"]
    assert set(timed) == {"phases", "space"} and timed["phases"]["write"] >= 0
    assert set(manifest["upstream"]) == {"alpha"}
    assert next(iter(manifest["plugins"].values()))
    assert os.path.samefile(
        h.art("beta.txt"),
        h.tmp
        / "cache"
        / "blobs"
        / manifest["outputs"]["text"]["sha256"][:2]
        / manifest["outputs"]["text"]["sha256"],
    )


def test_not_root_is_refused_before_anything_runs(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.stages = tuple(replace(s, needs_root=True) for s in h.stages)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out = h.doit("image:proj")
    assert code == 1
    assert "needs root" in out and "sudo" in out
    assert BUILDS == Counter()
    assert not h.art("alpha.txt").exists()


def test_user_stage_runs_its_command_in_the_graph(h: Harness) -> None:
    def project(name: str) -> Project:
        base = Harness.project(h, name)
        post = {
            "100_shout": {
                "command": ["cp", "{input:beta.text}", "{output:copy}"],
                "inputs": ["beta.text"],
                "outputs": {"copy": "shout.txt"},
            }
        }
        return replace(base, sections={**base.sections, "postprocessing": post})

    h.project = project  # type: ignore[method-assign]
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert h.art("shout.txt").read_text() == "HELLO- hosts: all\n"
    code, out = h.doit("image:proj")
    assert "-- shout:proj" in out
    (h.tmp / "playbook.yml").write_text("edited\n")
    code, out = h.doit("image:proj")
    assert ".  shout:proj" in out
    assert h.art("shout.txt").read_text() == "HELLOedited\n"
    h.doit("clean", "--forget", "image:proj")
    assert not h.art("shout.txt").exists()


def test_user_stage_with_a_bad_input_is_a_config_error(h: Harness) -> None:
    from edibuild.engine.userstage import user_stages
    from edibuild.errors import ConfigError

    base = h.project("proj")
    post = {"100_x": {"command": ["true"], "inputs": ["nope.text"], "outputs": {"o": "o"}}}
    with pytest.raises(ConfigError, match="no stage 'nope'"):
        user_stages(replace(base, sections={"postprocessing": post}), h.stages)


def test_why_explains_in_plain_words_and_builds_nothing(h: Harness) -> None:
    code, out = h.doit("why:proj")
    assert "alpha:proj would run" in out and "has not been built yet" in out
    h.doit("image:proj")
    code, out = h.doit("why:proj")
    assert "up to date: nothing would run" in out
    h.values["proj"] = "bye"
    (h.tmp / "playbook.yml").write_text("edited\n")
    code, out = h.doit("why:proj")
    assert code == 0
    assert "configuration: value changed from hello to bye" in out
    assert "beta:proj would run" in out and "the alpha stage runs first" in out
    assert "playbook.yml changed" in out
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    h.doit("image:proj")
    manifest = json.loads(h.art("alpha.manifest.json").read_text())
    assert manifest["why"] == ["configuration: value changed from hello to bye"]


def test_trim_removes_least_recently_used_and_keeps_what_projects_use(h: Harness) -> None:
    h.doit("image:proj")
    h.values["proj"] = "bye"
    h.doit("image:proj")
    code, out = h.doit("trim", "--budget", "0")
    assert code == 0, out
    assert "removed 3 entries" in out
    assert h.art("proj.img").read_text().startswith("image of BYE")
    assert "-- gamma:proj" in h.doit("image:proj")[1]  # still intact and up to date
    h.values["proj"] = "hello"
    h.doit("image:proj")  # its entries were trimmed: really built again
    assert Counter(alpha=3, beta=3, gamma=3) == BUILDS


def test_parallel_builds_of_the_same_inputs_build_once(h: Harness) -> None:
    INTERRUPT.add("slow")
    code, out = h.doit("-n", "2", "image:proj", "image:twin", projects=("proj", "twin"))
    assert code == 0, out
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    assert h.art("proj.img").read_text() == (h.tmp / "artifacts/twin/twin.img").read_text()


def _corrupt(path: os.PathLike[str] | str, keep_mtime: bool) -> None:
    """Change a byte of a file in place, as a hand edit or a failing disk would."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0x20]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_an_input_changed_in_place_is_rebuilt_before_a_stage_reads_it(
    h: Harness, keep_mtime: bool
) -> None:
    h.doit("image:proj")
    _corrupt(h.art("beta.txt"), keep_mtime)  # the artifact is the cache's blob: both change
    h.doit("clean", "--forget", "gamma:proj")
    code, out = h.doit("image:proj")
    assert code == 0, out
    # A new mtime makes beta itself not up to date; a kept one is caught when gamma reads it.
    said = "or was changed in place" if not keep_mtime else "changed on disk after it was installed"
    assert said in out
    assert h.art("beta.txt").read_text() == "HELLO- hosts: all\n"
    assert h.art("proj.img").read_text() == "image of HELLO- hosts: all\n"  # never the bad one
    assert BUILDS["beta"] == 2


def test_a_changed_cache_blob_is_not_installed_in_another_checkout(h: Harness) -> None:
    h.doit("image:proj")
    _corrupt(h.art("alpha.txt"), keep_mtime=True)
    shutil.rmtree(h.tmp / "artifacts")  # a second checkout: nothing installed yet
    (h.tmp / "state.sqlite3").unlink()
    code, out = h.doit("image:proj")
    assert code == 0, out
    assert "was changed after it was stored" in out
    assert h.art("alpha.txt").read_text() == "hello"
    assert h.art("proj.img").read_text() == "image of HELLO- hosts: all\n"


def test_comment_edit_of_a_parsed_playbook_runs_nothing_and_why_agrees(h: Harness) -> None:
    """A stage that parses its playbooks as YAML: doit, `why` and `info` all ignore a
    comment or layout edit, and all see an edit of what the playbook says."""
    alpha, beta, gamma = stages()
    beta = replace(beta, parsed_plugins=lambda p: tuple(n.path for n in p.playbooks))
    h.stages = (alpha, beta, gamma)
    playbook = h.tmp / "playbook.yml"
    playbook.write_text("- hosts: all\n  tasks: []\n")
    assert h.doit("image:proj")[0] == 0
    playbook.write_text("---\n# a comment\n- hosts:   all\n\n  tasks: [ ]\n")
    code, out = h.doit("image:proj")
    assert code == 0
    assert Counter(alpha=1, beta=1, gamma=1) == BUILDS
    assert "-- beta:proj" in out
    assert "nothing would run" in h.doit("why:proj")[1]
    assert h.doit("info", "beta:proj")[0] == 0
    playbook.write_text("- hosts: web\n  tasks: []\n")
    code, out = h.doit("info", "beta:proj")
    assert code == 1 and "playbook.yml changed" in out
    assert h.doit("image:proj")[0] == 0
    assert Counter(alpha=1, beta=2, gamma=2) == BUILDS


def test_another_source_date_epoch_reruns_every_stage_and_says_so(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stage's tools see SOURCE_DATE_EPOCH: doit's check and the key both follow it
    (none of these fake stages has it in its configuration slice)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1704067200")
    h.doit("image:proj")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1735689600")
    code, out = h.doit("why:proj")
    assert code == 0 and "the source date epoch changed from 1704067200 to 1735689600" in out
    h.doit("image:proj")
    assert Counter(alpha=2, beta=2, gamma=2) == BUILDS  # each key holds the epoch
    manifest = json.loads(h.art("alpha.manifest.json").read_text())
    assert manifest["source_date_epoch"] == 1735689600
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1704067200")  # back: the cache has it
    code, out = h.doit("image:proj")
    assert code == 0 and "reused from the cache" in out
    assert BUILDS["alpha"] == 2
