//! Manifest assembly: marks (from [`crate::marks`]) + their C types (from [`crate::dwarf`])
//! + the module's identity (`.modinfo`, build id) → a [`Manifest`].
//!
//! **Build id.** If the object has a GNU build-id note (`.note.gnu.build-id`, which Kbuild
//! links into every `.ko`), the manifest's `build_id` is that note's bytes (20 bytes of
//! SHA-1 as `ld --build-id=sha1` computes them). Otherwise (e.g. a bare `.o`) it is the
//! 8-byte little-endian FNV-1a-64 hash of the name and contents of every allocated
//! section and of `.debug_info`, in section order, leaving out `.vmark.manifest` so that
//! embedding does not change the id.

use crate::dwarf::{DebugInfo, DwarfError};
use crate::embed::MANIFEST_SECTION;
use crate::marks::{self, FoundMark, MarkError, VarLocation};
use object::read::{Object, ObjectSection};
use vmark_proto::{Manifest, ManifestError, Mark};

/// Default number of pointer levels the type closure follows from each mark: 1 covers
/// `struct tcp_sock *` → `struct tcp_sock` and everything it embeds by value.
pub const DEFAULT_POINTER_DEPTH: u32 = 1;

/// Options for [`build_manifest`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Pointer levels followed from each mark ([`DEFAULT_POINTER_DEPTH`]).
    pub pointer_depth: u32,
    /// Module name when the object has no `.modinfo` `name=` (a bare `.o`).
    pub fallback_module_name: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            pointer_depth: DEFAULT_POINTER_DEPTH,
            fallback_module_name: None,
        }
    }
}

/// Why a manifest could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The marks could not be read.
    #[error(transparent)]
    Marks(#[from] MarkError),
    /// The object has no DWARF.
    #[error("the object has no DWARF debug info: build the module with debug info (kernel CONFIG_DEBUG_INFO=y, e.g. CONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT=y, or add `ccflags-y += -g` to the module's Kbuild file) and do not strip it before running vmark-build")]
    NoDebugInfo,
    /// The DWARF could not be read or has no answer.
    #[error("debug info: {0}")]
    Dwarf(DwarfError),
    /// The object has no marks: nothing to embed.
    #[error("no marks found (no __vmark_rec_* records in .vmark.records): mark variables with VMARK() from <vmark.h>")]
    NoMarks,
    /// A mark's variable has no DWARF description.
    #[error("mark {mark:?}: variable {symbol} has no DWARF description")]
    NoVariable {
        /// The mark.
        mark: String,
        /// Its symbol.
        symbol: String,
    },
    /// The DWARF size of a variable disagrees with the `sizeof` in its record.
    #[error("mark {mark:?}: DWARF says {dwarf} bytes, the record says sizeof = {record}")]
    SizeMismatch {
        /// The mark.
        mark: String,
        /// Size from DWARF.
        dwarf: u64,
        /// Size from the record.
        record: u64,
    },
    /// The manifest could not be encoded.
    #[error("manifest: {0}")]
    Encode(#[from] ManifestError),
    /// The ELF file could not be read.
    #[error("cannot read the ELF object: {0}")]
    Object(#[from] object::Error),
}

impl From<DwarfError> for BuildError {
    fn from(e: DwarfError) -> Self {
        match e {
            DwarfError::NoDebugInfo { .. } => BuildError::NoDebugInfo,
            e => BuildError::Dwarf(e),
        }
    }
}

/// Builds the manifest of a relocatable object (`.ko` or `.o`) from its bytes.
pub fn build_manifest(data: &[u8], opts: &BuildOptions) -> Result<Manifest, BuildError> {
    let file = object::File::parse(data)?;
    let found = marks::find_marks_in(&file)?;
    if found.is_empty() {
        return Err(BuildError::NoMarks);
    }
    let debug = DebugInfo::parse(data)?;

    let mut roots = Vec::with_capacity(found.len());
    for m in &found {
        let var = lookup(&debug, m).ok_or_else(|| BuildError::NoVariable {
            mark: m.name.clone(),
            symbol: m.symbol.clone(),
        })?;
        // A size DWARF cannot give (flexible array, incomplete type) defers to the record.
        if let Some(dwarf) = var.size {
            if dwarf != m.size {
                return Err(BuildError::SizeMismatch {
                    mark: m.name.clone(),
                    dwarf,
                    record: m.size,
                });
            }
        }
        roots.push(var.ty);
    }
    let (types, ids) = debug.type_closure(&roots, opts.pointer_depth)?;

    let modinfo = ModInfo::read(&file);
    let module = modinfo
        .name
        .or_else(|| opts.fallback_module_name.clone())
        .unwrap_or_default();
    let manifest = Manifest {
        module,
        kernel_release: modinfo.kernel_release.unwrap_or_default(),
        build_id: build_id(&file)?,
        pointer_depth: opts.pointer_depth,
        marks: found
            .into_iter()
            .zip(ids)
            .map(|(m, ty)| Mark {
                name: m.name,
                symbol: m.symbol,
                ty,
                size: m.size,
                flags: m.flags,
            })
            .collect(),
        types,
    };
    Ok(manifest)
}

/// The DWARF variable of a mark: by location, else (external or unusual) by name.
fn lookup(debug: &DebugInfo, m: &FoundMark) -> Option<crate::dwarf::Variable> {
    let by_location = match &m.location {
        VarLocation::Defined { section, offset } => debug.variable_at(*section, *offset),
        VarLocation::External { .. } => None,
    };
    by_location
        .or_else(|| debug.variable_named(&m.symbol))
        .or_else(|| debug.variable_named(&m.var))
}

/// What `.modinfo` says about the module.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`: the module's name as the kernel knows it.
    pub name: Option<String>,
    /// First word of `vermagic=`: the kernel release the module was built for.
    pub kernel_release: Option<String>,
}

impl ModInfo {
    /// Reads `.modinfo` (NUL-separated `key=value` strings); absent fields stay `None`.
    pub fn read(file: &object::File<'_>) -> ModInfo {
        let mut info = ModInfo::default();
        let Some(data) = file.section_by_name(".modinfo").and_then(|s| s.data().ok()) else {
            return info;
        };
        for entry in data.split(|&b| b == 0) {
            let Ok(entry) = std::str::from_utf8(entry) else {
                continue;
            };
            if let Some(v) = entry.strip_prefix("name=") {
                info.name.get_or_insert_with(|| v.to_string());
            } else if let Some(v) = entry.strip_prefix("vermagic=") {
                if let Some(release) = v.split_whitespace().next() {
                    info.kernel_release
                        .get_or_insert_with(|| release.to_string());
                }
            }
        }
        info
    }
}

/// The build id (see the module documentation).
pub fn build_id(file: &object::File<'_>) -> Result<Vec<u8>, BuildError> {
    if let Some(id) = file.build_id()? {
        if !id.is_empty() && id.len() <= 64 {
            return Ok(id.to_vec());
        }
    }
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    };
    for sec in file.sections() {
        let name = sec.name().unwrap_or("");
        let alloc = match sec.flags() {
            object::SectionFlags::Elf { sh_flags } => {
                sh_flags & u64::from(object::elf::SHF_ALLOC) != 0
            }
            _ => false,
        };
        if name == MANIFEST_SECTION || !(alloc || name == ".debug_info") {
            continue;
        }
        feed(name.as_bytes());
        feed(&[0]);
        // NOBITS sections (.bss) contribute their name only.
        if let Ok(data) = sec.data() {
            feed(data);
        }
    }
    Ok(h.to_le_bytes().to_vec())
}
