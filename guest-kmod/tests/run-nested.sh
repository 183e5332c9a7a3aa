#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Stand-alone nested-Xen test of vmark_helper: builds the helper, the marked
# test module and vmark-peek, boots Xen 4.17 + a Debian dom0 under QEMU (TCG)
# with tests/e2e/boot.sh (the end-to-end test's harness) and runs
# dom0-scenario.sh for a PV and a PVH guest.  Needs root and what
# tests/install-deps.sh installs.
#
#   guest-kmod/tests/run-nested.sh [WORKDIR]    (default /var/tmp/vmark-kmod)
#   VMARK_GUEST_TYPES=pv guest-kmod/tests/run-nested.sh    (only a PV guest)
#
# WORKDIR must not be under /tmp, /run, /var/lib or /var/log (dom0 mounts
# tmpfs there).  Xen's serial and dom0's console: WORKDIR/console.log.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-/var/tmp/vmark-kmod}
KVER=$(ls /lib/modules | grep -- '-amd64$' | sort -V | tail -n 1)
rm -rf "$W" && mkdir -p "$W"

make -s -C "$HERE/.." KDIR="/lib/modules/$KVER/build"
make -s -C "$HERE" KDIR="/lib/modules/$KVER/build"
gcc -O2 -Wall -I"$HERE/../../shared-proto/include" -o "$W/vmark-peek" \
	"$HERE/vmark-peek.c" -lxenforeignmemory -lxengnttab -lxenevtchn

rc=0
VMARK_KVER=$KVER \
VMARK_GUEST_FILES="$HERE/../vmark_helper.ko $HERE/vmark_test.ko" \
VMARK_GUEST_INIT="$HERE/guest-init.sh" \
	"$HERE/../../tests/e2e/boot.sh" "$W" 1500 "$HERE/dom0-main.sh" \
	"$W/vmark-peek" ${VMARK_GUEST_TYPES:-pv pvh} || rc=$?
grep -a -E '^[0-9]+ passed|VMARK-RESULT' "$W/console.log" || true
[ "$rc" = 0 ] && grep -aq "^VMARK-RESULT pass" "$W/console.log"
