#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# /init of an end-to-end test guest (tests/e2e_xen.rs): loads vmark_helper and
# marks_demo, then runs commands that dom0 (dom0-scenario.sh) types on its
# console, one per line: "N COMMAND ARGS...".  After each it prints
# "VMARK-DONE N RC", so dom0 knows when it finished and how.  Everything goes to
# the console (hvc0), which xenconsoled logs in dom0.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Without it /dev/null would be a plain file in the RAM-backed root, growing
# with everything "discarded" into it.
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
stty -echo 2>/dev/null

D=/sys/kernel/debug/vmark_demo
# values TAG: the guest's own view of marks_demo's variables.
values() { sed "s/^/VMARK-VAL $1 /" $D/values; }
# status TAG: vmark_helper's counters.
status() { sed "s/^/VMARK-STATUS $1 /" /sys/kernel/debug/vmark/status; }
# ctl WORDS: a marks_demo command (bump N, trigger N); prints its timing line.
ctl() {
	echo "$*" > $D/ctl || return 1
	dmesg | grep -o 'marks_demo: .*' | tail -n 1 | sed 's/^marks_demo: /VMARK-CTL /'
}
# bumping MS: bumps for MS milliseconds in the background (marks_demo's
# "bump_for"); bumped waits for it to end, unbump ends it.
bumping() { echo "bump_for $1" > $D/ctl & BUMPING=$!; }
bumped() { wait "$BUMPING"; }
# bumping_on: bumps in the background until unbump, however long that takes
# (bump_for runs at most 60 s per write).
bumping_on() {
	(while echo "bump_for 60000" > $D/ctl; do :; done) &
	BUMPING=$!
}
# unbump: ends a bumping early. SIGKILL: bump_for stops on a fatal signal, and a
# SIGTERM the subshell catches is none (the write would run its 60 s out, and the
# loop write again).
unbump() {
	kill -KILL "$BUMPING" 2>/dev/null
	wait "$BUMPING" 2>/dev/null
	return 0
}
# bursts N K PAUSE: K bursts of N triggers, PAUSE seconds apart.
bursts() {
	local i=0
	while [ $i -lt "$2" ]; do
		echo "trigger $1" > $D/ctl || return 1
		i=$((i + 1))
		sleep "$3"
	done
}
# lists TAG: the guest's own processes (with the pid of the ps that lists
# them, gone when dom0 looks) and /proc/modules.
lists() {
	ps -o pid,ppid,comm > /ps.out &
	local ps=$!
	wait $ps
	sed "s/^/VMARK-PS $1 /" /ps.out
	echo "VMARK-PS $1 END ps=$ps"
	sed "s/^/VMARK-MOD $1 /" /proc/modules
}
# kinfo TAG: addresses and text the host's live reads are checked against:
# linux_banner's and _text's virtual addresses (kallsyms), where the kernel's
# code starts physically (iomem), where init's vDSO is mapped, the release.
kinfo() {
	local code
	echo "VMARK-KINFO $1 banner=$(grep ' linux_banner$' /proc/kallsyms | cut -d' ' -f1)"
	echo "VMARK-KINFO $1 text=$(grep ' _text$' /proc/kallsyms | cut -d' ' -f1)"
	code=$(grep 'Kernel code' /proc/iomem | head -n 1 | sed 's/^ *//; s/-.*//')
	echo "VMARK-KINFO $1 code=$code"
	echo "VMARK-KINFO $1 vdso=$(grep '\[vdso\]' /proc/1/maps | cut -d- -f1)"
	echo "VMARK-KINFO $1 release=$(uname -r)"
}
# churn SECONDS: rewrites the published tree's generation in a loop, straight
# through the xenbus device (raw XS_WRITE messages: type 11, no reply read), as
# a hostile guest could; prints how many writes it made.
churn() {
	local end=$(($(date +%s) + $1)) i=0 p=data/vmark/generation v len
	while [ "$(date +%s)" -lt "$end" ]; do
		i=$((i + 1))
		v=$((1000000 + i))
		len=$((${#p} + 1 + ${#v}))
		printf "\013\000\000\000\000\000\000\000\000\000\000\000\\$(printf %03o $len)\000\000\000%s\000%s" \
			"$p" "$v" > /dev/xen/xenbus || return 1
	done
	echo "VMARK-CHURN 6 writes $i"
}
# finish: the end-of-run report, the guest staying up (dom0 destroys it).
finish() {
	dmesg | grep -iE 'vmark|marks_demo|BUG|WARNING|Oops' | sed 's/^/DMESG /'
	echo "VMARK-GUEST done"
}
demo_in() { insmod /marks_demo.ko; }
demo_out() { rmmod marks_demo; }
helper_in() { insmod /vmark_helper.ko; }
helper_out() { rmmod vmark_helper; }

echo "VMARK-GUEST up"
helper_in || echo "VMARK-FAIL insmod vmark_helper"
demo_in || echo "VMARK-FAIL insmod marks_demo"
echo "VMARK-GUEST ready"
while read -r n cmd; do
	[ -n "$n" ] || continue
	[ "$cmd" = poweroff ] && { echo "VMARK-DONE $n 0"; break; }
	eval "$cmd"
	echo "VMARK-DONE $n $?"
done
dmesg | grep -iE 'vmark|marks_demo|BUG|WARNING|Oops' | sed 's/^/DMESG /'
echo "VMARK-GUEST done"
sleep 1
poweroff -f
