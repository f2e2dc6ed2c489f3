# Sourced by ./edibuild.sh and ./run-tests: set this machine up once, then stay out of the way.
#
# The stamp .venv/.edibuild-setup holds the sha256 of pyproject.toml + edibuild/host/packages.py
# (the Python dependencies and the Debian package list). While it matches, only a quick
# LXD check runs; when it differs or is missing, `python -m edibuild.host setup` installs
# what is missing (apt-get, python3 -m venv, pip install -e '.[dev]') and starts LXD.

edibuild_setup() {
    local repo=$1
    local stamp="$repo/.venv/.edibuild-setup" want python
    want=$(cat "$repo/pyproject.toml" "$repo/edibuild/host/packages.py" | sha256sum)
    want=${want%% *}
    if [[ -x $repo/.venv/bin/doit && -r $stamp && "$(<"$stamp")" == "$want" ]]; then
        "$repo/.venv/bin/python" -m edibuild.host check
        return
    fi
    # Debian's own Python (not a pyenv/conda one): python3-venv belongs to it.
    python=${EDIBUILD_PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
    mkdir -p "$repo/.edibuild"
    (
        flock 9
        PYTHONPATH="$repo" "$python" -m edibuild.host --repo "$repo" setup
    ) 9>"$repo/.edibuild/setup.lock" </dev/null
}
