"""bootstrap: a Debian root file system from the project's mirror, as a reproducible tarball.

Reads: the `bootstrap` section (architecture, suite, mirror, components, variant,
packages, keyring, tool). Writes: `bootstrap.tar.zst`. Info: the installed packages and
the digest and date of the mirror's InRelease file, so the archive state is visible.
mmdebstrap writes the tarball itself (bit-reproducible with SOURCE_DATE_EPOCH);
debootstrap's tree is tarred with sorted names and clamped times.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edibuild.config.project import Project
from edibuild.data import Json
from edibuild.engine.stage import Stage, StageContext, Tool
from edibuild.errors import StageFailed
from edibuild.image import debian
from edibuild.run import output

MIRROR_TIMEOUT = 20


def outputs(project: Project) -> dict[str, str]:
    """One output: the root file system tarball."""
    return {"rootfs": "bootstrap.tar.zst"}


def config(project: Project) -> Json:
    """The bootstrap section without the project name, so projects can share the result."""
    b = project.bootstrap
    return {
        "architecture": b.architecture,
        "suite": b.suite,
        "mirror": b.mirror,
        "components": list(b.components),
        "variant": b.variant,
        "packages": sorted(b.packages),
        "keyring": b.keyring is not None,
        "tool": b.tool,
    }


def plugins(project: Project) -> tuple[Path, ...]:
    """The keyring file, when the project names one."""
    keyring = project.bootstrap.keyring
    return (keyring,) if keyring is not None else ()


def tools(project: Project) -> tuple[Tool, ...]:
    """The bootstrap tool, tar and zstd."""
    tool = project.bootstrap.tool
    return (Tool(tool, tool), Tool("tar", "tar"), Tool("zstd", "zstd"))


def fetch_release(project: Project) -> dict[str, str]:
    """Fetch the suite's InRelease: proves the mirror answers, and records its state."""
    import urllib.error  # imported here: only a build needs it, not every doit start
    import urllib.request

    b = project.bootstrap
    url = f"{b.mirror.rstrip('/')}/dists/{b.suite}/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise StageFailed(
            f"the mirror {b.mirror} does not answer for {b.suite} ({url}: {exc})",
            hint="set bootstrap.mirror (or the `mirror` parameter in projects/overlays/"
            "global.yml) to a mirror that carries this suite",
            location=project.where("bootstrap", "mirror"),
        ) from exc
    date = next(
        (
            line[5:].strip()
            for line in data.decode("utf-8", "replace").splitlines()
            if line.startswith("Date:")
        ),
        "",
    )
    return {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "date": date}


def build(ctx: StageContext) -> Json:
    """Check the mirror, bootstrap, and describe what was installed."""
    release = fetch_release(ctx.project)
    tarball = ctx.output("rootfs")
    if ctx.project.bootstrap.tool == "mmdebstrap":
        _mmdebstrap(ctx, tarball)
    else:
        _debootstrap(ctx, tarball)
    status = output(["tar", "--zstd", "-xOf", tarball, "./var/lib/dpkg/status"])
    return {"release": release, "packages": debian.installed_packages(status)}


def _common(project: Project) -> list[str]:
    b = project.bootstrap
    argv = [f"--variant={b.variant}", f"--components={','.join(b.components)}"]
    if b.packages:
        argv.append(f"--include={','.join(b.packages)}")
    if b.keyring is not None:
        argv.append(f"--keyring={os.fspath(b.keyring)}")
    return argv


def _mmdebstrap(ctx: StageContext, tarball: Path) -> None:
    b = ctx.project.bootstrap
    argv: list[str | Path] = [
        "mmdebstrap",
        f"--architectures={b.architecture}",
        *_common(ctx.project),
        '--aptopt=Acquire::Retries "3"',
        b.suite,
        tarball,
        b.mirror,
    ]
    ctx.run(argv, env=ctx.env)


def _debootstrap(ctx: StageContext, tarball: Path) -> None:
    b = ctx.project.bootstrap
    tree = ctx.scratch("rootfs")
    ctx.run(
        ["debootstrap", f"--arch={b.architecture}", *_common(ctx.project), b.suite, tree, b.mirror],
        env=ctx.env,
    )
    debian.strip_host_state(tree)
    debian.reproducible_tar(ctx, tree, tarball)


STAGE = Stage(
    name="bootstrap",
    doc="Bootstrap a Debian root file system from the mirror (debootstrap or mmdebstrap)",
    upstream=(),
    outputs=outputs,
    config=config,
    build=build,
    plugins=plugins,
    tools=tools,
)
