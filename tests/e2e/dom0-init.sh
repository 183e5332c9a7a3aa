#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs in dom0, chrooted into the host's read-only / (see boot.sh): mounts what
# the Xen toolstack needs, starts xenstored and xenconsoled, mounts the
# writable share on WORKDIR/out, runs SCRIPT ARGS, prints
# "VMARK-E2E-END <exit code>" and powers off.
#
#   dom0-init.sh WORKDIR KVER SCRIPT [ARGS...]
W=$1 KVER=$2 SCRIPT=$3
shift 3
mount -t proc proc /proc; mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev; mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
for t in /run /var/lib /var/log /tmp; do mount -t tmpfs tmpfs $t; done
mkdir -p /var/lib/xen /var/lib/xenstored /run/xen /run/xenstored /var/log/xen/console
# A clone or WORKDIR under a directory those tmpfs now hide (a clone in /tmp)
# comes back, read-only, from its own share at the same path (boot.sh).
xs9p() { mkdir -p "$2" && mount -t 9p -o trans=virtio,version=9p2000.L,ro "$1" "$2"; }
if [ -n "${VMARK_SRC:-}" ] && [ ! -d "$VMARK_SRC/tests/e2e" ]; then
	xs9p vmarksrc "$VMARK_SRC" || echo "E2E FAIL: cannot mount the clone's share on $VMARK_SRC"
fi
if [ ! -d "$W/out" ]; then
	xs9p vmarkw "$W" || echo "E2E FAIL: cannot mount WORKDIR's share on $W"
fi
mount -t 9p -o trans=virtio,version=9p2000.L e2eout "$W/out" ||
	echo "E2E FAIL: cannot mount the writable share on $W/out"
for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc; do modprobe $m; done
mount -t xenfs xenfs /proc/xen
/usr/lib/xen-4.17/bin/xenstored
/usr/lib/xen-4.17/bin/xen-init-dom0 >/dev/null
/usr/lib/xen-4.17/bin/xenconsoled --log=guest --log-dir=/var/log/xen/console
echo "E2E dom0 up, toolstack started"
export VMARK_E2E_W=$W VMARK_E2E_KVER=$KVER
"$SCRIPT" "$@"
rc=$?
sync
echo "VMARK-E2E-END $rc"
poweroff -f
