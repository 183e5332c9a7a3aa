#!/usr/bin/env bash
# Installs the peer tools the tests open vmark's snapshots with, from PyPI, into a virtual
# environment of this clone (target/peers): drgn and volatility3, their newest releases;
# and, for drgn's process list, the DWARF of the Debian kernel the tests boot (its vmlinux
# from the linux-image-RELEASE-dbg package of the same version, about 860 MB to download,
# only the vmlinux kept). Needs no root; the Debian side (python3-venv, the kernel, apt's lists)
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

# The kernel's DWARF: target/peers/debug/vmlinux-RELEASE, for the kernel the tests' guests
# and the dump fixture run (the newest /boot/vmlinuz-*, as they choose it), from the -dbg
# package of the installed version; fetched again when that version changes.
fail() {
	echo "install-peers: $*" >&2
	exit 1
}
image=$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)
[ -n "$image" ] || fail "no /boot/vmlinuz-*: run tests/install-deps.sh first"
rel=${image#/boot/vmlinuz-}
ver=$(dpkg-query -W -f='${Version}' "linux-image-$rel" 2>/dev/null) ||
	fail "no Debian package owns $image: drgn's process list needs its -dbg package"
out=$venv/debug/vmlinux-$rel
mkdir -p "$venv/debug"
if [ -s "$out" ] && [ "$(cat "$out.version" 2>/dev/null)" = "$ver" ]; then
	say "the DWARF of $rel $ver is there"
	exit 0
fi
tmp=$(mktemp -d "$venv/debug/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "fetching linux-image-$rel-dbg $ver (the kernel's DWARF, for drgn)"
download() { (cd "$tmp" && apt-get download -q "linux-image-$rel-dbg=$ver"); }
if ! download; then
	# apt's lists may be older than the kernel (install-deps updates them only when it
	# installs something).
	[ "$(id -u)" = 0 ] || fail "cannot download linux-image-$rel-dbg=$ver (apt-get update as root?)"
	apt-get update -q
	download || fail "cannot download linux-image-$rel-dbg=$ver"
fi
member=./usr/lib/debug/boot/vmlinux-$rel
# tar stops after the member, so dpkg-deb may die of a broken pipe: only tar's status
# (and the file) tells.
{ dpkg-deb --fsys-tarfile "$tmp"/*.deb 2>/dev/null || true; } |
	tar -x -C "$tmp" --occurrence=1 "$member" ||
	fail "extracting $member from linux-image-$rel-dbg failed"
[ -s "$tmp/$member" ] || fail "linux-image-$rel-dbg holds no $member"
rm -f "$out.version"
mv "$tmp/$member" "$out"
echo "$ver" > "$out.version"
say "$out: $(du -h "$out" | cut -f1)"
