//! Embedding the encoded manifest in a relocatable object, and reading it back.
//!
//! The manifest goes into an allocated, read-only section `.vmark.manifest` (8-byte
//! aligned, header + payload exactly as [`vmark_proto::encode`] produces) with a local
//! `STT_OBJECT` symbol `__vmark_manifest` covering it. The kernel's module loader lays out
//! every `SHF_ALLOC` section not named `.init*` in the module's core (read-only data, as the
//! section is neither writable nor executable), and with `CONFIG_KALLSYMS_ALL=y` keeps data
//! symbols of core sections in the module's kallsyms, where the helper module finds it.
//!
//! The rewrite uses `object`'s ELF [`Builder`]: it reads every section, symbol and
//! relocation, and writes them back with the new section appended after the existing
//! ones, so existing section indices (and everything referring to them) are unchanged.
//! Embedding into an object that already has a manifest replaces its contents and the
//! symbol's size instead of adding a second one.

use object::build::elf::{Builder, SectionData};
use object::build::ByteString;
use object::elf;
use object::read::{Object, ObjectSection, ObjectSymbol};

/// The manifest section (`VMARK_MANIFEST_SECTION`).
pub const MANIFEST_SECTION: &str = ".vmark.manifest";
/// The manifest symbol (`VMARK_MANIFEST_SYMBOL`).
pub const MANIFEST_SYMBOL: &str = "__vmark_manifest";
/// Trailer of a signed module (`MODULE_SIG_STRING`): a rewrite would drop the signature.
const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Why a manifest could not be embedded or read back.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The ELF file could not be read or rewritten.
    #[error("ELF rewrite failed: {0}")]
    Elf(#[from] object::build::Error),
    /// The ELF file could not be parsed.
    #[error("cannot parse the ELF object: {0}")]
    Object(#[from] object::Error),
    /// The module is signed; rewriting it would silently drop the signature.
    #[error("the module is signed: embed the manifest before signing it (sign-file / modules_install sign afterwards)")]
    Signed,
    /// More than one manifest section or symbol.
    #[error("the object has {0} {MANIFEST_SECTION} sections or {MANIFEST_SYMBOL} symbols; expected at most one")]
    Ambiguous(usize),
    /// The embedded manifest could not be decoded.
    #[error("embedded manifest: {0}")]
    Manifest(#[from] vmark_proto::ManifestError),
    /// The manifest section is not what vmark-build writes.
    #[error("{MANIFEST_SECTION} is malformed: {0}")]
    BadSection(String),
}

/// Returns a copy of the relocatable ELF `data` carrying `blob` (an encoded manifest) in
/// [`MANIFEST_SECTION`], replacing any manifest already there.
pub fn embed(data: &[u8], blob: &[u8]) -> Result<Vec<u8>, EmbedError> {
    if data.ends_with(MODULE_SIG_MAGIC) {
        return Err(EmbedError::Signed);
    }
    let mut builder = Builder::read(data)?;

    let existing: Vec<_> = builder
        .sections
        .iter()
        .filter(|s| !s.delete && s.name.as_slice() == MANIFEST_SECTION.as_bytes())
        .map(|s| s.id())
        .collect();
    if existing.len() > 1 {
        return Err(EmbedError::Ambiguous(existing.len()));
    }
    let section_id = match existing.first() {
        Some(&id) => id,
        None => builder.sections.add().id(),
    };
    let section = builder.sections.get_mut(section_id);
    section.name = ByteString::from(MANIFEST_SECTION.as_bytes());
    section.sh_type = elf::SHT_PROGBITS;
    // Allocated so the loader copies it into the module's memory; neither writable nor
    // executable, so it lands in the module's read-only data.
    section.sh_flags = u64::from(elf::SHF_ALLOC);
    section.sh_addr = 0;
    section.sh_addralign = 8;
    section.sh_entsize = 0;
    section.sh_link_section = None;
    section.sh_info = 0;
    section.sh_info_section = None;
    section.data = SectionData::Data(blob.to_vec().into());

    let symbols: Vec<_> = builder
        .symbols
        .iter()
        .filter(|s| !s.delete && s.name.as_slice() == MANIFEST_SYMBOL.as_bytes())
        .map(|s| s.id())
        .collect();
    if symbols.len() > 1 {
        return Err(EmbedError::Ambiguous(symbols.len()));
    }
    let symbol = match symbols.first() {
        Some(&id) => builder.symbols.get_mut(id),
        None => builder.symbols.add(),
    };
    symbol.name = ByteString::from(MANIFEST_SYMBOL.as_bytes());
    symbol.section = Some(section_id);
    symbol.set_st_info(elf::STB_LOCAL, elf::STT_OBJECT);
    symbol.st_other = elf::STV_DEFAULT;
    symbol.st_shndx = 0;
    symbol.st_value = 0;
    symbol.st_size = blob.len() as u64;

    let mut out = Vec::with_capacity(data.len() + blob.len() + 256);
    builder.write(&mut out)?;
    Ok(out)
}

/// The raw embedded manifest (header + payload), or `None` if the object has none.
/// Checks that the symbol, if present, covers exactly the section.
pub fn extract_blob(data: &[u8]) -> Result<Option<Vec<u8>>, EmbedError> {
    let file = object::File::parse(data)?;
    let sections: Vec<_> = file
        .sections()
        .filter(|s| s.name() == Ok(MANIFEST_SECTION))
        .collect();
    let section = match sections.as_slice() {
        [] => return Ok(None),
        [s] => s,
        _ => return Err(EmbedError::Ambiguous(sections.len())),
    };
    if let object::SectionFlags::Elf { sh_flags } = section.flags() {
        if sh_flags & u64::from(elf::SHF_ALLOC) == 0 {
            return Err(EmbedError::BadSection("not SHF_ALLOC".into()));
        }
    }
    let bytes = section.data()?;
    let len = vmark_proto::codec::encoded_len(bytes)?;
    let blob = bytes.get(..len).ok_or_else(|| {
        EmbedError::BadSection(format!(
            "header announces {len} bytes, section has {}",
            bytes.len()
        ))
    })?;
    if let Some(sym) = file.symbols().find(|s| s.name() == Ok(MANIFEST_SYMBOL)) {
        if sym.section_index() != Some(section.index()) || sym.address() != 0 {
            return Err(EmbedError::BadSection(format!(
                "{MANIFEST_SYMBOL} does not point at the start of the section"
            )));
        }
        if sym.size() != bytes.len() as u64 {
            return Err(EmbedError::BadSection(format!(
                "{MANIFEST_SYMBOL} has size {}, the section {} bytes",
                sym.size(),
                bytes.len()
            )));
        }
    } else {
        return Err(EmbedError::BadSection(format!(
            "no {MANIFEST_SYMBOL} symbol"
        )));
    }
    Ok(Some(blob.to_vec()))
}

/// The embedded manifest, decoded and validated, or `None` if the object has none.
pub fn extract(data: &[u8]) -> Result<Option<vmark_proto::Manifest>, EmbedError> {
    match extract_blob(data)? {
        Some(blob) => Ok(Some(vmark_proto::decode(&blob)?)),
        None => Ok(None),
    }
}
