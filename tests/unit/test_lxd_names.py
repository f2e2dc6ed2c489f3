"""Names and ownership labels: every object edibuild makes, and which of them it may touch."""

from __future__ import annotations

import os
import socket
import subprocess

from edibuild.lxd import names

KEY = "0123456789abcdef" * 4


def test_names_of_every_object() -> None:
    assert names.safe_name("Pi3_Bookworm.arm64") == "pi3-bookworm-arm64"
    assert names.safe_name("__") == "x"
    assert names.image_alias(KEY) == "edibuild-0123456789abcdef"
    assert names.project_alias("pi3") == "edibuild-project-pi3"
    assert names.layer_alias("Pi3", KEY) == "edibuild-layer-pi3-0123456789abcdef"
    assert names.dev_container("Pi3") == "edibuild-dev-pi3"
    assert names.dev_image_alias("Pi3", KEY) == "edibuild-dev-pi3-0123456789ab"
    box = names.configure_container("Pi3", KEY)
    assert box.startswith(names.configure_prefix("Pi3")) and box.startswith("edibuild-pi3-")
    assert len(box) == len(names.configure_prefix("Pi3")) + 8 + 1 + 4
    assert box != names.configure_container("Pi3", KEY)  # a fresh one each time
    assert names.profile(box, "10_Apt proxy") == f"{box}-10-apt-proxy"


def test_patterns_match_only_the_projects_own_images() -> None:
    """`demo`'s patterns never match `demo-x`'s aliases (a plain prefix test would)."""
    mine, theirs = names.dev_image_alias("demo", KEY), names.dev_image_alias("demo-x", KEY)
    assert names.dev_image_pattern("demo").match(mine)
    assert not names.dev_image_pattern("demo").match(theirs)
    assert not names.dev_image_pattern("demo").match("edibuild-dev-demo-1234")
    layer, other = names.layer_alias("demo", KEY), names.layer_alias("demo-x", KEY)
    assert names.layer_pattern("demo").match(layer)
    assert not names.layer_pattern("demo").match(other)
    assert not names.layer_pattern("demo").match(names.image_alias(KEY))


def test_labels_mark_project_and_transient_owner() -> None:
    assert names.labels("demo") == {"user.edibuild.project": "demo"}
    transient = names.labels("demo", transient=True)
    assert transient["user.edibuild.owner"] == f"{socket.gethostname()}:{os.getpid()}"
    # A run starts by removing leftovers: a mark naming this very process is one (made
    # by an earlier process that had the same pid), never a container in use.
    assert names.mark_gone(transient["user.edibuild.owner"])


def test_owner_mark_is_gone_with_its_process() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    host = socket.gethostname()
    assert names.mark_gone(f"{host}:{child.pid}")
    assert not names.mark_gone(f"{host}:{os.getppid()}")  # still running
    assert not names.mark_gone(f"another-host:{child.pid}")  # not ours to judge
    assert names.mark_gone("")  # no mark at all: an abandoned container


def test_belongs_to_reads_the_label_and_unlabelled_names() -> None:
    prefix = names.configure_prefix("demo")
    labelled = {"user.edibuild.project": "demo"}
    assert names.belongs_to(labelled, "demo")
    assert not names.belongs_to({"user.edibuild.project": "demo-x"}, "demo", prefix + "1", prefix)
    # made before every instance was labelled: the project's name prefix decides
    assert names.belongs_to({"user.edibuild.owner": "h:1"}, "demo", prefix + "1", prefix)
    assert not names.belongs_to({}, "demo", "edibuild-other-configure-1", prefix)
    # a name the user chose proves nothing: only the label counts
    assert not names.belongs_to({}, "demo", "edibuild-dev-demo")
