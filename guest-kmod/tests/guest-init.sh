#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
# /init of the test guest: drives vmark_helper through its life cycle and
# prints "VMARK-PHASE <x>" after each step, then waits for dom0
# (dom0-scenario.sh) to check xenstore and guest memory and acknowledge.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t debugfs debugfs /sys/kernel/debug

status() { cat /sys/kernel/debug/vmark/status 2>&1 | sed 's/^/STATUS /'; }
# dom0 acknowledges a phase with "xl sysrq DOM 6": the kernel logs
# "Loglevel set to 6" (Xen's sysrq path ignores kernel.sysrq).
acks=0
phase() {
	echo "VMARK-PHASE $1"
	acks=$((acks + 1))
	for _ in $(seq 1 600); do
		[ "$(dmesg | grep -c 'Loglevel set to')" -ge "$acks" ] && return
		sleep 0.5
	done
	echo "VMARK-FAIL no ack from dom0 for phase $1"
}
poke() { echo 1 > /sys/module/vmark_test/parameters/poke; }

echo "VMARK-GUEST up"
insmod /vmark_test.ko || echo "VMARK-FAIL insmod vmark_test"
insmod /vmark_helper.ko || echo "VMARK-FAIL insmod vmark_helper"
status
phase A			# marks of a module loaded before the helper

poke; poke; poke
status
phase B			# three triggers

rmmod vmark_test || echo "VMARK-FAIL rmmod vmark_test"
status
phase C			# marks withdrawn

insmod /vmark_test.ko || echo "VMARK-FAIL insmod vmark_test again"
status
phase D			# marks of a module loaded after the helper

rmmod vmark_helper || echo "VMARK-FAIL rmmod vmark_helper"
phase E			# everything gone

rmmod vmark_test || echo "VMARK-FAIL rmmod vmark_test at end"
dmesg | grep -i vmark | sed 's/^/DMESG /'
echo "VMARK-GUEST done"
sleep 2
poweroff -f
