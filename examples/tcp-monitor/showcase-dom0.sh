#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# dom0 side of the showcase (run by tests/e2e/boot.sh inside the nested Xen):
# creates the PV guest with a virtual network interface on a dom0 bridge,
# watches its TCP state with vmark while dom0 sends it TCP traffic, records
# every sample, plots it and prints the summary.  Lines meant for the person
# watching start with "==" (tests/e2e/boot.sh echoes those).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=$VMARK_E2E_W KVER=$VMARK_E2E_KVER
OUT=$W/out
VMARK=$ROOT/target/release/vmark
GUEST=tcpguest
LOG=/var/log/xen/console/guest-$GUEST.log
say() { printf '== %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

say "dom0: creating a bridge for the guest's virtual network (10.9.0.0/24)"
modprobe xen-netback 2>/dev/null
ip link add xenbr0 type bridge && ip addr add 10.9.0.1/24 dev xenbr0 && ip link set xenbr0 up ||
	say "no bridge: the guest will use a TCP stream over its loopback"

guest_cfg() {
	cat <<CFG
name = "$GUEST"
type = "pv"
kernel = "/boot/vmlinuz-$KVER"
ramdisk = "$W/guest.cpio.gz"
extra = "console=hvc0 quiet"
memory = 256
vcpus = 1
# QEMU's TCG TSC is not invariant, so Xen would trap the guest's every rdtsc
# (VMARK_TRIGGER stamps each trigger); real hosts run it natively.
tsc_mode = "native"
on_poweroff = "destroy"
CFG
}
say "starting the PV guest (Debian $KVER, vmark_helper + tcp_monitor)"
{ guest_cfg; echo "vif = [ 'bridge=xenbr0,mac=00:16:3e:76:6d:02,script=$HERE/vif-showcase' ]"; } > /tmp/$GUEST.cfg
if ! xl create -q /tmp/$GUEST.cfg; then
	say "the virtual network could not be attached; starting the guest without it"
	xl destroy "$GUEST" 2>/dev/null
	guest_cfg > /tmp/$GUEST.cfg
	xl create -q /tmp/$GUEST.cfg || fail "xl create"
fi
for _ in $(seq 1 240); do
	grep -q "SHOWCASE-READY" "$LOG" 2>/dev/null && break
	sleep 0.5
done
grep -q "SHOWCASE-READY" "$LOG" || fail "the guest did not come up (see its console log)"
net=$(grep -o "SHOWCASE-READY net=[01]" "$LOG" | tail -n 1 | cut -d= -f2)
say "guest up (network: $([ "$net" = 1 ] && echo netfront || echo loopback only))"

say "vmark list $GUEST"
"$VMARK" list "$GUEST" | sed 's/^/==   /'

rec=$OUT/showcase.jsonl
rm -f "$rec"
# The kernel keeps 8 x the smoothed RTT in microseconds: shown in milliseconds.
fields='snd_cwnd,srtt_ms=(srtt_us>>3)/1000:ms,bytes_received,data_segs_in,rcv_nxt'
say "watching: every trigger recorded to $rec; live view every 500 ms"
"$VMARK" watch "$GUEST" last_tp --on-trigger --quiet --record "$rec" --duration 25s \
	2> "$OUT/trigger-summary.txt" &
trig=$!
"$VMARK" watch "$GUEST" last_tp --every 500ms --fields "$fields" --duration 24s 2>/dev/null |
	sed -u 's/^/==   /' &
live=$!
sleep 3
if [ "$net" = 1 ]; then
	say "dom0 -> guest: TCP traffic over the Xen virtual network (10.9.0.2:5001)"
	# Rate-limited, so the recording (one tcp_sock per segment) stays a few MB.
	python3 "$HERE/traffic.py" 10.9.0.2 5001 --duration 10 --rate 200000 --chunk 4096 |
		sed -u 's/^/==   traffic: /' || say "traffic from dom0 ended early"
else
	say "traffic: a TCP stream inside the guest (loopback)"
fi
wait $live $trig
say "watch ended"
sed 's/^/==   /' "$OUT/trigger-summary.txt"

"$VMARK" read "$GUEST" stats --json > "$OUT/stats.json" || fail "vmark read stats"
"$VMARK" read "$GUEST" last_tp --json > "$OUT/last_tp.json" || fail "vmark read last_tp"
"$VMARK" plot "$rec" snd_cwnd 'srtt_ms=(srtt_us>>3)/1000:ms' 'received=bytes_received/1000000:MB' \
	-o "$OUT/showcase.svg" | sed 's/^/==   /'

seen=$(sed -n 's/.*"segments":\([0-9]*\).*/\1/p' "$OUT/stats.json")
guest_view=$(grep "SHOWCASE-VAL stats.segments=" "$LOG" | tail -n 1 | cut -d= -f2)
samples=$(grep -c '"value"' "$rec")
folded=$(grep -o '"folded":[0-9]*' "$rec" | awk -F: '{s += $2} END {print s + 0}')
notif=$(sed -n 's/^notifications received: //p' "$OUT/trigger-summary.txt")
lat=$(sed -n 's/^trigger→sample latency: //p' "$OUT/trigger-summary.txt")
{
	echo "segments the guest saw (read by vmark): $seen (guest's own last printout: $guest_view)"
	echo "notifications the host received:        $notif"
	echo "triggers accounted for by the samples:  $folded (coalesced: several triggers per notification)"
	echo "samples recorded:                       $samples"
	echo "trigger→sample latency:                 $lat"
} > "$OUT/summary.txt"
say "SUMMARY"
sed 's/^/==   /' "$OUT/summary.txt"
xl destroy "$GUEST" 2>/dev/null
cp "$LOG" "$OUT/guest-console.log" 2>/dev/null
exit 0
