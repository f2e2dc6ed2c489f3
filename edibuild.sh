#!/usr/bin/env bash
# Run edibuild (doit) from this checkout: sets the machine up on first use, then `doit "$@"`.
#   ./edibuild.sh image:qemu-bookworm-amd64    ./edibuild.sh list    ./edibuild.sh clean image:NAME
# (Named edibuild.sh because edibuild/ is the Python package.)
set -euo pipefail
repo=$(cd -- "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd -P)
# shellcheck source=setup/bootstrap.bash
source "$repo/setup/bootstrap.bash"
edibuild_setup "$repo"
cd "$repo"
exec "$repo/.venv/bin/doit" "$@"
