#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# /init of the guest of examples/tcp-monitor/check: unpacks ss and ip (host
# iproute2 with its libraries), loads vmark_helper and tcp_monitor, starts
# the TCP sink on eth0 (netfront, 10.9.0.2/24, fd09::2/64), then runs the
# commands dom0 (check-dom0.sh) types on its console, one per line:
# "N COMMAND ARGS...", answering "TCPMON-DONE N RC" after each.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Without it /dev/null would be a plain file in the RAM-backed root, growing
# with everything "discarded" into it.
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp /run
stty -echo 2>/dev/null
tar -xf /iproute2.tar -C / || echo "TCPMON-FAIL unpacking iproute2"

V=/sys/kernel/debug/tcp_monitor/values
# values TAG: tcp_monitor's own view.
values() { sed "s/^/TCPMON-VAL $1 /" $V; }
# ssti TAG: ss -ti of the established connections on port 5001, one line each.
ssti() {
	/usr/bin/ss -tinHO state established '( sport = :5001 )' |
		sed "s/^/TCPMON-SS $1 /"
}
# status TAG: vmark_helper's counters.
status() { sed "s/^/TCPMON-STATUS $1 /" /sys/kernel/debug/vmark/status; }
dm() { dmesg | grep -iE 'tcp_monitor|vmark|BUG|WARNING|Oops|kretprobe' | sed "s/^/TCPMON-DMESG $1 /"; }

echo "TCPMON-GUEST up"
insmod /inet_diag.ko && insmod /tcp_diag.ko || echo "TCPMON-FAIL insmod tcp_diag (ss)"
insmod /vmark_helper.ko || echo "TCPMON-FAIL insmod vmark_helper"
insmod /tcp_monitor.ko port=5001 || echo "TCPMON-FAIL insmod tcp_monitor"
/guest-sink.sh -n /xen-netfront.ko -i eth0 -a 10.9.0.2/24 -p 5001
/usr/sbin/ip -6 addr add fd09::2/64 dev eth0 nodad || echo "TCPMON-FAIL ipv6 address"
echo "TCPMON-GUEST ready"
while read -r n cmd; do
	[ -n "$n" ] || continue
	[ "$cmd" = poweroff ] && { echo "TCPMON-DONE $n 0"; break; }
	eval "$cmd"
	echo "TCPMON-DONE $n $?"
done
dm END
echo "TCPMON-GUEST done"
sleep 1
poweroff -f
