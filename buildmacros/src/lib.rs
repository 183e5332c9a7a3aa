//! vmark-build: turns a kernel module's marks into an embedded manifest.
//!
//! 1. [`marks`] finds the `VMARK()` records of a relocatable ELF object (`.ko` or `.o`)
//!    and resolves, through their relocations, each mark's variable and name;
//! 2. [`dwarf`] reads the object's DWARF and gives each variable's exact C type and the
//!    closure of the types it reaches ([`vmark_proto::TypeTable`]);
//! 3. [`assemble`] puts them together with the module's name, kernel release and build
//!    id into a [`vmark_proto::Manifest`];
//! 4. [`embed`] writes the encoded manifest into the object as an allocated section
//!    `.vmark.manifest` with the symbol `__vmark_manifest`, and reads it back.
//!
//! [`embed_file`] does all of it for one file, as `vmark-build embed` does.

#![warn(missing_docs)]

pub mod assemble;
pub mod dwarf;
pub mod embed;
pub mod marks;

pub use assemble::{build_manifest, BuildError, BuildOptions, ModInfo, DEFAULT_POINTER_DEPTH};
pub use embed::{embed, extract, extract_blob, EmbedError, MANIFEST_SECTION, MANIFEST_SYMBOL};
pub use marks::{find_marks, FoundMark, MarkError, VarLocation};
/// The `object` crate this library reads and writes ELF with (for callers' own checks).
pub use object;

use std::path::{Path, PathBuf};

/// Why [`embed_file`] or [`manifest_for_file`] failed (always names the file).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Building the manifest failed.
    #[error("{path}: {source}")]
    Build {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: BuildError,
    },
    /// Embedding failed.
    #[error("{path}: {source}")]
    Embed {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: EmbedError,
    },
}

/// What [`embed_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOutcome {
    /// The manifest embedded.
    pub manifest: vmark_proto::Manifest,
    /// Encoded size (header + payload) in bytes.
    pub manifest_bytes: usize,
    /// Whether the output file was (re)written; `false` when it already held exactly this
    /// manifest, so repeated builds leave the `.ko` (and its timestamp) alone.
    pub written: bool,
}

/// Builds the manifest of the object at `path`; a `.o` without `.modinfo` is named after
/// its file stem.
pub fn manifest_for_file(
    path: &Path,
    opts: &BuildOptions,
) -> Result<vmark_proto::Manifest, FileError> {
    let data = std::fs::read(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    manifest_for_bytes(path, &data, opts)
}

fn manifest_for_bytes(
    path: &Path,
    data: &[u8],
    opts: &BuildOptions,
) -> Result<vmark_proto::Manifest, FileError> {
    let mut opts = opts.clone();
    if opts.fallback_module_name.is_none() {
        // Kbuild's KBUILD_MODNAME rule: dashes become underscores.
        opts.fallback_module_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"));
    }
    build_manifest(data, &opts).map_err(|source| FileError::Build {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the manifest of `input` and writes the object with the manifest embedded to
/// `output` (which may be `input`). The output is written through a temporary file and
/// renamed, so an interrupted run never leaves a half-written module.
pub fn embed_file(
    input: &Path,
    output: &Path,
    opts: &BuildOptions,
) -> Result<EmbedOutcome, FileError> {
    let data = std::fs::read(input).map_err(|source| FileError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let manifest = manifest_for_bytes(input, &data, opts)?;
    let embed_err = |source| FileError::Embed {
        path: input.to_path_buf(),
        source,
    };
    let blob = vmark_proto::encode(&manifest).map_err(|e| embed_err(EmbedError::Manifest(e)))?;
    let out = embed::embed(&data, &blob).map_err(embed_err)?;
    let unchanged = input == output && out == data;
    if !unchanged {
        let io_err = |source| FileError::Io {
            path: output.to_path_buf(),
            source,
        };
        let mut tmp = output.as_os_str().to_owned();
        tmp.push(".vmark-tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, &out).map_err(io_err)?;
        if let Ok(meta) = std::fs::metadata(input) {
            // Keep the module's permissions (the write used the default mode).
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        std::fs::rename(&tmp, output).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(e)
        })?;
    }
    Ok(EmbedOutcome {
        manifest,
        manifest_bytes: blob.len(),
        written: !unchanged,
    })
}
