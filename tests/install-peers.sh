#!/usr/bin/env bash
# Installs the peer tools the tests open vmark's snapshots with, from PyPI, into a virtual
# environment of this clone (target/peers): drgn and volatility3, their newest releases.
# Needs no root; the Debian side (python3-venv) is tests/install-deps.sh's.
#
#   tests/install-peers.sh        # then target/peers/bin/{python,vol}
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/peers
say() { echo "install-peers: $*"; }

if [ ! -x "$venv/bin/python" ]; then
	say "creating $venv"
	python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade drgn volatility3
"$venv/bin/python" - <<'PY'
import importlib.metadata as m
print("install-peers: drgn", m.version("drgn"), "and volatility3", m.version("volatility3"), "ready")
PY
