//! A guest's published marks: what the helper module announced in xenstore, checked, with
//! manifests read from guest memory and marks mapped for sampling.
//!
//! Hostile input stays local: a module whose manifest is bad, or a mark whose entry, frames
//! or record do not check out, becomes an error for that item; the others are served.

use crate::decode::Plan;
use crate::frames::{FrameMapper, MapError, Mapping};
use crate::introspect::kernel::{Kernel, KernelError, ModuleSymbol};
use crate::publish::{self, FrameRange, PublishError, PublishedManifest, PublishedMark};
use crate::reader::MappedMark;
use std::collections::BTreeMap;
use std::mem::offset_of;
use std::sync::Arc;
use vmark_proto::abi::{vmark_record, MANIFEST_HEADER_SIZE, VMARK_ABI_VERSION, VMARK_RECORD_MAGIC};
use vmark_proto::{Manifest, ManifestError, Mark};

/// Read access to a key-value store laid out as xenstore.
pub trait Store {
    /// The value at `path`; `Ok(None)` when it does not exist.
    fn read(&self, path: &str) -> std::io::Result<Option<String>>;
    /// Children of `path`; empty when it does not exist.
    fn directory(&self, path: &str) -> std::io::Result<Vec<String>>;
}

/// Why a module or mark of a guest cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The store could not be read.
    #[error("xenstore: {0}")]
    Store(#[from] std::io::Error),
    /// The guest publishes nothing (no helper loaded, or a different ABI).
    #[error("domain {0} publishes no vmark marks (is vmark_helper loaded in the guest?)")]
    NotPublished(u32),
    /// The helper speaks another ABI version.
    #[error("domain publishes vmark ABI {found}; this host speaks {VMARK_ABI_VERSION}")]
    Abi {
        /// Version published.
        found: String,
    },
    /// A published entry is malformed.
    #[error("{path}: {source}")]
    Entry {
        /// The entry.
        path: String,
        /// What is wrong.
        source: PublishError,
    },
    /// A key that should exist does not.
    #[error("{0}: missing")]
    Missing(String),
    /// Frames could not be mapped.
    #[error("{what}: {source}")]
    Map {
        /// What was being mapped.
        what: String,
        /// Why not.
        source: MapError,
    },
    /// The manifest in guest memory is invalid.
    #[error("manifest of module {module}: {source}")]
    Manifest {
        /// Module.
        module: String,
        /// Why.
        source: ManifestError,
    },
    /// The manifest is for another module.
    #[error("module {published} carries the manifest of module {manifest}")]
    ManifestModule {
        /// Name published.
        published: String,
        /// Name in the manifest.
        manifest: String,
    },
    /// The mark is not in the module's manifest, or disagrees with it.
    #[error("mark {mark} of module {module}: {detail}")]
    MarkMismatch {
        /// Module.
        module: String,
        /// Mark.
        mark: String,
        /// What disagrees.
        detail: String,
    },
    /// The mark's record in guest memory does not check out.
    #[error("mark {mark}: record {detail}")]
    Record {
        /// Mark.
        mark: String,
        /// What is wrong.
        detail: String,
    },
    /// A guest virtual address (of a record, mark or manifest) did not translate.
    #[error("{what}: {source}")]
    Translate {
        /// What was being located.
        what: String,
        /// Why not.
        source: crate::introspect::paging::TranslateError,
    },
    /// No such module or mark.
    #[error("no mark {0:?} (see `vmark list`)")]
    NoSuchMark(String),
    /// The mark's type cannot be decoded.
    #[error("mark {mark}: {source}")]
    Decode {
        /// Mark.
        mark: String,
        /// Why.
        source: crate::decode::DecodeError,
    },
}

/// Control information the helper publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelperInfo {
    /// Unbound event-channel port offered to the monitor.
    pub event_channel: Option<u32>,
    /// Grant reference of the control page.
    pub control_gref: Option<u32>,
    /// Changes whenever the published marks change.
    pub generation: u64,
}

/// A published mark as listed: its entry or why it is unusable.
#[derive(Debug)]
pub struct ListedMark {
    /// Index under `marks/`.
    pub index: String,
    /// The parsed entry.
    pub entry: Result<PublishedMark, GuestError>,
}

/// A module with marks as listed.
#[derive(Debug)]
pub struct ListedModule {
    /// Module name.
    pub name: String,
    /// Where the manifest is.
    pub manifest: Result<PublishedManifest, GuestError>,
    /// Its marks.
    pub marks: Vec<ListedMark>,
}

/// The root of a domain's vmark tree.
pub fn root(domid: u32) -> String {
    let rel = vmark_proto::abi::VMARK_XS_ROOT;
    let rel = std::str::from_utf8(&rel[..rel.len() - 1]).unwrap_or("data/vmark");
    format!("/local/domain/{domid}/{rel}")
}

/// Reads the helper's control entries.
pub fn helper_info(store: &dyn Store, domid: u32) -> Result<HelperInfo, GuestError> {
    let root = root(domid);
    let abi = store
        .read(&format!("{root}/abi"))?
        .ok_or(GuestError::NotPublished(domid))?;
    if abi.trim() != VMARK_ABI_VERSION.to_string() {
        return Err(GuestError::Abi {
            found: abi.chars().take(16).collect(),
        });
    }
    let number = |key: &'static str| -> Result<Option<u64>, GuestError> {
        let path = format!("{root}/{key}");
        match store.read(&path)? {
            None => Ok(None),
            Some(v) => publish::parse_number(key, &v)
                .map(Some)
                .map_err(|source| GuestError::Entry { path, source }),
        }
    };
    let small = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    Ok(HelperInfo {
        event_channel: small(number("event-channel")?),
        control_gref: small(number("control-gref")?),
        generation: number("generation")?.unwrap_or(0),
    })
}

/// Lists a domain's published modules and marks (entries parsed, nothing mapped).
pub fn list(store: &dyn Store, domid: u32) -> Result<Vec<ListedModule>, GuestError> {
    helper_info(store, domid)?;
    let modules_dir = format!("{}/modules", root(domid));
    let mut out = Vec::new();
    for module in store.directory(&modules_dir)? {
        let name = match publish::parse_name(&module) {
            Ok(n) => n,
            Err(_) => continue, // a key that cannot be a module name: nothing to show
        };
        let base = format!("{modules_dir}/{name}");
        let manifest_path = format!("{base}/manifest");
        let manifest = match store.read(&manifest_path)? {
            None => Err(GuestError::Missing(manifest_path)),
            Some(v) => PublishedManifest::parse(&v).map_err(|source| GuestError::Entry {
                path: manifest_path,
                source,
            }),
        };
        let mut indices = store.directory(&format!("{base}/marks"))?;
        indices.truncate(publish::MAX_MARKS_PER_MODULE);
        indices.sort_by_key(|i| (i.len(), i.clone()));
        let mut marks = Vec::with_capacity(indices.len());
        for index in indices {
            let path = format!("{base}/marks/{index}");
            let entry = match store.read(&path)? {
                None => Err(GuestError::Missing(path)),
                Some(v) => {
                    PublishedMark::parse(&v).map_err(|source| GuestError::Entry { path, source })
                }
            };
            marks.push(ListedMark { index, entry });
        }
        out.push(ListedModule {
            name,
            manifest,
            marks,
        });
    }
    Ok(out)
}

/// Reads and checks a module's manifest from guest memory.
pub fn read_manifest(
    mapper: &dyn FrameMapper,
    module: &str,
    published: &PublishedManifest,
) -> Result<Manifest, GuestError> {
    let map = mapper
        .map(&published.blob.frames)
        .map_err(|source| GuestError::Map {
            what: format!("manifest of {module}"),
            source,
        })?;
    let off = published.blob.page_offset() as usize;
    let size = published.blob.size as usize;
    let bad = |source| GuestError::Manifest {
        module: module.to_string(),
        source,
    };
    let mut header = [0u8; MANIFEST_HEADER_SIZE];
    if size < MANIFEST_HEADER_SIZE || !map.copy_out(off, &mut header) {
        return Err(bad(ManifestError::Truncated {
            needed: MANIFEST_HEADER_SIZE,
            have: size,
        }));
    }
    let total = vmark_proto::codec::encoded_len(&header).map_err(bad)?;
    if total > size {
        return Err(bad(ManifestError::Truncated {
            needed: total,
            have: size,
        }));
    }
    let mut blob = vec![0u8; total];
    if !map.copy_out(off, &mut blob) {
        return Err(bad(ManifestError::Truncated {
            needed: total,
            have: map.len().saturating_sub(off),
        }));
    }
    let manifest = vmark_proto::decode(&blob).map_err(bad)?;
    if manifest.module != module {
        return Err(GuestError::ManifestModule {
            published: module.to_string(),
            manifest: manifest.module.clone(),
        });
    }
    Ok(manifest)
}

/// A mark ready to sample: mapped, checked against its record and manifest, with its
/// decoding plan compiled.
#[derive(Debug, Clone)]
pub struct OpenMark {
    /// Module name.
    pub module: String,
    /// The mark as the manifest describes it.
    pub mark: Mark,
    /// The module's manifest.
    pub manifest: Arc<Manifest>,
    /// Compiled decoder for the mark's type.
    pub plan: Arc<Plan>,
    /// The mapping.
    pub mapped: MappedMark,
    /// The published entry.
    pub entry: PublishedMark,
}

/// Maps one published mark and checks it against its record and the manifest.
pub fn open_mark(
    mapper: &dyn FrameMapper,
    module: &str,
    manifest: &Arc<Manifest>,
    entry: &PublishedMark,
) -> Result<OpenMark, GuestError> {
    let mismatch = |detail: String| GuestError::MarkMismatch {
        module: module.to_string(),
        mark: entry.name.clone(),
        detail,
    };
    let mark = manifest
        .mark(&entry.name)
        .ok_or_else(|| mismatch("not in the module's manifest".into()))?
        .clone();
    if mark.size != entry.var.size {
        return Err(mismatch(format!(
            "published size {} but the manifest says {}",
            entry.var.size, mark.size
        )));
    }
    let var: Mapping = mapper
        .map(&entry.var.frames)
        .map_err(|source| GuestError::Map {
            what: format!("mark {}", entry.name),
            source,
        })?;
    let record = mapper
        .map(&[entry.record_frame])
        .map_err(|source| GuestError::Map {
            what: format!("record of mark {}", entry.name),
            source,
        })?;
    let record_offset = (entry.record_gva % publish::PAGE_SIZE) as usize;
    check_record(&record, record_offset, entry)?;
    let mapped = MappedMark::new(
        var,
        entry.var.page_offset() as usize,
        entry.var.size as usize,
        record,
        record_offset,
        mark.flags.has_seq(),
    )
    .ok_or_else(|| mismatch("mapping shorter than the mark".into()))?;
    let plan = Plan::compile(&manifest.types, mark.ty).map_err(|source| GuestError::Decode {
        mark: entry.name.clone(),
        source,
    })?;
    Ok(OpenMark {
        module: module.to_string(),
        mark,
        manifest: manifest.clone(),
        plan: Arc::new(plan),
        mapped,
        entry: entry.clone(),
    })
}

/// What a `vmark_record` in guest memory says it marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields {
    /// Address of the marked variable.
    pub addr: u64,
    /// Its size.
    pub size: u64,
    /// Address of the mark's name (a C string).
    pub name: u64,
}

/// Reads the record at offset `at` of `record` and checks that it is a vmark record of
/// this host's ABI (magic, version). `mark` names it in errors.
pub fn parse_record(record: &Mapping, at: usize, mark: &str) -> Result<RecordFields, GuestError> {
    let bad = |detail: String| GuestError::Record {
        mark: mark.to_string(),
        detail,
    };
    let magic = record.read_u32(at + offset_of!(vmark_record, magic));
    if magic != Some(VMARK_RECORD_MAGIC) {
        return Err(bad(format!(
            "has magic {:#x?}, not a vmark record",
            magic.unwrap_or(0)
        )));
    }
    let mut abi = [0u8; 2];
    record.copy_out(at + offset_of!(vmark_record, abi_version), &mut abi);
    if u16::from_le_bytes(abi) as u32 != VMARK_ABI_VERSION {
        return Err(bad(format!("has ABI version {}", u16::from_le_bytes(abi))));
    }
    let field = |off: usize| record.read_u64(at + off).unwrap_or(0);
    Ok(RecordFields {
        addr: field(offset_of!(vmark_record, addr)),
        size: field(offset_of!(vmark_record, size)),
        name: field(offset_of!(vmark_record, name)),
    })
}

/// The record in guest memory must be a vmark record for this very variable.
fn check_record(record: &Mapping, at: usize, entry: &PublishedMark) -> Result<(), GuestError> {
    let RecordFields { addr, size, .. } = parse_record(record, at, &entry.name)?;
    if addr != entry.var.gva || size != entry.var.size {
        return Err(GuestError::Record {
            mark: entry.name.clone(),
            detail: format!(
                "describes {addr:#x}+{size}, but {:#x}+{} is published",
                entry.var.gva, entry.var.size
            ),
        });
    }
    Ok(())
}

/// Every openable mark of a domain, keyed `module/mark`, with the errors of those that are not.
#[derive(Debug, Default)]
pub struct GuestMarks {
    /// Marks ready to sample.
    pub marks: BTreeMap<String, OpenMark>,
    /// Items that failed, with why.
    pub errors: Vec<(String, GuestError)>,
}

impl GuestMarks {
    /// Finds a mark by `module/mark` or by bare mark name when that is unambiguous.
    pub fn find(&self, name: &str) -> Result<&OpenMark, GuestError> {
        if let Some(m) = self.marks.get(name) {
            return Ok(m);
        }
        let mut hits = self.marks.values().filter(|m| m.mark.name == name);
        match (hits.next(), hits.next()) {
            (Some(m), None) => Ok(m),
            _ => Err(GuestError::NoSuchMark(name.to_string())),
        }
    }
}

/// Every mark of a guest found in its memory, without xenstore: the mark records
/// (`__vmark_rec_*`) and manifests (`__vmark_manifest`) of every loaded module, from the
/// modules' own symbol tables ([`Kernel::find_helper_registry`]). Addresses are translated
/// through the kernel's page tables into frames of `mapper` (what [`Kernel::space`]
/// translates to), then each manifest and mark is read and checked exactly as a published
/// one ([`read_manifest`], [`open_mark`]); a bad item is an error for that item.
pub fn open_all_in_memory(
    kernel: &Kernel,
    mapper: &dyn FrameMapper,
) -> Result<GuestMarks, KernelError> {
    let mut modules: BTreeMap<String, (Option<ModuleSymbol>, Vec<ModuleSymbol>)> = BTreeMap::new();
    for sym in kernel.find_helper_registry()? {
        let slot = modules.entry(sym.module.clone()).or_default();
        if sym.name == vmark_build_manifest_symbol() {
            slot.0 = Some(sym);
        } else {
            slot.1.push(sym);
        }
    }
    let mut out = GuestMarks::default();
    for (module, (manifest, records)) in modules {
        let manifest = manifest
            .ok_or_else(|| {
                GuestError::Missing(format!("{module}: {}", vmark_build_manifest_symbol()))
            })
            .and_then(|m| {
                let blob = frames_in_memory(
                    kernel,
                    "manifest",
                    m.addr,
                    m.size,
                    publish::MAX_MANIFEST_SIZE,
                )?;
                read_manifest(mapper, &module, &PublishedManifest { blob })
            });
        let manifest = match manifest {
            Ok(m) => Arc::new(m),
            Err(e) => {
                out.errors.push((module, e));
                continue;
            }
        };
        for rec in records.iter().take(publish::MAX_MARKS_PER_MODULE) {
            let opened = entry_in_memory(kernel, mapper, rec)
                .and_then(|entry| open_mark(mapper, &module, &manifest, &entry));
            match opened {
                Ok(m) => {
                    out.marks.insert(format!("{module}/{}", m.mark.name), m);
                }
                Err(e) => out.errors.push((format!("{module}/{}", rec.name), e)),
            }
        }
    }
    Ok(out)
}

fn vmark_build_manifest_symbol() -> &'static str {
    let s = vmark_proto::abi::VMARK_MANIFEST_SYMBOL;
    std::str::from_utf8(&s[..s.len() - 1]).unwrap_or("__vmark_manifest")
}

/// The frames behind `gva..gva+size` in the kernel's address space, checked as a
/// published range is.
fn frames_in_memory(
    kernel: &Kernel,
    what: &'static str,
    gva: u64,
    size: u64,
    limit: u64,
) -> Result<FrameRange, GuestError> {
    let entry = |source| GuestError::Entry {
        path: format!("{what} at {gva:#x}"),
        source,
    };
    let pages = FrameRange::pages_spanned(what, gva, size, limit).map_err(entry)?;
    let first = gva - gva % publish::PAGE_SIZE;
    let frames = (0..pages)
        .map(|i| {
            let va = first + i * publish::PAGE_SIZE;
            kernel
                .space()
                .translate(va)
                .map(|pa| pa / publish::PAGE_SIZE)
                .map_err(|source| GuestError::Translate {
                    what: format!("{what} page {va:#x}"),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    FrameRange::new(what, gva, size, limit, frames).map_err(entry)
}

/// What the helper would publish for the record at `rec`, read from guest memory.
fn entry_in_memory(
    kernel: &Kernel,
    mapper: &dyn FrameMapper,
    rec: &ModuleSymbol,
) -> Result<PublishedMark, GuestError> {
    let entry = |source| GuestError::Entry {
        path: format!("{}/{}", rec.module, rec.name),
        source,
    };
    let translate = |what: &str, va: u64| {
        kernel
            .space()
            .translate(va)
            .map_err(|source| GuestError::Translate {
                what: format!("{what} of {} at {va:#x}", rec.name),
                source,
            })
    };
    publish::check_record_address(rec.addr).map_err(entry)?;
    let record_frame =
        publish::check_frame(translate("record", rec.addr)? / publish::PAGE_SIZE).map_err(entry)?;
    let record = mapper
        .map(&[record_frame])
        .map_err(|source| GuestError::Map {
            what: format!("record {}", rec.name),
            source,
        })?;
    let fields = parse_record(&record, (rec.addr % publish::PAGE_SIZE) as usize, &rec.name)?;
    let name = kernel
        .space()
        .read_cstring(fields.name, publish::MAX_NAME_LEN + 1)
        .map_err(|source| GuestError::Translate {
            what: format!("name of {} at {:#x}", rec.name, fields.name),
            source,
        })?;
    let name = publish::parse_name(&name).map_err(entry)?;
    let var = frames_in_memory(
        kernel,
        "mark",
        fields.addr,
        fields.size,
        publish::MAX_MARK_SIZE,
    )?;
    Ok(PublishedMark {
        name,
        flags: 0,
        record_gva: rec.addr,
        record_frame,
        var,
    })
}

/// The rows `vmark list` shows for one guest: one per open mark and one per item that
/// failed, each starting with the `origin` fields (e.g. domain name and id, or the dump).
pub fn list_rows(
    origin: &serde_json::Map<String, serde_json::Value>,
    marks: &GuestMarks,
) -> Vec<serde_json::Value> {
    let row = |fields: serde_json::Value| {
        let mut r = origin.clone();
        if let serde_json::Value::Object(f) = fields {
            r.extend(f);
        }
        serde_json::Value::Object(r)
    };
    let mut rows: Vec<serde_json::Value> = marks
        .marks
        .values()
        .map(|m| {
            row(serde_json::json!({
                "module": m.module, "mark": m.mark.name,
                "type": m.manifest.types.type_name(m.mark.ty), "size": m.mark.size,
                "flags": m.mark.flags.describe(), "symbol": m.mark.symbol,
            }))
        })
        .collect();
    for (what, e) in &marks.errors {
        rows.push(row(
            serde_json::json!({"item": what, "error": e.to_string()}),
        ));
    }
    rows
}

/// Prints `vmark list` rows (from [`list_rows`]): a JSON array, or a table whose first
/// column is the rows' `domain` field; `empty` is said when there are none.
pub fn write_list(
    rows: Vec<serde_json::Value>,
    json: bool,
    empty: &str,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{}", serde_json::Value::Array(rows));
    }
    if rows.is_empty() {
        writeln!(out, "{empty}")?;
    }
    writeln!(
        out,
        "{:<12} {:<16} {:<20} {:<32} {:>6}  flags",
        "DOMAIN", "MODULE", "MARK", "TYPE", "SIZE"
    )?;
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    for r in rows {
        if r.get("error").is_some() {
            writeln!(
                out,
                "{:<12} error: {}: {}",
                text(&r, "domain"),
                text(&r, "item"),
                text(&r, "error")
            )?;
            continue;
        }
        writeln!(
            out,
            "{:<12} {:<16} {:<20} {:<32} {:>6}  {}",
            text(&r, "domain"),
            text(&r, "module"),
            text(&r, "mark"),
            text(&r, "type"),
            r["size"],
            text(&r, "flags")
        )?;
    }
    Ok(())
}

/// Opens every published mark of a domain.
pub fn open_all(
    store: &dyn Store,
    mapper: &dyn FrameMapper,
    domid: u32,
) -> Result<GuestMarks, GuestError> {
    let mut out = GuestMarks::default();
    for module in list(store, domid)? {
        let manifest = match module
            .manifest
            .and_then(|p| read_manifest(mapper, &module.name, &p))
        {
            Ok(m) => Arc::new(m),
            Err(e) => {
                out.errors.push((module.name.clone(), e));
                continue;
            }
        };
        for listed in module.marks {
            let key = format!("{}/{}", module.name, listed.index);
            let opened = listed
                .entry
                .and_then(|entry| open_mark(mapper, &module.name, &manifest, &entry));
            match opened {
                Ok(m) => {
                    out.marks
                        .insert(format!("{}/{}", module.name, m.mark.name), m);
                }
                Err(e) => out.errors.push((key, e)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::BufferMapper;
    use std::collections::HashMap;
    use vmark_proto::{BaseEncoding, MarkFlags, Type, TypeTable};

    #[derive(Default)]
    struct MapStore(HashMap<String, String>);

    impl Store for MapStore {
        fn read(&self, path: &str) -> std::io::Result<Option<String>> {
            Ok(self.0.get(path).cloned())
        }
        fn directory(&self, path: &str) -> std::io::Result<Vec<String>> {
            let prefix = format!("{path}/");
            let mut kids: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or("").to_string())
                .collect();
            kids.sort();
            kids.dedup();
            Ok(kids)
        }
    }

    const GVA: u64 = 0xffff_ffff_c000_0000;

    /// A fake guest: frame 1 holds the manifest, frame 2 a record, frame 3 an `int` = 42.
    fn guest() -> (MapStore, BufferMapper) {
        let mut types = TypeTable::new();
        let int = types.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let manifest = Manifest {
            module: "demo".into(),
            kernel_release: "test".into(),
            build_id: vec![],
            pointer_depth: 1,
            marks: vec![Mark {
                name: "answer".into(),
                symbol: "answer".into(),
                ty: int,
                size: 4,
                flags: MarkFlags(MarkFlags::SEQ),
            }],
            types,
        };
        let blob = vmark_proto::encode(&manifest).unwrap();
        let mut mem = vec![0u8; 5 * 4096];
        mem[4096..4096 + blob.len()].copy_from_slice(&blob);
        let rec = 2 * 4096 + 64;
        mem[rec..rec + 4].copy_from_slice(&VMARK_RECORD_MAGIC.to_le_bytes());
        mem[rec + 4..rec + 6].copy_from_slice(&(VMARK_ABI_VERSION as u16).to_le_bytes());
        mem[rec + 8..rec + 16].copy_from_slice(&(GVA + 0x3010).to_le_bytes());
        mem[rec + 16..rec + 24].copy_from_slice(&4u64.to_le_bytes());
        mem[3 * 4096 + 0x10..3 * 4096 + 0x14].copy_from_slice(&42i32.to_le_bytes());
        let mut s = MapStore::default();
        let r = root(5);
        s.0.insert(format!("{r}/abi"), "1".into());
        s.0.insert(format!("{r}/event-channel"), "7".into());
        s.0.insert(format!("{r}/generation"), "3".into());
        s.0.insert(
            format!("{r}/modules/demo/manifest"),
            format!("{:x} {} 1", GVA + 0x1000, blob.len()),
        );
        s.0.insert(
            format!("{r}/modules/demo/marks/0"),
            format!("answer 1 {:x} 2 {:x} 4 3", GVA + 0x2040, GVA + 0x3010),
        );
        (s, BufferMapper::new(mem))
    }

    #[test]
    fn opens_and_reads_a_published_mark() {
        let (s, m) = guest();
        assert_eq!(helper_info(&s, 5).unwrap().event_channel, Some(7));
        let marks = open_all(&s, &m, 5).unwrap();
        assert!(marks.errors.is_empty(), "{:?}", marks.errors);
        let mark = marks.find("answer").unwrap();
        let mut buf = Vec::new();
        let info = mark.mapped.read(&mut buf, 2);
        assert!(info.consistent);
        assert_eq!(mark.plan.to_json(&buf), "42");
    }

    #[test]
    fn a_bad_mark_does_not_hide_the_others() {
        let (mut s, m) = guest();
        let r = root(5);
        // A second mark naming a frame the guest does not own, a third that is garbage.
        s.0.insert(
            format!("{r}/modules/demo/marks/1"),
            format!("answer 1 {:x} 2 {:x} 4 99", GVA + 0x2040, GVA + 0x3010),
        );
        s.0.insert(
            format!("{r}/modules/demo/marks/2"),
            "\u{0}\u{1} garbage".into(),
        );
        let marks = open_all(&s, &m, 5).unwrap();
        assert_eq!(marks.marks.len(), 1);
        assert_eq!(marks.errors.len(), 2);
        assert!(matches!(marks.errors[0].1, GuestError::Map { .. }));
        assert!(matches!(marks.errors[1].1, GuestError::Entry { .. }));
    }

    #[test]
    fn a_record_that_lies_is_refused() {
        let (mut s, m) = guest();
        let r = root(5);
        // Published address differs from what the record in memory says.
        s.0.insert(
            format!("{r}/modules/demo/marks/0"),
            format!("answer 1 {:x} 2 {:x} 4 3", GVA + 0x2040, GVA + 0x3020),
        );
        let marks = open_all(&s, &m, 5).unwrap();
        assert!(matches!(marks.errors[0].1, GuestError::Record { .. }));
        // A record frame that holds no record at all.
        s.0.insert(
            format!("{r}/modules/demo/marks/0"),
            format!("answer 1 {:x} 3 {:x} 4 3", GVA + 0x2040, GVA + 0x3010),
        );
        let marks = open_all(&s, &m, 5).unwrap();
        assert!(matches!(marks.errors[0].1, GuestError::Record { .. }));
    }

    #[test]
    fn bad_manifests_fail_their_module_only() {
        let (mut s, m) = guest();
        let r = root(5);
        // Manifest pointing at zeroed memory; a truncated size; a huge size.
        for value in [
            format!("{:x} 100 4", GVA + 0x4000),
            format!("{:x} 10 1", GVA + 0x1000),
            format!("{:x} 999999999 1", GVA + 0x1000),
        ] {
            s.0.insert(format!("{r}/modules/demo/manifest"), value);
            let marks = open_all(&s, &m, 5).unwrap();
            assert!(marks.marks.is_empty());
            assert_eq!(marks.errors.len(), 1);
        }
    }

    #[test]
    fn an_unpublished_domain_says_so() {
        let s = MapStore::default();
        assert!(matches!(list(&s, 9), Err(GuestError::NotPublished(9))));
    }
}
