"""What drgn makes of a vmark snapshot, as one JSON object on stdout.

drgn opens the core file, identifies the kernel from its VMCOREINFO note, takes the
kernel's symbols from the kallsyms tables VMCOREINFO locates (no debug info), and reads
memory through the guest's page tables. For each symbol named on the command line:
its address and the first 64 bytes there, in hex.

    python drgn_snapshot.py CORE SYMBOL...
"""

import json
import sys

import drgn
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms


def main():
    core, names = sys.argv[1], sys.argv[2:]
    prog = drgn.Program()
    prog.set_core_dump(core)
    prog.register_symbol_finder("vmlinux_kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    banner = prog.read(prog.symbol("linux_banner").address, 256).split(b"\0")[0]
    symbols = {}
    for name in names:
        address = prog.symbol(name).address
        symbols[name] = {"address": address, "bytes": prog.read(address, 64).hex()}
    print(json.dumps({
        "drgn": drgn.__version__,
        "linux_kernel": bool(prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL),
        "banner": banner.decode("ascii", "replace"),
        "symbols": symbols,
    }))


main()
