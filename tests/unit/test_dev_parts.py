"""The dev container's pure parts: settings, identity, id map, subuid grants, accounts, ports,
package comparison."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from edibuild.config import Host, load_project
from edibuild.dev import accounts, identity, idmap, packages, ports
from edibuild.dev.identity import Identity, NoDeveloper
from edibuild.errors import ConfigError, StageFailed
from edibuild.lxd.settings import ContainerSettings

HOST = Host(architecture="amd64", user="tester", hostname="testhost")
HEAD = "description: t\nbootstrap: {architecture: amd64, suite: bookworm}\n"


def load(tmp_path: Path, container: str) -> ContainerSettings:
    """Load a project whose `container` section is `container` (YAML lines)."""
    (tmp_path / "p.yml").write_text(HEAD + "container:\n" + container)
    return load_project(tmp_path / "p.yml", shipped_dir=tmp_path, host=HOST).container


@pytest.mark.parametrize(
    ("section", "line", "key", "words", "hint"),
    [
        ("  usr: me\n", 4, "container.usr", "unknown key 'usr'", "'user'"),
        ("  user: Me Too\n", 4, "container.user", "is not a user name", "SUDO_USER"),
        ("  workspace: work\n", 4, "container.workspace", "not a workspace folder", "~/NAME"),
        ("  workspace: ~/../x\n", 4, "container.workspace", "not a workspace folder", "'..'"),
        ("  ssh: 1\n", 4, "container.ssh", "true or false", None),
        ("  target: ../img\n", 4, "container.target", "not a project name", "image project"),
        ("  name: 9x\n", 4, "container.name", "not an LXD container name", "letter"),
    ],
)
def test_container_section_errors_name_file_line_and_key(
    tmp_path: Path, section: str, line: int, key: str, words: str, hint: str | None
) -> None:
    """A wrong container setting stops the load, pointing at its file, line and key."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, section)
    error = caught.value
    assert error.location is not None and error.location.file == tmp_path / "p.yml"
    assert error.location.line == line and error.key == key
    assert words in error.message
    if hint is not None:
        assert error.hint is not None and hint in error.hint


def test_container_settings_and_defaults(tmp_path: Path) -> None:
    """Every key read; the defaults are SUDO_USER, ~/edibuild-workspace and ssh on."""
    found = load(tmp_path, "  user: dev\n  workspace: /srv/w\n  ssh: false\n  target: img\n")
    assert found == ContainerSettings(user="dev", workspace="/srv/w", ssh=False, target="img")
    plain = ContainerSettings()
    assert (plain.user, plain.workspace, plain.ssh) == (None, "~/edibuild-workspace", True)


# -- identity ----------------------------------------------------------------------------


def test_the_developer_is_sudo_user_unless_the_project_names_one() -> None:
    """SUDO_USER by default; `user:` wins; root only when named."""
    assert identity.user_name(ContainerSettings(), {"SUDO_USER": "dev"}) == "dev"
    assert identity.user_name(ContainerSettings(user="ann"), {"SUDO_USER": "dev"}) == "ann"
    assert identity.user_name(ContainerSettings(user="root"), {}) == "root"
    with pytest.raises(NoDeveloper, match="SUDO_USER is not set") as caught:
        identity.user_name(ContainerSettings(), {})
    assert caught.value.hint and "container: {user: NAME}" in caught.value.hint
    with pytest.raises(NoDeveloper, match="SUDO_USER is root"):
        identity.user_name(ContainerSettings(), {"SUDO_USER": "root"})


def test_developer_comes_from_the_host_accounts() -> None:
    """root's entry is read from the host's passwd; an unknown user is an error."""
    who = identity.developer(ContainerSettings(user="root"), {})
    assert (who.uid, who.gid, who.is_root) == (0, 0, True)
    with pytest.raises(NoDeveloper, match="does not exist"):
        identity.developer(ContainerSettings(user="no-such-user-e13"), {})


def test_workspace_is_below_the_home_or_absolute() -> None:
    who = Identity("dev", 1234, 1234, "dev", "/home/dev")
    assert identity.workspace(ContainerSettings(), who) == "/home/dev/edibuild-workspace"
    assert identity.workspace(ContainerSettings(workspace="/srv/w/"), who) == "/srv/w"


def test_public_keys_are_bounded_and_merged(tmp_path: Path) -> None:
    """Only small regular *.pub files count; authorized_keys holds each key once."""
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "a.pub").write_text("ssh-ed25519 AAAA a@host\n")
    (ssh / "b.pub").write_text("# comment\nssh-ed25519 AAAA a@host\nssh-rsa BBBB b\n")
    (ssh / "big.pub").write_bytes(b"x" * (identity.MAX_KEY_BYTES + 1))
    (ssh / "dir.pub").mkdir()
    os.mkfifo(ssh / "fifo.pub")
    (ssh / "id_ed25519").write_text("secret")
    who = Identity("dev", 1234, 1234, "dev", str(tmp_path))
    files = identity.public_keys(who)
    assert [f.name for f in files] == ["a.pub", "b.pub"]
    assert identity.authorized_keys(files) == b"ssh-ed25519 AAAA a@host\nssh-rsa BBBB b\n"


# -- id map and /etc/subuid --------------------------------------------------------------


def test_raw_idmap_text() -> None:
    assert idmap.raw_idmap(1234, 1234) == "both 1234 1234"
    assert idmap.raw_idmap(1234, 100) == "uid 1234 1234\ngid 100 100"


def test_subuid_grant_is_added_once_and_keeps_the_file(tmp_path: Path) -> None:
    """`root:UID:1` is appended when missing (mode kept), never twice, not when covered."""
    subuid = tmp_path / "subuid"
    subuid.write_text("_lxd:100000:10000001\nroot:100000:10000001")  # no final newline
    subuid.chmod(0o640)
    assert idmap.grant(subuid, 1234) == "root:1234:1"
    assert subuid.read_text() == "_lxd:100000:10000001\nroot:100000:10000001\nroot:1234:1\n"
    assert stat.S_IMODE(subuid.stat().st_mode) == 0o640
    assert idmap.grant(subuid, 1234) is None
    assert idmap.grant(subuid, 150000) is None  # inside root's range already
    assert not idmap.granted("someone:1234:1\n", 1234)  # another owner's range
    subgid = tmp_path / "subgid"  # missing: made
    added = idmap.grant_ids(1234, 1300, subuid, subgid)
    assert added == [f"{subgid}: root:1300:1"]
    assert subgid.read_text() == "root:1300:1\n"
    assert [r.owner for r in idmap.ranges("bad line\nroot:1:x\nroot:5:1\n")] == ["root"]


# -- accounts in the container ---------------------------------------------------------------

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
messagebus:x:100:101::/nonexistent:/usr/sbin/nologin
edi:x:1000:1000::/home/edi:/bin/bash
"""
GROUP = """root:x:0:
daemon:x:1:
users:x:100:
messagebus:x:101:
sudo:x:27:edi
edi:x:1000:
"""


def test_a_fresh_uid_gets_group_and_user() -> None:
    """uid 1234 (not 1000): nothing moves; group and user with the host's ids and home."""
    who = Identity("dev", 1234, 1234, "dev", "/home/dev")
    assert accounts.plan(PASSWD, GROUP, who) == [
        ["groupadd", "-g", "1234", "dev"],
        ["mkdir", "-p", "/home"],
        ["useradd", "--uid", "1234", "--gid", "1234", "--home-dir", "/home/dev",
         "--create-home", "--shell", "/bin/bash", "--password", "*", "dev"],
    ]  # fmt: skip


def test_uid_1000_moves_the_images_default_user_with_its_group_and_files() -> None:
    """The developer with uid 1000 meets `edi` (1000:1000): edi moves to 1001, files too."""
    who = Identity("ann", 1000, 1000, "ann", "/home/ann")
    plan = accounts.plan(PASSWD, GROUP, who)
    assert plan[:3] == [
        ["usermod", "-u", "1001", "edi"],
        ["groupmod", "-g", "1001", "edi"],
        ["find", "/home/edi", "-xdev", "-gid", "1000", "-exec", "chgrp", "-h", "1001", "{}", "+"],
    ]
    assert plan[3] == ["groupadd", "-g", "1000", "ann"]
    assert plan[-1][0] == "useradd" and plan[-1][-1] == "ann"


def test_an_existing_account_of_the_same_name_is_brought_to_the_host_ids() -> None:
    who = Identity("edi", 1500, 1000, "edi", "/home/edi")
    plan = accounts.plan(PASSWD, GROUP, who)
    assert plan[0][:3] == ["usermod", "-u", "1500"] and plan[0][-1] == "edi"
    assert "*" in plan[0]


def test_a_system_group_on_the_gid_is_shared_not_moved() -> None:
    """gid 100 is `users` in the container: used as the primary group, nothing moved."""
    who = Identity("dev", 1234, 100, "staff", "/home/dev")
    plan = accounts.plan(PASSWD, GROUP, who)
    assert not [argv for argv in plan if argv[0] in ("groupmod", "groupadd")]
    assert plan[-1][:5] == ["useradd", "--uid", "1234", "--gid", "100"]


def test_a_system_account_in_the_way_is_an_error() -> None:
    """A host uid the container's messagebus has is never taken from it."""
    with pytest.raises(StageFailed, match="system account") as caught:
        accounts.plan(PASSWD, GROUP, Identity("dev", 100, 1234, "dev", "/home/dev"))
    assert caught.value.hint and "container: {user: NAME}" in caught.value.hint
    with pytest.raises(StageFailed, match="system account"):
        accounts.plan(PASSWD, GROUP, Identity("daemon", 1234, 1234, "daemon", "/home/daemon"))


def test_sudoers_line() -> None:
    who = Identity("dev", 1234, 1234, "dev", "/home/dev")
    assert accounts.sudoers(who) == b"dev ALL=(ALL:ALL) NOPASSWD: ALL\n"


# -- ports ----------------------------------------------------------------------------------


def test_port_is_stable_per_name_and_skips_claimed_and_busy_ones() -> None:
    """The same name gives the same port; claimed or busy ports are skipped, wrapping."""
    name = "edibuild-dev-pi3-bookworm-arm64-cross-dev"
    first = ports.preferred(name)
    assert first == ports.preferred(name) and ports.SSH_BASE <= first < ports.SSH_BASE + 800
    assert ports.choose(name, free=lambda p: True) == first
    assert ports.choose(name, {first}, free=lambda p: True) == first + 1 or first == 42999
    assert ports.choose(name, free=lambda p: p != first) != first
    last = ports.SSH_BASE + ports.SSH_SPAN - 1
    assert ports.choose("x", base=last, span=1, free=lambda p: True) == last
    with pytest.raises(OSError, match="no free port"):
        ports.choose(name, free=lambda p: False)


def test_wait_free_returns_once_the_port_is_let_go() -> None:
    """A held port times out with the port in the message; a free one returns at once."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port} is still in use"):
            ports.wait_free(port, timeout=0.3)
    ports.wait_free(port, timeout=0.3)


def test_listen_port_reads_host_side_proxy_devices_only() -> None:
    ssh = {"type": "proxy", "bind": "host", "listen": "tcp:127.0.0.1:42304"}
    assert ports.listen_port(ssh) == 42304
    assert ports.listen_port({**ssh, "bind": "instance"}) is None
    assert ports.listen_port({"type": "disk", "listen": "tcp:127.0.0.1:1"}) is None


# -- package comparison -------------------------------------------------------------------


def test_target_libraries_are_compared_by_name_and_architecture(tmp_path: Path) -> None:
    """Same, different and absent packages of the target architecture; others ignored."""
    query = (
        "ii \tzlib1g\tarm64\t1:1.2.13.dfsg-1\n"
        "ii \tlibssl3\tarm64\t3.0.17-1~deb12u2\n"
        "ii \tzlib1g-dev\tarm64\t1:1.2.13.dfsg-1\n"
        "rc \tgone\tarm64\t1\n"
        "ii \tgcc\tamd64\t4:12.2.0-3\n"
    )
    mine = packages.parse_query(query)
    assert len(mine) == 4
    manifest = tmp_path / "img" / "export.manifest.json"
    manifest.parent.mkdir()
    image = [
        {"name": "zlib1g", "architecture": "arm64", "version": "1:1.2.13.dfsg-1"},
        {"name": "libssl3", "architecture": "arm64", "version": "3.0.16-1~deb12u1"},
    ]
    manifest.write_text('{"info": {"packages": ' + __import__("json").dumps(image) + "}}")
    found = packages.image_packages(tmp_path / "img")
    assert found is not None and found[0] == "export manifest of img"
    result = packages.compare(mine, found[1], "arm64", found[0])
    assert result.same == ["zlib1g:arm64"]
    assert result.differ == [("libssl3:arm64", "3.0.17-1~deb12u2", "3.0.16-1~deb12u1")]
    assert result.not_in_image == ["zlib1g-dev:arm64"]
    assert any("DIFFERS: libssl3:arm64" in line for line in result.lines())
    assert packages.image_packages(tmp_path / "nothing") is None
