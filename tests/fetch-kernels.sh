#!/usr/bin/env bash
# Fetches one Debian kernel (image + headers, nothing else) for the kernel matrix and
# unpacks it into the project's own folder, never touching the machine's kernel or apt
# configuration:
#
#   tests/fetch-kernels.sh SUITE ARCH FLAVOUR
#   tests/fetch-kernels.sh bookworm amd64 rt-amd64
#   tests/fetch-kernels.sh bookworm-backports amd64 amd64
#   tests/fetch-kernels.sh bookworm i386 686-pae
#
# The version is discovered: the newest `linux-image-FLAVOUR` metapackage of SUITE (for
# bookworm: with bookworm-updates and bookworm-security) names the release. Apt runs with a
# private sources list, state and cache under target/kernels/apt/SUITE-ARCH/; the packages
# (`apt-get download`: linux-image-REL, linux-headers-REL, its -common headers and its
# linux-kbuild) are `dpkg -x`'d into target/kernels/REL/, whose headers are made usable
# from there (absolute /usr/src and /lib paths rewritten to the unpacked tree):
#
#   target/kernels/REL/boot/vmlinuz-REL            the kernel image
#   target/kernels/REL/lib/modules/REL/            its modules
#   target/kernels/REL/usr/src/linux-headers-REL/  KDIR for Kbuild
#   target/kernels/REL/bin/busybox                 the guest's busybox, when ARCH is not
#                                                  this machine's (busybox-static:ARCH)
#
# Prints `RELEASE DIR` as its last line. A second run reuses the unpacked tree (recorded in
# target/kernels/by-spec/SUITE-ARCH-FLAVOUR) without the network; VMARK_KERNELS_REFRESH=1
# looks for a newer release first. Needs root only if apt's private state needs it (it
# does not normally); needs `apt-get`, `dpkg` and network access to deb.debian.org.
set -euo pipefail

if [ $# != 3 ]; then
	sed -n '2,12p' "$0" >&2
	exit 2
fi
suite=$1 arch=$2 flavour=$3
root=$(cd "$(dirname "$0")/.." && pwd)
top=$root/target/kernels
spec=$top/by-spec/$suite-$arch-$flavour
say() { echo "fetch-kernels: $*" >&2; }

if [ -z "${VMARK_KERNELS_REFRESH:-}" ] && [ -f "$spec" ]; then
	read -r rel dir <"$spec"
	if [ -f "$dir/.complete" ]; then
		echo "$rel $dir"
		exit 0
	fi
fi

mirror=${VMARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VMARK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { say "$keyring missing: install debian-archive-keyring"; exit 1; }

# linux-kbuild holds the build machine's tools (fixdep, modpost): take it for this
# machine's architecture, also when the kernel is another one's (i386 on amd64).
build_arch=$(dpkg --print-architecture)
archs=$arch
[ "$build_arch" = "$arch" ] || archs=$arch,$build_arch
apt=$top/apt/$suite-$arch
mkdir -p "$apt/parts" "$apt/prefs" "$apt/state/lists/partial" "$apt/cache/archives/partial" \
	"$apt/download" "$top/by-spec"
: >"$apt/status"
{
	echo "deb [arch=$archs signed-by=$keyring] $mirror $suite main"
	if [ "$suite" = bookworm ]; then
		echo "deb [arch=$archs signed-by=$keyring] $mirror bookworm-updates main"
		echo "deb [arch=$archs signed-by=$keyring] $security bookworm-security main"
	fi
} >"$apt/sources.list"
opts=(
	-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=$apt/parts"
	-o "Dir::Etc::preferencesparts=$apt/prefs" -o "Dir::Etc::preferences=$apt/prefs/none"
	-o "Dir::State=$apt/state" -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache"
	-o "APT::Architecture=$arch" -o "APT::Architectures=$archs" -o "Debug::NoLocking=1"
	-o "Acquire::Languages=none" -q
)
say "apt-get update ($suite, $arch)"
apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 || { cat "$apt/update.log" >&2; exit 1; }

# The metapackage's newest version names the release: Depends: linux-image-REL (...).
newest() { apt-cache "${opts[@]}" madison "$1" | awk -F'|' 'NR == 1 {gsub(/ /, "", $2); print $2}'; }
meta=linux-image-$flavour
metaver=$(newest "$meta")
[ -n "$metaver" ] || { say "no $meta in $suite ($arch)"; exit 1; }
image=$(apt-cache "${opts[@]}" show "$meta=$metaver" | sed -n 's/^Depends: //p' | tr ',' '\n' |
	sed -e 's/^ *//' -e 's/ .*//' | grep -E "^linux-image-[0-9].*-$flavour(-unsigned)?$" | head -n 1)
[ -n "$image" ] || { say "$meta $metaver depends on no linux-image-<release>"; exit 1; }
rel=${image#linux-image-}
rel=${rel%-unsigned}
headers=linux-headers-$rel
hdeps=$(apt-cache "${opts[@]}" show "$headers" | sed -n '1,/^$/s/^Depends: //p' | tr ',' '\n' |
	sed -e 's/^ *//' -e 's/ .*//')
common=$(echo "$hdeps" | grep -E '^linux-headers-.*-common(-rt)?$' | head -n 1)
kbuild=$(echo "$hdeps" | grep -E '^linux-kbuild-' | head -n 1)
[ -n "$common" ] && [ -n "$kbuild" ] || { say "$headers: no -common or linux-kbuild dependency ($hdeps)"; exit 1; }
say "$suite $arch $flavour: release $rel ($image, $headers, $common, $kbuild)"

dir=$top/$rel
if [ ! -f "$dir/.complete" ]; then
	rm -rf "$dir" "$apt/download"
	mkdir -p "$apt/download"
	extra=()
	# A guest of another architecture needs its own busybox (bin/busybox in the tree).
	[ "$arch" = "$build_arch" ] || extra=("busybox-static:$arch")
	(cd "$apt/download" && apt-get "${opts[@]}" download "$image" "$headers" "$common" \
		"$kbuild:$build_arch" "${extra[@]}" >&2)
	mkdir -p "$dir"
	for deb in "$apt/download"/*.deb; do
		dpkg -x "$deb" "$dir"
	done
	# The flavour headers include the common ones by absolute path, and their scripts/
	# and tools/ link to ../../lib/linux-kbuild-*: point both into the unpacked tree.
	hdir=$dir/usr/src/linux-headers-$rel
	sed -i "s|/usr/src/|$dir/usr/src/|g" "$hdir/Makefile"
	for l in "$hdir/scripts" "$hdir/tools"; do
		[ -L "$l" ] || continue
		target=$(readlink "$l")
		case "$target" in /*) ln -sfn "$dir$target" "$l" ;; esac
	done
	[ -d "$hdir/scripts/" ] || { say "$hdir/scripts does not resolve"; exit 1; }
	[ -f "$dir/boot/vmlinuz-$rel" ] || { say "no boot/vmlinuz-$rel in $image"; exit 1; }
	rm -rf "$apt/download"
	: >"$dir/.complete"
fi
echo "$rel $dir" >"$spec"
echo "$rel $dir"
