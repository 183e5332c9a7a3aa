//! The kernel matrix's support: Debian kernels fetched and unpacked by
//! `tests/fetch-kernels.sh`, modules built against their own headers, the guest's view
//! (as the fixture's guest printed it) parsed, and `vmark inspect` compared with pahole.

use crate::kbuild::copy_sources;
use crate::kmod::workspace_root;
use crate::pahole::PaholeLayout;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The structs of `tests/fixtures/typezoo` compared with pahole (it declares a variable of
/// each, so its DWARF describes them all); the bitfield-heavy ones first.
pub const TYPEZOO_STRUCTS: &[&str] = &[
    "sock",
    "tcp_sock",
    "tcp_options_received",
    "sk_buff",
    "inet_connection_sock",
    "task_struct",
    "net_device",
    "page",
    "file",
    "inode",
    "dentry",
    "super_block",
    "mm_struct",
    "list_head",
    "timer_list",
    "hrtimer",
    "sk_buff_head",
    "rb_node",
    "request_sock",
    "inet_sock",
    "ipv6_pinfo",
    "tcp_sack_block",
    "minmax",
    "sock_common",
    "inet_request_sock",
    "tcp_request_sock",
    "skb_shared_info",
    "vm_area_struct",
    "address_space",
    "tz_zoo",
    "tz_bits",
];

/// A kernel unpacked into the project's own folder (`target/kernels/RELEASE/`).
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// `uname -r`.
    pub release: String,
    /// The unpacked tree (`boot/`, `lib/modules/`, `usr/src/`).
    pub root: PathBuf,
}

impl Unpacked {
    /// The Kbuild tree of its headers (KDIR).
    pub fn kdir(&self) -> PathBuf {
        self.root
            .join(format!("usr/src/linux-headers-{}", self.release))
    }
}

/// Runs `tests/fetch-kernels.sh SUITE ARCH FLAVOUR` (cached after the first run) and
/// returns the kernel it unpacked.
pub fn fetch(suite: &str, arch: &str, flavour: &str) -> Result<Unpacked, String> {
    let script = workspace_root().join("tests/fetch-kernels.sh");
    let out = Command::new(&script)
        .args([suite, arch, flavour])
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "tests/fetch-kernels.sh {suite} {arch} {flavour} failed ({}):\n{stderr}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let (release, root) = last
        .split_once(' ')
        .ok_or_else(|| format!("tests/fetch-kernels.sh printed {stdout:?}\n{stderr}"))?;
    Ok(Unpacked {
        release: release.to_string(),
        root: PathBuf::from(root),
    })
}

/// Builds the module in `src` with plain Kbuild (`make -C KDIR M=WORK modules`) against
/// `kdir`, in the work directory `work`; returns `work/NAME.ko`.
pub fn build_module_in(
    kdir: &Path,
    src: &Path,
    work: &Path,
    name: &str,
) -> Result<PathBuf, String> {
    copy_sources(src, work)?;
    let out = Command::new("make")
        .arg("-C")
        .arg(kdir)
        .arg(format!("M={}", work.display()))
        .arg("modules")
        .output()
        .map_err(|e| format!("running make: {e}; {}", crate::kbuild::INSTALL_HINT))?;
    let ko = work.join(format!("{name}.ko"));
    if !out.status.success() || !ko.is_file() {
        return Err(format!(
            "building {name}.ko with Kbuild against {} failed ({}):\n{}\n{}",
            kdir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(ko)
}

/// One `/proc/kallsyms` line: address, type letter, name, module (`None` for the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSymbol {
    /// Address.
    pub addr: u64,
    /// `nm`-style type letter.
    pub kind: char,
    /// Symbol name.
    pub name: String,
    /// Module name, for module symbols.
    pub module: Option<String>,
}

/// Parses `/proc/kallsyms` lines (`ADDR T NAME [\tMODULE]`).
pub fn parse_kallsyms(lines: &[&str]) -> Result<Vec<GuestSymbol>, String> {
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f
                .first()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .ok_or_else(|| format!("unreadable kallsyms line {l:?}"))?;
            let kind = f
                .get(1)
                .and_then(|k| k.chars().next())
                .ok_or_else(|| format!("kallsyms line without a type {l:?}"))?;
            let name = f
                .get(2)
                .ok_or_else(|| format!("kallsyms line without a name {l:?}"))?
                .to_string();
            let module = f
                .get(3)
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            Ok(GuestSymbol {
                addr,
                kind,
                name,
                module,
            })
        })
        .collect()
}

/// The guest's `/proc/iomem` `Kernel code/rodata/data/bss` lines: name → (start, end).
pub fn parse_iomem(lines: &[&str]) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let mut out = BTreeMap::new();
    for l in lines {
        let (range, name) = l
            .trim()
            .split_once(" : ")
            .ok_or_else(|| format!("unreadable iomem line {l:?}"))?;
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| format!("unreadable iomem range {l:?}"))?;
        let parse = |x: &str| u64::from_str_radix(x, 16).map_err(|e| format!("{l:?}: {e}"));
        out.insert(name.trim().to_string(), (parse(a)?, parse(b)?));
    }
    Ok(out)
}

/// Parses `0x…` (or bare hex) as `vmark --json` prints addresses.
pub fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// File offset of guest-physical `pa` in an ELF core (ELF64 or ELF32, little-endian):
/// the `PT_LOAD` whose `p_paddr` range holds it. For tests that patch a dump.
pub fn elf_core_offset(elf: &[u8], pa: u64) -> Option<u64> {
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = elf.get(off..off + n)?;
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            v |= u64::from(x) << (8 * i);
        }
        Some(v)
    };
    if elf.get(..4)? != b"\x7fELF" || *elf.get(5)? != 1 {
        return None;
    }
    let is64 = *elf.get(4)? == 2;
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?)
    } else {
        (rd(0x1c, 4)?, rd(0x2a, 2)?, rd(0x2c, 2)?)
    };
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize).ok()?;
        let (ty, offset, paddr, filesz) = if is64 {
            (rd(ph, 4)?, rd(ph + 8, 8)?, rd(ph + 24, 8)?, rd(ph + 32, 8)?)
        } else {
            (rd(ph, 4)?, rd(ph + 4, 4)?, rd(ph + 12, 4)?, rd(ph + 16, 4)?)
        };
        if ty == 1 && pa >= paddr && pa < paddr + filesz {
            return Some(offset + (pa - paddr));
        }
    }
    None
}

/// Every difference between pahole's and vmark's (`inspect --type --json`) view of one
/// struct: size, member count, and per member name, size, nesting depth, offset or
/// bitfield position and width, inline expansion.
pub fn compare_layouts(name: &str, p: &PaholeLayout, v: &serde_json::Value) -> Vec<String> {
    let mut bad = Vec::new();
    if v["size"].as_u64() != Some(p.size) {
        bad.push(format!(
            "struct {name}: size pahole {} vmark {}",
            p.size, v["size"]
        ));
    }
    let vm = v["members"].as_array().cloned().unwrap_or_default();
    if vm.len() != p.members.len() {
        bad.push(format!(
            "struct {name}: {} members (incl. anonymous) in pahole, {} in vmark",
            p.members.len(),
            vm.len()
        ));
    }
    for (i, (pm, m)) in p.members.iter().zip(vm.iter()).enumerate() {
        let vname = m["name"].as_str().map(str::to_string);
        let at = format!(
            "struct {name} member #{i} ({})",
            pm.name.as_deref().unwrap_or("<anonymous>")
        );
        if vname != pm.name {
            bad.push(format!("{at}: name pahole {:?} vmark {vname:?}", pm.name));
            // Later members would all be reported; one misalignment is enough.
            break;
        }
        if m["size"].as_u64() != Some(pm.size) {
            bad.push(format!("{at}: size pahole {} vmark {}", pm.size, m["size"]));
        }
        if m["depth"].as_u64() != Some(pm.depth as u64) {
            bad.push(format!(
                "{at}: depth pahole {} vmark {}",
                pm.depth, m["depth"]
            ));
        }
        match pm.bits {
            Some((_, width)) => {
                if m["bit_offset"].as_u64() != pm.absolute_bit()
                    || m["bit_size"].as_u64() != Some(width)
                {
                    bad.push(format!(
                        "{at}: bitfield pahole bit {:?} width {width}, vmark bit {} width {}",
                        pm.absolute_bit(),
                        m["bit_offset"],
                        m["bit_size"]
                    ));
                }
            }
            None => {
                if m.get("bit_offset").is_some() {
                    bad.push(format!("{at}: vmark says bitfield, pahole does not"));
                }
                if m["offset"].as_u64() != Some(pm.offset) {
                    bad.push(format!(
                        "{at}: offset pahole {} vmark {}",
                        pm.offset, m["offset"]
                    ));
                }
            }
        }
        if pm.container != m.get("expanded").is_some() {
            bad.push(format!(
                "{at}: expanded inline: pahole {} vmark {}",
                pm.container, !pm.container
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_and_iomem_lines_parse() {
        let s = parse_kallsyms(&[
            "ffffffff81000000 T _text",
            "ffffffffc0201000 d __vmark_rec_demo_counter\t[marks_demo]",
        ])
        .unwrap();
        assert_eq!(s[0].addr, 0xffff_ffff_8100_0000);
        assert_eq!(s[0].module, None);
        assert_eq!(s[1].module.as_deref(), Some("marks_demo"));
        assert!(parse_kallsyms(&["zz T x"]).is_err());
        let m = parse_iomem(&["  01000000-01e00bd6 : Kernel code"]).unwrap();
        assert_eq!(m["Kernel code"], (0x0100_0000, 0x01e0_0bd6));
    }

    #[test]
    fn elf_core_offsets_follow_program_headers() {
        // ELF64 header + one PT_LOAD: paddr 0x1000, file offset 0x200, 0x100 bytes.
        let mut e = vec![0u8; 0x200];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        e[0x48..0x50].copy_from_slice(&0x200u64.to_le_bytes());
        e[0x58..0x60].copy_from_slice(&0x1000u64.to_le_bytes());
        e[0x60..0x68].copy_from_slice(&0x100u64.to_le_bytes());
        assert_eq!(elf_core_offset(&e, 0x1010), Some(0x210));
        assert_eq!(elf_core_offset(&e, 0x1100), None);
        assert_eq!(elf_core_offset(&e[..3], 0x1010), None);
    }
}
