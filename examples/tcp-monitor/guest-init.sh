#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# /init of the showcase guest: loads vmark_helper and tcp_monitor, brings up
# the Xen virtual network interface (netfront) as 10.9.0.2, and waits for
# dom0's commands on its console: "send" starts a bulk TCP transfer to dom0
# (10.9.0.1:5001) that lasts until dom0 closes the connection.  It prints its
# own view of the marks ("SHOWCASE-VAL ...") every few seconds, so dom0 can
# compare it with what vmark decodes from outside.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Without it /dev/null would be a plain file in the RAM-backed root, growing
# with everything "discarded" into it.
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug

insmod /vmark_helper.ko || echo "SHOWCASE-FAIL insmod vmark_helper"
insmod /tcp_monitor.ko port=5001 || echo "SHOWCASE-FAIL insmod tcp_monitor"
net=0
if insmod /xen-netfront.ko 2>/dev/null || [ -d /sys/class/net/eth0 ]; then
	for _ in $(seq 1 20); do
		[ -d /sys/class/net/eth0 ] && break
		sleep 0.5
	done
	ip link set lo up
	if ip link set eth0 up && ip addr add 10.9.0.2/24 dev eth0; then
		net=1
	fi
fi
ip link set lo up
stty -echo 2>/dev/null
echo "SHOWCASE-READY net=$net"
while true; do
	# A command, or after 2 s (or at once, on a console without input) the values.
	if read -t 2 -r cmd; then
		case "$cmd" in
		send)
			echo "SHOWCASE-SENDING"
			(nc 10.9.0.1 5001 < /dev/zero > /dev/null 2>&1
			 echo "SHOWCASE-SENT rc=$?") &
			;;
		esac
	else
		sleep 1
	fi
	sed 's/^/SHOWCASE-VAL /' /sys/kernel/debug/tcp_monitor/values
done
