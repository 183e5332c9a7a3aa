#!/usr/bin/env bash
# Installs, from Debian's packages only, everything vmark's build, tests and showcase need on
# a Debian 12 (bookworm) x86-64 machine. Idempotent: when all is in place it only says so.
#
#   sudo tests/install-deps.sh
#
# QEMU must be bookworm's own (7.2): the nested Xen's PVH guests die under the QEMU 10 of
# bookworm-backports, whose emulated AMD-V reports CR2 reads as CR0 reads, so Xen hands the
# guest kernel a stale CR2 and its first page fault is fatal (see tests/e2e/). Machines of
# this kind may carry backported QEMU packages (qemu-utils); those are moved back to
# bookworm's versions, since apt refuses to mix the two.
set -euo pipefail

packages=(
	# nested Xen: the hypervisor, its tools and libraries (headers for the Rust bindings)
	qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 libxen-dev xenstore-utils
	# the Debian kernel dom0 and the guests run, and its headers for Kbuild
	linux-image-amd64 linux-headers-amd64
	# initramfs contents and the tools the harness builds them with
	busybox-static cpio gzip kmod iproute2
	# bindgen, pahole, C toolchain, checkpatch's interpreter
	libclang-dev dwarves gcc make perl
	# the TCP traffic generator and the tcp-monitor check's judge, the trace decoder; the
	# virtual environment the peers (drgn, volatility3) are installed in from PyPI
	python3 python3-venv
	# text in the PNG plots (vmark plot -o x.png draws with the system's fonts)
	fonts-dejavu-core
	# watch --on-packet: libpcap (capture and tcpdump-style filters); the tcp-monitor check
	# turns dom0's segmentation offloads off (ethtool) and opens the pcapng with tshark
	libpcap-dev ethtool tshark
)
# QEMU packages that must all come from bookworm when any is installed.
qemu_family=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils qemu-block-extra)

say() { echo "install-deps: $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "tests/install-deps.sh: run it as root (it installs Debian packages)" >&2
	exit 1
fi

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }

missing=()
for p in "${packages[@]}"; do
	[ -n "$(installed_version "$p")" ] || missing+=("$p")
done
backported=()
for p in "${qemu_family[@]}"; do
	case "$(installed_version "$p")" in *bpo*) backported+=("$p") ;; esac
done
if [ ${#missing[@]} = 0 ] && [ ${#backported[@]} = 0 ]; then
	say "all ${#packages[@]} packages installed; nothing to do"
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q
if [ ${#backported[@]} != 0 ] || printf '%s\n' "${missing[@]}" | grep -qx qemu-system-x86; then
	# Pin the whole QEMU family to bookworm's newest version of each package.
	pins=()
	for p in "${qemu_family[@]}"; do
		v=$(apt-cache madison "$p" | grep -v backports | awk -F'|' 'NR == 1 {gsub(/ /, "", $2); print $2}')
		[ -n "$v" ] && pins+=("$p=$v")
	done
	say "installing bookworm's QEMU: ${pins[*]}"
	apt-get install -y -q --allow-downgrades "${pins[@]}"
fi
if [ ${#missing[@]} != 0 ]; then
	say "installing: ${missing[*]}"
	apt-get install -y -q "${missing[@]}"
fi
say "done"
