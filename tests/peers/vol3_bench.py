"""volatility3's half of the side-by-side benchmark (tests/bench-peers): reads and
translations through volatility3's own layers on the same dump and addresses. Its
symbols, process and module lists, and its own open (finding the kernel and its page
tables), need an ISF symbol table made from the kernel's DWARF by dwarf2json, which no
package registry offers: those rows stay empty, and the layers are stacked by hand on the
page-table root vmark found.

    python vol3_bench.py DUMP ROOT VA PA
"""

import argparse

import volatility3
from volatility3.framework import contexts
from volatility3.framework.layers.elf import Elf64Layer
from volatility3.framework.layers.intel import LinuxIntel32e
from volatility3.framework.layers.physical import FileLayer

from peer_timing import report, time_ns

TOOL = "volatility3 " + volatility3.framework.constants.PACKAGE_VERSION


def layers(dump, root):
    ctx = contexts.Context()
    ctx.config["file.location"] = "file://" + dump
    ctx.add_layer(FileLayer(ctx, "file", "file"))
    ctx.config["mem.base_layer"] = "file"
    ctx.add_layer(Elf64Layer(ctx, "mem", "mem"))
    ctx.config["kern.memory_layer"] = "mem"
    ctx.config["kern.page_map_offset"] = root
    ctx.add_layer(LinuxIntel32e(ctx, "kern", "kern"))
    return ctx.layers["mem"], ctx.layers["kern"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("root", type=int)
    ap.add_argument("va", type=int)
    ap.add_argument("pa", type=int)
    a = ap.parse_args()
    mem, kern = layers(a.dump, a.root)
    pa, _ = kern.translate(a.va)
    if pa != a.pa:
        raise SystemExit(f"volatility3 translates init_task to {pa:#x}, vmark to {a.pa:#x}")
    report(TOOL, "v2p_cached", time_ns(lambda: kern.translate(a.va)), note="lru_cache")
    report(TOOL, "read_va_8", time_ns(lambda: kern.read(a.va, 8)))
    report(TOOL, "read_va_4k", time_ns(lambda: kern.read(a.va & ~0xfff, 4096)))
    report(TOOL, "read_pa_8", time_ns(lambda: mem.read(a.pa, 8)))
    report(TOOL, "read_pa_4k", time_ns(lambda: mem.read(a.pa & ~0xfff, 4096)))


main()
