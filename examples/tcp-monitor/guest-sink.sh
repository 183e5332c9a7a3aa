#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# guest-sink.sh - a TCP sink in the guest for tcp_monitor's traffic (busybox).
#
#   guest-sink.sh [-p PORT] [-i IFACE] [-a ADDR/PREFIX] [-n XEN_NETFRONT_KO]
#
# Optionally loads xen-netfront (-n, a path to the .ko) and gives IFACE
# (default eth0) the address ADDR/PREFIX (-a, e.g. 10.9.0.2/24); then starts,
# in the background, a listener on PORT (default 5001) on every address, IPv4
# and IPv6, that accepts any number of connections, each in its own process,
# and discards what it receives.  Prints "SINK-READY port=PORT pid=PID" (the
# listener's pid: kill it to stop the sink), or "SINK-FAIL ..." and exits 1.
PORT=5001 IFACE=eth0 ADDR= NETFRONT=
while getopts p:i:a:n: opt; do
	case $opt in
	p) PORT=$OPTARG ;;
	i) IFACE=$OPTARG ;;
	a) ADDR=$OPTARG ;;
	n) NETFRONT=$OPTARG ;;
	*) echo "usage: $0 [-p PORT] [-i IFACE] [-a ADDR/PREFIX] [-n XEN_NETFRONT_KO]" >&2
	   exit 2 ;;
	esac
done
fail() { echo "SINK-FAIL $*"; exit 1; }

if [ -n "$NETFRONT" ] && ! grep -q '^xen_netfront ' /proc/modules; then
	insmod "$NETFRONT" || fail "insmod $NETFRONT"
fi
ip link set lo up
if [ -n "$ADDR" ]; then
	# netfront's device appears once the backend in dom0 connects.
	i=0
	while [ ! -d "/sys/class/net/$IFACE" ] && [ $i -lt 40 ]; do
		sleep 0.5
		i=$((i + 1))
	done
	[ -d "/sys/class/net/$IFACE" ] || fail "no interface $IFACE"
	ip link set "$IFACE" up || fail "ip link set $IFACE up"
	ip addr add "$ADDR" dev "$IFACE" || fail "ip addr add $ADDR dev $IFACE"
fi

# busybox nc -ll forks per connection and runs the drain on its socket.
DRAIN=/tmp/tcp-sink-drain
mkdir -p /tmp
printf '#!/bin/busybox sh\nexec cat > /dev/null\n' > $DRAIN
chmod +x $DRAIN
nc -ll -p "$PORT" -e $DRAIN < /dev/null > /dev/null 2>&1 &
pid=$!
sleep 0.3
kill -0 $pid 2>/dev/null || fail "nc -ll -p $PORT exited"
echo "SINK-READY port=$PORT pid=$pid"
