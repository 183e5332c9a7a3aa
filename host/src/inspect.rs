//! `vmark inspect`: what a built module (`.ko`) or object (`.o`) holds, from its own files.
//!
//! - without `--type`: the marks of its embedded manifest (section `.vmark.manifest`) with
//!   their types, or, for an unmarked file, that it is unmarked and how many structs and
//!   unions its debug info defines;
//! - with `--type NAME`: the layout of a struct or union from the file's DWARF, as pahole
//!   prints it, or with `--json` in the form documented in [`crate::layout`].
//!
//! The file may be hostile: its manifest is decoded under the codec's budgets (and its
//! section refused before decompression if it claims more than a manifest can hold), the
//! types are named and laid out under theirs (see [`vmark_proto::limits`]), and every name
//! printed as text is escaped ([`vmark_proto::text::escape`]); JSON output stays JSON.

use crate::layout::{self, LayoutError};
use object::{Object, ObjectSection};
use std::io::Write;
use std::path::Path;
use vmark_build::dwarf::{DebugInfo, DwarfError};
use vmark_proto::abi::{MANIFEST_HEADER_SIZE, VMARK_MANIFEST_MAX_PAYLOAD};
use vmark_proto::text::escape;

/// The ELF section holding a marked module's manifest.
pub const MANIFEST_SECTION: &str = ".vmark.manifest";

/// Why `inspect` failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not an ELF object.
    #[error("{path}: not an ELF object: {source}")]
    Object {
        /// The file.
        path: String,
        /// The cause.
        source: object::Error,
    },
    /// Debug info missing, malformed or without the requested type.
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
    /// The manifest section is larger than any manifest (before decompression).
    #[error(
        "{path}: the {MANIFEST_SECTION} section claims {size} bytes, more than a manifest can hold"
    )]
    ManifestTooLarge {
        /// The file.
        path: String,
        /// Its (uncompressed) size.
        size: u64,
    },
    /// The embedded manifest cannot be decoded.
    #[error("{path}: embedded manifest is unreadable: {source}")]
    Manifest {
        /// The file.
        path: String,
        /// The cause.
        source: vmark_proto::ManifestError,
    },
    /// The type is not a struct or union.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Options of `vmark inspect`.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// `--type NAME`: show this struct or union's layout.
    pub type_name: Option<String>,
    /// `--json`: machine-readable output.
    pub json: bool,
    /// Pointer levels whose targets are expanded in the type closure (affects nothing in
    /// the printed layout itself, which shows members by value).
    pub pointer_depth: u32,
}

/// Runs `vmark inspect` on `path`, writing to `out`.
pub fn inspect(
    path: &Path,
    opts: &InspectOptions,
    out: &mut dyn Write,
) -> Result<(), InspectError> {
    let shown = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| InspectError::Io {
        path: shown.clone(),
        source,
    })?;
    if let Some(name) = &opts.type_name {
        let di = DebugInfo::parse(&data).map_err(|e| e.with_path(&shown))?;
        let (table, id) = di.aggregate(name, opts.pointer_depth)?;
        let layout = layout::flatten(&table, id)?;
        if opts.json {
            serde_json::to_writer_pretty(&mut *out, &layout.to_json())
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            // `render` escapes the names it prints.
            write!(out, "{}", layout.render(&table))?;
        }
        return Ok(());
    }
    let file = object::File::parse(&*data).map_err(|source| InspectError::Object {
        path: shown.clone(),
        source,
    })?;
    let manifest = match file.section_by_name(MANIFEST_SECTION) {
        Some(s) => {
            // A compressed section announces its size: refuse a bomb before inflating it.
            let claimed = s
                .compressed_file_range()
                .map(|r| r.uncompressed_size)
                .unwrap_or_else(|_| s.size());
            let limit = (MANIFEST_HEADER_SIZE as u64) + u64::from(VMARK_MANIFEST_MAX_PAYLOAD);
            if claimed > limit {
                return Err(InspectError::ManifestTooLarge {
                    path: shown,
                    size: claimed,
                });
            }
            let bytes = s
                .uncompressed_data()
                .map_err(|source| InspectError::Object {
                    path: shown.clone(),
                    source,
                })?;
            Some(
                vmark_proto::decode(&bytes).map_err(|source| InspectError::Manifest {
                    path: shown.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    match manifest {
        Some(m) => {
            if opts.json {
                let marks: Vec<serde_json::Value> = m
                    .marks
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name,
                            "symbol": k.symbol,
                            "type": m.types.type_name(k.ty),
                            "size": k.size,
                            "flags": k.flags.describe(),
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "file": shown,
                    "marked": true,
                    "module": m.module,
                    "kernel_release": m.kernel_release,
                    "build_id": m.build_id_hex(),
                    "pointer_depth": m.pointer_depth,
                    "types": m.types.len(),
                    "marks": marks,
                });
                serde_json::to_writer_pretty(&mut *out, &v).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                let shown = escape(&shown);
                writeln!(
                    out,
                    "{shown}: module {} for {}, build {}, {} mark(s), {} types (pointer depth {})",
                    escape(&m.module),
                    escape(&m.kernel_release),
                    m.build_id_hex(),
                    m.marks.len(),
                    m.types.len(),
                    m.pointer_depth
                )?;
                writeln!(
                    out,
                    "{:<24} {:<32} {:>8} {:<14} symbol",
                    "MARK", "TYPE", "SIZE", "FLAGS"
                )?;
                for k in &m.marks {
                    writeln!(
                        out,
                        "{:<24} {:<32} {:>8} {:<14} {}",
                        escape(&k.name),
                        escape(&m.types.type_name(k.ty)),
                        k.size,
                        k.flags.describe(),
                        escape(&k.symbol)
                    )?;
                }
            }
        }
        None => {
            let di = DebugInfo::parse(&data).map_err(|e| e.with_path(&shown))?;
            let names = di.aggregate_names();
            if opts.json {
                let v = serde_json::json!({
                    "file": shown,
                    "marked": false,
                    "aggregates": names.len(),
                });
                serde_json::to_writer_pretty(&mut *out, &v).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{}: not marked (no {MANIFEST_SECTION} section); its debug info defines {} structs/unions — show one with --type 'struct NAME'",
                    escape(&shown),
                    names.len()
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WriteObject, StandardSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};
    use vmark_proto::{Manifest, Mark, MarkFlags, Type, TypeId, TypeTable};

    /// An ELF object with one section `name` holding `data` (with `sh_flags`).
    fn elf_with_section(data: &[u8], sh_flags: u64) -> Vec<u8> {
        let mut obj = WriteObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0xc3], 1);
        let id = obj.add_section(
            Vec::new(),
            MANIFEST_SECTION.as_bytes().to_vec(),
            SectionKind::Data,
        );
        obj.section_mut(id).flags = object::SectionFlags::Elf { sh_flags };
        obj.append_section_data(id, data, 1);
        obj.write().unwrap()
    }

    fn run(file: &[u8], json: bool) -> Result<String, InspectError> {
        let path = std::env::temp_dir().join(format!(
            "vmark-inspect-{}-{json}-{}.o",
            std::process::id(),
            file.len()
        ));
        std::fs::write(&path, file).unwrap();
        let mut out = Vec::new();
        let opts = InspectOptions {
            json,
            ..Default::default()
        };
        let r = inspect(&path, &opts, &mut out);
        let _ = std::fs::remove_file(&path);
        r.map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_hostile_manifest_is_listed_bounded_and_escaped() {
        // A mark whose type is a function pointer taking itself (naming recursed without
        // end), in a module and mark named with terminal escapes.
        let mut types = TypeTable::new();
        let void = types.push(Type::Void);
        let f = types.push(Type::Function {
            ret: void,
            params: vec![TypeId(2); 100],
            variadic: false,
        });
        let fp = types.push(Type::Pointer { target: f, size: 8 });
        let m = Manifest {
            module: "evil\x1b]0;owned\x07".into(),
            kernel_release: "6.1\r".into(),
            build_id: vec![1],
            pointer_depth: 1,
            marks: vec![Mark {
                name: "cb\x1b[2J".into(),
                symbol: "cb\u{202e}".into(),
                ty: fp,
                size: 8,
                flags: MarkFlags(0),
            }],
            types,
        };
        let file = elf_with_section(&vmark_proto::encode(&m).unwrap(), 0);
        let text = run(&file, false).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && vmark_proto::text::is_unsafe_char(c)),
            "{text:?}"
        );
        assert!(
            text.contains("module evil\\x1b]0;owned\\x07 for 6.1\\r"),
            "{text}"
        );
        assert!(text.contains("cb\\x1b[2J"), "{text}");
        assert!(text.contains("/* ... */"), "{text}");
        assert!(
            text.len() < 4 * vmark_proto::limits::TYPE_NAME_MAX_LEN,
            "{}",
            text.len()
        );
        let json: serde_json::Value = serde_json::from_str(&run(&file, true).unwrap()).unwrap();
        assert_eq!(json["module"], "evil\x1b]0;owned\x07");
        assert_eq!(json["marks"][0]["name"], "cb\x1b[2J");
    }

    #[test]
    fn a_compressed_manifest_bomb_is_refused_before_inflating() {
        // An ELF compression header claiming 1 GiB of manifest.
        let mut chdr = Vec::new();
        chdr.extend(1u32.to_le_bytes()); // ELFCOMPRESS_ZLIB
        chdr.extend(0u32.to_le_bytes());
        chdr.extend((1u64 << 30).to_le_bytes());
        chdr.extend(1u64.to_le_bytes());
        chdr.extend([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        let file = elf_with_section(&chdr, u64::from(object::elf::SHF_COMPRESSED));
        assert!(matches!(
            run(&file, false),
            Err(InspectError::ManifestTooLarge { size, .. }) if size == 1 << 30
        ));
    }
}
