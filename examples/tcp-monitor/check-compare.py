#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Judges what examples/tcp-monitor/check collected (OUT = its out/ dir).

Prints "ok ..." / "FAIL ..." / "note ..." lines; exits 1 if anything failed.
"""
import json
import re
import sys

OUT = sys.argv[1]
fails = 0


def ok(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails += 1
    return cond


def note(what):
    print("note " + what)


try:
    log = open(f"{OUT}/guest-console.log", errors="replace").read()
except OSError as e:
    ok(False, f"guest console log: {e}")
    sys.exit(1)
log = log.replace("\r", "")


def values(tag):
    v = {}
    for m in re.finditer(rf"^TCPMON-VAL {tag} ([^=\s]+)=(\S*)$", log, re.M):
        v[m.group(1)] = m.group(2)
    return v


def ss(tag):
    m = re.search(rf"^TCPMON-SS {tag} (.*)$", log, re.M)
    return m.group(1) if m else None


def traffic(name):
    try:
        return json.load(open(f"{OUT}/traffic-{name}.json"))
    except (OSError, ValueError):
        return {}


def host(tag, mark):
    try:
        return json.load(open(f"{OUT}/read-{tag}-{mark}.json"))
    except (OSError, ValueError):
        return None


def walk(value, path):
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def u(v, key):
    return int(v[key]) if key in v else None


def compare_ss(tag, v):
    line = ss(tag)
    if not ok(line is not None, f"{tag}: ss -ti shows the connection"):
        return
    f = dict(re.findall(r"\b([a-z_]+):(\S+)", line))
    pairs = [
        ("cwnd", "last_tp.snd_cwnd"),
        ("mss", "last_tp.mss_cache"),
        ("bytes_received", "last_tp.bytes_received"),
        ("bytes_acked", "last_tp.bytes_acked"),
        ("segs_in", "last_tp.segs_in"),
        ("data_segs_in", "last_tp.data_segs_in"),
    ]
    for sk, vk in pairs:
        if sk in f:
            ok(int(f[sk]) == u(v, vk), f"{tag}: ss {sk}:{f[sk]} == {vk}={v.get(vk)}")
    if "wscale" in f:
        w = f"{v.get('last_tp.rx_opt.snd_wscale')},{v.get('last_tp.rx_opt.rcv_wscale')}"
        ok(f["wscale"] == w, f"{tag}: ss wscale:{f['wscale']} == rx_opt.snd_wscale,rcv_wscale {w}")
    if "rtt" in f:
        rtt, var = (float(x) for x in f["rtt"].split("/"))
        mine = (u(v, "last_tp.srtt_us") >> 3) / 1000, (u(v, "last_tp.mdev_us") >> 2) / 1000
        ok(abs(rtt - mine[0]) < 0.001 and abs(var - mine[1]) < 0.001,
           f"{tag}: ss rtt:{f['rtt']} == srtt_us>>3, mdev_us>>2 in ms {mine[0]:g}/{mine[1]:g}")
    if "segs_out" in f:
        d = int(f["segs_out"]) - u(v, "last_tp.segs_out")
        ok(0 <= d <= 2, f"{tag}: ss segs_out:{f['segs_out']} vs segs_out="
           f"{v.get('last_tp.segs_out')} (ACKs sent after the last segment: {d})")
    if "snd_wnd" in f:
        ok(int(f["snd_wnd"]) == u(v, "last_tp.snd_wnd"),
           f"{tag}: ss snd_wnd:{f['snd_wnd']} == snd_wnd={v.get('last_tp.snd_wnd')}")


def compare_host(tag, v):
    tp, st = host(tag, "last_tp"), host(tag, "stats")
    if not ok(tp is not None and st is not None, f"{tag}: vmark read last_tp/stats"):
        return
    ok(tp.get("consistent") and st.get("consistent"), f"{tag}: host reads consistent (seq)")
    n = bad = 0
    for key, want in v.items():
        mark, _, path = key.partition(".")
        if mark not in ("last_tp", "stats") or "addr" in path:
            continue
        got = walk((tp if mark == "last_tp" else st)["value"], path)
        n += 1
        if got is None or int(got) != int(want):
            bad += 1
            print(f"FAIL {tag}: host {key}={got}, guest {want}")
    ok(bad == 0 and n > 0, f"{tag}: host decode == guest debugfs for {n - bad}/{n} fields")
    saddr = walk(st["value"], "last_saddr")
    note(f"{tag}: host stats.last_saddr bytes {saddr}")


def main():
    v0, a, apost, a2 = values("V0"), values("A"), values("Apost"), values("A2")
    ok(bool(v0) and u(v0, "stats.segments") == 0, f"V0: loaded, no segments yet ({v0.get('stats.segments')})")
    t4 = traffic("v4")
    ok(t4.get("bytes_sent", 0) > 0, f"dom0 sent {t4.get('bytes_sent')} bytes over netfront (IPv4)")
    ok(bool(a) and u(a, "stats.segments") > 0, f"A: segments moved ({a.get('stats.segments')})")
    if a:
        ok(a == apost, "A: nothing changed between the guest's two printouts (idle connection)")
        ok(u(a, "stats.bytes") >= t4.get("bytes_sent", 0),
           f"A: stats.bytes {a.get('stats.bytes')} >= bytes sent by dom0 {t4.get('bytes_sent')} "
           f"(retransmitted payload counted again: {u(a, 'stats.bytes') - t4.get('bytes_sent', 0)})")
        ok(u(a, "last_tp.bytes_received") == t4.get("bytes_sent"),
           f"A: last_tp.bytes_received {a.get('last_tp.bytes_received')} == bytes sent")
        ok(a.get("stats.last_daddr", "").endswith("10.9.0.1") and a.get("stats.last_sport") == "5001",
           f"A: last connection {a.get('stats.last_daddr')}:{a.get('stats.last_dport')} -> "
           f"{a.get('stats.last_saddr')}:{a.get('stats.last_sport')} (dom0 {t4.get('local')})")
        ok(a.get("last_tp.inet_conn.icsk_inet.sk.__sk_common.skc_state") == "1", "A: copy's sk_state ESTABLISHED (1)")
        ok(u(a, "triggers") == u(a, "stats.segments"), f"A: triggers {a.get('triggers')} == segments")
        note(f"A: segments {a.get('stats.segments')} (skbs after GRO), segs_in {a.get('last_tp.segs_in')}, "
             f"missed {a.get('missed')}, read_retries {a.get('read_retries')}")
        compare_ss("A", a)
        compare_host("A", a)
    try:
        werr = open(f"{OUT}/watch.err").read()
        m = re.search(r"guest triggers accounted for: (\d+)", werr)
        acc = int(m.group(1)) if m else None
        ok(acc == u(a2, "stats.segments"),
           f"host: triggers accounted for by vmark watch {acc} == guest segments {a2.get('stats.segments')}")
        for line in werr.strip().splitlines():
            note("watch: " + line)
    except OSError:
        ok(False, "vmark watch output")

    b = values("B")
    t6 = traffic("v6")
    ok(t6.get("bytes_sent", 0) > 0, f"dom0 sent {t6.get('bytes_sent')} bytes over IPv6")
    if b:
        ok(b.get("stats.last_family") == "10" and b.get("stats.last_saddr") == "fd09::2"
           and b.get("stats.last_daddr") == "fd09::1",
           f"B: IPv6 connection seen: family {b.get('stats.last_family')} "
           f"{b.get('stats.last_daddr')} -> {b.get('stats.last_saddr')}")
        ok(u(b, "last_tp.bytes_received") == t6.get("bytes_sent"),
           f"B: bytes_received {b.get('last_tp.bytes_received')} == bytes sent {t6.get('bytes_sent')}")
        ok(u(b, "stats.conn_switches") == 2, f"B: conn_switches {b.get('stats.conn_switches')} == 2")
        compare_ss("B", b)
        compare_host("B", b)

    c, d, e = values("C"), values("D"), values("E")
    ok(bool(c) and u(c, "stats.segments") > u(b, "stats.segments"),
       f"C: without vmark_helper the counters still move ({b.get('stats.segments')} -> {c.get('stats.segments')})")
    if c:
        compare_ss("C", c)
    ok(bool(d) and u(d, "stats.segments") == 0, "D: unloaded and reloaded (port=0): counters back to 0")
    ok(bool(e) and u(e, "stats.segments") > 0, f"E: port=0 sees segments ({e.get('stats.segments')})")
    dm = [ln for ln in re.findall(r"^TCPMON-DMESG F (.*)$", log, re.M)]
    bad = [ln for ln in dm if re.search(r"BUG|WARNING|Oops", ln)]
    ok(not bad, "guest dmesg: no BUG/WARNING/Oops" + ("".join("\n     " + x for x in bad)))
    ok(not re.search(r"^TCPMON-FAIL", log, re.M), "guest: no TCPMON-FAIL/SINK-FAIL lines")
    print(f"\n{'FAILED: ' + str(fails) + ' check(s)' if fails else 'all checks passed'}")
    return 1 if fails else 0


sys.exit(main())
