//! `vmark inspect`: what a built module (`.ko`) or object (`.o`) holds, from its own files.
//!
//! - without `--type`: the marks of its embedded manifest (section `.vmark.manifest`) with
//!   their types, or, for an unmarked file, that it is unmarked and how many structs and
//!   unions its debug info defines;
//! - with `--type NAME`: the layout of a struct or union from the file's DWARF, as pahole
//!   prints it, or with `--json` in the form documented in [`crate::layout`].

use crate::layout::{self, LayoutError};
use object::{Object, ObjectSection};
use std::io::Write;
use std::path::Path;
use vmark_build::dwarf::{DebugInfo, DwarfError};

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
                writeln!(
                    out,
                    "{shown}: module {} for {}, build {}, {} mark(s), {} types (pointer depth {})",
                    m.module,
                    m.kernel_release,
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
                        k.name,
                        m.types.type_name(k.ty),
                        k.size,
                        k.flags.describe(),
                        k.symbol
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
                    "{shown}: not marked (no {MANIFEST_SECTION} section); its debug info defines {} structs/unions — show one with --type 'struct NAME'",
                    names.len()
                )?;
            }
        }
    }
    Ok(())
}
