#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# dom0 side of the vmark_helper test: creates a guest whose /init is
# guest-init.sh, follows its phases on the console log and checks at each one
# what the helper published (xenstore) and what the frames hold (vmark-peek).
#
#   dom0-scenario.sh NAME TYPE KERNEL RAMDISK PEEK
#
# NAME: domain name; TYPE: pv or pvh; PEEK: the vmark-peek binary.  Needs a
# running xenstored, xenconsoled --log=guest and xl.  Prints "ok"/"FAIL"
# lines and "N passed, M failed" at the end; exits non-zero on a failure.
set -u
NAME=$1 TYPE=$2 KERNEL=$3 RAMDISK=$4 PEEK=$5
LOG=/var/log/xen/console/guest-$NAME.log
pass=0 fail=0

ok() { echo "ok   [$NAME] $*"; pass=$((pass + 1)); }
bad() { echo "FAIL [$NAME] $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
not() { ! "$@"; }

wait_phase() {
	local i
	for i in $(seq 1 600); do
		grep -q "VMARK-PHASE $1" "$LOG" 2>/dev/null && return 0
		sleep 0.5
	done
	bad "phase $1 never came"
	return 1
}

cfg=/tmp/$NAME.cfg
cat > "$cfg" <<CFG
name = "$NAME"
type = "$TYPE"
kernel = "$KERNEL"
ramdisk = "$RAMDISK"
extra = "console=hvc0 earlyprintk=xen loglevel=6"
memory = 128
vcpus = 1
on_poweroff = "destroy"
CFG
xl create "$cfg" && sleep 1 && DOM=$(xl domid "$NAME") || {
	bad "xl create (the domain did not stay up)"
	tail -n 30 /var/log/xen/*"$NAME"*.log "$LOG" 2>/dev/null
	xl dmesg | tail -n 30
	echo "$pass passed, $fail failed"
	exit 1
}
ROOT=/local/domain/$DOM/data/vmark
MODS=$ROOT/modules/vmark_test
rd() { xenstore-read "$1" 2>/dev/null; }
# Lets the guest go on to its next phase (see guest-init.sh).
ack() { xl sysrq "$DOM" 6; }

# Fields of marks/<i>: name flags rec-gva rec-frame var-gva size frames.
mark_by_name() {
	local i
	for i in $(xenstore-list "$MODS/marks" 2>/dev/null); do
		set -- $(rd "$MODS/marks/$i")
		[ "$1" = "$WANT" ] && { echo "$*"; return 0; }
	done
	return 1
}

# peek LEN at byte OFF of the variable described by a marks/<i> value.
peek_var() {
	local off=$1 len=$2; shift 2
	local gva=$5 frames=$7
	local pageoff=$((0x$gva & 4095))
	"$PEEK" mem "$DOM" $((pageoff + off)) "$len" "$frames" | tr -d '\n'
}

peek_record_magic() {
	local rgva=$3 rframe=$4
	"$PEEK" mem "$DOM" $((0x$rgva & 4095)) 4 "$rframe" | tr -d '\n'
}

check_layout() {
	local phase=$1 m frames pages n
	check "$phase: abi is 1" [ "$(rd $ROOT/abi)" = 1 ]
	check "$phase: event-channel published" [ -n "$(rd $ROOT/event-channel)" ]
	check "$phase: control-gref published" [ -n "$(rd $ROOT/control-gref)" ]
	n=$(xenstore-list "$MODS/marks" 2>/dev/null | wc -l)
	check "$phase: 3 marks of vmark_test" [ "$n" = 3 ]
	for WANT in counter rx_count big; do
		m=$(mark_by_name) || { bad "$phase: mark $WANT missing"; continue; }
		set -- $m
		frames=$(echo "$7" | tr ',' ' ' | wc -w)
		pages=$(( ((0x$5 & 4095) + $6 + 4095) / 4096 ))
		check "$phase: $WANT frames ($frames) cover its $6 bytes ($pages pages)" [ "$frames" = "$pages" ]
		check "$phase: $WANT record frame holds MARK" [ "$(peek_record_magic $m)" = 4d41524b ]
	done
}

ctl() { "$PEEK" ctl "$DOM" "$(rd $ROOT/control-gref)"; }

echo "== $NAME ($TYPE) is domain $DOM"
wait_phase A || exit 1
xenstore-ls -f "$ROOT"
check_layout A
WANT=counter; m=$(mark_by_name)
check "A: counter reads 42 through its frame" [ "$(peek_var 0 8 $m)" = 2a00000000000000 ]
WANT=big; m=$(mark_by_name)
check "A: big.magic on its first page" [ "$(peek_var 0 4 $m)" = 73657476 ]
check "A: big.pokes (on a later page) is 0" [ "$(peek_var 9008 8 $m)" = 0000000000000000 ]
c=$(ctl); echo "control: $c"
check "A: control page magic and generation" [ "$(echo "$c" | awk '{print $2, $12}')" = "4c52544b $(rd $ROOT/generation)" ]
# Bind the port, then let the guest poke (phase B): one notification.
"$PEEK" evt "$DOM" "$(rd $ROOT/event-channel)" "$(rd $ROOT/control-gref)" 120 > /tmp/evt.$NAME 2>&1 &
evt_pid=$!
sleep 2
ack
wait $evt_pid
check "B: a trigger notified dom0 over the event channel" grep -q "^notified" /tmp/evt.$NAME
cat /tmp/evt.$NAME

wait_phase B || exit 1
WANT=counter; m=$(mark_by_name)
check "B: counter reads 45 after three pokes" [ "$(peek_var 0 8 $m)" = 2d00000000000000 ]
WANT=big; m=$(mark_by_name)
check "B: big.pokes reads 3 on its last page" [ "$(peek_var 9008 8 $m)" = 0300000000000000 ]
c=$(ctl); echo "control: $c"
check "B: 3 triggers folded into 1 notification" [ "$(echo "$c" | awk '{print $6, $8, $10}')" = "1 3 1" ]
gen_b=$(rd $ROOT/generation)
ack

wait_phase C || exit 1
xenstore-ls -f "$ROOT"
check "C: rmmod withdrew modules/vmark_test" [ -z "$(rd $MODS/marks/0)" ]
check "C: root still published" [ "$(rd $ROOT/abi)" = 1 ]
check "C: generation bumped" [ "$(rd $ROOT/generation)" -gt "$gen_b" ]
ack

wait_phase D || exit 1
xenstore-ls -f "$ROOT"
check_layout D
WANT=counter; m=$(mark_by_name)
check "D: reloaded counter reads 42" [ "$(peek_var 0 8 $m)" = 2a00000000000000 ]
gref=$(rd $ROOT/control-gref) port=$(rd $ROOT/event-channel)
ack

wait_phase E || exit 1
check "E: rmmod vmark_helper removed data/vmark" not xenstore-exists "$ROOT"
check "E: control grant ended" not "$PEEK" ctl "$DOM" "$gref"
check "E: event channel closed" not "$PEEK" evt "$DOM" "$port" "$gref" 1
ack

for i in $(seq 1 120); do
	grep -q "VMARK-GUEST done" "$LOG" && break
	sleep 0.5
done
check "guest finished without VMARK-FAIL" not grep -q "VMARK-FAIL" "$LOG"
check "guest kernel printed no oops/BUG/WARNING" not grep -qE "BUG:|Oops|WARNING:|Call Trace" "$LOG"
sed "s/^/[$NAME console] /" "$LOG"
xl destroy "$NAME" 2>/dev/null
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
