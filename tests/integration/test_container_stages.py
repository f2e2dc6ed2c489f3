"""import -> configure -> export against the real LXD daemon and real Ansible.

Needs root, LXD (running and initialised) and a bookworm rootfs tarball with python3
and systemd-sysv: EDIBUILD_TEST_ROOTFS names one, else mmdebstrap makes one (~1 min).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
import stat
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from edibuild.config.project import Bootstrap, Node, Project
from edibuild.engine.stage import Stage, StageContext
from edibuild.errors import StageFailed
from edibuild.lxd import client as lxd
from edibuild.lxd import names
from edibuild.lxd.errors import BackendError
from edibuild.lxd.settings import ContainerSettings, LxdSettings
from stages import configure, container, export, import_
from tests.conftest import require, require_root, require_tool

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "container"
EPOCH = 1700000000


@pytest.fixture(scope="module")
def rootfs(bookworm_rootfs: Path) -> Path:
    """A bookworm minbase rootfs tarball (python3, systemd-sysv)."""
    require_root()
    require_tool("zstd", "tar", "dpkg-query")
    given = os.environ.get("EDIBUILD_TEST_ROOTFS")
    return Path(given) if given else bookworm_rootfs


@pytest.fixture(scope="module")
def client() -> Any:
    """The container backend; LXD is started and initialised if needed (host setup)."""
    require_root()
    try:
        from edibuild.host.lxd_service import ensure_lxd

        ensure_lxd()
    except ImportError:
        pass
    try:
        return lxd.connect()
    except BackendError as exc:
        require(False, f"an LXD daemon ({exc})")


def make_project(name: str, playbooks: list[str], tmp: Path) -> Project:
    """A project built by hand (the loader is not needed for these stages)."""
    (tmp / f"{name}.yml").write_text("# test project\n")
    nodes = tuple(Node(f"{i}0_{p}", FIXTURES / f"{p}.yml") for i, p in enumerate(playbooks))
    return Project(
        name=name,
        file=tmp / f"{name}.yml",
        description="test",
        parameters={"marker_text": "hello-from-ansible", "install_hello": True},
        bootstrap=Bootstrap("amd64", "bookworm", "http://deb.debian.org/debian"),
        lxd_profiles=(Node("10_profile", FIXTURES / "profile.yml"),),
        playbooks=nodes,
        sections={},
    )


def context(
    stage: Stage, project: Project, key: str, tmp: Path, inputs: dict[str, dict[str, Path]]
) -> StageContext:
    """A StageContext the way the engine would make one."""
    work = tmp / f"{stage.name}-{key[:8]}"
    (work / "out").mkdir(parents=True, exist_ok=True)
    return StageContext(
        project=project,
        stage=stage,
        key=key,
        workdir=work,
        log=work / "log.txt",
        inputs=inputs,
        input_info={},
        source_date_epoch=EPOCH,
        output_names=dict(stage.outputs(project)),
    )


@pytest.fixture()
def project(tmp_path: Path, client: Any) -> Iterator[Project]:
    """A uniquely named project whose LXD leftovers are checked and cleaned after."""
    proj = make_project(f"t{secrets.token_hex(3)}", ["write_file"], tmp_path)
    yield proj
    container.clean_external(proj)
    configure.clean_external(proj)
    import_.clean_external(proj)


def run_import(project: Project, rootfs: Path, tmp: Path, key: str) -> StageContext:
    """Run the import stage; return its context."""
    ctx = context(import_.STAGE, project, key, tmp, {"bootstrap": {"rootfs": rootfs}})
    info = import_.build(ctx)
    assert info["fingerprint"]
    return ctx


def leftovers(client: Any, project: Project) -> list[str]:
    """Containers of the project's configure stage still in LXD."""
    return list(client.instance_names(configure.container_prefix(project)))


def test_import_configure_export(
    project: Project, rootfs: Path, tmp_path: Path, client: Any
) -> None:
    """The playbook's file ends up in the reproducible rootfs; a re-import is reused."""
    key = secrets.token_hex(16)
    ictx = run_import(project, rootfs, tmp_path, key)
    again = import_.build(
        context(import_.STAGE, project, key, tmp_path / "again", {"bootstrap": {"rootfs": rootfs}})
    )
    assert again["reused"] is True
    image = json.loads(ictx.output("image").read_text())
    assert import_.intact(project, image)
    cctx = context(
        configure.STAGE,
        project,
        secrets.token_hex(16),
        tmp_path,
        {"import": {"image": ictx.output("image")}},
    )
    cinfo = configure.build(cctx)
    assert cinfo["playbooks"][0]["tasks"] == 2
    assert leftovers(client, project) == []
    check_dev_container(project, cctx, tmp_path, client)
    ectx = context(
        export.STAGE,
        project,
        secrets.token_hex(16),
        tmp_path,
        {"configure": {"container": cctx.output("container")}},
    )
    einfo = export.build(ectx)
    assert any(p["name"] == "hello" for p in einfo["packages"])
    check_tarball(ectx.output("rootfs"))
    again_ctx = context(
        export.STAGE,
        project,
        secrets.token_hex(16),
        tmp_path,
        {"configure": {"container": cctx.output("container")}},
    )
    export.build(again_ctx)
    assert again_ctx.output("rootfs").read_bytes() == ectx.output("rootfs").read_bytes()


def check_dev_container(project: Project, cctx: StageContext, tmp: Path, client: Any) -> None:
    """The dev container runs the configured rootfs, labelled; clean removes it and its image.

    (root, no ssh, no network: the developer's own container is test_dev_container.py's.)
    """
    inputs = {"configure": {"container": cctx.output("container")}}
    settings = ContainerSettings(user="root", workspace=str(tmp / "workspace"), ssh=False)
    project = dataclasses.replace(project, container=settings, lxd=LxdSettings(network="default"))
    dctx = context(container.STAGE, project, secrets.token_hex(16), tmp, inputs)
    info = container.build(dctx)
    assert (tmp / "workspace").is_dir() and info["user"]["uid"] == 0
    box = client.instance(info["name"])
    assert box is not None and box.config["user.edibuild.project"] == project.name
    marker = box.check(["cat", "/etc/edibuild-marker"], "reading the marker")
    assert marker == b"hello-from-ansible bookworm\n"
    assert container.intact(project, info)
    container.clean_external(project)
    assert not container.intact(project, info)
    assert client.image(info["fingerprint"]) is None


def check_tarball(path: Path) -> None:
    """The exported tarball holds the marker, no apt lists, an empty machine-id."""
    plain = path.with_suffix("")
    subprocess.run(["zstd", "-q", "-d", str(path), "-o", str(plain)], check=True)
    with tarfile.open(plain) as tar:
        names = tar.getnames()
        marker = tar.extractfile("./etc/edibuild-marker")
        assert marker is not None and marker.read() == b"hello-from-ansible bookworm\n"
        machine_id = tar.getmember("./etc/machine-id")
        assert machine_id.size == 0
        assert max(m.mtime for m in tar.getmembers()) <= EPOCH
        assert not [
            n for n in names if n.startswith("./var/lib/apt/lists/") and tar.getmember(n).isfile()
        ]
        assert not [n for n in names if n.startswith("./tmp/")]


def test_failing_playbook(project: Project, rootfs: Path, tmp_path: Path, client: Any) -> None:
    """A failing task is named in the error, and no container is left."""
    failing = make_project(project.name, ["write_file", "fail"], tmp_path)
    failing = dataclasses.replace(failing, parameters={"marker_text": "x", "install_hello": False})
    ictx = run_import(failing, rootfs, tmp_path, secrets.token_hex(16))
    cctx = context(
        configure.STAGE,
        failing,
        secrets.token_hex(16),
        tmp_path,
        {"import": {"image": ictx.output("image")}},
    )
    with pytest.raises(StageFailed) as caught:
        configure.build(cctx)
    assert "Step that is meant to break" in str(caught.value)
    assert "broken on purpose" in str(caught.value)
    assert leftovers(client, failing) == []


# Files the pool read must carry as LXD's publish does: an owner other than root, a v2
# file capability (stored shifted, as v3, in the pool), a user xattr, a hard link and a
# symbolic link whose target starts with "./" (the rename of members must leave it).
ODD_FILES = r"""
import os, struct
os.makedirs("/srv/odd", exist_ok=True)
with open("/srv/odd/capable", "w") as f:
    f.write("x")
cap_net_raw = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)
os.setxattr("/srv/odd/capable", "security.capability", cap_net_raw)
with open("/srv/odd/owned", "w") as f:
    f.write("y")
os.chown("/srv/odd/owned", 1000, 1001)
os.setxattr("/srv/odd/owned", "user.edibuild", b"kept")
os.link("/srv/odd/owned", "/srv/odd/hard")
os.symlink("./owned", "/srv/odd/soft")
"""


class Entry(NamedTuple):
    """What an unpacked file is, for comparing two trees."""

    mode: int
    uid: int
    gid: int
    size: int
    link: str
    xattrs: dict[str, bytes]
    data: bytes
    nlink: int
    mtime: int  # whole seconds


ACLS = {"system.posix_acl_access", "system.posix_acl_default"}


def comparable(entry: Entry) -> Entry:
    """The entry without what depends on how the tree was unpacked (a folder's size: the
    order its entries came in) or on rounding (mtime), and without ACLs (see below)."""
    xattrs = {k: v for k, v in entry.xattrs.items() if k not in ACLS}
    size = 0 if stat.S_ISDIR(entry.mode) else entry.size
    return entry._replace(mtime=0, size=size, xattrs=xattrs)


def tree_entries(root: Path) -> dict[str, Entry]:
    """Every file under `root`, by its path there."""
    found: dict[str, Entry] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            st = path.lstat()
            keys = os.listxattr(path, follow_symlinks=False)
            xattrs = {k: os.getxattr(path, k, follow_symlinks=False) for k in keys}
            link = os.readlink(path) if path.is_symlink() else ""
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            found[str(path.relative_to(root))] = Entry(
                st.st_mode, st.st_uid, st.st_gid, st.st_size, link, xattrs, data,
                st.st_nlink, int(st.st_mtime),
            )  # fmt: skip
    return found


@pytest.mark.parametrize("pool", ["default", "build"])
def test_pool_read_equals_publish(
    project: Project, rootfs: Path, tmp_path: Path, client: Any, pool: str
) -> None:
    """Read straight from the storage pool (the default profile's dir pool and edibuild's
    btrfs build pool), the stopped container unpacks to the same tree as LXD's publish of
    it: owners, modes, capabilities, xattrs, links, contents."""
    devices = client.build_root() if pool == "build" else {}
    require(pool == "default" or bool(devices), "edibuild's btrfs pool (the setup adds it)")
    ictx = run_import(project, rootfs, tmp_path, secrets.token_hex(16))
    fingerprint = json.loads(ictx.output("image").read_text())["fingerprint"]
    key = secrets.token_hex(16)
    name = names.configure_container(project.name, key)
    labels = names.labels(project.name, transient=True)
    box = client.launch(name, fingerprint, profiles=["default"], devices=devices, config=labels)
    box.check(["python3", "-c", ODD_FILES], "making the odd files")
    box.stop()
    require(client.local_folder(name) is not None, "an LXD storage pool of the dir or btrfs driver")
    cctx = context(configure.STAGE, project, key, tmp_path, {})
    assert configure._export(cctx, client, box) == "storage pool"
    published = tmp_path / "published.tar.zst"
    with box.exported() as chunks:
        cctx.run([*configure.ZSTD, "-o", published], input=chunks)
    trees = []
    for archive in (cctx.output("container"), published):
        tree = tmp_path / f"tree-{archive.name}"
        tree.mkdir()
        subprocess.run(export.unpack_command(archive, tree), check=True)
        trees.append(tree_entries(tree))
    pool, lxd_publish = trees
    assert pool.keys() == lxd_publish.keys()
    differing = {
        k: (pool[k], lxd_publish[k])
        for k in pool
        if comparable(pool[k]) != comparable(lxd_publish[k])
    }
    assert differing == {}
    # LXD 5.0's publish drops POSIX ACLs (journald's on /var/log/journal); the pool read keeps them.
    assert [k for k in pool if ACLS & set(lxd_publish[k].xattrs)] == []
    assert ACLS & set(pool["var/log/journal"].xattrs)
    assert [k for k in pool if abs(pool[k].mtime - lxd_publish[k].mtime) > 1] == []  # rounding
    cap = pool["srv/odd/capable"].xattrs["security.capability"]
    assert cap[:4] == struct.pack("<I", 0x02000001)  # v2: unshifted, as the publish wrote it
    owned = pool["srv/odd/owned"]
    assert (owned.uid, owned.gid, owned.nlink, owned.xattrs["user.edibuild"]) == (
        1000, 1001, 2, b"kept",
    )  # fmt: skip
    assert pool["srv/odd/soft"].link == "./owned"
    with tarfile.open(fileobj=io.BytesIO(zstd_decompress(cctx.output("container")))) as tar:
        first = tar.next()
        assert first is not None and first.name == "metadata.yaml"
        meta = tar.extractfile(first)
        assert meta is not None
        assert f"user.edibuild.project: {project.name}".encode() in meta.read()


def zstd_decompress(path: Path) -> bytes:
    """The decompressed bytes of a zstd file (every frame)."""
    argv = ["zstd", "-q", "-d", "-c", str(path)]
    return subprocess.run(argv, check=True, capture_output=True).stdout
