"""What drgn makes of a vmark snapshot, as one JSON object on stdout.

drgn opens the core file, identifies the kernel from its VMCOREINFO note, takes the
kernel's symbols from the kallsyms tables VMCOREINFO locates (no debug info), and reads
memory through the guest's page tables. For each symbol named on the command line:
its address and the first 64 bytes there, in hex. With --vmlinux (the kernel's DWARF,
from Debian's -dbg package) also the processes, on the kernel's task list through the DWARF's types.

    python drgn_snapshot.py [--vmlinux VMLINUX] CORE SYMBOL...
"""

import argparse
import json

import drgn
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms
from drgn.helpers.linux.list import list_for_each_entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmlinux")
    ap.add_argument("core")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    prog = drgn.Program()
    prog.set_core_dump(a.core)
    prog.register_symbol_finder("vmlinux_kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    processes = None
    if a.vmlinux:
        prog.load_debug_info([a.vmlinux])
        # The process list: init_task (pid 0) and the tasks on its list, the leaders of
        # their thread groups (the kernel's for_each_process).
        init = prog["init_task"]
        tasks = [init.address_of_()] + list(
            list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"))
        processes = [{"pid": t.pid.value_(), "name": t.comm.string_().decode("utf-8", "replace")}
                     for t in tasks]
    banner = prog.read(prog.symbol("linux_banner").address, 256).split(b"\0")[0]
    symbols = {}
    for name in a.names:
        address = prog.symbol(name).address
        symbols[name] = {"address": address, "bytes": prog.read(address, 64).hex()}
    print(json.dumps({
        "drgn": drgn.__version__,
        "linux_kernel": bool(prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL),
        "banner": banner.decode("ascii", "replace"),
        "symbols": symbols,
        "processes": processes,
    }))


main()
