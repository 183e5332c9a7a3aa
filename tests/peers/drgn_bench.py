"""drgn's half of the side-by-side benchmark (tests/bench-peers): the operations of
vmark's host/benches/peers.rs on the same dump and the same addresses, with drgn's own
API. Two programs: one with the kernel's symbols from the kallsyms tables VMCOREINFO
locates (no debug info, drgn's fastest open), one with the kernel's DWARF loaded (what
drgn needs for types, lists and page walks).

    python drgn_bench.py --vmlinux VMLINUX DUMP VA PA
"""

import argparse

import drgn
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import follow_phys

from peer_timing import once_ns, report, time_ns

TOOL = "drgn " + drgn.__version__


def kallsyms_program(dump):
    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.register_symbol_finder("vmlinux_kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    return prog


def dwarf_program(dump, vmlinux):
    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.load_debug_info([vmlinux])
    return prog


def processes(prog):
    init = prog["init_task"]
    tasks = [init.address_of_()] + list(
        list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"))
    return [(t.pid.value_(), t.comm.string_()) for t in tasks]


def modules(prog):
    return [m.name.string_() for m in
            list_for_each_entry("struct module", prog["modules"].address_of_(), "list")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmlinux", required=True)
    ap.add_argument("dump")
    ap.add_argument("va", type=int)
    ap.add_argument("pa", type=int)
    a = ap.parse_args()

    def first_answer():
        kallsyms_program(a.dump).symbol("init_task").address

    report(TOOL, "open", once_ns(first_answer), runs=5)
    report(TOOL, "open_types", once_ns(lambda: dwarf_program(a.dump, a.vmlinux)["init_task"]),
           runs=5)

    prog = kallsyms_program(a.dump)
    if prog.symbol("init_task").address != a.va:
        raise SystemExit("drgn's init_task is not vmark's")
    report(TOOL, "symbol", time_ns(lambda: prog.symbol("init_task").address),
           note="kallsyms")
    report(TOOL, "read_va_8", time_ns(lambda: prog.read(a.va, 8)))
    page = a.va & ~0xfff
    report(TOOL, "read_va_4k", time_ns(lambda: prog.read(page, 4096)))
    report(TOOL, "read_pa_8", time_ns(lambda: prog.read(a.pa, 8, True)))
    report(TOOL, "read_pa_4k", time_ns(lambda: prog.read(a.pa & ~0xfff, 4096, True)))

    full = dwarf_program(a.dump, a.vmlinux)
    init_mm = full["init_mm"].address_of_()
    if follow_phys(init_mm, a.va).value_() != a.pa:
        raise SystemExit("drgn's translation of init_task is not vmark's")
    report(TOOL, "v2p_uncached", time_ns(lambda: follow_phys(init_mm, a.va)),
           note="follow_phys (DWARF)")
    report(TOOL, "ps", time_ns(lambda: processes(full)), note="DWARF")
    report(TOOL, "modules", time_ns(lambda: modules(full)), note="DWARF")


main()
