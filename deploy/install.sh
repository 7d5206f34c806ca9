#!/bin/sh
# Install keyops into a fresh virtual environment, from a wheel built from a
# source tree. One script for every way keyops is installed from source:
# deploy/Dockerfile (build stage), the systemd steps in deploy/README.md, and
# tests/deploy/test_install_serve.py, so the test exercises exactly what the
# image does.
#
# usage: install.sh SRC PREFIX [EXTRAS]
#   SRC     the source tree (with pyproject.toml)
#   PREFIX  where the virtual environment goes (e.g. /opt/keyops); must not exist
#   EXTRAS  optional dependency groups, default "all" (vault, aws, redis, nats)
# PYTHON selects the interpreter (default python3). pip's own settings
# (PIP_NO_CACHE_DIR, PIP_INDEX_URL, ...) pass through from the environment.
# CONSTRAINTS names a pip constraints file; default SRC/constraints.txt (the
# versions the tests passed with), so every install gets those versions.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: install.sh SRC PREFIX [EXTRAS]" >&2
    exit 2
fi
src=$1
prefix=$2
extras=${3:-all}
python=${PYTHON:-python3}
constraints=${CONSTRAINTS:-$src/constraints.txt}
if [ ! -f "$constraints" ]; then
    echo "install.sh: constraints file $constraints not found; set CONSTRAINTS to the file of pinned versions" >&2
    exit 2
fi

if [ -e "$prefix/bin/python" ]; then
    echo "install.sh: $prefix already holds a virtual environment; remove it or pick another PREFIX" >&2
    exit 2
fi

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT INT TERM

# The wheel carries the migrations and built-in profiles (see pyproject.toml),
# so the environment needs nothing from the source tree afterwards.
"$python" -m pip wheel --no-deps --wheel-dir "$wheels" "$src"
# No pip inside the environment: the installing interpreter's pip does the
# work, so the final image carries no package manager of its own.
"$python" -m venv --without-pip "$prefix"
set -- "$wheels"/keyops-*.whl
"$python" -m pip --python "$prefix/bin/python" install --constraint "$constraints" "$1[$extras]"
"$prefix/bin/keyops" version
