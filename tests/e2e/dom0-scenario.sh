#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# dom0 side of the end-to-end test (tests/e2e_xen.rs), run by dom0-init.sh:
# starts one guest per TYPE (pv, pvh) whose /init is guest-init.sh, drives each
# through the scenario below by typing commands on its console, runs `vmark`
# list/read/watch against it and leaves every output under OUT/<guest>/ for
# the Rust test to check.  It asserts nothing itself; it only says "E2E ..."
# progress lines and keeps every wait bounded.
#
#   dom0-scenario.sh VMARK KERNEL RAMDISK TYPE...
#
# TYPE: pv, pvh, pvh-dump, or pv-other: a PV guest running another kernel than
# dom0's, whose image and ramdisk the test put in $VMARK_E2E_W/other/ (vmlinuz,
# guest.cpio.gz: the helper and marks_demo built against that kernel).
set -u
VMARK=$1 KERNEL=$2 RAMDISK=$3
shift 3
OUT=$VMARK_E2E_W/out
LOGS=/var/log/xen/console
# Run vmark from dom0's RAM, not over 9p (each start would read it again).
cp "$VMARK" /tmp/vmark && VMARK=/tmp/vmark
declare -A TTY SEQ

say() { echo "E2E $*"; }
log_of() { echo "$LOGS/guest-$1.log"; }
now() { date +%s.%N; }

declare -A DEAD
# alive GUEST: whether the guest still runs as the domain it came up as. A guest
# that triple-faults is restarted by Xen under a new id (QEMU's emulated SVM
# crashes a PVH guest now and then): its scenario is over, and is not waited
# for command by command (the test runs it again).
alive() {
	local id was
	[ -z "${DEAD[$1]:-}" ] || return 1
	was=$(cat "$OUT/$1/domid" 2>/dev/null) || return 0
	id=$(xl domid "$1" 2>/dev/null)
	[ "$id" = "$was" ] && return 0
	DEAD[$1]=1
	say "$1: the domain is gone or was restarted (domain $was -> ${id:-none}); its scenario ends here"
	return 1
}

# wait_log GUEST REGEX SECONDS: waits until the guest's console shows REGEX (or
# the guest is gone: checked every 5 s).
wait_log() {
	local i
	for i in $(seq 1 $(($3 * 5))); do
		grep -aqE "$2" "$(log_of "$1")" 2>/dev/null && return 0
		if [ $((i % 25)) = 0 ] && [ ! -f "$OUT/$1/destroyed" ]; then
			alive "$1" || return 1
		fi
		sleep 0.2
	done
	say "TIMEOUT: $1 never printed /$2/ within $3 s"
	return 1
}

# g GUEST COMMAND [SECONDS]: runs COMMAND in the guest (guest-init.sh), waits.
g() {
	# Before each command too: a guest restarted during a vmark command may be up
	# again on the same console by the next one.
	[ -f "$OUT/$1/destroyed" ] || alive "$1" || return 1
	local n=$((SEQ[$1] + 1)) rc
	SEQ[$1]=$n
	echo "$(now) $1 <- $2" >> "$OUT/$1/commands.log"
	printf '%s %s\n' "$n" "$2" > "${TTY[$1]}"
	wait_log "$1" "^VMARK-DONE $n " "${3:-60}" || return 1
	rc=$(grep -a "^VMARK-DONE $n " "$(log_of "$1")" | tr -d '\r' | awk '{print $3}')
	echo "$(now) $1 rc=$rc" >> "$OUT/$1/commands.log"
	[ "$rc" = 0 ] || say "$1: '$2' failed in the guest (rc $rc)"
	return "$rc"
}

# cost GUEST FILE: the guest's last "VMARK-CTL trigger N in T ns" line into FILE.
cost() {
	grep -a "^VMARK-CTL trigger " "$(log_of "$1")" | tr -d '\r' | tail -n 1 |
		sed "s/^VMARK-CTL trigger //" > "$OUT/$1/$2"
}

# grab GUEST KIND TAG: the guest's "VMARK-KIND TAG ..." lines into a file.
grab() {
	grep -a "^VMARK-$2 $3 " "$(log_of "$1")" | tr -d '\r' |
		sed "s/^VMARK-$2 $3 //" > "$OUT/$1/$(echo "$2" | tr A-Z a-z)-$3.txt"
}

MARKS="counter demo_state demo_hist demo_tcp demo_tp"
# Triggers timed without a listener (and without the helper), and fired under
# a watch whose folded counts must add up to them.
COST_N=100000 BURST_N=100000
# reads GUEST TAG: vmark read --json of every mark.
reads() {
	local m
	for m in $MARKS; do
		"$VMARK" read "$1" "$m" --json > "$OUT/$1/read-$2-$m.json" 2> "$OUT/$1/read-$2-$m.err"
	done
}

# watch_start GUEST NAME [ARGS]: vmark watch GUEST counter --on-trigger in the
# background, recording to OUT/GUEST/NAME.jsonl; WPID is its pid.
watch_start() {
	local gname=$1 w=$2
	shift 2
	# The recording goes to dom0's RAM (copied out at the stop): a 9p write
	# per sample would put the share's latency into the measurement.
	"$VMARK" watch "$gname" counter --on-trigger --format json \
		--record "/tmp/$gname-$w.jsonl" "$@" \
		> "$OUT/$gname/$w.out" 2> "$OUT/$gname/$w.err" &
	WPID=$!
	echo "$(now) $gname watch $w started (pid $WPID)" >> "$OUT/$gname/commands.log"
	# It binds the event channel, calibrates the clocks and subscribes, then says so.
	wait_ready "$OUT/$gname/$w.err" $WPID || say "$gname: watch $w not listening: $(tail -n 3 "$OUT/$gname/$w.err")"
}

# wait_ready ERRFILE PID: waits (30 s at most) for a watch's readiness line
# ("vmark: watching ..." on its stderr); fails when it exits first.
wait_ready() {
	local i
	for i in $(seq 1 150); do
		grep -q "^vmark: watching" "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# wait_grep FILE REGEX SECONDS: waits until FILE has a line matching REGEX.
wait_grep() {
	local i
	for i in $(seq 1 $(($3 * 5))); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	say "TIMEOUT: no /$2/ in $1 within $3 s"
	return 1
}

# wait_lines FILE N SECONDS: waits until FILE has N lines.
wait_lines() {
	local i
	for i in $(seq 1 $(($3 * 5))); do
		[ "$(wc -l < "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
		sleep 0.2
	done
	say "TIMEOUT: fewer than $2 lines in $1 within $3 s"
	return 1
}

# wait_folded FILE N SECONDS: waits until the samples in FILE fold N triggers.
wait_folded() {
	local i sum
	for i in $(seq 1 $(($3 * 5))); do
		sum=$(grep -o '"folded":[0-9]*' "$1" 2>/dev/null | cut -d: -f2 | awk '{s += $1} END {print s + 0}')
		[ "$sum" -ge "$2" ] && return 0
		sleep 0.2
	done
	say "TIMEOUT: the samples in $1 fold $sum triggers, not $2, within $3 s"
	return 1
}

# cpu_ticks PID: user + system clock ticks the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# watch_stop GUEST NAME [SIGNAL]: stops it (INT: it prints its summary).
watch_stop() {
	local i
	kill -"${3:-INT}" $WPID 2>/dev/null
	for i in $(seq 1 50); do
		kill -0 $WPID 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 $WPID 2>/dev/null; then
		say "$1: watch $2 did not stop on SIG${3:-INT}; killed"
		kill -9 $WPID
	fi
	wait $WPID 2>/dev/null
	echo "$? " > "$OUT/$1/$2.rc"
	cp "/tmp/$1-$2.jsonl" "$OUT/$1/$2.jsonl" 2>/dev/null
	echo "$(now) $1 watch $2 stopped" >> "$OUT/$1/commands.log"
}

create() {
	local name=$1 type=$2 kernel=$KERNEL ramdisk=$RAMDISK memory=160
	if [ "$type" = pv-other ]; then
		type=pv kernel=$VMARK_E2E_W/other/vmlinuz ramdisk=$VMARK_E2E_W/other/guest.cpio.gz
		memory=256
	fi
	mkdir -p "$OUT/$name"
	echo "$type" > "$OUT/$name/type"
	cat > "/tmp/$name.cfg" <<CFG
name = "$name"
type = "$type"
kernel = "$kernel"
ramdisk = "$ramdisk"
extra = "console=hvc0 quiet loglevel=4"
memory = $memory
vcpus = 1
# Under QEMU's TCG the TSC is not invariant, so Xen would trap every rdtsc of
# an HVM/PVH guest (tens of µs each here); real hosts run it natively.
tsc_mode = "native"
on_poweroff = "preserve"
on_crash = "preserve"
CFG
	if ! xl create "/tmp/$name.cfg" > "$OUT/$name/xl-create.txt" 2>&1; then
		say "$name: xl create failed: $(tail -n 2 "$OUT/$name/xl-create.txt")"
		return 1
	fi
	SEQ[$name]=0
	echo created > "$OUT/$name/xl-create.ok"
	say "$name ($type) created"
}

# wait_up GUEST: waits (180 s at most) for the guest's /init to be ready; gives
# up when the domain stays shut down or crashed for 5 s (a guest Xen restarts
# after an early triple fault is down only for a moment).
wait_up() {
	local i state down=0
	for i in $(seq 1 900); do
		grep -aq "^VMARK-GUEST ready" "$(log_of "$1")" 2>/dev/null && return 0
		state=$(xl list "$1" 2>/dev/null | awk 'NR == 2 {print $5}')
		case "$state" in
		*s* | *c*) down=$((down + 1)) ;;
		*) down=0 ;;
		esac
		if [ $down -ge 25 ]; then
			say "$1: the domain is down (state $state) before its /init ran"
			return 1
		fi
		sleep 0.2
	done
	say "TIMEOUT: $1 not ready within 180 s"
	return 1
}

# Diagnostics of a guest that did not come up.
diagnose() {
	local name=$1
	say "$name did not come up; state: $(xl list "$name" 2>&1 | tail -n 1)"
	{
		xl list
		xl dmesg
	} > "$OUT/$name/diagnosis.txt" 2>&1
	cp /var/log/xen/xl-"$name".log "$OUT/$name/" 2>/dev/null
	# Why it died before its console worked: see the HVM-exit trace taken while
	# the guests started (xentrace.bin; tests/e2e/xentrace-exits.py decodes it).
}

scenario() {
	local G=$1 d=$OUT/$1
	say "$G: (a,b) list and read"
	"$VMARK" list "$G" --json > "$d/list.json" 2> "$d/list.err"
	"$VMARK" list "$G" > "$d/list.txt" 2>&1
	g "$G" "values A"; grab "$G" VAL A
	reads "$G" A

	say "$G: (c) bump 5"
	g "$G" "ctl bump 5"
	g "$G" "values B"; grab "$G" VAL B
	reads "$G" B

	say "$G: (d) 50 triggers in 5 bursts under watch --on-trigger"
	watch_start "$G" watch1
	g "$G" "status S0"; grab "$G" STATUS S0
	g "$G" "bursts 10 5 0.3"
	sleep 2
	g "$G" "status S1"; grab "$G" STATUS S1
	g "$G" "values D"; grab "$G" VAL D

	say "$G: (e) rmmod / insmod marks_demo under the same watch"
	g "$G" demo_out
	sleep 3
	g "$G" demo_in
	sleep 3
	g "$G" "ctl trigger 7"
	sleep 2
	watch_stop "$G" watch1
	g "$G" "status S2"; grab "$G" STATUS S2

	say "$G: (f) host restart mid-watch"
	watch_start "$G" watch2
	g "$G" "ctl trigger 5"
	sleep 1
	watch_stop "$G" watch2 KILL
	g "$G" "ctl trigger 3"
	watch_start "$G" watch3
	g "$G" "status S3"; grab "$G" STATUS S3
	g "$G" "bursts 10 3 0.3"
	sleep 2
	watch_stop "$G" watch3
	g "$G" "status S4"; grab "$G" STATUS S4

	say "$G: cost of VMARK_TRIGGER ($COST_N in the guest); $BURST_N under a watch"
	g "$G" "ctl trigger $COST_N" 120 && cost "$G" cost-nolistener.txt
	watch_start "$G" watch4 --quiet
	g "$G" "ctl trigger $BURST_N" 300 && cost "$G" cost-listener.txt
	sleep 2
	watch_stop "$G" watch4
	g "$G" helper_out
	g "$G" "ctl trigger $COST_N" 120 && cost "$G" cost-nohelper.txt
	g "$G" helper_in
	sleep 2
	"$VMARK" list "$G" --json > "$d/list-end.json" 2> "$d/list-end.err"
	options "$G"
	consistency "$G"
	g "$G" "values Z"; grab "$G" VAL Z
	introspection "$G" "$([ "$(cat "$d/type")" = pv ] && echo dump)"
	say "$G: done"
}

# x GUEST NAME COMMAND...: vmark COMMAND into OUT/GUEST/opt/NAME.{out,err,rc}.
x() {
	local o=$OUT/$1/opt/$2
	shift 2
	timeout 120 "$VMARK" "$@" > "$o.out" 2> "$o.err"
	echo $? > "$o.rc"
}

# options GUEST: the documented commands and options that only a live domain
# exercises (issue 12), each against what the guest itself says (kinfo,
# values) or against another way to the same bytes.
options() {
	local G=$1 d=$OUT/$1/opt k v pa addr mfn dom t0 t1 how
	local -A kv
	mkdir -p "$d"
	say "$G: options: sym, read-va, read-pa, --pid, --source xen: --path/--follow, read and watch forms"
	g "$G" "kinfo K"; grab "$G" KINFO K
	while IFS='=' read -r k v; do kv[$k]=$v; done < "$OUT/$G/kinfo-K.txt"
	x "$G" sym sym "xen:$G" linux_banner _text --json
	x "$G" read-va read-va "xen:$G" linux_banner 64 --raw
	x "$G" read-va-off read-va "xen:$G" linux_banner+6 7 --raw
	x "$G" read-va-hex read-va "xen:$G" "0x${kv[banner]:-0}" 16 --hex
	x "$G" read-va-pid read-va "xen:$G" "0x${kv[vdso]:-0}" 4 --pid 1 --raw
	# linux_banner's physical address, from the guest's own iomem and kallsyms (else
	# from where x86-64 maps the kernel: __START_KERNEL_map, phys_base 0); a PV guest's
	# physical space is machine frames: its pfn -> mfn from xen-mfndump.
	if [ -n "${kv[code]:-}" ]; then
		how=iomem pa=$(( 0x${kv[code]} + 0x${kv[banner]:-0} - 0x${kv[text]:-0} ))
	else
		how=kernel-map pa=$(( 0x${kv[banner]:-0} - 0xffffffff80000000 ))
	fi
	addr=$pa
	if [ "$(cat "$OUT/$G/type")" = pv ]; then
		dom=$(cat "$OUT/$G/domid")
		mfn=$(/usr/lib/xen-4.17/bin/xen-mfndump dump-p2m "$dom" 2> "$d/mfndump.err" |
			sed -n "s/^ *pfn=$(printf '0x%x' $((pa >> 12))) ==> mfn=\(0x[0-9a-f]*\).*/\1/p")
		addr=$(( (${mfn:-0} << 12) | (pa & 0xfff) )) how="$how, mfn ${mfn:-none}"
	fi
	printf 'pa=0x%x addr=0x%x (%s)\n' "$pa" "$addr" "$how" > "$d/read-pa.addr"
	x "$G" read-pa read-pa "xen:$G" "$(printf '0x%x' "$addr")" 64 --raw
	x "$G" list-src list --source "xen:$G" --json
	x "$G" read-src-path read --source "xen:$G" demo_tp --path 'demo_tp->snd_cwnd' --json
	x "$G" read-src-follow read --source "xen:$G" demo_tp --follow 1 --json
	x "$G" read-pretty read "$G" demo_state
	x "$G" read-pause read "$G" marks_demo/counter --pause --json
	x "$G" watch-every watch "$G" counter --every 200ms --count 10 --format json
	x "$G" watch-pretty watch "$G" counter demo_state --every 100ms --count 4
	x "$G" watch-csv watch "$G" counter demo_hist demo_state --every 100ms --count 6 \
		--format csv --fields 'counter,demo_hist[1],level=demo_state.level:steps'
	x "$G" watch-pause watch "$G" counter --every 50ms --count 10 --pause --format json
	x "$G" watch-rate watch "$G" counter --every 10ms --max-rate 20 --count 10 --format json
	x "$G" watch-limit watch "$G" demo_tcp --every 50ms --count 10 --quiet \
		--record "$d/limited.jsonl" --record-limit 30K
	x "$G" read-id read "$(cat "$OUT/$G/domid")" counter --json
	t0=$(date +%s%N)
	x "$G" watch-duration watch "$G" counter --every 100ms --duration 2s --format json
	t1=$(date +%s%N)
	echo "$(( (t1 - t0) / 1000000 ))" > "$d/watch-duration.ms"
	x "$G" watch-record watch "$G" counter --every 100ms --count 8 --quiet --record "$d/rec.jsonl"
	x "$G" plot plot "$d/rec.jsonl" counter 'twice=counter*2:n' --mark counter \
		-o "$d/plot.svg" -o "$d/plot.png"
	g "$G" "values O"; grab "$G" VAL O
}

# consistency GUEST: two marks that move together (marks_demo bumps the
# counter and demo_state.lo in one write section of the counter), watched
# while the guest bumps: read one after the other, and in one pause of the
# domain per capture (--pause).
consistency() {
	local G=$1
	say "$G: (p) captures of two marks while the guest bumps, unpaused and --pause; read --pause of both"
	g "$G" "bumping 20000"
	x "$G" cons-free watch "$G" counter demo_state --every 20ms --count 120 --format json
	x "$G" cons-paused watch "$G" counter demo_state --every 20ms --count 120 \
		--format json --pause
	x "$G" cons-read read "$G" counter demo_state --pause --json
	g "$G" bumped 40
}

# introspection GUEST [dump [snapshot]]: the guest's own process and module lists,
# then vmark ps and modules live and, with "dump", on an `xl dump-core` taken right
# after (the dump is real, produced here, checked against the lists); with
# "snapshot", a vmark snapshot is taken before the dump and timed alike.  The
# PVH guest of the main scenario is not dumped: libxenguest maps every gpfn
# below its top special page one call at a time, ~940k absent ones for this
# guest, which takes minutes under TCG; the guest type "pvh-dump" (a PVH guest
# that only does this) is run by a test of its own.
introspection() {
	local G=$1 d=$OUT/$1 core=/tmp/$1.core
	say "$G: process and module lists, live$([ "$2" = dump ] && echo " and from xl dump-core")"
	g "$G" "lists L"
	grab "$G" PS L
	grab "$G" MOD L
	for what in ps modules; do
		"$VMARK" "$what" "xen:$G" --json > "$d/live-$what.json" 2> "$d/live-$what.err"
	done
	[ "$2" = dump ] || return 0
	[ "${3:-}" = snapshot ] && snapshot "$G"
	local t0=$(now)
	if xl dump-core "$G" "$core" > "$d/dump-core.txt" 2>&1; then
		ls -ls "$core" >> "$d/dump-core.txt"
		echo "xl dump-core took $(awk "BEGIN {print $(now) - $t0}") s" >> "$d/dump-core.txt"
		for what in ps modules; do
			"$VMARK" "$what" "$core" --json > "$d/dump-$what.json" 2> "$d/dump-$what.err"
		done
		"$VMARK" read --source "$core" counter --json > "$d/dump-counter.json" 2> "$d/dump-counter.err"
		rm -f "$core"
	else
		say "$G: xl dump-core failed: $(tail -n 1 "$d/dump-core.txt")"
	fi
}

# snapshot GUEST: vmark snapshot of the running guest while it bumps its marks (the
# load), its own lists taken during the same load; the snapshot's lists and marks are
# read here with vmark, and the file is kept (sparse) for the host, which opens it in
# drgn and volatility3.  Written to dom0's tmpfs, as xl dump-core's file is, so the two
# times compare.  Then a watch that snapshots after each capture.
snapshot() {
	local G=$1 d=$OUT/$1 snap=/tmp/$1-snapshot.core t0
	say "$G: vmark snapshot under load"
	g "$G" bumping_on
	g "$G" "lists S"
	grab "$G" PS S
	grab "$G" MOD S
	t0=$(now)
	timeout 300 "$VMARK" snapshot "$G" "$snap" --json > "$d/snapshot.json" 2> "$d/snapshot.err"
	echo $? > "$d/snapshot.rc"
	echo "vmark snapshot took $(awk "BEGIN {print $(now) - $t0}") s" > "$d/snapshot.txt"
	ls -ls "$snap" >> "$d/snapshot.txt" 2>&1
	g "$G" unbump
	# The marks moved: what xl dump-core's file is checked against is taken again.
	g "$G" "values Z"
	grab "$G" VAL Z
	for what in ps modules; do
		"$VMARK" "$what" "$snap" --json > "$d/snap-$what.json" 2> "$d/snap-$what.err"
	done
	for mark in counter demo_state; do
		"$VMARK" read --source "$snap" "$mark" --json > "$d/snap-$mark.json" 2> "$d/snap-$mark.err"
	done
	cp --sparse=always "$snap" "$d/snapshot.core"
	rm -f "$snap"
	# watch --snapshot-dir: a snapshot after each capture, two at most.
	mkdir -p /tmp/snaps
	timeout 300 "$VMARK" watch "$G" counter --every 200ms --count 3 --format json \
		--snapshot-dir /tmp/snaps --max-snapshots 2 > "$d/snapwatch.out" 2> "$d/snapwatch.err"
	echo $? > "$d/snapwatch.rc"
	for f in /tmp/snaps/*; do
		if r=$("$VMARK" read --source "$f" counter --json 2>&1); then
			echo "$f $r"
		else
			# Kept for the host to look into (sparse: what the guest holds).
			echo "$f $r (kept as unreadable-${f##*/})"
			cp --sparse=always "$f" "$d/unreadable-${f##*/}"
		fi
	done > "$d/snapwatch-files.txt"
	rm -rf /tmp/snaps
}

# other_kernel GUEST: a guest running another kernel than dom0's (TYPE
# pv-other): its release, list and read, triggers under watch --on-trigger,
# and the process and module lists live and from xl dump-core.
other_kernel() {
	local G=$1 d=$OUT/$1
	say "$G: another kernel: list, read, watch, lists"
	g "$G" 'echo "VMARK-UNAME X $(uname -r)"'
	grab "$G" UNAME X
	"$VMARK" list "$G" --json > "$d/list.json" 2> "$d/list.err"
	"$VMARK" list "$G" > "$d/list.txt" 2>&1
	g "$G" "values A"; grab "$G" VAL A
	reads "$G" A
	watch_start "$G" watch1
	g "$G" "status S0"; grab "$G" STATUS S0
	g "$G" "bursts 10 3 0.3"
	g "$G" "status S1"; grab "$G" STATUS S1
	wait_folded "/tmp/$G-watch1.jsonl" 30 30
	watch_stop "$G" watch1
	# A timer watch as CSV, with a derived column; it ends by itself after 5 samples.
	timeout 60 "$VMARK" watch "$G" counter --every 100ms --count 5 --format csv \
		--fields 'counter,twice=counter*2:n' > "$d/csv.txt" 2> "$d/csv.err"
	echo $? > "$d/csv.rc"
	g "$G" "values Z"; grab "$G" VAL Z
	introspection "$G" dump snapshot
}

# faults GUEST: what a hostile guest or a failing host does to a running watch
# (issue 8).  Ends with the guest destroyed mid-watch: run it last.
faults() {
	local G=$1 d=$OUT/$1 pid
	say "$G: (g) helper reloaded during a watch: triggers resume"
	watch_start "$G" watch5
	g "$G" "ctl trigger 5"
	wait_folded "$OUT/$G/watch5.out" 5 20
	g "$G" helper_out
	g "$G" helper_in
	wait_grep "$OUT/$G/watch5.out" '"event":"rebound"' 20
	g "$G" "ctl trigger 7"
	wait_folded "$OUT/$G/watch5.out" 12 20
	watch_stop "$G" watch5

	say "$G: (h) the guest rewrites its published tree in a loop"
	"$VMARK" watch "$G" counter --every 100ms --format json > "$d/churn.out" 2> "$d/churn.err" &
	pid=$!
	wait_ready "$d/churn.err" $pid
	local t0 c0 n0 t1 c1 n1
	t0=$(date +%s.%N) c0=$(cpu_ticks $pid) n0=$(wc -l < "$d/churn.out")
	g "$G" "churn 6" 30
	t1=$(date +%s.%N) c1=$(cpu_ticks $pid) n1=$(wc -l < "$d/churn.out")
	echo "ticks $((c1 - c0)) hz $(getconf CLK_TCK) seconds $(awk "BEGIN {print $t1 - $t0}") samples $((n1 - n0))" > "$d/churn-cpu.txt"
	grab "$G" CHURN 6
	kill -INT $pid; wait $pid; echo $? > "$d/churn.rc"

	say "$G: (i) recording onto a small full tmpfs"
	mkdir -p /tmp/full && mount -t tmpfs -o size=128k tmpfs /tmp/full
	"$VMARK" watch "$G" demo_tcp --every 20ms --count 60 --format json \
		--record /tmp/full/rec.jsonl > "$d/full.out" 2> "$d/full.err"
	echo $? > "$d/full.rc"
	cp /tmp/full/rec.jsonl "$d/full-rec.jsonl"
	umount /tmp/full

	say "$G: (j) SIGTERM to a --pause watch"
	"$VMARK" watch "$G" counter --every 2ms --pause --format json > "$d/pause.out" 2> "$d/pause.err" &
	pid=$!
	wait_ready "$d/pause.err" $pid && wait_lines "$d/pause.out" 50 30
	kill -TERM $pid
	wait $pid
	echo $? > "$d/pause.rc"
	xl list "$G" > "$d/pause-xl-list.txt" 2>&1
	g "$G" "values P" && grab "$G" VAL P

	say "$G: (k) the guest destroyed mid-watch"
	g "$G" finish
	"$VMARK" watch "$G" counter --every 50ms --format json --record "/tmp/$G-destroy.jsonl" \
		> "$d/destroy.out" 2> "$d/destroy.err" &
	pid=$!
	wait_ready "$d/destroy.err" $pid && wait_lines "$d/destroy.out" 5 30
	xl destroy "$G"
	local i
	for i in $(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
	kill -0 $pid 2>/dev/null && { say "$G: the watch did not end after xl destroy"; kill -9 $pid; }
	wait $pid
	echo $? > "$d/destroy.rc"
	cp "/tmp/$G-destroy.jsonl" "$d/destroy-rec.jsonl"
	cp "$(log_of "$G")" "$d/console.log"
	echo destroyed > "$d/destroyed"
}

up="" down=""
# A trace of the guests' first seconds (HVM exits), for diagnosing a guest that dies
# before its console works (tests/e2e/xentrace-exits.py reads it).
if [[ " $* " == *" pvh "* ]]; then
	/usr/sbin/xentrace -D -S 256 -e 0x0008f000 /tmp/xentrace.bin > "$OUT/xentrace.log" 2>&1 &
	TRACE_PID=$!
	sleep 1
fi
# TYPE pvh-dump: a PVH guest (vm-pvh-dump) that only lists and is dumped.
for t in "$@"; do create "vm-$t" "${t%-dump}" || true; done
for t in "$@"; do
	G=vm-$t
	# Created (xl create worked)?  Not `xl domid`: a guest that triple-faults
	# early (seen, rarely, with PVH under TCG) is restarted by Xen under a new
	# id, and for a moment has none; wait_up follows it by name.
	[ -f "$OUT/$G/xl-create.ok" ] || { down="$down $G"; continue; }
	if wait_up "$G"; then
		DOM=$(xl domid "$G")
		TTY[$G]=$(xenstore-read "/local/domain/$DOM/console/tty")
		echo "$DOM" > "$OUT/$G/domid"
		up="$up $G"
		say "$G is up (domain $DOM)"
	else
		down="$down $G"
	fi
done
xl dmesg | grep -q "Triple fault" &&
	say "a guest triple-faulted while booting and Xen restarted it (see xl-dmesg.txt)"
if [ -n "${TRACE_PID:-}" ]; then
	# xentrace cannot write to 9p (its buffers are foreign mappings): it wrote to /tmp.
	kill -INT "$TRACE_PID"
	wait "$TRACE_PID"
	cp /tmp/xentrace.bin "$OUT/" 2>/dev/null
fi
"$VMARK" list --json > "$OUT/list-all.json" 2> "$OUT/list-all.err"
for G in $up; do
	if [[ $G == *-dump ]]; then
		g "$G" "values Z"
		grab "$G" VAL Z
		introspection "$G" dump snapshot
	elif [ "$G" = vm-pv-other ]; then
		other_kernel "$G"
	else
		scenario "$G"
		[ "$(cat "$OUT/$G/type")" = pv ] && faults "$G"
	fi
	[ -f "$OUT/$G/destroyed" ] && continue
	g "$G" poweroff 10
	wait_log "$G" "^VMARK-GUEST done" 30
done
for G in $down; do diagnose "$G"; done
sleep 1
for t in "$@"; do
	[ -f "$OUT/vm-$t/destroyed" ] && continue
	cp "$(log_of "vm-$t")" "$OUT/vm-$t/console.log" 2>/dev/null
done
xl dmesg > "$OUT/xl-dmesg.txt" 2>&1
exit 0
