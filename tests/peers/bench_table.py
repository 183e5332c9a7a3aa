"""Prints the side-by-side table of tests/bench-peers from the JSON lines of every tool
(stdin): per operation, vmark's median, the machine's limit for it, each peer's median,
and the ratios (fastest peer / vmark: how many times faster vmark is; vmark / limit: how
far from the machine's own cost)."""

import json
import platform
import sys

OPS = [
    ("open", "open: kernel + symbols, first answer", None),
    ("open_types", "open with types (BTF / DWARF)", None),
    ("symbol", "symbol → address", "limit_hash_name"),
    ("v2p_cached", "virtual → physical, cached", "limit_hash"),
    ("v2p_uncached", "virtual → physical, uncached", "limit_walk"),
    ("read_va_8", "read 8 B by virtual address", "limit_copy_8"),
    ("read_va_4k", "read 4 KiB by virtual address", "limit_copy_4k"),
    ("read_pa_8", "read 8 B by physical address", "limit_copy_8"),
    ("read_pa_4k", "read 4 KiB by physical address", "limit_copy_4k"),
    ("ps", "process list", None),
    ("modules", "module list", None),
]
LIMITS = {
    "limit_hash": "hash probe",
    "limit_hash_name": "hash probe by name",
    "limit_walk": "4 dependent loads",
    "limit_copy_8": "copy 8 B",
    "limit_copy_4k": "copy 4 KiB",
}


def fmt(ns):
    if ns is None:
        return "–"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def main():
    rows, meta = {}, {}
    tools = []
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "tool" not in r:
            meta.update(r)
            continue
        if r["tool"] not in tools:
            tools.append(r["tool"])
        rows[(r["tool"], r["op"])] = r
    vmark = "vmark"
    peers = [t for t in tools if t != vmark]
    print(f"Dump: {meta.get('dump', '?')}  \nMachine: {machine()}\n")
    head = ["operation", "vmark", "machine limit"] + peers + ["fastest peer / vmark", "vmark / limit"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for op, label, limit in OPS:
        mine = rows.get((vmark, op), {}).get("ns")
        lim = rows.get((vmark, limit), {}).get("ns") if limit else None
        cells = [label, fmt(mine), f"{fmt(lim)} ({LIMITS[limit]})" if limit else "–"]
        best = None
        for p in peers:
            r = rows.get((p, op))
            if r is None:
                cells.append("–")
                continue
            note = f" ({r['note']})" if r.get("note") else ""
            cells.append(fmt(r["ns"]) + note)
            best = r["ns"] if best is None else min(best, r["ns"])
        cells.append(f"{best / mine:.1f}×" if best and mine else "–")
        cells.append(f"{mine / lim:.1f}×" if lim and mine else "–")
        print("| " + " | ".join(cells) + " |")


main()
