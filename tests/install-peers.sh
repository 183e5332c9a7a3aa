#!/usr/bin/env bash
# Installs the peer tools the tests open vmark's snapshots with, from PyPI, into a virtual
# environment of this clone (target/peers): drgn and volatility3, their newest releases;
# and, for drgn's process list, the DWARF of each installed Debian kernel (its vmlinux from
# the linux-image-RELEASE-dbg package of the same version, about 860 MB to download, only
# the vmlinux kept). Needs no root; the Debian side (python3-venv, the kernel, apt's lists)
# is tests/install-deps.sh's.
#
#   tests/install-peers.sh        # then target/peers/bin/{python,vol}, target/peers/debug/
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

# The kernels' DWARF: target/peers/debug/vmlinux-RELEASE, for every /boot/vmlinuz-RELEASE
# a Debian package installed (the tests' guests run one of them).
mkdir -p "$venv/debug"
for image in /boot/vmlinuz-*; do
	[ -e "$image" ] || continue
	rel=${image#/boot/vmlinuz-}
	out=$venv/debug/vmlinux-$rel
	[ -s "$out" ] && continue
	ver=$(dpkg-query -W -f='${Version}' "linux-image-$rel" 2>/dev/null || true)
	if [ -z "$ver" ]; then
		say "no Debian package owns $image: no DWARF for $rel"
		continue
	fi
	tmp=$(mktemp -d "$venv/debug/fetch.XXXXXX")
	say "fetching linux-image-$rel-dbg $ver (the kernel's DWARF, for drgn)"
	(cd "$tmp" && apt-get download -q "linux-image-$rel-dbg=$ver") || {
		rm -rf "$tmp"
		echo "install-peers: cannot download linux-image-$rel-dbg=$ver (apt-get update as root?)" >&2
		exit 1
	}
	# tar stops at the member, so dpkg-deb may die of a broken pipe: the file is the test.
	dpkg-deb --fsys-tarfile "$tmp"/*.deb 2>/dev/null |
		tar -x -C "$tmp" --occurrence=1 "./usr/lib/debug/boot/vmlinux-$rel" || true
	if [ ! -s "$tmp/usr/lib/debug/boot/vmlinux-$rel" ]; then
		rm -rf "$tmp"
		echo "install-peers: linux-image-$rel-dbg holds no usr/lib/debug/boot/vmlinux-$rel" >&2
		exit 1
	fi
	mv "$tmp/usr/lib/debug/boot/vmlinux-$rel" "$out"
	rm -rf "$tmp"
	say "$out: $(du -h "$out" | cut -f1)"
done
