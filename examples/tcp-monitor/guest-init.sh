#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# /init of the showcase guest: loads vmark_helper and tcp_monitor, brings up
# the Xen virtual network interface (netfront), and runs a TCP sink on port
# 5001.  Without a network it drives a TCP stream over loopback instead.  It
# prints its own view of the marks ("SHOWCASE-VAL ...") every two seconds, so
# dom0 can compare it with what vmark decodes from outside.
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
# A sink that accepts connection after connection and discards what arrives
# (busybox nc has no -k; -ll -e serves each connection with the drain).
mkdir -p /tmp
printf '#!/bin/busybox sh\nexec cat > /dev/null\n' > /tmp/drain
chmod +x /tmp/drain
nc -ll -p 5001 -e /tmp/drain < /dev/null > /dev/null 2>&1 &
echo "SHOWCASE-READY net=$net"
if [ "$net" = 0 ]; then
	# No virtual network: a TCP stream inside the guest still goes through
	# tcp_rcv_established() on the receiving socket.
	(sleep 8; for _ in $(seq 1 300); do dd if=/dev/zero bs=4k count=1 2>/dev/null; sleep 0.02; done |
		nc 127.0.0.1 5001) &
fi
while true; do
	sleep 2
	sed 's/^/SHOWCASE-VAL /' /sys/kernel/debug/tcp_monitor/values
done
