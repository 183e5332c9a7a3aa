#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# dom0 side of the showcase (run by tests/e2e/boot.sh inside the nested Xen):
# creates the PV guest with a virtual network interface on a dom0 bridge and
# has it send a bulk TCP transfer to dom0, while vmark watches the guest's TCP
# state and records every trigger.  Midway dom0 changes the path with tc
# netem on the guest's backend interface: first a delay, then loss.  Then it
# plots the recording with the phases marked (SVG and PNG) and prints the
# summary, per phase.  Lines meant for the person watching start with "=="
# (tests/e2e/boot.sh echoes those); "== FAILED: ..." ends the run.
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
	fail "cannot create the bridge xenbr0"

cat > /tmp/$GUEST.cfg <<CFG
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
vif = [ 'bridge=xenbr0,mac=00:16:3e:76:6d:02,script=$HERE/vif-showcase' ]
CFG
say "starting the PV guest (Debian $KVER, vmark_helper + tcp_monitor, netfront)"
xl create -q /tmp/$GUEST.cfg || fail "xl create (see $LOG)"
for _ in $(seq 1 240); do
	grep -q "SHOWCASE-READY" "$LOG" 2>/dev/null && break
	sleep 0.5
done
grep -q "SHOWCASE-READY net=1" "$LOG" ||
	fail "the guest did not come up with its network (see its console log)"
DOM=$(xl domid "$GUEST")
VIF=vif$DOM.0
TTY=$(xenstore-read "/local/domain/$DOM/console/tty")
[ -n "$TTY" ] || fail "no console for domain $DOM in xenstore"
say "guest up: domain $DOM, backend interface $VIF"

say "vmark list $GUEST"
"$VMARK" list "$GUEST" | sed 's/^/==   /'

# The path from the guest: its packets, coming in on $VIF, go through ifb0,
# whose netem qdisc delays or drops them (tc's ingress has no qdisc of its own).
modprobe ifb numifbs=0 && ip link add ifb0 type ifb && ip link set ifb0 up &&
	tc qdisc add dev "$VIF" handle ffff: ingress &&
	tc filter add dev "$VIF" parent ffff: matchall action mirred egress redirect dev ifb0 &&
	tc qdisc add dev ifb0 root netem limit 10000 ||
	fail "cannot put netem on the path from $VIF (ifb, act_mirred, cls_matchall, sch_netem)"

rec=$OUT/showcase.jsonl phases=$OUT/phases.txt
rm -f "$rec" "$phases"
# Each phase PHASE_S seconds; the sink closes the connection after all three.
PHASE_S=10
python3 "$HERE/traffic.py" --serve 10.9.0.1 5001 --duration $((3 * PHASE_S + 1)) \
	> "$OUT/sink.json" 2>&1 &
sink=$!
# The kernel keeps 8 x the smoothed RTT in microseconds, ssthresh "infinite"
# (0x7fffffff) until the first loss, and sequence numbers modulo 2^32.
cwnd=snd_cwnd:segments
ssthresh='ssthresh=snd_ssthresh<0x7fffffff?snd_ssthresh:0/0:segments'
srtt='srtt_ms=(srtt_us>>3)/1000:ms'
inflight='in_flight=((snd_nxt-snd_una)&0xffffffff)/1000:kB'
retrans='retransmitted=total_retrans:segments'
say "watching: every trigger recorded to $rec (at most 50 a second); live view every second"
"$VMARK" watch "$GUEST" last_tp --on-trigger --quiet --record "$rec" --max-rate 50 \
	--duration $((3 * PHASE_S + 90))s 2> "$OUT/trigger-summary.txt" &
trig=$!
"$VMARK" watch "$GUEST" last_tp --every 1s --duration $((3 * PHASE_S + 90))s \
	--fields "$cwnd,$ssthresh,$srtt,$inflight,$retrans" 2>/dev/null |
	sed -u 's/^/==   /' &
live=$!
# Readiness, not a guessed delay: the watch says when it listens, the sink too.
for _ in $(seq 1 300); do
	grep -q "^vmark: watching" "$OUT/trigger-summary.txt" 2>/dev/null &&
		grep -q listening "$OUT/sink.json" 2>/dev/null && break
	kill -0 $trig 2>/dev/null || break
	sleep 0.2
done
grep -q "^vmark: watching" "$OUT/trigger-summary.txt" ||
	fail "vmark watch is not listening: $(tail -n 3 "$OUT/trigger-summary.txt")"
grep -q listening "$OUT/sink.json" || fail "the sink in dom0 is not listening: $(cat "$OUT/sink.json")"

phase() { # phase LABEL NETEM-ARGS...: change the path, note the time, announce
	local label=$1
	shift
	[ $# = 0 ] || tc qdisc change dev ifb0 root netem limit 10000 "$@" ||
		fail "tc qdisc change dev ifb0 root netem $*"
	# Once tc has returned (it is slow to start under emulation): the change is in.
	echo "$(date +%s%N) $label" >> "$phases"
	say "PHASE: $label"
}
say "guest -> dom0: a bulk TCP transfer over the Xen virtual network (10.9.0.1:5001)"
phase "clean path"
echo send > "$TTY"
sleep $PHASE_S
phase "+40 ms delay" delay 40ms
sleep $PHASE_S
phase "+40 ms, 2% loss" delay 40ms loss 2%
wait $sink
tc qdisc del dev "$VIF" ingress 2>/dev/null
# The sink closed the connection; once the guest's sender has exited, its socket
# receives nothing more: the watches end then (their --duration is only a bound).
for _ in $(seq 1 100); do
	grep -q "SHOWCASE-SENT" "$LOG" 2>/dev/null && break
	sleep 0.2
done
grep -q "SHOWCASE-SENT" "$LOG" || say "the guest's sender has not exited"
# ...and once the recording accounts for every segment the guest saw.
segments_seen() { "$VMARK" read "$GUEST" stats --json 2>/dev/null | sed -n 's/.*"segments":\([0-9]*\).*/\1/p'; }
folded_sum() { grep -o '"folded":[0-9]*' "$rec" | awk -F: '{s += $2} END {print s + 0}'; }
for _ in $(seq 1 60); do
	[ "$(folded_sum)" = "$(segments_seen)" ] && break
	sleep 0.2
done
kill -INT $trig $live 2>/dev/null
wait $live $trig
say "watch ended"
say "sink: $(tail -n 1 "$OUT/sink.json")"
sed 's/^/==   /' "$OUT/trigger-summary.txt"

"$VMARK" read "$GUEST" stats --json > "$OUT/stats.json" || fail "vmark read stats"
"$VMARK" read "$GUEST" last_tp --json > "$OUT/last_tp.json" || fail "vmark read last_tp"
"$VMARK" plot "$rec" "$cwnd" "$ssthresh" "$srtt" "$inflight" "$retrans" --phases "$phases" \
	-o "$OUT/showcase.svg" -o "$OUT/showcase.png" > "$OUT/plot.txt" || fail "vmark plot"

seen=$(sed -n 's/.*"segments":\([0-9]*\).*/\1/p' "$OUT/stats.json")
guest_view=$(grep "SHOWCASE-VAL stats.segments=" "$LOG" | tail -n 1 | cut -d= -f2)
samples=$(grep -c '"value"' "$rec")
folded=$(grep -o '"folded":[0-9]*' "$rec" | awk -F: '{s += $2} END {print s + 0}')
notif=$(sed -n 's/^notifications received: //p' "$OUT/trigger-summary.txt")
lat=$(sed -n 's/^trigger→sample latency: //p' "$OUT/trigger-summary.txt")
sent=$(sed -n 's/.*"bytes_received": \([0-9]*\).*/\1/p' "$OUT/sink.json")
{
	echo "bytes the guest sent to dom0:           $sent"
	echo "segments the guest received (ACKs; read by vmark): $seen (guest's own last printout: $guest_view)"
	echo "notifications the host received:        $notif"
	echo "triggers accounted for by the samples:  $folded (coalesced: several triggers per sample)"
	echo "samples recorded:                       $samples"
	echo "trigger→sample latency:                 $lat"
	echo
	echo "per phase (vmark plot --phases):"
	grep -v '^wrote ' "$OUT/plot.txt"
} > "$OUT/summary.txt"
say "SUMMARY"
sed 's/^/==   /' "$OUT/summary.txt"
xl destroy "$GUEST" 2>/dev/null
cp "$LOG" "$OUT/guest-console.log" 2>/dev/null
exit 0
