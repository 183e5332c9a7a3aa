#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Boots real Xen 4.17 with a Debian dom0 under QEMU (TCG: no KVM needed) and
# runs a script in dom0.  dom0 is a tiny busybox initramfs that mounts the
# host's / read-only over 9p and chroots into it, so dom0 runs the host's own
# Xen tools and freshly built binaries; dom0-init.sh starts the toolstack.
#
#   boot.sh WORKDIR TIMEOUT_S DOM0_SCRIPT [ARGS...]
#
# WORKDIR receives xen, dom0.cpio.gz, console.log (Xen serial + dom0 console)
# and out/, shared writable with dom0 at the same path.  The clone and WORKDIR
# may be anywhere, /tmp and paths with spaces included: dom0 mounts tmpfs over
# /tmp, /run, /var/lib and /var/log, and then mounts the clone and WORKDIR back
# from shares of their own (dom0-init.sh).  With VMARK_GUEST_FILES (paths, one
# a line; or separated by spaces when there is no newline) and
# VMARK_GUEST_INIT=script, also guest.cpio.gz: busybox, those files in its
# root and the script as /init.  dom0 runs DOM0_SCRIPT ARGS and prints
# "VMARK-E2E-END <exit code>" before it powers off (which ends QEMU).  QEMU is
# killed after TIMEOUT_S.  Lines of dom0 starting with "E2E", "ok", "FAIL",
# "==" are echoed to stderr as progress.  Exit: 0 when dom0's script exited 0,
# 124 on timeout, else 1.  Needs what tests/install-deps.sh installs.
set -eu
W=$1 TIMEOUT=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KVER=${VMARK_KVER:-$(ls /lib/modules | grep -- '-amd64$' | sort -V | tail -n 1)}
KMOD=/lib/modules/$KVER/kernel
VMLINUZ=/boot/vmlinuz-$KVER
XENGZ=$(ls /boot/xen-4.17*-amd64.gz 2>/dev/null | sort -V | tail -n 1)
missing=
for f in "$VMLINUZ" "$XENGZ" /bin/busybox /usr/lib/xen-4.17/bin/xl "$KMOD/fs/9p/9p.ko"; do
	[ -e "$f" ] || missing="$missing ${f:-/boot/xen-4.17-amd64.gz}"
done
command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86_64"
command -v cpio >/dev/null || missing="$missing cpio"
if [ -n "$missing" ]; then
	echo "E2E missing:$missing (run tests/install-deps.sh)" >&2
	exit 1
fi

mkdir -p "$W/out"
zcat "$XENGZ" > "$W/xen"
cpio_of() { (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) > "$2"; }

if [ -n "${VMARK_GUEST_INIT:-}" ]; then
	g=$W/guest-root
	rm -rf "$g" && mkdir -p "$g/bin" "$g/proc" "$g/sys" "$g/dev"
	cp /bin/busybox "$g/bin/busybox"
	# One path a line; without a newline, one path (it may hold spaces) or paths
	# separated by spaces.
	if [[ "${VMARK_GUEST_FILES:-}" == *$'\n'* ]] || [ -e "${VMARK_GUEST_FILES:-/nonexistent}" ]; then
		while IFS= read -r f; do [ -z "$f" ] || cp "$f" "$g/"; done <<< "$VMARK_GUEST_FILES"
	else
		for f in ${VMARK_GUEST_FILES:-}; do cp "$f" "$g/"; done
	fi
	cp "$VMARK_GUEST_INIT" "$g/init"
	chmod +x "$g/init"
	cpio_of "$g" "$W/guest.cpio.gz"
fi

d=$W/dom0-root
rm -rf "$d" && mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev" "$d/mnt" "$d/mods"
cp /bin/busybox "$d/bin/busybox"
for m in drivers/virtio/virtio_ring drivers/virtio/virtio \
	 drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev \
	 drivers/virtio/virtio_pci fs/netfs/netfs fs/fscache/fscache \
	 net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
	[ -e "$KMOD/$m.ko" ] && cp "$KMOD/$m.ko" "$d/mods/"
done
q() { printf "'%s' " "$@"; }
cat > "$d/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
	 virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
	[ -e /mods/\$m.ko ] && insmod /mods/\$m.ko
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /mnt || echo "E2E FAIL: cannot mount the host's / over 9p"
exec chroot /mnt /usr/bin/env VMARK_SRC=$(q "$ROOT") /bin/bash $(q "$HERE/dom0-init.sh" "$W" "$KVER" "$@")
INIT
chmod +x "$d/init"
cpio_of "$d" "$W/dom0.cpio.gz"

# QEMU's multiboot module list splits on spaces and commas: the boot files go
# to a plain path of their own.
B=$(mktemp -d /tmp/vmark-boot.XXXXXX)
trap 'rm -rf "$B"' EXIT
cp "$W/xen" "$W/dom0.cpio.gz" "$B/"
echo "E2E booting Xen + dom0 under QEMU (log: $W/console.log)" >&2
rc=0
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg \
	-cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+svm,+npt \
	-m "${VMARK_QEMU_MEM:-2560}" -smp 2 -nographic -no-reboot \
	-kernel "$B/xen" \
	-append "dom0_mem=1024M,max:1024M console=com1 com1=115200 loglvl=all guest_loglvl=all ${VMARK_XEN_ARGS:-}" \
	-initrd "$VMLINUZ console=hvc0 quiet,$B/dom0.cpio.gz" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$W/out",mount_tag=e2eout,security_model=none,multidevs=remap \
	-virtfs local,path="$ROOT",mount_tag=vmarksrc,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$W",mount_tag=vmarkw,security_model=none,readonly=on,multidevs=remap \
	< /dev/null > "$W/console.log" 2>&1 &
qpid=$!
tail -n +1 -F "$W/console.log" 2>/dev/null |
	grep --line-buffered -aE '^(E2E|ok |FAIL|==)' >&2 &
tpid=$!
wait $qpid || rc=$?
sleep 0.5
kill $tpid 2>/dev/null || true
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "E2E TIMEOUT: QEMU killed after ${TIMEOUT}s (see $W/console.log)" >&2
	exit 124
fi
end=$(grep -a "^VMARK-E2E-END" "$W/console.log" | tr -d "\r" | tail -n 1 | awk "{print \$2}")
[ "$end" = 0 ]
