//! Tests on a real QEMU memory dump of a Debian kernel (see [`super::fixture`]).

use super::fixture;
use super::kernel::Kernel;
use super::phys::elfcore::ElfCore;
use super::phys::{PhysicalMemory, PhysicalMemoryExt};
use super::symbols::X86_64_DEFAULT_TEXT;
use std::sync::{Arc, OnceLock};

fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| {
        let core = ElfCore::open(fixture::dump()).expect("open dump");
        let mut k = Kernel::locate(Arc::new(core)).expect("locate kernel");
        k.load_btf().expect("BTF from guest memory");
        k
    })
}

#[test]
fn elf_core_has_segments_and_vcpu_registers() {
    let core = ElfCore::open(fixture::dump()).unwrap();
    assert!(core.segments().len() >= 2);
    assert!(core.max_address() >= 256 << 20);
    let v = core.vcpus();
    assert_eq!(v.len(), 1);
    assert!(
        v[0].cr3 != 0 && v[0].cr3 < core.max_address(),
        "cr3 {:#x}",
        v[0].cr3
    );
    assert!(v[0].cr4 & (1 << 5) != 0, "PAE set in cr4 {:#x}", v[0].cr4);
    // Holes are reported, not zero-filled.
    assert!(core.read(0xa0000, &mut [0u8; 8]).is_err());
    assert!(core.read_u64(0x1000).is_ok());
}

#[test]
fn kallsyms_kaslr_and_page_tables_from_the_dump_alone() {
    let k = kernel();
    let ks = k.kallsyms().unwrap();
    assert!(ks.symbols.len() > 50_000, "{} symbols", ks.symbols.len());
    let b = k.base();
    assert_eq!(b.text_virt, k.symbols().lookup("_text").unwrap());
    assert_eq!(b.text_virt & 0x1f_ffff, 0, "_text is 2 MiB aligned");
    assert_eq!(
        b.kaslr_offset,
        b.text_virt.wrapping_sub(X86_64_DEFAULT_TEXT) as i64
    );
    // The vCPU's CR3 and the located root agree on kernel mappings.
    let core = k.space().translator().memory().clone();
    let cr3 = core.vcpus()[0].cr3;
    let banner = k.symbol("linux_banner").unwrap();
    let t = k.space().translator();
    assert_eq!(
        t.translate(cr3, banner).unwrap(),
        k.space().translate(banner).unwrap()
    );
    let mut text = [0u8; 14];
    k.read(banner, &mut text).unwrap();
    assert_eq!(&text, b"Linux version ");
    // Physical and virtual reads agree.
    let pa = k.space().translate(banner).unwrap();
    let mut p = [0u8; 14];
    core.read(pa, &mut p).unwrap();
    assert_eq!(p, text);
}

#[test]
fn btf_from_guest_memory_lists_processes_and_modules() {
    let k = kernel();
    let btf = k.btf().unwrap();
    assert!(btf.find("task_struct").is_some());
    let procs = k.processes().unwrap();
    assert_eq!(procs[0].pid, 0);
    assert_eq!(procs[0].name, "swapper/0");
    let init = procs.iter().find(|p| p.pid == 1).expect("pid 1");
    // comm of an exec'd busybox applet is "busybox".
    assert_eq!(init.name, "busybox", "{procs:?}");
    assert!(init.dtb.is_some());
    assert!(procs
        .iter()
        .any(|p| p.name == "busybox" && p.pid != 1 && p.parent_pid == Some(1)));
    assert!(procs.iter().any(|p| p.name == "kthreadd" && p.mm == 0));
    let mods = k.modules().unwrap();
    let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
    for m in fixture::MODULES {
        assert!(names.contains(&m), "module {m} in {names:?}");
    }
    for m in &mods {
        assert!(
            m.base >= 0xffff_ffff_c000_0000 && m.size > 0 && m.size < 1 << 24,
            "{m:?}"
        );
        let syms = k.module_symbols(m, &|_| true).unwrap();
        assert!(!syms.is_empty(), "{} has symbols", m.name);
    }
    assert!(k.find_helper_registry().unwrap().is_empty());
}

/// The dump's memory with a process's page directory added: a copy of the vCPU's at a
/// page the dump does not hold, which reads as zeros once the process has "exited".
struct WithProcessTable {
    core: Arc<ElfCore>,
    copy: Vec<u8>,
    at: u64,
    exited: std::sync::atomic::AtomicBool,
}

impl PhysicalMemory for WithProcessTable {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), super::phys::MemError> {
        if paddr & !0xfff == self.at && (paddr & 0xfff) as usize + buf.len() <= 4096 {
            let off = (paddr & 0xfff) as usize;
            match self.exited.load(std::sync::atomic::Ordering::Relaxed) {
                true => buf.fill(0),
                false => buf.copy_from_slice(&self.copy[off..off + buf.len()]),
            }
            return Ok(());
        }
        self.core.read(paddr, buf)
    }
    fn max_address(&self) -> u64 {
        self.core.max_address()
    }
}

#[test]
fn a_kernel_found_through_a_process_page_table_outlives_the_process() {
    use super::paging::PagingMode;
    let core = Arc::new(ElfCore::open(fixture::dump()).unwrap());
    let cr3 = core.vcpus()[0].cr3 & !0xfff;
    let mut copy = vec![0u8; 4096];
    core.read(cr3, &mut copy).unwrap();
    // A hole of the dump (legacy VGA memory) holds the process's table.
    let at = 0xa0000;
    assert!(core.read(at, &mut [0u8; 8]).is_err());
    let mem = Arc::new(WithProcessTable {
        core,
        copy,
        at,
        exited: Default::default(),
    });
    let k = Kernel::locate_with_root(mem.clone(), at, PagingMode::Long4).unwrap();
    let pgd = k.symbol("init_top_pgt").unwrap();
    let pgd_pa = k
        .space()
        .translator()
        .translate_uncached(at, pgd)
        .unwrap()
        .paddr;
    assert_eq!(
        k.space().root(),
        pgd_pa,
        "rooted at init_top_pgt, not the vCPU's CR3"
    );
    mem.exited.store(true, std::sync::atomic::Ordering::Relaxed);
    k.space().translator().flush();
    let banner = k.symbol("linux_banner").unwrap();
    let mut text = [0u8; 14];
    k.read(banner, &mut text).unwrap();
    assert_eq!(&text, b"Linux version ");
    assert!(k.symbol("init_task").is_ok_and(|t| k.read_ptr(t).is_ok()));
}
