//! Mark discovery: the `VMARK()` records of a relocatable ELF object (`.o` or `.ko`).
//!
//! `vmark.h` emits, per mark, a 64-byte `struct vmark_record` named `__vmark_rec_<var>` into
//! the section `.vmark.records`. In an unloaded object the record's `addr` and `name`
//! fields are still zero: their values are in the relocations of `.rela.vmark.records`
//! (`R_X86_64_64` against a section symbol plus addend, or against a named symbol). A
//! 32-bit (i386) module has `.rel.vmark.records` instead: `R_386_32` relocations of the
//! fields' low halves, the addend in the section bytes, and high halves that stay zero
//! (`struct vmark_record` in `vmark_abi.h`). This module reads those relocations to find
//! each mark's variable (as ELF section + offset, which is how the DWARF locates it too)
//! and its name string. Feature uses
//! (`VMARK_WRITE_BEGIN`, `VMARK_TRIGGER`) are ELF notes in a non-allocated section and
//! become [`MarkFlags`].
//!
//! Everything read from the file is bounds-checked; malformed input is a [`MarkError`].

use object::read::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use object::{
    Architecture, BinaryFormat, Endianness, ObjectKind, RelocationKind, SectionIndex, SymbolKind,
    SymbolSection,
};
use std::collections::{BTreeMap, HashMap};
use vmark_proto::abi::{VMARK_ABI_VERSION, VMARK_RECORD_MAGIC};
use vmark_proto::MarkFlags;

/// Section holding the records (`VMARK_RECORD_SECTION`).
pub const RECORD_SECTION: &str = ".vmark.records";
/// Prefix of a record's symbol (`VMARK_RECORD_PREFIX`).
pub const RECORD_PREFIX: &str = "__vmark_rec_";
/// Section of the feature-use notes (`VMARK_USES_SECTION` in `vmark.h`).
pub const USES_SECTION: &str = ".note.vmark.uses";
/// Earlier name of the uses section (plain NUL-terminated strings), still accepted.
pub const LEGACY_USES_SECTION: &str = ".vmark.uses";
/// `sizeof(struct vmark_record)`.
pub const RECORD_SIZE: u64 = 64;
/// Offsets of the relocated fields in a record.
const ADDR_FIELD: u64 = 8;
const SIZE_FIELD: u64 = 16;
const NAME_FIELD: u64 = 24;
/// Longest mark name read (the manifest refuses longer ones anyway).
const MAX_NAME: usize = 256;
/// Owner and type of a use note (`VMARK_NOTE_USE`).
const NOTE_OWNER: &[u8] = b"vmark";
const NOTE_TYPE_USE: u32 = 1;

/// Why the marks of an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// Not an ELF file `object` can parse.
    #[error("cannot parse the ELF object: {0}")]
    Object(#[from] object::Error),
    /// An ELF file, but not a little-endian relocatable object of a supported machine.
    #[error("not a little-endian x86-64 or i386 relocatable ELF object (.o or .ko): {0}")]
    NotRelocatable(String),
    /// A `__vmark_rec_*` symbol that is not a whole record in `.vmark.records`.
    #[error("record {symbol}: {detail}")]
    BadRecord {
        /// The record's symbol.
        symbol: String,
        /// What is wrong.
        detail: String,
    },
    /// A record field that should be relocated is not, or its relocation is unusable.
    #[error("record {symbol}: field `{field}`: {detail}")]
    BadRelocation {
        /// The record's symbol.
        symbol: String,
        /// `addr` or `name`.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Two records carry the same mark name.
    #[error("two marks are named {0:?} (names must be unique within a module)")]
    DuplicateName(String),
}

/// Where a mark's variable lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarLocation {
    /// Defined in this object: ELF section and byte offset in it.
    Defined {
        /// The section.
        section: SectionIndex,
        /// Byte offset within the section.
        offset: u64,
    },
    /// Defined elsewhere (the kernel image or another object): only its name is known.
    External {
        /// The undefined symbol the record refers to.
        symbol: String,
    },
}

/// One mark found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundMark {
    /// The mark's name (the string of `VMARK_NAMED`, or the variable's name).
    pub name: String,
    /// The record's symbol suffix, i.e. the variable as written in `VMARK(var)`.
    pub var: String,
    /// The variable's ELF symbol: a named object symbol at its location if there is one,
    /// else `var`.
    pub symbol: String,
    /// The variable's location.
    pub location: VarLocation,
    /// `sizeof(var)` as the compiler stored it in the record.
    pub size: u64,
    /// Offset of the record in `.vmark.records` (marks are listed in this order).
    pub record_offset: u64,
    /// Flags from the uses notes.
    pub flags: MarkFlags,
}

/// Finds every mark of a relocatable ELF object, in record order.
pub fn find_marks(data: &[u8]) -> Result<Vec<FoundMark>, MarkError> {
    let file = object::File::parse(data)?;
    find_marks_in(&file)
}

/// [`find_marks`] on an already parsed object.
pub fn find_marks_in(file: &object::File<'_>) -> Result<Vec<FoundMark>, MarkError> {
    let address_size = check_kind(file)?;
    let Some(records) = file.section_by_name(RECORD_SECTION) else {
        return Ok(Vec::new());
    };
    let rec_index = records.index();
    let rec_data = records.data()?;
    let relocs: HashMap<u64, object::Relocation> = records.relocations().collect();
    let uses = read_uses(file)?;

    let mut by_offset: BTreeMap<u64, FoundMark> = BTreeMap::new();
    for sym in file.symbols() {
        let Ok(sym_name) = sym.name() else { continue };
        let Some(var) = sym_name.strip_prefix(RECORD_PREFIX) else {
            continue;
        };
        if sym.section_index() != Some(rec_index) {
            // A VMARK_EXTERN() reference to a record of another object: not a mark here.
            continue;
        }
        let bad = |detail: String| MarkError::BadRecord {
            symbol: sym_name.to_string(),
            detail,
        };
        let off = sym.address();
        let rec = off
            .checked_add(RECORD_SIZE)
            .and_then(|end| rec_data.get(usize::try_from(off).ok()?..usize::try_from(end).ok()?))
            .ok_or_else(|| {
                bad(format!(
                    "offset {off:#x} is not a whole record in the section"
                ))
            })?;
        if off % RECORD_SIZE != 0 {
            return Err(bad(format!("offset {off:#x} is not 64-byte aligned")));
        }
        let magic = u32::from_le_bytes(rec[0..4].try_into().expect("4 bytes"));
        let abi = u16::from_le_bytes(rec[4..6].try_into().expect("2 bytes"));
        if magic != VMARK_RECORD_MAGIC {
            return Err(bad(format!("bad magic {magic:#x}")));
        }
        if u32::from(abi) != VMARK_ABI_VERSION {
            return Err(bad(format!(
                "ABI version {abi}, this vmark-build writes {VMARK_ABI_VERSION}: rebuild with a matching vmark.h"
            )));
        }
        let size = u64::from_le_bytes(
            rec[SIZE_FIELD as usize..SIZE_FIELD as usize + 8]
                .try_into()
                .expect("8 bytes"),
        );

        let slots = Slots {
            file,
            relocs: &relocs,
            section: rec_data,
            address_size,
            symbol: sym_name,
        };
        let addr = slots.resolve(off + ADDR_FIELD, "addr")?;
        let name_at = slots.resolve(off + NAME_FIELD, "name")?;
        let name = match name_at {
            VarLocation::Defined { section, offset } => read_c_string(file, section, offset)
                .map_err(|detail| MarkError::BadRelocation {
                    symbol: sym_name.to_string(),
                    field: "name",
                    detail,
                })?,
            VarLocation::External { symbol } => {
                return Err(MarkError::BadRelocation {
                    symbol: sym_name.to_string(),
                    field: "name",
                    detail: format!("refers to undefined symbol {symbol}, not a string"),
                })
            }
        };
        let symbol = match &addr {
            VarLocation::Defined { section, offset } => {
                symbol_at(file, *section, *offset).unwrap_or_else(|| var.to_string())
            }
            VarLocation::External { symbol } => symbol.clone(),
        };
        let mut flags = 0;
        if uses.seq.contains(var) {
            flags |= MarkFlags::SEQ;
        }
        if uses.trigger.contains(var) {
            flags |= MarkFlags::TRIGGER;
        }
        by_offset.insert(
            off,
            FoundMark {
                name,
                var: var.to_string(),
                symbol,
                location: addr,
                size,
                record_offset: off,
                flags: MarkFlags(flags),
            },
        );
    }

    let marks: Vec<FoundMark> = by_offset.into_values().collect();
    let mut seen = std::collections::HashSet::new();
    for m in &marks {
        if !seen.insert(m.name.as_str()) {
            return Err(MarkError::DuplicateName(m.name.clone()));
        }
    }
    Ok(marks)
}

/// Checks that `file` is an object whose records this module reads; returns the size in
/// bytes of the guest's addresses (8 for x86-64 and other 64-bit ELF, 4 for i386).
fn check_kind(file: &object::File<'_>) -> Result<u8, MarkError> {
    if file.format() != BinaryFormat::Elf {
        return Err(MarkError::NotRelocatable(format!("{:?}", file.format())));
    }
    if file.endianness() != Endianness::Little {
        return Err(MarkError::NotRelocatable("big-endian ELF".to_string()));
    }
    let address_size = if file.is_64() {
        8
    } else if file.architecture() == Architecture::I386 {
        4
    } else {
        return Err(MarkError::NotRelocatable(format!(
            "32-bit ELF for {:?} (of 32-bit machines only i386 is supported)",
            file.architecture()
        )));
    };
    if file.kind() != ObjectKind::Relocatable {
        return Err(MarkError::NotRelocatable(format!(
            "{:?} object (build-time marks need the module's .o/.ko)",
            file.kind()
        )));
    }
    Ok(address_size)
}

/// What resolving one record's address slots needs.
struct Slots<'a, 'data, 'file> {
    file: &'file object::File<'data>,
    relocs: &'a HashMap<u64, object::Relocation>,
    /// The bytes of `.vmark.records` (where REL relocations keep their addends).
    section: &'a [u8],
    /// Bytes the relocation fills: 8, or 4 in an i386 object.
    address_size: u8,
    /// The record's symbol.
    symbol: &'a str,
}

impl Slots<'_, '_, '_> {
    /// The target of the absolute relocation of the address slot at `at` (a 64-bit slot:
    /// all of it, or the low half with a zero high half in a 32-bit object).
    fn resolve(&self, at: u64, field: &'static str) -> Result<VarLocation, MarkError> {
        let bad = |detail: String| MarkError::BadRelocation {
            symbol: self.symbol.to_string(),
            field,
            detail,
        };
        let width = u64::from(self.address_size);
        let rel = self
            .relocs
            .get(&at)
            .ok_or_else(|| bad("no relocation (the record was not made by VMARK())".into()))?;
        if rel.kind() != RelocationKind::Absolute || u64::from(rel.size()) != 8 * width {
            return Err(bad(format!(
                "unexpected relocation {:?} of {} bits (expected absolute {}-bit)",
                rel.flags(),
                rel.size(),
                8 * width
            )));
        }
        let addend = if rel.has_implicit_addend() {
            // REL (i386): the addend is the slot's initial value, a signed word.
            let raw = self
                .bytes(at, width)
                .ok_or_else(|| bad(format!("slot at {at:#x} beyond the section")))?;
            match *raw {
                [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                _ => return Err(bad(format!("{width}-byte address slot"))),
            }
        } else {
            rel.addend()
        };
        if width < 8 {
            // The high half of a 32-bit guest's slot: zero, and nothing relocates it.
            let high = at + width;
            let zero = self
                .bytes(high, 8 - width)
                .is_some_and(|b| b.iter().all(|&x| x == 0));
            if !zero || self.relocs.contains_key(&high) {
                return Err(bad(
                    "the high half of the 64-bit slot is not zero or is relocated (a record made by an older vmark.h? rebuild against this one)".to_string(),
                ));
            }
        }
        let RelocationTarget::Symbol(index) = rel.target() else {
            return Err(bad(format!("unsupported target {:?}", rel.target())));
        };
        let target = self
            .file
            .symbol_by_index(index)
            .map_err(|e| bad(format!("symbol {}: {e}", index.0)))?;
        match target.section() {
            SymbolSection::Section(section) => {
                let offset = target
                    .address()
                    .checked_add_signed(addend)
                    .ok_or_else(|| bad(format!("addend {addend} out of range")))?;
                Ok(VarLocation::Defined { section, offset })
            }
            SymbolSection::Undefined if addend == 0 => Ok(VarLocation::External {
                symbol: target
                    .name()
                    .map_err(|e| bad(format!("symbol name: {e}")))?
                    .to_string(),
            }),
            other => Err(bad(format!(
                "symbol {:?} in {other:?} with addend {addend} is not a variable",
                target.name().unwrap_or("?"),
            ))),
        }
    }

    /// `len` bytes of the records section from `at`.
    fn bytes(&self, at: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.section.get(start..end)
    }
}

/// The NUL-terminated string at `offset` in `section`, at most [`MAX_NAME`] bytes, UTF-8.
fn read_c_string(
    file: &object::File<'_>,
    section: SectionIndex,
    offset: u64,
) -> Result<String, String> {
    let sec = file
        .section_by_index(section)
        .map_err(|e| format!("section {}: {e}", section.0))?;
    let data = sec.data().map_err(|e| e.to_string())?;
    let start = usize::try_from(offset)
        .ok()
        .filter(|&o| o < data.len())
        .ok_or_else(|| format!("offset {offset:#x} beyond section {:?}", sec.name()))?;
    let tail = &data[start..data.len().min(start + MAX_NAME + 1)];
    let end = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("no NUL within {MAX_NAME} bytes"))?;
    let s = std::str::from_utf8(&tail[..end]).map_err(|_| "name is not UTF-8".to_string())?;
    if s.is_empty() {
        return Err("empty name".into());
    }
    Ok(s.to_string())
}

/// The best symbol naming (section, offset): a named data object, else any named
/// non-section symbol.
pub(crate) fn symbol_at(
    file: &object::File<'_>,
    section: SectionIndex,
    offset: u64,
) -> Option<String> {
    let mut fallback = None;
    for s in file.symbols() {
        if s.section_index() != Some(section) || s.address() != offset {
            continue;
        }
        if matches!(s.kind(), SymbolKind::Section | SymbolKind::File) {
            continue;
        }
        let Ok(name) = s.name() else { continue };
        if name.is_empty() || name.starts_with(RECORD_PREFIX) {
            continue;
        }
        if s.kind() == SymbolKind::Data {
            return Some(name.to_string());
        }
        fallback.get_or_insert_with(|| name.to_string());
    }
    fallback
}

#[derive(Default)]
struct Uses {
    seq: std::collections::HashSet<String>,
    trigger: std::collections::HashSet<String>,
}

impl Uses {
    fn add(&mut self, entry: &[u8]) {
        let Ok(s) = std::str::from_utf8(entry) else {
            return;
        };
        // Unknown kinds are ignored, so an older vmark-build reads a newer vmark.h.
        match s.split_once(' ') {
            Some(("seq", var)) => {
                self.seq.insert(var.trim().to_string());
            }
            Some(("trigger", var)) => {
                self.trigger.insert(var.trim().to_string());
            }
            _ => {}
        }
    }
}

/// Reads the feature-use notes (and the legacy string list, if present).
fn read_uses(file: &object::File<'_>) -> Result<Uses, MarkError> {
    let mut uses = Uses::default();
    for sec in file.sections() {
        let Ok(name) = sec.name() else { continue };
        if name == USES_SECTION {
            parse_notes(sec.data()?, &mut uses);
        } else if name == LEGACY_USES_SECTION {
            for entry in sec.data()?.split(|&b| b == 0) {
                uses.add(entry);
            }
        }
    }
    Ok(uses)
}

/// Walks ELF notes (4-byte aligned namesz, descsz, type, name, desc); stops at the first
/// malformed one rather than failing, since flags are advisory.
fn parse_notes(data: &[u8], uses: &mut Uses) {
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    let mut pos = 0usize;
    while let Some(head) = data.get(pos..pos + 12) {
        let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let (namesz, descsz, ty) = (word(0) as usize, word(4) as usize, word(8));
        let Some(name_end) = align4(namesz).and_then(|n| (pos + 12).checked_add(n)) else {
            return;
        };
        let Some(desc_end) = align4(descsz).and_then(|n| name_end.checked_add(n)) else {
            return;
        };
        let (Some(name), Some(desc)) = (
            data.get(pos + 12..pos + 12 + namesz),
            data.get(name_end..name_end + descsz),
        ) else {
            return;
        };
        if name.strip_suffix(&[0]) == Some(NOTE_OWNER) && ty == NOTE_TYPE_USE {
            uses.add(desc.split(|&b| b == 0).next().unwrap_or_default());
        }
        pos = desc_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_parsed_and_bounded() {
        let mut data = Vec::new();
        for desc in [&b"seq a\0"[..], &b"trigger b\0"[..], &b"frob c\0"[..]] {
            data.extend_from_slice(&6u32.to_le_bytes());
            data.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            data.extend_from_slice(&1u32.to_le_bytes());
            data.extend_from_slice(b"vmark\0\0\0");
            data.extend_from_slice(desc);
            while data.len() % 4 != 0 {
                data.push(0);
            }
        }
        let mut uses = Uses::default();
        parse_notes(&data, &mut uses);
        assert!(uses.seq.contains("a") && uses.trigger.contains("b"));
        assert_eq!(uses.seq.len() + uses.trigger.len(), 2);
        // Every truncation and a huge size are harmless.
        for n in 0..data.len() {
            parse_notes(&data[..n], &mut Uses::default());
        }
        let mut huge = data.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        parse_notes(&huge, &mut Uses::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(find_marks(b"").is_err());
        assert!(find_marks(b"\x7fELF garbage").is_err());
    }
}
