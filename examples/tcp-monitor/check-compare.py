#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Judges what examples/tcp-monitor/check collected (OUT = its out/ dir).

Prints "ok ..." / "FAIL ..." / "note ..." lines; exits 1 if anything failed.
"""
import json
import re
import subprocess
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


def netdev(tag):
    m = re.search(rf"^TCPMON-NET {tag} rx_packets=(\d+)$", log, re.M)
    return int(m.group(1)) if m else None


def read_jsonl(path):
    out = []
    try:
        for line in open(path, errors="replace"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    except OSError:
        pass
    return out


def compare_packets():
    """watch --on-packet on the guest's vif: every segment dom0 sent the guest seen by
    the host, none lost; the pcapng whole in tshark, on the recording's clock."""
    p0, p = values("P0"), values("P")
    try:
        werr = open(f"{OUT}/packets-watch.err").read()
        rc = open(f"{OUT}/packets-watch.rc").read().strip()
        domid = open(f"{OUT}/domid").read().strip()
    except OSError as e:
        ok(False, f"packets: the --on-packet watch's output: {e}")
        return
    for line in werr.strip().splitlines():
        note("packet watch: " + line)
    ok(rc == "0", f"packets: the watch ended cleanly on SIGINT (exit {rc})")
    m = re.search(r"^packets: (\d+) captured on (\S+), (\d+) taken into (\d+) samples "
                  r"\(dropped: (\d+) by a full queue, (\d+) by the kernel\)", werr, re.M)
    if not ok(m is not None, "packets: the watch's summary counts packets"):
        return
    captured, iface, taken, samples, qdrop, kdrop = (m.group(1), m.group(2), *map(int, m.groups()[2:]))
    captured = int(captured)
    ok(iface == f"vif{domid}.0", f"packets: captured on {iface}, the vif xenstore names for domain {domid}")
    ok(qdrop == 0 and kdrop == 0 and taken == captured,
       f"packets: none dropped ({qdrop} queue, {kdrop} kernel), all {captured} taken")
    # The connection's own count: segs_in counts every segment it received, GRO merged
    # ones one by one, the handshake's SYN and ACK included (they reach the listener and
    # the request sock before tcp_rcv_established, which the hook sees, handles the rest).
    segs_in = u(p, "last_tp.segs_in")
    seen, seen0 = u(p, "stats.segments"), u(p0, "stats.segments")
    hook = seen - seen0 if seen is not None and seen0 is not None else None
    ok(p.get("stats.last_sport") == "5001" and p.get("stats.conn_switches") == "3",
       f"P: the packet phase's connection is the third ({p.get('stats.conn_switches')})")
    ok(captured == segs_in,
       f"packets: the host saw {captured} packets to the guest's port 5001 == its "
       f"connection's segs_in {segs_in}")
    rx = (netdev("P") or 0) - (netdev("P0") or 0)
    note(f"packets: the guest's netfront received {rx} packets in the phase (ARP and ND too), "
         f"the hook {hook} skbs after GRO (the handshake's 2 not among them): "
         f"{(segs_in or 0) - 2 - (hook or 0)} segments merged by GRO")
    ok(segs_in is not None and hook is not None,
       f"packets: the guest's view of the phase (segs_in {segs_in}, segments {hook})")
    ok(rx >= captured, f"packets: netfront received {rx} >= the {captured} the host saw")
    # tshark reads the pcapng: as many packets, the same times.
    try:
        tshark = subprocess.run(["tshark", "-r", f"{OUT}/packets.pcapng", "-T", "fields",
                                 "-e", "frame.time_epoch", "-e", "tcp.dstport"],
                                capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        ok(False, f"packets: tshark: {e}")
        return
    rows = [ln.split("\t") for ln in tshark.stdout.splitlines() if ln.strip()]
    ok(tshark.returncode == 0 and len(rows) == captured,
       f"packets: tshark reads {len(rows)} packets from the pcapng (exit {tshark.returncode}) "
       f"== {captured} {tshark.stderr.strip()[-200:]}")
    ok(all(r[1:] == ["5001"] for r in rows), "packets: every one to TCP port 5001 (the filter)")
    times = set()
    for r in rows:
        sec, _, frac = r[0].partition(".")
        times.add(int(sec) * 10**9 + int((frac + "000000000")[:9]))
    recs = read_jsonl(f"{OUT}/packets.jsonl")
    causes = {r.get("cause") for r in recs if "value" in r}
    ok({"packet", "trigger"} <= causes, f"packets: samples caused by packets and by triggers: {sorted(causes)}")
    pkt = [r for r in recs if r.get("cause") == "packet"]
    lined = sum(1 for r in pkt if r["t_ns"] - r.get("latency_ns", -1) in times)
    ok(pkt and lined == len(pkt),
       f"packets: {lined}/{len(pkt)} packet samples line up with a packet of the pcapng "
       f"(t_ns - latency_ns is its timestamp)")
    try:
        plot = open(f"{OUT}/packets-plot.txt").read()
    except OSError:
        plot = ""
    ok(f"{captured} packets marked" in plot, f"packets: vmark plot --packets: {plot.strip()}")


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

    compare_packets()

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
