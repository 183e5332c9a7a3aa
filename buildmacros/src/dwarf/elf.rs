//! Loading DWARF sections out of an ELF object with its relocations applied.
//!
//! In a relocatable object (`.o`, `.ko`) every cross-section reference inside the debug
//! sections (string offsets, abbreviation offsets, line-table offsets, variable addresses)
//! is 0 in the section bytes and the real value sits in a `.rela.debug_*` entry. We patch
//! the absolute relocations into owned copies of the sections once, which makes every later
//! read a plain slice read (what gimli's `RelocateReader` would do per read), and we remember
//! for `.debug_info` and `.debug_addr` which section each address relocation points into,
//! so a variable's `DW_OP_addr` can be tied back to (section, offset).

use super::DwarfError;
use object::{Object, ObjectSection, ObjectSymbol, RelocationKind, RelocationTarget, SectionIndex};
use std::collections::HashMap;

/// An address relocation's resolved target: the section the symbol lives in and the
/// offset within it (symbol value plus addend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddrTarget {
    pub section: SectionIndex,
    pub offset: u64,
}

/// The debug sections of one object, relocated, plus address-relocation targets.
pub(crate) struct Sections {
    pub little_endian: bool,
    pub sections: gimli::DwarfSections<Vec<u8>>,
    /// `.debug_info` offset of a relocated address field → where it points.
    pub info_addrs: HashMap<u64, AddrTarget>,
    /// `.debug_addr` offset of a relocated address field → where it points.
    pub addr_addrs: HashMap<u64, AddrTarget>,
}

/// Reads and relocates the DWARF sections of an ELF file.
pub(crate) fn load(data: &[u8]) -> Result<Sections, DwarfError> {
    let file = object::File::parse(data)?;
    let has_info = file
        .section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0);
    if !has_info {
        return Err(DwarfError::NoDebugInfo {
            path_hint: String::new(),
        });
    }
    let mut info_addrs = HashMap::new();
    let mut addr_addrs = HashMap::new();
    let mut failure: Option<DwarfError> = None;
    let sections =
        gimli::DwarfSections::load(|id: gimli::SectionId| -> Result<Vec<u8>, DwarfError> {
            let Some(section) = file.section_by_name(id.name()) else {
                return Ok(Vec::new());
            };
            let mut bytes = section.uncompressed_data()?.into_owned();
            let targets = match id {
                gimli::SectionId::DebugInfo => Some(&mut info_addrs),
                gimli::SectionId::DebugAddr => Some(&mut addr_addrs),
                _ => None,
            };
            if let Err(e) = relocate(&file, &section, &mut bytes, targets) {
                failure.get_or_insert(e);
            }
            Ok(bytes)
        })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Sections {
        little_endian: file.is_little_endian(),
        sections,
        info_addrs,
        addr_addrs,
    })
}

/// Applies the absolute relocations of `section` to `bytes`. Other kinds (PC-relative ones
/// appear only in `.debug_frame`/`.eh_frame`, which we do not read) are left alone.
fn relocate(
    file: &object::File<'_>,
    section: &object::Section<'_, '_>,
    bytes: &mut [u8],
    mut targets: Option<&mut HashMap<u64, AddrTarget>>,
) -> Result<(), DwarfError> {
    let little = file.is_little_endian();
    for (offset, reloc) in section.relocations() {
        if reloc.kind() != RelocationKind::Absolute {
            continue;
        }
        let width = match reloc.size() {
            32 => 4usize,
            64 => 8usize,
            _ => continue,
        };
        let (symbol_value, symbol_section) = match reloc.target() {
            RelocationTarget::Symbol(idx) => {
                let sym = file.symbol_by_index(idx)?;
                (sym.address(), sym.section_index())
            }
            RelocationTarget::Section(idx) => (0, Some(idx)),
            _ => continue,
        };
        let start = usize::try_from(offset).map_err(|_| bad_reloc(offset))?;
        let end = start.checked_add(width).ok_or_else(|| bad_reloc(offset))?;
        let field = bytes.get_mut(start..end).ok_or_else(|| bad_reloc(offset))?;
        let addend = if reloc.has_implicit_addend() {
            read_uint(field, little) as i64
        } else {
            reloc.addend()
        };
        let value = symbol_value.wrapping_add(addend as u64);
        write_uint(field, value, little);
        if let (Some(map), Some(sec)) = (targets.as_deref_mut(), symbol_section) {
            map.insert(
                offset,
                AddrTarget {
                    section: sec,
                    offset: value,
                },
            );
        }
    }
    Ok(())
}

fn bad_reloc(offset: u64) -> DwarfError {
    DwarfError::Relocation(format!(
        "relocation at {offset:#x} lies outside its section"
    ))
}

fn read_uint(field: &[u8], little: bool) -> u64 {
    let mut v = 0u64;
    if little {
        for &b in field.iter().rev() {
            v = (v << 8) | u64::from(b);
        }
    } else {
        for &b in field {
            v = (v << 8) | u64::from(b);
        }
    }
    v
}

fn write_uint(field: &mut [u8], value: u64, little: bool) {
    let n = field.len();
    for (i, b) in field.iter_mut().enumerate() {
        let shift = if little { i } else { n - 1 - i } * 8;
        *b = (value >> shift) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_roundtrip_both_endians() {
        for little in [true, false] {
            let mut f = [0u8; 4];
            write_uint(&mut f, 0x1234_5678, little);
            assert_eq!(read_uint(&f, little), 0x1234_5678);
            let mut f = [0u8; 8];
            write_uint(&mut f, u64::MAX - 5, little);
            assert_eq!(read_uint(&f, little), u64::MAX - 5);
        }
    }
}
