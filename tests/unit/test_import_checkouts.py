"""Two checkouts of one project keep their own LXD images; a project moving on frees its old one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edibuild.lxd import names
from stages import import_
from tests.fake_backend import FakeBackend
from tests.unit.test_lxd_ownership import project


def in_checkout(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setenv("EDIBUILD_ARTIFACTS", str(root / "artifacts"))


def test_two_checkouts_of_one_project_keep_both_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FakeBackend()
    main = backend.add_image(names.image_alias("a" * 64))
    branch = backend.add_image(names.image_alias("b" * 64))
    in_checkout(monkeypatch, tmp_path / "main")
    import_._mark_project_image(backend, project(), main.fingerprint)
    in_checkout(monkeypatch, tmp_path / "branch")
    import_._mark_project_image(backend, project(), branch.fingerprint)
    in_checkout(monkeypatch, tmp_path / "main")
    import_._mark_project_image(backend, project(), main.fingerprint)
    assert set(backend.store) == {main.fingerprint, branch.fingerprint}
    assert import_.project_alias(project()) in backend.store[main.fingerprint].aliases


def test_a_checkout_moving_to_a_new_key_deletes_its_old_image_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FakeBackend()
    old, new, shared = (backend.add_image(names.image_alias(c * 64)) for c in "abc")
    in_checkout(monkeypatch, tmp_path / "other")
    import_._mark_project_image(backend, project(), shared.fingerprint)
    in_checkout(monkeypatch, tmp_path / "main")
    import_._mark_project_image(backend, project(), old.fingerprint)
    import_._mark_project_image(backend, project(), new.fingerprint)
    assert set(backend.store) == {new.fingerprint, shared.fingerprint}
    import_._mark_project_image(backend, project(), shared.fingerprint)  # both on one image
    import_.clean_external_with(backend, project())
    assert set(backend.store) == {shared.fingerprint}  # the other checkout still uses it


def test_the_checkout_less_alias_of_earlier_versions_is_moved_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FakeBackend()
    old, new = (backend.add_image(names.image_alias(c * 64)) for c in "ab")
    backend.add_alias(old.fingerprint, names.project_alias("demo"))
    in_checkout(monkeypatch, tmp_path / "main")
    import_._mark_project_image(backend, project(), new.fingerprint)
    assert set(backend.store) == {new.fingerprint}
    assert names.project_alias("demo") not in backend.aliases()
    # the same image under the old alias stays: it gets the new one first
    backend.add_alias(new.fingerprint, names.project_alias("demo"))
    import_._mark_project_image(backend, project(), new.fingerprint)
    assert backend.aliases() == sorted(
        [names.image_alias("b" * 64), import_.project_alias(project())]
    )


def test_projects_sharing_a_key_import_the_same_image() -> None:
    """The image's metadata holds nothing project's own, so its fingerprint (the import's
    output) does not depend on which of the projects sharing the key imported it first."""
    key = "3c" * 32
    one, other = (SimpleNamespace(project=project(n), key=key) for n in ("demo", "demo-vm"))
    assert import_._properties(one) == import_._properties(other)  # type: ignore[arg-type]
    assert key[:16] in import_._properties(one)["description"]
