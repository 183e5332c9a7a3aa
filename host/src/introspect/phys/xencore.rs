//! `xl dump-core` files (Xen's `xc_domain_dumpcore`, format 0.1; see Xen's
//! `tools/libs/guest/xg_core.h` and `xg_core.c`).
//!
//! The file is an ELF64 object with sections, not segments:
//! - `.note.Xen`: notes; the header note (type 0x2000001) holds magic, vCPU and page counts;
//! - `.xen_prstatus`: one `vcpu_guest_context` per vCPU (`sh_entsize` bytes each);
//! - `.xen_pages`: the guest's pages, one after another;
//! - `.xen_p2m` (PV guests): `{u64 pfn; u64 gmfn}` per page, in `.xen_pages` order;
//! - `.xen_pfn` (HVM guests): `u64 pfn` per page.
//!
//! Pages are addressed by PFN. For PV guests the (pfn, mfn) pairs also give the M2P used
//! to follow the guest's page tables, which hold machine frames.

use super::mapped::FileBytes;
use super::segments::{Segment, SegmentMap};
use super::{FrameKind, MemError, PhysicalMemory, Region, VcpuState, PAGE_SIZE};
use crate::introspect::m2p::{MachineToPhys, P2mTable, PhysToMachine};
use object::elf::FileHeader64;
use object::read::elf::{FileHeader, SectionHeader};
use object::read::ReadCache;
use object::Endianness;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Section names (xg_core.h).
pub const SEC_PAGES: &[u8] = b".xen_pages";
/// PV pfn/mfn pairs.
pub const SEC_P2M: &[u8] = b".xen_p2m";
/// HVM pfn list.
pub const SEC_PFN: &[u8] = b".xen_pfn";
/// vCPU contexts.
pub const SEC_PRSTATUS: &[u8] = b".xen_prstatus";

/// Most pages accepted (64 TiB guest): bounds the index built from the file.
const MAX_PAGES: u64 = 1 << 34;

/// Offsets in the x86-64 `vcpu_guest_context` (xen/include/public/arch-x86/xen.h):
/// 512-byte FPU area, `flags`, `cpu_user_regs` (200 bytes), 256 16-byte `trap_info`,
/// `ldt_base`, `ldt_ents`, `gdt_frames[16]`, `gdt_ents`, `kernel_ss`, `kernel_sp`,
/// then `ctrlreg[8]`.
mod ctx64 {
    pub const USER_REGS: usize = 512 + 8;
    pub const RIP: usize = USER_REGS + 16 * 8;
    pub const RSP: usize = RIP + 3 * 8;
    pub const CTRLREG: usize = USER_REGS + 200 + 256 * 16 + 21 * 8;
    pub const MIN_SIZE: usize = CTRLREG + 8 * 8;
}

/// An `xl dump-core` file.
pub struct XenCore {
    file: FileBytes,
    map: SegmentMap,
    p2m: Option<Arc<P2mTable>>,
    vcpus: Vec<VcpuState>,
}

impl std::fmt::Debug for XenCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenCore")
            .field("segments", &self.map.segments().len())
            .field("pv", &self.p2m.is_some())
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

fn fmt_err(path: &Path, what: impl std::fmt::Display) -> MemError {
    MemError::Format(format!("{}: {what}", path.display()))
}

impl XenCore {
    /// Opens and indexes a dump-core file (reads its headers, the pfn table and contexts).
    pub fn open(path: &Path) -> Result<Self, MemError> {
        let file = File::open(path).map_err(|e| fmt_err(path, e))?;
        let file_len = file.metadata().map_err(|e| fmt_err(path, e))?.len();
        let cache = ReadCache::new(file.try_clone().map_err(|e| fmt_err(path, e))?);
        let data = &cache;
        let header = FileHeader64::<Endianness>::parse(data).map_err(|e| fmt_err(path, e))?;
        let endian = header.endian().map_err(|e| fmt_err(path, e))?;
        let sections = header
            .sections(endian, data)
            .map_err(|e| fmt_err(path, e))?;
        let (_, pages) = sections
            .section_by_name(endian, SEC_PAGES)
            .ok_or_else(|| fmt_err(path, "no .xen_pages section: not an xl dump-core file"))?;
        let pages_off = pages.sh_offset(endian);
        let nr_pages = (pages.sh_size(endian) / PAGE_SIZE).min(MAX_PAGES);
        // The pages must lie in the file: this also keeps every page's file offset
        // (`pages_off + i * PAGE_SIZE`, i < nr_pages) from wrapping.
        if pages_off
            .checked_add(nr_pages * PAGE_SIZE)
            .is_none_or(|end| end > file_len)
        {
            return Err(fmt_err(path, ".xen_pages lies outside the file"));
        }

        let table = |name: &[u8]| -> Result<Option<Vec<u8>>, MemError> {
            match sections.section_by_name(endian, name) {
                None => Ok(None),
                Some((_, sh)) => {
                    if sh.sh_size(endian) > MAX_PAGES * 16 {
                        return Err(fmt_err(path, "pfn table too large"));
                    }
                    sh.data(endian, data)
                        .map(|d| Some(d.to_vec()))
                        .map_err(|e| fmt_err(path, e))
                }
            }
        };
        let pfns: Vec<u64>;
        let mut p2m = None;
        if let Some(raw) = table(SEC_P2M)? {
            let pairs: Vec<(u64, u64)> = raw
                .chunks_exact(16)
                .take(nr_pages as usize)
                .map(|c| {
                    let pfn = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                    let mfn = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
                    (pfn, mfn)
                })
                .collect();
            pfns = pairs.iter().map(|p| p.0).collect();
            p2m = Some(Arc::new(P2mTable::from_pairs(pairs)));
        } else if let Some(raw) = table(SEC_PFN)? {
            pfns = raw
                .chunks_exact(8)
                .take(nr_pages as usize)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
        } else {
            return Err(fmt_err(path, "neither .xen_p2m nor .xen_pfn present"));
        }
        // Each valid pfn gets one page; duplicate pfns keep their first page.
        let mut seen = std::collections::HashSet::new();
        let segments: Vec<Segment> = pfns
            .iter()
            .enumerate()
            .filter(|(_, &pfn)| pfn != u64::MAX && pfn < (u64::MAX / PAGE_SIZE) && seen.insert(pfn))
            .map(|(i, &pfn)| Segment {
                paddr: pfn * PAGE_SIZE,
                len: PAGE_SIZE,
                file_offset: pages_off + i as u64 * PAGE_SIZE,
            })
            .collect();
        let map = SegmentMap::new(segments, file_len)?;

        let mut vcpus = Vec::new();
        if let Some((_, sh)) = sections.section_by_name(endian, SEC_PRSTATUS) {
            let entsize = sh.sh_entsize(endian) as usize;
            if let Ok(raw) = sh.data(endian, data) {
                if entsize >= ctx64::MIN_SIZE {
                    for ctx in raw.chunks_exact(entsize).take(4096) {
                        vcpus.push(parse_ctx64(ctx));
                    }
                }
            }
        }
        Ok(XenCore {
            file: FileBytes::new(file, file_len),
            map,
            p2m,
            vcpus,
        })
    }

    /// Whether this is a PV guest's dump (page tables hold MFNs).
    pub fn is_pv(&self) -> bool {
        self.p2m.is_some()
    }
}

fn parse_ctx64(c: &[u8]) -> VcpuState {
    let at = |o: usize| {
        c.get(o..o + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    VcpuState {
        rip: at(ctx64::RIP),
        rsp: at(ctx64::RSP),
        cr0: at(ctx64::CTRLREG),
        cr3: at(ctx64::CTRLREG + 3 * 8),
        cr4: at(ctx64::CTRLREG + 4 * 8),
        efer: 0,
    }
}

impl PhysicalMemory for XenCore {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.map.read(&self.file, paddr, buf)
    }
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        self.map.with_bytes(&self.file, paddr, len, f)
    }
    fn max_address(&self) -> u64 {
        self.map.max_address()
    }
    fn regions(&self) -> Vec<Region> {
        self.map.regions()
    }
    fn frame_kind(&self) -> FrameKind {
        if self.p2m.is_some() {
            FrameKind::XenPv
        } else {
            FrameKind::Physical
        }
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        self.p2m.clone().map(|p| p as Arc<dyn MachineToPhys>)
    }
    fn phys_to_machine(&self) -> Option<Arc<dyn PhysToMachine>> {
        self.p2m.clone().map(|p| p as Arc<dyn PhysToMachine>)
    }
    fn vcpus(&self) -> Vec<VcpuState> {
        self.vcpus.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::paging::PagingMode;
    use crate::introspect::vmem::Translator;

    /// Writes a minimal dump-core file: ELF64 header, section headers, .xen_prstatus,
    /// .xen_pages, and .xen_p2m or .xen_pfn, as xc_domain_dumpcore lays them out.
    fn write_core(path: &Path, pages: &[[u8; 4096]], table: &[u8], pv: bool, cr3: u64) {
        let shstr = b"\0.shstrtab\0.xen_prstatus\0.xen_pages\0.xen_p2m\0.xen_pfn\0";
        let name = |s: &[u8]| shstr.windows(s.len()).position(|w| w == s).unwrap() as u32;
        let ctx_size = 5168usize;
        let mut ctx = vec![0u8; ctx_size];
        ctx[ctx64::CTRLREG + 24..ctx64::CTRLREG + 32].copy_from_slice(&cr3.to_le_bytes());
        let nsec = 5u64;
        let prstatus_off = 64 + nsec * 64;
        let pages_off = (prstatus_off + ctx_size as u64).next_multiple_of(4096);
        let table_off = pages_off + pages.len() as u64 * 4096;
        let shstr_off = table_off + table.len() as u64;
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[40..48].copy_from_slice(&64u64.to_le_bytes()); // e_shoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        f[60..62].copy_from_slice(&(nsec as u16).to_le_bytes());
        f[62..64].copy_from_slice(&1u16.to_le_bytes()); // e_shstrndx
        let sh = |f: &mut Vec<u8>, name: u32, ty: u32, off: u64, size: u64, entsize: u64| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&ty.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h[56..64].copy_from_slice(&entsize.to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(&mut f, 0, 0, 0, 0, 0);
        sh(
            &mut f,
            name(b".shstrtab"),
            3,
            shstr_off,
            shstr.len() as u64,
            0,
        );
        sh(
            &mut f,
            name(b".xen_prstatus"),
            1,
            prstatus_off,
            ctx_size as u64,
            ctx_size as u64,
        );
        sh(
            &mut f,
            name(b".xen_pages"),
            1,
            pages_off,
            pages.len() as u64 * 4096,
            4096,
        );
        let tname = if pv {
            name(b".xen_p2m")
        } else {
            name(b".xen_pfn")
        };
        sh(
            &mut f,
            tname,
            1,
            table_off,
            table.len() as u64,
            if pv { 16 } else { 8 },
        );
        f.extend_from_slice(&ctx);
        f.resize(pages_off as usize, 0);
        for p in pages {
            f.extend_from_slice(p);
        }
        f.extend_from_slice(table);
        f.extend_from_slice(shstr);
        std::fs::write(path, f).unwrap();
    }

    #[test]
    fn pv_dump_core_reads_by_pfn_and_walks_machine_frames() {
        // Three pages stored in the order pfn 7, 2, 5 with mfns 0x107, 0x102, 0x105.
        // pfn 2 holds the PML4, pfn 5 the PDPT... a 4-level walk for va 0 ending at pfn 7.
        let mut pages = [[0u8; 4096]; 4];
        let e = |mfn: u64| (mfn << 12 | 1).to_le_bytes();
        pages[1][..8].copy_from_slice(&e(0x105)); // pfn 2: PML4[0] -> mfn 0x105 (pfn 5)
        pages[2][..8].copy_from_slice(&e(0x10a)); // pfn 5: PDPT[0] -> mfn 0x10a (pfn 10)
        pages[3][..8].copy_from_slice(&e(0x10b)); // pfn 10: PD[0] -> mfn 0x10b (pfn 11)
        pages[0][..8].copy_from_slice(&0xfeed_f00d_u64.to_le_bytes()); // pfn 7: data
        let mut pt = [0u8; 4096];
        pt[..8].copy_from_slice(&e(0x107)); // pfn 11: PT[0] -> mfn 0x107 (pfn 7)
        let pages = [pages[0], pages[1], pages[2], pages[3], pt];
        let pairs = [
            (7u64, 0x107u64),
            (2, 0x102),
            (5, 0x105),
            (10, 0x10a),
            (11, 0x10b),
        ];
        let table: Vec<u8> = pairs
            .iter()
            .flat_map(|(p, m)| p.to_le_bytes().into_iter().chain(m.to_le_bytes()))
            .collect();
        let path = std::env::temp_dir().join(format!("vmark-xencore-{}", std::process::id()));
        write_core(&path, &pages, &table, true, 0x102 << 12);
        let core = XenCore::open(&path).unwrap();
        assert!(core.is_pv());
        assert_eq!(core.frame_kind(), FrameKind::XenPv);
        let mut b = [0u8; 8];
        core.read(7 * 4096, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0xfeed_f00d);
        assert!(core.read(3 * 4096, &mut b).is_err());
        let cr3 = core.vcpus()[0].cr3;
        assert_eq!(cr3, 0x102 << 12);
        let t = Translator::new(Arc::new(core), PagingMode::Long4);
        assert_eq!(t.read_u64(cr3, 0).unwrap(), 0xfeed_f00d);
        assert_eq!(t.translate(cr3, 0x10).unwrap(), 7 * 4096 + 0x10);

        // HVM: .xen_pfn lists pfns only.
        let pfns: Vec<u8> = [9u64, 3].iter().flat_map(|p| p.to_le_bytes()).collect();
        write_core(&path, &pages[..2], &pfns, false, 0);
        let core = XenCore::open(&path).unwrap();
        assert!(!core.is_pv());
        core.read(9 * 4096, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0xfeed_f00d);
        assert_eq!(core.regions().len(), 2);
        std::fs::remove_file(&path).unwrap();
    }
}
