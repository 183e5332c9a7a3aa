#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs in dom0 under tests/e2e/dom0-init.sh (which started the Xen toolstack):
# runs dom0-scenario.sh for each guest TYPE (pv, pvh), prints VMARK-RESULT and
# exits non-zero on a failure.
#
#   dom0-main.sh PEEK TYPE...
PEEK=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
result=pass
for t in "$@"; do
	"$HERE/dom0-scenario.sh" "vm-$t" "$t" "/boot/vmlinuz-$VMARK_E2E_KVER" \
		"$VMARK_E2E_W/guest.cpio.gz" "$PEEK" || result=fail
done
echo "VMARK-RESULT $result"
[ "$result" = pass ]
