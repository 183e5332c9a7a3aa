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
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::mem::offset_of;
use std::sync::Arc;
use vmark_proto::abi::{vmark_record, MANIFEST_HEADER_SIZE, VMARK_ABI_VERSION, VMARK_RECORD_MAGIC};
use vmark_proto::limits;
use vmark_proto::text::escape;
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
    #[error("domain publishes vmark ABI \"{}\"; this host speaks {VMARK_ABI_VERSION}", escape(.found))]
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
    #[error("module {} carries the manifest of module \"{}\"", escape(.published), escape(.manifest))]
    ManifestModule {
        /// Name published.
        published: String,
        /// Name in the manifest.
        manifest: String,
    },
    /// The mark is not in the module's manifest, or disagrees with it.
    #[error("mark {} of module {}: {}", escape(.mark), escape(.module), escape(.detail))]
    MarkMismatch {
        /// Module.
        module: String,
        /// Mark.
        mark: String,
        /// What disagrees.
        detail: String,
    },
    /// The mark's record in guest memory does not check out.
    #[error("mark {}: record {}", escape(.mark), escape(.detail))]
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
    /// A module (or the module list) of a guest found in memory could not be read.
    #[error("{source}")]
    Kernel {
        /// The module, e.g. `module ext4`.
        item: String,
        /// Why.
        source: KernelError,
    },
    /// No such module or mark.
    #[error("no mark {0:?} (see `vmark list`)")]
    NoSuchMark(String),
    /// A bare mark name that more than one module publishes.
    #[error("mark {0:?} is published by several modules: name it module/mark")]
    Ambiguous(String),
    /// Over a budget of [`vmark_proto::limits`] (too many manifests held for one guest).
    #[error("{0}")]
    Budget(String),
    /// The mark's type cannot be decoded.
    #[error("mark {}: {source}", escape(.mark))]
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

/// Reads one value of a guest's tree, refusing values longer than the helper ever writes
/// ([`limits::XS_MAX_VALUE_LEN`]).
pub fn read_value(store: &dyn Store, path: &str) -> Result<Option<String>, GuestError> {
    match store.read(path)? {
        Some(v) if v.len() > limits::XS_MAX_VALUE_LEN => Err(GuestError::Entry {
            path: path.to_string(),
            source: PublishError::TooLong {
                len: v.len(),
                limit: limits::XS_MAX_VALUE_LEN,
            },
        }),
        v => Ok(v),
    }
}

/// Reads the helper's control entries.
pub fn helper_info(store: &dyn Store, domid: u32) -> Result<HelperInfo, GuestError> {
    let root = root(domid);
    let abi = read_value(store, &format!("{root}/abi"))?.ok_or(GuestError::NotPublished(domid))?;
    if abi.trim() != VMARK_ABI_VERSION.to_string() {
        return Err(GuestError::Abi {
            found: abi.chars().take(16).collect(),
        });
    }
    let number = |key: &'static str| -> Result<Option<u64>, GuestError> {
        let path = format!("{root}/{key}");
        match read_value(store, &path)? {
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

/// Lists a domain's published modules and marks (entries parsed, nothing mapped). At most
/// [`limits::LIVE_MAX_MODULES_PER_DOMAIN`] modules (in name order) and
/// [`publish::MAX_MARKS_PER_MODULE`] marks per module are read; more is an error item.
pub fn list(store: &dyn Store, domid: u32) -> Result<Vec<ListedModule>, GuestError> {
    helper_info(store, domid)?;
    let modules_dir = format!("{}/modules", root(domid));
    let mut names = store.directory(&modules_dir)?;
    names.sort();
    let found = names.len();
    let mut out = Vec::new();
    for module in names.into_iter().take(limits::LIVE_MAX_MODULES_PER_DOMAIN) {
        out.push(match publish::parse_name(&module) {
            Ok(name) => list_module(store, domid, &name)?,
            // A key that cannot be a module name: an error row, not a silent skip.
            Err(source) => ListedModule {
                name: escape(&module).into_owned(),
                manifest: Err(GuestError::Entry {
                    path: format!("{modules_dir}/{}", escape(&module)),
                    source,
                }),
                marks: Vec::new(),
            },
        });
    }
    if found > limits::LIVE_MAX_MODULES_PER_DOMAIN {
        out.push(ListedModule {
            name: "(more modules)".into(),
            manifest: Err(GuestError::Entry {
                path: modules_dir,
                source: PublishError::TooMany {
                    what: "modules",
                    found,
                    limit: limits::LIVE_MAX_MODULES_PER_DOMAIN,
                },
            }),
            marks: Vec::new(),
        });
    }
    Ok(out)
}

/// One module's published entries (`name` already checked with [`publish::parse_name`]).
pub fn list_module(store: &dyn Store, domid: u32, name: &str) -> Result<ListedModule, GuestError> {
    let base = format!("{}/modules/{name}", root(domid));
    let manifest_path = format!("{base}/manifest");
    let manifest = match read_value(store, &manifest_path) {
        Err(e) => Err(e),
        Ok(None) => Err(GuestError::Missing(manifest_path)),
        Ok(Some(v)) => PublishedManifest::parse(&v).map_err(|source| GuestError::Entry {
            path: manifest_path,
            source,
        }),
    };
    let mut indices = store.directory(&format!("{base}/marks"))?;
    indices.sort_by_key(|i| (i.len(), i.clone()));
    let found = indices.len();
    indices.truncate(publish::MAX_MARKS_PER_MODULE);
    let mut marks = Vec::with_capacity(indices.len());
    for index in indices {
        let path = format!("{base}/marks/{index}");
        let entry = match read_value(store, &path) {
            Err(e) => Err(e),
            Ok(None) => Err(GuestError::Missing(path)),
            Ok(Some(v)) => {
                PublishedMark::parse(&v).map_err(|source| GuestError::Entry { path, source })
            }
        };
        marks.push(ListedMark {
            index: escape(&index).into_owned(),
            entry,
        });
    }
    if found > publish::MAX_MARKS_PER_MODULE {
        marks.push(ListedMark {
            index: "(more marks)".into(),
            entry: Err(GuestError::Entry {
                path: format!("{base}/marks"),
                source: PublishError::TooMany {
                    what: "marks",
                    found,
                    limit: publish::MAX_MARKS_PER_MODULE,
                },
            }),
        });
    }
    Ok(ListedModule {
        name: name.to_string(),
        manifest,
        marks,
    })
}

/// Reads and checks a module's manifest from guest memory.
pub fn read_manifest(
    mapper: &dyn FrameMapper,
    module: &str,
    published: &PublishedManifest,
) -> Result<Manifest, GuestError> {
    let blob = read_manifest_blob(mapper, module, published)?;
    decode_manifest(module, &blob)
}

/// The manifest blob (header and payload, bounded by the published size) from guest memory.
fn read_manifest_blob(
    mapper: &dyn FrameMapper,
    module: &str,
    published: &PublishedManifest,
) -> Result<Vec<u8>, GuestError> {
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
    Ok(blob)
}

fn decode_manifest(module: &str, blob: &[u8]) -> Result<Manifest, GuestError> {
    let manifest = vmark_proto::decode(blob).map_err(|source| GuestError::Manifest {
        module: module.to_string(),
        source,
    })?;
    if manifest.module != module {
        return Err(GuestError::ManifestModule {
            published: module.to_string(),
            manifest: manifest.module.clone(),
        });
    }
    Ok(manifest)
}

/// Identity of a manifest's content: a keyed hash (SipHash with this process's random key,
/// so a guest cannot aim for a collision) and the length of the blob.
pub type ManifestKey = (u64, usize);

/// Manifests and decoding plans of one guest, shared by content: modules whose manifests
/// are byte-identical (the same module in many guests' lifetimes, or republished) share one
/// decoded manifest, and each (manifest, type) has one compiled plan. Entries nobody else
/// holds are dropped by [`ManifestCache::prune`]; more than
/// [`limits::LIVE_MAX_CACHED_MANIFESTS`] in use at once is an error for the next module.
#[derive(Default)]
pub struct ManifestCache {
    hasher: std::hash::RandomState,
    manifests: HashMap<ManifestKey, Arc<Manifest>>,
    plans: HashMap<(ManifestKey, u32), Arc<Plan>>,
    /// Manifests decoded (not found in the cache), for tests and statistics.
    pub decoded: u64,
    /// Plans compiled.
    pub compiled: u64,
}

impl std::fmt::Debug for ManifestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ManifestCache({} manifests, {} plans)",
            self.manifests.len(),
            self.plans.len()
        )
    }
}

impl ManifestCache {
    /// Reads a module's manifest, decoding it only when no identical one is cached.
    pub fn manifest(
        &mut self,
        mapper: &dyn FrameMapper,
        module: &str,
        published: &PublishedManifest,
    ) -> Result<(Arc<Manifest>, ManifestKey), GuestError> {
        let blob = read_manifest_blob(mapper, module, published)?;
        let key = (self.hasher.hash_one(&blob), blob.len());
        if let Some(m) = self.manifests.get(&key) {
            if m.module != module {
                return Err(GuestError::ManifestModule {
                    published: module.to_string(),
                    manifest: m.module.clone(),
                });
            }
            return Ok((m.clone(), key));
        }
        self.prune();
        if self.manifests.len() >= limits::LIVE_MAX_CACHED_MANIFESTS {
            return Err(GuestError::Budget(format!(
                "manifest of module {}: {} distinct manifests already held for this guest (limit)",
                escape(module),
                self.manifests.len()
            )));
        }
        let m = Arc::new(decode_manifest(module, &blob)?);
        self.decoded += 1;
        self.manifests.insert(key, m.clone());
        Ok((m, key))
    }

    /// The plan of type `ty` of the manifest `key`, compiled once.
    pub fn plan(
        &mut self,
        key: ManifestKey,
        manifest: &Manifest,
        ty: vmark_proto::TypeId,
    ) -> Result<Arc<Plan>, crate::decode::DecodeError> {
        if let Some(p) = self.plans.get(&(key, ty.0)) {
            return Ok(p.clone());
        }
        let plan = Arc::new(Plan::compile(&manifest.types, ty)?);
        self.compiled += 1;
        self.plans.insert((key, ty.0), plan.clone());
        Ok(plan)
    }

    /// Drops manifests and plans that only the cache still holds.
    pub fn prune(&mut self) {
        self.manifests.retain(|_, m| Arc::strong_count(m) > 1);
        let live: std::collections::HashSet<ManifestKey> = self.manifests.keys().copied().collect();
        self.plans
            .retain(|(k, _), p| live.contains(k) || Arc::strong_count(p) > 1);
    }

    /// Manifests held.
    pub fn len(&self) -> usize {
        self.manifests.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
    }
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
    open_mark_with(mapper, module, manifest, entry, &mut |m: &Manifest, ty| {
        Plan::compile(&m.types, ty).map(Arc::new)
    })
}

/// A plan source: compiles, or takes one from a [`ManifestCache`].
type PlanFor<'a> =
    dyn FnMut(&Manifest, vmark_proto::TypeId) -> Result<Arc<Plan>, crate::decode::DecodeError> + 'a;

/// [`open_mark`] with its plan from `plan_for`.
fn open_mark_with(
    mapper: &dyn FrameMapper,
    module: &str,
    manifest: &Arc<Manifest>,
    entry: &PublishedMark,
    plan_for: &mut PlanFor<'_>,
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
    let plan = plan_for(manifest, mark.ty).map_err(|source| GuestError::Decode {
        mark: entry.name.clone(),
        source,
    })?;
    Ok(OpenMark {
        module: module.to_string(),
        mark,
        manifest: manifest.clone(),
        plan,
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
    // Module by module: one module whose symbols cannot be read is an error row, not the end.
    let registry = kernel.helper_registry()?;
    for sym in registry.symbols {
        let slot = modules.entry(sym.module.clone()).or_default();
        if sym.name == vmark_build_manifest_symbol() {
            slot.0 = Some(sym);
        } else {
            slot.1.push(sym);
        }
    }
    let mut out = GuestMarks::default();
    for (item, source) in registry.errors {
        out.errors
            .push((item.clone(), GuestError::Kernel { item, source }));
    }
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
    // Every cell may hold guest-supplied text (names, types, errors quoting entries).
    let text = |r: &serde_json::Value, k: &str| escape(r[k].as_str().unwrap_or("")).into_owned();
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
    open_all_cached(store, mapper, domid, &mut ManifestCache::default())
}

/// [`open_all`] with manifests and plans shared through `cache`.
pub fn open_all_cached(
    store: &dyn Store,
    mapper: &dyn FrameMapper,
    domid: u32,
    cache: &mut ManifestCache,
) -> Result<GuestMarks, GuestError> {
    let mut out = GuestMarks::default();
    for module in list(store, domid)? {
        let manifest = match module
            .manifest
            .and_then(|p| cache.manifest(mapper, &module.name, &p))
        {
            Ok(m) => m,
            Err(e) => {
                out.errors.push((module.name.clone(), e));
                continue;
            }
        };
        for listed in module.marks {
            let key = format!("{}/{}", module.name, listed.index);
            let opened = listed.entry.and_then(|entry| {
                open_mark_with(mapper, &module.name, &manifest.0, &entry, &mut |m, ty| {
                    cache.plan(manifest.1, m, ty)
                })
            });
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

/// The `vmark list` rows of one domain: its marks, or one row with the error that keeps the
/// domain from being listed, so that one guest's bad entries never hide the others.
/// `None` when the domain publishes nothing and was not asked for by name (`explicit`).
pub fn domain_rows(
    store: &dyn Store,
    mapper: &dyn FrameMapper,
    domid: u32,
    name: &str,
    explicit: bool,
) -> Option<Vec<serde_json::Value>> {
    let mut origin = serde_json::Map::new();
    origin.insert("domain".into(), name.into());
    origin.insert("domid".into(), domid.into());
    match open_all(store, mapper, domid) {
        Ok(marks) => Some(list_rows(&origin, &marks)),
        Err(GuestError::NotPublished(_)) if !explicit => None,
        Err(e) => {
            let mut r = origin;
            r.insert("item".into(), "(domain)".into());
            r.insert("error".into(), e.to_string().into());
            Some(vec![serde_json::Value::Object(r)])
        }
    }
}

/// The `vmark list` rows of several domains ([`domain_rows`] each, with its own mapper):
/// a domain that cannot be listed is one error row among the others' marks.
pub fn list_domains(
    store: &dyn Store,
    mapper_for: &dyn Fn(u32) -> Box<dyn FrameMapper>,
    domains: &[(u32, String)],
    explicit: bool,
) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for (id, name) in domains.iter().take(limits::LIVE_MAX_DOMAINS) {
        let mapper = mapper_for(*id);
        if let Some(r) = domain_rows(store, mapper.as_ref(), *id, name, explicit) {
            rows.extend(r);
        }
    }
    rows
}

/// What a watched mark is, as the user named it: `module/mark` or a bare `mark`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkSpec {
    /// As given.
    pub spec: String,
    /// Module, when given.
    pub module: Option<String>,
    /// Mark name.
    pub mark: String,
}

impl MarkSpec {
    /// Splits `module/mark` (or takes a bare mark name).
    pub fn parse(spec: &str) -> MarkSpec {
        match spec.split_once('/') {
            Some((m, k)) => MarkSpec {
                spec: spec.to_string(),
                module: Some(m.to_string()),
                mark: k.to_string(),
            },
            None => MarkSpec {
                spec: spec.to_string(),
                module: None,
                mark: spec.to_string(),
            },
        }
    }
}

/// What a refresh found for one watched mark.
#[derive(Debug)]
pub enum MarkUpdate {
    /// Published as before: keep the open mark (nothing was mapped or decoded).
    Unchanged,
    /// Published anew or differently: opened again.
    Opened(Box<OpenMark>),
    /// Not (or no longer) usable.
    Gone(GuestError),
}

/// The result of one [`Refresher::refresh`].
#[derive(Debug)]
pub struct Refresh {
    /// The helper's control entries, or why they are unusable (the helper unloaded).
    pub helper: Result<HelperInfo, GuestError>,
    /// The generation did not change: nothing but the control entries was read.
    pub same_generation: bool,
    /// Per watched spec.
    pub marks: BTreeMap<String, MarkUpdate>,
}

/// Re-reads what a guest publishes for a watch, doing work in proportion to what changed:
/// the control entries (four reads) always; the watched marks' modules only when the
/// published generation changed; a mark is mapped again only when its entry (or its
/// module's manifest entry) changed; a manifest is decoded only when its content is new
/// ([`ManifestCache`]). It owns its store and mapper, so it can run off the sampling
/// thread.
pub struct Refresher {
    store: Box<dyn Store + Send>,
    mapper: Arc<dyn FrameMapper>,
    domid: u32,
    specs: Vec<MarkSpec>,
    cache: ManifestCache,
    last: Option<HelperInfo>,
    /// Per spec, the entries the open mark was made from.
    seen: BTreeMap<String, (PublishedManifest, PublishedMark)>,
    /// Refreshes that read more than the control entries.
    pub full_refreshes: u64,
}

impl Refresher {
    /// A refresher for `specs` of domain `domid`.
    pub fn new(
        store: Box<dyn Store + Send>,
        mapper: Arc<dyn FrameMapper>,
        domid: u32,
        specs: Vec<MarkSpec>,
    ) -> Self {
        Refresher {
            store,
            mapper,
            domid,
            specs,
            cache: ManifestCache::default(),
            last: None,
            seen: BTreeMap::new(),
            full_refreshes: 0,
        }
    }

    /// The store (for checks between refreshes).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The cache (statistics, tests).
    pub fn cache(&self) -> &ManifestCache {
        &self.cache
    }

    /// Reads what changed since the last refresh.
    pub fn refresh(&mut self) -> Refresh {
        let info = match helper_info(self.store.as_ref(), self.domid) {
            Ok(i) => i,
            Err(e) => {
                self.last = None;
                let marks = self
                    .specs
                    .iter()
                    .map(|s| {
                        self.seen.remove(&s.spec);
                        (
                            s.spec.clone(),
                            MarkUpdate::Gone(GuestError::NotPublished(self.domid)),
                        )
                    })
                    .collect();
                return Refresh {
                    helper: Err(e),
                    same_generation: false,
                    marks,
                };
            }
        };
        if self.last.as_ref() == Some(&info) {
            let marks = self
                .specs
                .iter()
                .map(|s| (s.spec.clone(), MarkUpdate::Unchanged))
                .collect();
            return Refresh {
                helper: Ok(info),
                same_generation: true,
                marks,
            };
        }
        self.last = Some(info.clone());
        self.full_refreshes += 1;
        let mut modules: BTreeMap<String, Result<ListedModule, GuestError>> = BTreeMap::new();
        // The domain's whole listing, read once per refresh for all bare specs (`mark`
        // without its module), when there is one.
        let mut listing: Option<Vec<ListedModule>> = None;
        let mut marks = BTreeMap::new();
        let specs = self.specs.clone();
        for spec in &specs {
            let update = self.refresh_one(spec, &mut modules, &mut listing);
            marks.insert(spec.spec.clone(), update);
        }
        self.cache.prune();
        // A mark that failed for another reason than not being published (a mapping that
        // failed, a budget, a bad entry) is tried again at the next refresh, not only once
        // the guest publishes a new generation.
        let failed = marks.values().any(|u| {
            matches!(u, MarkUpdate::Gone(e)
                if !matches!(e, GuestError::NoSuchMark(_) | GuestError::NotPublished(_)))
        });
        if failed {
            self.last = None;
        }
        Refresh {
            helper: Ok(info),
            same_generation: false,
            marks,
        }
    }

    fn refresh_one(
        &mut self,
        spec: &MarkSpec,
        modules: &mut BTreeMap<String, Result<ListedModule, GuestError>>,
        listing: &mut Option<Vec<ListedModule>>,
    ) -> MarkUpdate {
        let module = match &spec.module {
            Some(m) => m.clone(),
            None => match self.module_of(&spec.mark, listing) {
                Ok(m) => m,
                Err(e) => {
                    self.seen.remove(&spec.spec);
                    return MarkUpdate::Gone(e);
                }
            },
        };
        let listed = modules.entry(module.clone()).or_insert_with(|| {
            publish::parse_name(&module)
                .map_err(|_| GuestError::NoSuchMark(spec.spec.clone()))
                .and_then(|name| list_module(self.store.as_ref(), self.domid, &name))
        });
        let found = match listed {
            Err(_) => None,
            Ok(l) => l
                .marks
                .iter()
                .filter_map(|m| m.entry.as_ref().ok())
                .find(|e| e.name == spec.mark)
                .cloned()
                .and_then(|e| l.manifest.as_ref().ok().map(|p| (p.clone(), e))),
        };
        let Some((published, entry)) = found else {
            self.seen.remove(&spec.spec);
            return MarkUpdate::Gone(GuestError::NoSuchMark(spec.spec.clone()));
        };
        if self.seen.get(&spec.spec) == Some(&(published.clone(), entry.clone())) {
            return MarkUpdate::Unchanged;
        }
        let mapper = self.mapper.clone();
        let opened = self
            .cache
            .manifest(mapper.as_ref(), &module, &published)
            .and_then(|(manifest, key)| {
                let cache = &mut self.cache;
                open_mark_with(mapper.as_ref(), &module, &manifest, &entry, &mut |m, ty| {
                    cache.plan(key, m, ty)
                })
            });
        match opened {
            Ok(m) => {
                self.seen.insert(spec.spec.clone(), (published, entry));
                MarkUpdate::Opened(Box::new(m))
            }
            Err(e) => {
                self.seen.remove(&spec.spec);
                MarkUpdate::Gone(e)
            }
        }
    }

    /// The one module that publishes a mark named `mark` (entries only, nothing mapped),
    /// from `listing`: the domain's listing, read on first use (a failed read is tried
    /// again by the next spec).
    fn module_of(
        &self,
        mark: &str,
        listing: &mut Option<Vec<ListedModule>>,
    ) -> Result<String, GuestError> {
        let all = match listing {
            Some(l) => l,
            None => listing.insert(list(self.store.as_ref(), self.domid)?),
        };
        let mut hits = all
            .iter()
            .filter(|m| {
                m.marks
                    .iter()
                    .any(|l| l.entry.as_ref().is_ok_and(|e| e.name == mark))
            })
            .map(|m| m.name.clone());
        match (hits.next(), hits.next()) {
            (Some(m), None) => Ok(m),
            (Some(_), Some(_)) => Err(GuestError::Ambiguous(mark.to_string())),
            _ => Err(GuestError::NoSuchMark(mark.to_string())),
        }
    }
}

/// Test doubles shared by the modules that read xenstore.
#[cfg(test)]
pub(crate) mod test_store {
    use super::Store;
    use std::collections::HashMap;

    /// A xenstore in memory, for tests: path → value; directories are the paths' prefixes.
    #[derive(Default)]
    pub(crate) struct MapStore(pub(crate) HashMap<String, String>);

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
}

#[cfg(test)]
mod tests {
    use super::test_store::MapStore;
    use super::*;
    use crate::frames::BufferMapper;
    use std::collections::HashMap;
    use vmark_proto::{BaseEncoding, MarkFlags, Type, TypeTable};

    const GVA: u64 = 0xffff_ffff_c000_0000;

    /// A fake guest: frame 1 holds the manifest, frame 2 a record, frame 3 an `int` = 42.
    fn guest() -> (MapStore, BufferMapper) {
        guest_with_type("int")
    }

    /// [`guest`] with the mark's type named `type_name` (frame 5 holds a copy of the
    /// manifest, for republishing it elsewhere).
    fn guest_with_type(type_name: &str) -> (MapStore, BufferMapper) {
        let mut types = TypeTable::new();
        let int = types.push(Type::Base {
            name: type_name.into(),
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
        let mut mem = vec![0u8; 6 * 4096];
        mem[4096..4096 + blob.len()].copy_from_slice(&blob);
        let rec = 2 * 4096 + 64;
        mem[rec..rec + 4].copy_from_slice(&VMARK_RECORD_MAGIC.to_le_bytes());
        mem[rec + 4..rec + 6].copy_from_slice(&(VMARK_ABI_VERSION as u16).to_le_bytes());
        mem[rec + 8..rec + 16].copy_from_slice(&(GVA + 0x3010).to_le_bytes());
        mem[rec + 16..rec + 24].copy_from_slice(&4u64.to_le_bytes());
        mem[3 * 4096 + 0x10..3 * 4096 + 0x14].copy_from_slice(&42i32.to_le_bytes());
        mem[5 * 4096..5 * 4096 + blob.len()].copy_from_slice(&blob);
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
    /// A store shared with the test (which changes it while a [`Refresher`] owns it) that
    /// counts its reads.
    #[derive(Clone, Default)]
    struct SharedStore {
        map: Arc<std::sync::Mutex<HashMap<String, String>>>,
        reads: Arc<std::sync::atomic::AtomicU64>,
    }

    impl SharedStore {
        fn from(s: MapStore) -> Self {
            let st = SharedStore::default();
            *st.map.lock().unwrap() = s.0;
            st
        }
        fn set(&self, k: &str, v: &str) {
            self.map.lock().unwrap().insert(k.into(), v.into());
        }
        fn remove_prefix(&self, p: &str) {
            self.map.lock().unwrap().retain(|k, _| !k.starts_with(p));
        }
        fn reads(&self) -> u64 {
            self.reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Store for SharedStore {
        fn read(&self, path: &str) -> std::io::Result<Option<String>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.map.lock().unwrap().get(path).cloned())
        }
        fn directory(&self, path: &str) -> std::io::Result<Vec<String>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            MapStore(self.map.lock().unwrap().clone()).directory(path)
        }
    }

    fn refresher(s: &SharedStore, m: BufferMapper) -> Refresher {
        Refresher::new(
            Box::new(s.clone()),
            Arc::new(m),
            5,
            vec![MarkSpec::parse("demo/answer"), MarkSpec::parse("answer")],
        )
    }

    #[test]
    fn a_bad_domain_is_a_row_and_the_others_list() {
        let (mut s, m) = guest();
        // Domain 6 publishes an ABI this host does not speak; domain 7 an overlong value;
        // domain 8 nothing (not asked for by name: not listed).
        s.0.insert(format!("{}/abi", root(6)), "2\x1b[2J".into());
        s.0.insert(format!("{}/abi", root(7)), "1".into());
        s.0.insert(format!("{}/generation", root(7)), "9".repeat(5000));
        let domains: Vec<(u32, String)> = [(5, "good"), (6, "bad-abi"), (7, "long"), (8, "plain")]
            .iter()
            .map(|(i, n)| (*i, n.to_string()))
            .collect();
        let mapper_for = |_: u32| -> Box<dyn FrameMapper> { Box::new(m.clone()) };
        let rows = list_domains(&s, &mapper_for, &domains, false);
        let good: Vec<_> = rows.iter().filter(|r| r["domain"] == "good").collect();
        assert_eq!(good.len(), 1);
        assert_eq!(good[0]["mark"], "answer");
        for bad in ["bad-abi", "long"] {
            let r: Vec<_> = rows.iter().filter(|r| r["domain"] == bad).collect();
            assert_eq!(r.len(), 1, "{bad}: {rows:?}");
            assert!(r[0]["error"].is_string(), "{bad}: {:?}", r[0]);
        }
        assert!(rows.iter().all(|r| r["domain"] != "plain"));
        // Asked for by name, the silent one says why.
        let rows = list_domains(&s, &mapper_for, &domains[3..], true);
        assert!(rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("publishes no vmark"));
        // The table escapes what the guest wrote into its error.
        let rows = list_domains(&s, &mapper_for, &domains, false);
        let mut out = Vec::new();
        write_list(rows, false, "none", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("\\x1b[2J"), "{text}");
    }

    #[test]
    fn guest_names_are_escaped_in_the_table_and_kept_in_json() {
        let (s, m) = guest_with_type("int\x1b]0;pwned\x07\u{202e}");
        let marks = open_all(&s, &m, 5).unwrap();
        assert!(marks.errors.is_empty(), "{:?}", marks.errors);
        let mut origin = serde_json::Map::new();
        origin.insert("domain".into(), "g\x1b[31m".into());
        let rows = list_rows(&origin, &marks);
        let mut table = Vec::new();
        write_list(rows.clone(), false, "", &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            !table
                .chars()
                .any(|c| c != '\n' && vmark_proto::text::is_unsafe_char(c)),
            "{table:?}"
        );
        assert!(table.contains("int\\x1b]0;pwned\\x07\\u{202e}"), "{table}");
        let mut json = Vec::new();
        write_list(rows, true, "", &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["type"], "int\x1b]0;pwned\x07\u{202e}");
    }

    #[test]
    fn refreshes_do_work_only_for_what_changed() {
        let (s, m) = guest();
        let s = SharedStore::from(s);
        let mut r = refresher(&s, m);
        let first = r.refresh();
        assert!(first
            .marks
            .values()
            .all(|u| matches!(u, MarkUpdate::Opened(_))));
        assert_eq!((r.cache().decoded, r.cache().compiled), (1, 1));
        // Events with no new generation: only the control entries are read.
        let before = s.reads();
        for _ in 0..100 {
            let again = r.refresh();
            assert!(again.same_generation);
        }
        assert!(
            s.reads() - before <= 100 * 4,
            "{} reads",
            s.reads() - before
        );
        assert_eq!(r.full_refreshes, 1);
        // A new generation with the same entries: nothing is mapped or decoded again.
        s.set(&format!("{}/generation", root(5)), "4");
        let same = r.refresh();
        assert!(!same.same_generation);
        assert!(same
            .marks
            .values()
            .all(|u| matches!(u, MarkUpdate::Unchanged)));
        // The manifest republished elsewhere with the same bytes: the mark is reopened
        // but shares the decoded manifest and the compiled plan (content hash).
        let len = r.seen.values().next().unwrap().0.blob.size;
        s.set(
            &format!("{}/modules/demo/manifest", root(5)),
            &format!("{:x} {len} 5", GVA + 0x5000),
        );
        s.set(&format!("{}/generation", root(5)), "5");
        let moved = r.refresh();
        assert!(moved
            .marks
            .values()
            .all(|u| matches!(u, MarkUpdate::Opened(_))));
        assert_eq!((r.cache().decoded, r.cache().compiled), (1, 1));
        assert_eq!(r.cache().len(), 1);
    }

    #[test]
    fn a_withdrawn_mark_comes_back_and_a_reloaded_helper_is_seen() {
        use crate::watch::{apply_refresh, binding_after, Binding, Bound, HelperEpoch, Watched};
        let (s, m) = guest();
        let s = SharedStore::from(s);
        let mut r = refresher(&s, m);
        let mut watched = BTreeMap::new();
        let first = r.refresh();
        let mut helpers = HelperEpoch::default();
        helpers.observe(&first.helper);
        let bound = first.helper.as_ref().ok().map(|i| Bound {
            port: i.event_channel.unwrap(),
            gref: i.control_gref,
            generation: i.generation,
        });
        let mut last = BTreeMap::new();
        for (k, u) in first.marks {
            let MarkUpdate::Opened(m) = u else { panic!() };
            // Each mark's trigger counter was last seen at 7.
            last.insert(format!("{}/{}", m.module, m.mark.name), 7);
            watched.insert(k, Watched::new(*m, vec![]));
        }
        // The helper unloads: the whole tree goes.
        let saved = s.map.lock().unwrap().clone();
        s.remove_prefix(&root(5));
        let gone = r.refresh();
        assert_eq!(binding_after(bound, &gone.helper, true), Binding::Release);
        let notes = apply_refresh(&mut watched, gone, &[], &mut last, &mut helpers);
        assert_eq!(notes.len(), 2);
        assert!(notes.iter().all(|n| n.0 == "withdrawn"));
        assert!(watched.values().all(|w| w.open.is_none()));
        // A new helper instance publishes again, its generation counting from 1.
        *s.map.lock().unwrap() = saved;
        s.set(&format!("{}/generation", root(5)), "1");
        let back = r.refresh();
        assert!(matches!(
            binding_after(None, &back.helper, false),
            Binding::Bind(_)
        ));
        assert!(matches!(
            binding_after(bound, &back.helper, true),
            Binding::Bind(Bound { generation: 1, .. })
        ));
        let notes = apply_refresh(&mut watched, back, &[], &mut last, &mut helpers);
        assert!(notes.iter().all(|n| n.0 == "back"), "{notes:?}");
        assert!(watched.values().all(|w| w.open.is_some()));
        // Back through another helper instance: the module may be the same one, whose
        // counter went on, so the baseline stays.
        assert!(last.values().all(|&b| b == 7), "{last:?}");
        // The same helper withdraws the marks (their module unloads) and publishes them
        // again (the module is loaded again): a new instance, counting from 0.
        let saved = s.map.lock().unwrap().clone();
        let modules = format!("{}/modules", root(5));
        s.remove_prefix(&modules);
        s.set(&format!("{}/generation", root(5)), "2");
        let unloaded = r.refresh();
        let notes = apply_refresh(&mut watched, unloaded, &[], &mut last, &mut helpers);
        assert!(notes.iter().all(|n| n.0 == "withdrawn"), "{notes:?}");
        *s.map.lock().unwrap() = saved;
        s.set(&format!("{}/generation", root(5)), "3");
        let loaded = r.refresh();
        let notes = apply_refresh(&mut watched, loaded, &[], &mut last, &mut helpers);
        assert!(
            !notes.is_empty() && notes.iter().all(|n| n.0 == "back"),
            "{notes:?}"
        );
        assert!(last.values().all(|&b| b == 0), "{last:?}");
    }

    #[test]
    fn fields_resolve_per_mark_when_several_are_watched() {
        use crate::watch::{check_fields_resolve, resolve_fields, Watched};
        let (s, m) = guest();
        let mut marks = open_all(&s, &m, 5).unwrap();
        let answer = marks.marks.pop_first().expect("the mark").1;
        let fields = ["answer".to_string(), "other.x".to_string()];
        // One mark: a field it lacks is an error, as before.
        assert!(resolve_fields(&answer, &fields, false).is_err());
        // Several: an absent column, empty in this mark's rows; its own field has a value.
        let cols = resolve_fields(&answer, &fields, true).unwrap();
        assert!(!cols[0].is_absent() && cols[1].is_absent());
        assert_eq!(cols[1].text(&42i32.to_le_bytes()), "");
        assert_eq!(
            crate::sample::csv_header(&cols).rsplit(',').next(),
            Some("other.x")
        );
        let mut watched = BTreeMap::new();
        watched.insert("demo/answer".to_string(), Watched::new(answer, cols));
        // No watched mark has `other.x`: the watch does not start.
        let e = check_fields_resolve(&watched, &fields).unwrap_err();
        assert!(e.to_string().contains("other"), "{e}");
        assert!(check_fields_resolve(&watched, &fields[..1]).is_ok());
    }

    #[test]
    fn too_many_modules_is_an_error_item_not_unbounded_work() {
        let (mut s, m) = guest();
        for i in 0..limits::LIVE_MAX_MODULES_PER_DOMAIN + 10 {
            s.0.insert(
                format!("{}/modules/zz{i:04}/manifest", root(5)),
                "garbage".into(),
            );
        }
        let listed = list(&s, 5).unwrap();
        assert_eq!(listed.len(), limits::LIVE_MAX_MODULES_PER_DOMAIN + 1);
        assert!(matches!(
            listed.last().unwrap().manifest,
            Err(GuestError::Entry {
                source: PublishError::TooMany { .. },
                ..
            })
        ));
        // The good module sorts first and still opens.
        let marks = open_all(&s, &m, 5).unwrap();
        assert!(marks.find("answer").is_ok());
    }
}
