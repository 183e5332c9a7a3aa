#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Prints the HVM exits in a xentrace file (HVM events only: -e 0x0008f000) (tests/e2e: the trace dom0-scenario.sh
takes while the guests start), with the guest RIP resolved against a System.map:
what a PVH guest did before it died without console output.

    xentrace-exits.py TRACE [SYMBOLS] [--last N]

SYMBOLS: a System.map-like "ADDRESS TYPE NAME" list.  Debian's System.map is a
stub; kallsyms-finder (PyPI vmlinux-to-elf) recovers the list from the
kernel image (decompressed vmlinuz).
"""
import bisect
import struct
import sys

SVM_EXITS = {0x72: "cpuid", 0x78: "hlt", 0x7C: "msr", 0x7F: "shutdown", 0x400: "npf",
             0x7B: "ioio", 0x81: "vmmcall", 0x60: "intr", 0x64: "vintr", 0x7E: "ferr",
             0x65: "cr0-sel-write", 0x79: "invlpg", 0x6E: "rdtsc", 0x77: "pause"}


def exit_name(code):
    if code < 0x10:
        return f"cr{code}-read"
    if code < 0x20:
        return f"cr{code - 0x10}-write"
    if code < 0x30:
        return f"dr{code - 0x20}-read"
    if code < 0x40:
        return f"dr{code - 0x30}-write"
    if 0x40 <= code < 0x60:
        return f"exception {code - 0x40}"
    return SVM_EXITS.get(code, hex(code))


def load_map(path):
    syms = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return syms


def resolve(syms, rip):
    if not syms:
        return ""
    i = bisect.bisect_right(syms, (rip, "\xff")) - 1
    if i < 0:
        return ""
    a, n = syms[i]
    # PVH runs the kernel's low (physical) alias before paging is on.
    return f"{n}+{rip - a:#x}"


def main():
    argv = sys.argv[1:]
    last = 60
    if "--last" in argv:
        i = argv.index("--last")
        last = int(argv[i + 1])
        del argv[i : i + 2]
    args = argv
    data = open(args[0], "rb").read()
    syms = load_map(args[1]) if len(args) > 1 else []
    out = []
    off = 0
    while off + 4 <= len(data):
        (hdr,) = struct.unpack_from("<I", data, off)
        event, n, cyc = hdr & 0x0FFFFFFF, (hdr >> 28) & 7, hdr >> 31
        off += 4 + (8 if cyc else 0)
        extra = struct.unpack_from(f"<{n}I", data, off) if off + 4 * n <= len(data) else ()
        off += 4 * n
        if event == 0x0001F003:  # cpu change: (cpu, bytes) follow as extra
            continue
        if event in (0x00081002, 0x00081102) and extra:  # vmexit (32/64-bit rip)
            rip = extra[1] | ((extra[2] << 32) if event == 0x00081102 and len(extra) > 2 else 0)
            out.append(f"exit {exit_name(extra[0]):<14} rip {rip:#018x} {resolve(syms, rip)}")
        elif event in (0x00082008, 0x00082108) and extra:  # CR read: (cr, value)
            val = extra[1] | ((extra[2] << 32) if len(extra) > 2 else 0)
            out.append(f"     emulated read of cr{extra[0]} = {val:#x}")
        elif event in (0x00081001, 0x00081101):  # vmentry
            continue
        elif event >> 16 == 0x0008:  # other HVM events
            out.append(f"event {event:#010x} " + " ".join(f"{x:#x}" for x in extra))
    for line in out[-last:]:
        print(line)
    print(f"({len(out)} records)")


if __name__ == "__main__":
    main()
