#!/bin/sh
# Install what deploy/check.py needs. Idempotent; run as root (CI does).
#
#   - Python packages from deploy/requirements-check.txt (kubernetes-validate,
#     hadolint, docker-compose, jsonschema);
#   - promtool, unpacked from Debian's "prometheus" package into
#     $KEYOPS_TOOLS_BIN (default /usr/local/bin). The package is unpacked, not
#     installed, so no Prometheus server is set up or started;
#   - systemd-analyze (Debian's "systemd" package), when missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
bindir=${KEYOPS_TOOLS_BIN:-/usr/local/bin}

"$python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-check.txt"

if ! command -v promtool >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT INT TERM
    chmod 0755 "$tmp"
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update -qq
        (cd "$tmp" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/unpacked"
    install -d "$bindir"
    install -m 0755 "$tmp/unpacked/usr/bin/promtool" "$bindir/promtool"
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends systemd >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null; }
fi

promtool --version 2>&1 | head -n 1
systemd-analyze --version | head -n 1
hadolint --version
docker-compose version
