#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# dom0 side of examples/tcp-monitor/check (run by tests/e2e/dom0-init.sh):
# puts a bridge with 10.9.0.1/24 and fd09::1/64 in dom0, starts the PV guest
# (check-guest-init.sh) with a vif on it, sends TCP into the guest's sink
# with traffic.py and, while the connection is open and idle, takes the
# guest's view (debugfs, ss -ti) and the host's (vmark read), and counts the
# triggers the host received with vmark watch --on-trigger.  Then checks
# that tcp_monitor works without the helper and unloads cleanly.  It only
# collects (OUT/*); check-compare.py judges.
#
#   check-dom0.sh VMARK          (the vmark binary to run, with Xen support)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$VMARK_E2E_W/out KVER=$VMARK_E2E_KVER
G=tcpmon
LOG=/var/log/xen/console/guest-$G.log
cp "$1" /tmp/vmark && VMARK=/tmp/vmark
SEQ=0
say() { echo "E2E tcp-monitor: $*"; }

wait_log() {
	local i
	for i in $(seq 1 $(($2 * 5))); do
		grep -aqE "$1" "$LOG" 2>/dev/null && return 0
		sleep 0.2
	done
	say "TIMEOUT: the guest never printed /$1/ within $2 s"
	return 1
}
# g COMMAND [SECONDS]: runs COMMAND in the guest, waits for it.
g() {
	SEQ=$((SEQ + 1))
	printf '%s %s\n' "$SEQ" "$1" > "$TTY"
	wait_log "^TCPMON-DONE $SEQ " "${2:-60}"
}
# traffic NAME ADDR ARGS...: traffic.py in the background; waits until it
# has stopped sending (its JSON is out) and leaves its pid in TPID.
traffic() {
	local name=$1 addr=$2 i
	shift 2
	python3 "$HERE/traffic.py" "$addr" 5001 "$@" > "$OUT/traffic-$name.json" 2>&1 &
	TPID=$!
	for i in $(seq 1 600); do
		[ -s "$OUT/traffic-$name.json" ] && break
		sleep 0.2
	done
	say "traffic $name: $(cat "$OUT/traffic-$name.json")"
}
# listening ERR PID: waits (30 s at most) until the watch PID says on ERR that it
# listens, or has ended.
listening() {
	for _ in $(seq 1 150); do
		grep -q "^vmark: watching" "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.2
	done
	grep -q "^vmark: watching" "$1" || say "the watch is not listening: $(tail -n 3 "$1")"
}
# drained ADDR: waits (30 s at most) until dom0 has nothing unacknowledged on
# its connection to ADDR:5001, so the guest has taken every segment sent.
drained() {
	local i q
	for i in $(seq 1 150); do
		q=$(ss -Htn state established dst "$1" dport = :5001 | awk '{ print $2; exit }')
		[ "${q:-0}" = 0 ] && return 0
		sleep 0.2
	done
	say "the connection to $1 still has $q bytes unacknowledged"
}
# netdev TAG: the guest's netfront counters.
netdev() {
	g "echo TCPMON-NET $1 rx_packets=\$(cat /sys/class/net/eth0/statistics/rx_packets)"
}
# snapshot TAG: the guest's and the host's view, back to back.
snapshot() {
	g "values $1"
	g "ssti $1"
	"$VMARK" read "$G" last_tp --json > "$OUT/read-$1-last_tp.json" 2> "$OUT/read-$1-last_tp.err"
	"$VMARK" read "$G" stats --json > "$OUT/read-$1-stats.json" 2> "$OUT/read-$1-stats.err"
	g "values $1post"
}

modprobe xen-netback
ip link add xenbr0 type bridge
ip addr add 10.9.0.1/24 dev xenbr0
ip -6 addr add fd09::1/64 dev xenbr0 nodad
ip link set xenbr0 up
cat > /tmp/$G.cfg <<CFG
name = "$G"
type = "pv"
kernel = "/boot/vmlinuz-$KVER"
ramdisk = "$VMARK_E2E_W/guest.cpio.gz"
extra = "console=hvc0 quiet loglevel=4"
memory = 256
vcpus = 1
# QEMU's TCG TSC is not invariant, so Xen would trap the guest's every rdtsc
# (VMARK_TRIGGER stamps each trigger); real hosts run it natively.
tsc_mode = "native"
on_poweroff = "preserve"
vif = [ 'bridge=xenbr0,mac=00:16:3e:76:6d:02,script=$HERE/vif-showcase' ]
CFG
say "starting the guest"
xl create /tmp/$G.cfg > "$OUT/xl-create.txt" 2>&1 || { say "xl create failed"; exit 1; }
DOM=$(xl domid $G)
TTY=$(xenstore-read "/local/domain/$DOM/console/tty")
wait_log "^TCPMON-GUEST ready" 240 || exit 1
say "guest ready: $(grep -a '^SINK-' "$LOG" | tr -d '\r')"
"$VMARK" list "$G" > "$OUT/list.txt" 2>&1
g "values V0"
g "status V0"

say "IPv4: 8 s at full rate, watched on every trigger, then 30 s idle"
"$VMARK" watch "$G" last_tp --on-trigger --quiet --record "$OUT/watch.jsonl" --duration 20s \
	> "$OUT/watch.out" 2> "$OUT/watch.err" &
WPID=$!
# Start the traffic once the watch says it is listening (bound, calibrated,
# subscribed), not after a guessed delay.
listening "$OUT/watch.err" $WPID
traffic v4 10.9.0.2 --duration 8 --hold 30
sleep 1
snapshot A
wait $WPID
echo $? > "$OUT/watch.rc"
g "values A2"
g "status A2"
wait $TPID
say "IPv4 done"

say "IPv6: 3 s at 200 kB/s, then 20 s idle"
traffic v6 fd09::2 --duration 3 --rate 200000 --hold 20
sleep 1
snapshot B
wait $TPID

say "packets: 3 s at 100 kB/s, each seen in dom0 on the guest's vif (--on-packet)"
# dom0 segments itself (no TSO/GSO towards the guest), so that each packet on
# the vif is one TCP segment, as the guest's segs_in counts them.
echo "$DOM" > "$OUT/domid"
for dev in xenbr0 "vif$DOM.0"; do
	ethtool -K "$dev" tso off gso off >> "$OUT/ethtool.txt" 2>&1
	ethtool -k "$dev" | grep -E 'segmentation-offload' | sed "s/^/$dev /" >> "$OUT/ethtool.txt"
done
g "values P0"
netdev P0
"$VMARK" watch "$G" last_tp stats --on-packet --on-trigger \
	--filter "tcp dst port 5001 and dst host 10.9.0.2" \
	--pcap "$OUT/packets.pcapng" --record "$OUT/packets.jsonl" --quiet --duration 120s \
	> "$OUT/packets-watch.out" 2> "$OUT/packets-watch.err" &
WPID=$!
listening "$OUT/packets-watch.err" $WPID
traffic pkt 10.9.0.2 --duration 3 --rate 100000 --hold 15
drained 10.9.0.2
g "values P"
netdev P
# The connection is open and idle: nothing more comes its way until the hold ends.
kill -INT $WPID
wait $WPID
echo $? > "$OUT/packets-watch.rc"
"$VMARK" plot "$OUT/packets.jsonl" snd_cwnd --mark last_tp --packets "$OUT/packets.pcapng" \
	-o "$OUT/packets.svg" > "$OUT/packets-plot.txt" 2>&1
wait $TPID
for dev in xenbr0 "vif$DOM.0"; do
	ethtool -K "$dev" tso on gso on >> "$OUT/ethtool.txt" 2>&1
done

say "without the helper; unload and reload"
g "rmmod vmark_helper"
traffic nohelper 10.9.0.2 --duration 2 --hold 15
sleep 1
g "values C"
g "ssti C"
wait $TPID
g "rmmod tcp_monitor"
g "insmod /tcp_monitor.ko"
g "values D"
traffic reload 10.9.0.2 --duration 2
wait $TPID
g "values E"
g "rmmod tcp_monitor"
g "dm F"
g "poweroff" 20
sleep 2
xl destroy $G 2>/dev/null
cp "$LOG" "$OUT/guest-console.log"
say "done"
exit 0
