//! The ELF notes of a snapshot: per vCPU an `NT_PRSTATUS` (what debuggers and drgn read
//! registers from) and a QEMU `QEMUCPUState` (the control registers, CR3 first: what
//! vmark, crash and QEMU-dump readers take the page-table root from), and the guest's
//! `VMCOREINFO` (what drgn identifies the kernel by).
//!
//! The layouts are the ABI of their consumers: Linux's `struct elf_prstatus` for x86-64
//! (`include/linux/elfcore.h`, `user_regs_struct` of `arch/x86/include/asm/user_64.h`) and
//! QEMU's `QEMUCPUState` version 1 (`target/i386/arch_dump.c`).

use super::Registers;

/// `n_type` of a prstatus note.
pub const NT_PRSTATUS: u32 = 1;
/// Name of vmark's own notes.
pub const VMARK_NOTE_NAME: &[u8] = b"VMARK";
/// `n_type` of vmark's note of a Xen PV guest's frames: `{u64 pfn; u64 mfn}` per page in
/// the file, as `xl dump-core`'s `.xen_p2m` holds them.
pub const NT_VMARK_XEN_P2M: u32 = 1;
/// Size of `struct elf_prstatus` on x86-64.
const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_pid` in it.
const PRSTATUS_PID: usize = 32;
/// Offset of `pr_reg` (27 × u64, `user_regs_struct` order) in it.
const PRSTATUS_REGS: usize = 112;
/// Size of `QEMUCPUState` version 1: header, 16 GPRs, rip, rflags, 10 segments of 24
/// bytes, cr[5], kernel_gs_base.
const QEMU_STATE_SIZE: usize = 8 + 18 * 8 + 10 * 24 + 5 * 8 + 8;

/// Appends one ELF note (`name` NUL-terminated, name and descriptor padded to 4 bytes).
pub fn push_note(out: &mut Vec<u8>, name: &[u8], n_type: u32, desc: &[u8]) {
    let namesz = name.len() + 1;
    out.extend_from_slice(&(namesz as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The `NT_PRSTATUS` descriptor of vCPU `index`: `pr_pid` is the vCPU number plus one, as
/// QEMU writes it.
pub fn prstatus(index: u32, r: &Registers) -> Vec<u8> {
    let mut d = vec![0u8; PRSTATUS_SIZE];
    d[PRSTATUS_PID..PRSTATUS_PID + 4].copy_from_slice(&(index + 1).to_le_bytes());
    let regs = [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.rax, // orig_rax
        r.rip, r.cs, r.rflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs, r.gs,
    ];
    for (i, v) in regs.iter().enumerate() {
        put(&mut d, PRSTATUS_REGS + 8 * i, *v);
    }
    d
}

/// The `QEMUCPUState` descriptor (version 1) of one vCPU.
pub fn qemu_cpu_state(r: &Registers) -> Vec<u8> {
    let mut d = vec![0u8; QEMU_STATE_SIZE];
    d[0..4].copy_from_slice(&1u32.to_le_bytes());
    d[4..8].copy_from_slice(&(QEMU_STATE_SIZE as u32).to_le_bytes());
    // rax rbx rcx rdx rsi rdi rsp rbp r8..r15, rip, rflags.
    let gprs = [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(&mut d, 8 + 8 * i, *v);
    }
    // Segments cs ds es fs gs ss (selector, then base at +16), then ldt tr gdt idt.
    let segs = [
        (r.cs, 0),
        (r.ds, 0),
        (r.es, 0),
        (r.fs, r.fs_base),
        (r.gs, r.gs_base),
        (r.ss, 0),
    ];
    let seg0 = 8 + 18 * 8;
    for (i, (sel, base)) in segs.iter().enumerate() {
        let at = seg0 + 24 * i;
        d[at..at + 4].copy_from_slice(&(*sel as u32).to_le_bytes());
        put(&mut d, at + 16, *base);
    }
    let cr0 = seg0 + 10 * 24;
    for (i, v) in [r.cr0, 0, r.cr2, r.cr3, r.cr4].iter().enumerate() {
        put(&mut d, cr0 + 8 * i, *v);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::phys::elfcore;

    #[test]
    fn notes_are_padded_and_sized() {
        let mut out = Vec::new();
        push_note(&mut out, b"VMCOREINFO", 0, b"PAGESIZE=4096\n");
        // 12-byte header, "VMCOREINFO\0" padded to 12, 14 bytes padded to 16.
        assert_eq!(out.len(), 12 + 12 + 16);
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 11);
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 14);
        assert_eq!(&out[12..22], b"VMCOREINFO");
    }

    #[test]
    fn the_qemu_state_carries_the_registers_vmark_reads_back() {
        let r = Registers {
            rip: 0xffff_ffff_8100_0000,
            rsp: 0xffff_c900_0000_3f00,
            cr0: 0x8005_0033,
            cr3: 0x1234_5000,
            cr4: 0x3406f0,
            ..Registers::default()
        };
        let v = elfcore::parse_qemu_cpu_state(&qemu_cpu_state(&r)).expect("parses");
        assert_eq!(
            (v.rip, v.rsp, v.cr0, v.cr3, v.cr4),
            (r.rip, r.rsp, r.cr0, r.cr3, r.cr4)
        );
        let p = prstatus(0, &r);
        assert_eq!(p.len(), PRSTATUS_SIZE);
        // rip is user_regs_struct's 17th register.
        assert_eq!(&p[PRSTATUS_REGS + 16 * 8..][..8], &r.rip.to_le_bytes());
    }
}
