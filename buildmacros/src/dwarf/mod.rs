//! DWARF → [`vmark_proto::TypeTable`]: the exact C types of a module's variables.
//!
//! [`DebugInfo::parse`] reads an ELF relocatable object (`.o`, `.ko`) or a linked file,
//! applies the relocations of its debug sections (a `.ko`'s `.debug_info` refers to
//! `.debug_str`, `.debug_abbrev`, `.debug_line_str`, ... only through RELA entries), and
//! indexes every type and variable DIE of every unit in one pass. DWARF 2 to 5 are read;
//! bitfields in both the `DW_AT_data_bit_offset` form (DWARF 4+/5) and the older
//! `DW_AT_bit_offset` + `DW_AT_byte_size` form become [`vmark_proto::Bitfield`]s counted in
//! little-endian bit order from the start of the directly enclosing struct or union.
//!
//! Types are identified across units: a declaration (`struct sock;`) stands for the first
//! definition of that tag anywhere in the object, and named structs, unions and enums with
//! the same kind, name and size, and base types with the same name, size and encoding,
//! become one [`vmark_proto::TypeId`]. Nothing here recurses on the type graph: closures use
//! explicit work lists, so malformed or adversarial DWARF cannot overflow the stack.
//! Limitation: DWARF 4 `.debug_types` type units are not read (gcc uses them only with
//! `-fdebug-types-section`, which Kbuild does not pass).

mod closure;
mod elf;
mod index;
#[cfg(test)]
mod tests;

use index::{Index, Kind, Ref};
use object::SectionIndex;
use std::collections::HashMap;
use vmark_proto::{AggregateKind, TypeError, TypeId, TypeTable};

/// Why debug info could not be read or a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DwarfError {
    /// The object has no `.debug_info` (or an empty one).
    #[error("{}no DWARF debug info (.debug_info is missing or empty): build the kernel/module with CONFIG_DEBUG_INFO=y (and not CONFIG_DEBUG_INFO_NONE), or compile with -g", if path_hint.is_empty() { String::new() } else { format!("{path_hint}: ") })]
    NoDebugInfo {
        /// The file concerned, when known (may be empty).
        path_hint: String,
    },
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not an ELF object this reader understands.
    #[error("cannot read the ELF object: {0}")]
    Object(#[from] object::Error),
    /// The DWARF is malformed.
    #[error("malformed DWARF: {0}")]
    Dwarf(#[from] gimli::Error),
    /// A relocation of a debug section cannot be applied.
    #[error("bad debug-section relocation: {0}")]
    Relocation(String),
    /// A named type or variable does not exist in the debug info.
    #[error("{0} not found in the debug info")]
    NotFound(String),
    /// The DWARF describes types that do not form a valid table (e.g. a struct containing
    /// itself by value, a member outside its struct).
    #[error("the DWARF's types are inconsistent: {0}")]
    Types(#[from] TypeError),
}

impl DwarfError {
    /// Adds the file name to a [`DwarfError::NoDebugInfo`] (other errors are unchanged).
    pub fn with_path(self, path: &str) -> Self {
        match self {
            DwarfError::NoDebugInfo { .. } => DwarfError::NoDebugInfo {
                path_hint: path.to_string(),
            },
            e => e,
        }
    }
}

/// A type DIE to start a closure from (obtained from a [`Variable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeRoot(Ref);

/// A global or static variable described by the debug info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Its type, for [`DebugInfo::type_closure`].
    pub ty: TypeRoot,
    /// `sizeof` the variable, when the type has a known size.
    pub size: Option<u64>,
}

/// The debug info of one ELF object, indexed and owned (no borrow of the file's bytes).
pub struct DebugInfo {
    index: Index,
    /// Node → the node that stands for it (definition for declarations, first of equal
    /// named types across units).
    canon: Vec<u32>,
    /// (is a union, tag name) → first definition with members.
    aggregates: HashMap<(bool, String), u32>,
    /// Typedef name → first typedef node.
    typedefs: HashMap<String, u32>,
    /// (section, offset) → variable.
    var_at: HashMap<(usize, u64), u32>,
    /// Name → variable (definitions with an address preferred).
    var_named: HashMap<String, u32>,
}

impl std::fmt::Debug for DebugInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugInfo")
            .field("types", &self.index.nodes.len())
            .field("variables", &self.index.vars.len())
            .finish()
    }
}

impl DebugInfo {
    /// Reads the DWARF of a whole ELF file (`data`), relocations applied.
    pub fn parse(data: &[u8]) -> Result<DebugInfo, DwarfError> {
        let sections = elf::load(data)?;
        let index = index::build(&sections)?;
        if index.nodes.is_empty() && index.vars.is_empty() {
            return Err(DwarfError::NoDebugInfo {
                path_hint: String::new(),
            });
        }
        Ok(Self::from_index(index))
    }

    /// Reads a file and parses it; a missing-debug-info error names the file.
    pub fn parse_file(path: &std::path::Path) -> Result<DebugInfo, DwarfError> {
        let data = std::fs::read(path).map_err(|source| DwarfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data).map_err(|e| e.with_path(&path.display().to_string()))
    }

    fn from_index(index: Index) -> DebugInfo {
        let n = index.nodes.len();
        let mut canon: Vec<u32> = (0..n as u32).collect();
        let mut aggregates: HashMap<(bool, String), u32> = HashMap::new();
        let mut enums: HashMap<String, u32> = HashMap::new();
        let mut declared: HashMap<(u8, String), u32> = HashMap::new();
        let mut same: HashMap<(u8, String, u64), u32> = HashMap::new();
        let mut typedefs: HashMap<String, u32> = HashMap::new();
        // First pass: definitions by name, and equal named types by (kind, name, size).
        for (i, node) in index.nodes.iter().enumerate() {
            let i = i as u32;
            let Some(name) = &node.name else { continue };
            let key_kind = match &node.kind {
                Kind::Aggregate(AggregateKind::Struct, _) => 1,
                Kind::Aggregate(AggregateKind::Union, _) => 2,
                Kind::Enum(..) => 3,
                Kind::Base(enc) => 10 + *enc as u8,
                Kind::Typedef => {
                    typedefs.entry(name.clone()).or_insert(i);
                    continue;
                }
                _ => continue,
            };
            if node.declaration || node.size.is_none() {
                declared.entry((key_kind, name.clone())).or_insert(i);
                continue;
            }
            let size = node.size.unwrap_or(0);
            let first = *same.entry((key_kind, name.clone(), size)).or_insert(i);
            canon[i as usize] = first;
            match &node.kind {
                Kind::Aggregate(k, _) => {
                    aggregates
                        .entry((is_union(*k), name.clone()))
                        .or_insert(first);
                }
                Kind::Enum(..) => {
                    enums.entry(name.clone()).or_insert(first);
                }
                _ => {}
            }
        }
        // Declarations stand for a definition of the same tag, else for the first declaration.
        for (i, node) in index.nodes.iter().enumerate() {
            let Some(name) = &node.name else { continue };
            if !(node.declaration || node.size.is_none()) {
                continue;
            }
            let def = match &node.kind {
                Kind::Aggregate(k, _) => aggregates.get(&(is_union(*k), name.clone())).copied(),
                Kind::Enum(..) => enums.get(name).copied(),
                _ => continue,
            };
            let key_kind = match &node.kind {
                Kind::Aggregate(AggregateKind::Struct, _) => 1,
                Kind::Aggregate(AggregateKind::Union, _) => 2,
                Kind::Enum(..) => 3,
                Kind::Base(enc) => 10 + *enc as u8,
                _ => continue,
            };
            canon[i] = def
                .or_else(|| declared.get(&(key_kind, name.clone())).copied())
                .unwrap_or(i as u32);
        }

        let mut var_at = HashMap::new();
        let mut var_named: HashMap<String, u32> = HashMap::new();
        for (i, v) in index.vars.iter().enumerate() {
            let i = i as u32;
            if let Some(a) = v.addr {
                var_at.entry((a.section.0, a.offset)).or_insert(i);
            }
            if let Some(name) = var_name(&index, i) {
                let better = match var_named.get(&name) {
                    None => true,
                    Some(&old) => index.vars[old as usize].addr.is_none() && v.addr.is_some(),
                };
                if better {
                    var_named.insert(name, i);
                }
            }
        }
        DebugInfo {
            index,
            canon,
            aggregates,
            typedefs,
            var_at,
            var_named,
        }
    }

    /// The global or static variable whose `DW_AT_location` is a single `DW_OP_addr` that
    /// resolves (through relocations) to `offset` within ELF section `section`.
    pub fn variable_at(&self, section: SectionIndex, offset: u64) -> Option<Variable> {
        let i = *self.var_at.get(&(section.0, offset))?;
        self.variable(i)
    }

    /// The variable with this name (a definition with a static address, if there is one).
    pub fn variable_named(&self, name: &str) -> Option<Variable> {
        let i = *self.var_named.get(name)?;
        self.variable(i)
    }

    fn variable(&self, i: u32) -> Option<Variable> {
        let name = var_name(&self.index, i)?;
        let ty = var_type(&self.index, i)?;
        Some(Variable {
            name,
            ty: TypeRoot(ty),
            size: self.size_of_ref(ty),
        })
    }

    /// Size of the type a reference names, following typedefs, qualifiers, declarations and
    /// arrays (a flexible array counts 0), within a bounded number of steps.
    fn size_of_ref(&self, r: Ref) -> Option<u64> {
        let mut node = self.canon_of(r)?;
        let mut mult: u64 = 1;
        for _ in 0..vmark_proto::types::MAX_TYPE_DEPTH {
            let n = &self.index.nodes[node as usize];
            match &n.kind {
                Kind::Typedef | Kind::Qualified(_) | Kind::Array(_) => {
                    if let Kind::Array(dims) = &n.kind {
                        for d in dims {
                            mult = mult.checked_mul(d.unwrap_or(0))?;
                        }
                    }
                    node = self.canon_of(n.ty?)?;
                }
                Kind::Pointer => {
                    return mult.checked_mul(n.size.unwrap_or(u64::from(n.address_size)))
                }
                Kind::Void | Kind::Function(..) => return None,
                _ => return mult.checked_mul(n.size?),
            }
        }
        None
    }

    fn canon_of(&self, r: Ref) -> Option<u32> {
        self.index
            .node(r)
            .and_then(|n| self.canon.get(n as usize).copied())
    }

    /// The closure of the types reachable from `roots`: types reached by value (members,
    /// array elements, typedef targets) fully; structs and unions reached through more than
    /// `pointer_depth` pointers (or function signatures) become [`vmark_proto::Type::Opaque`]
    /// with their size. `pointer_depth` 0 makes every pointer's target struct opaque.
    /// Returns the table (validated) and the roots' ids, in the order of `roots`.
    pub fn type_closure(
        &self,
        roots: &[TypeRoot],
        pointer_depth: u32,
    ) -> Result<(TypeTable, Vec<TypeId>), DwarfError> {
        let roots: Vec<Ref> = roots.iter().map(|r| r.0).collect();
        let (table, ids) = closure::build(self, &roots, pointer_depth)?;
        table.validate()?;
        Ok((table, ids))
    }

    /// A struct or union by name (`"struct sock"`, `"union foo"`, or a bare tag or typedef
    /// name such as `"sock"`), with the closure of its types as in
    /// [`DebugInfo::type_closure`].
    pub fn aggregate(
        &self,
        name: &str,
        pointer_depth: u32,
    ) -> Result<(TypeTable, TypeId), DwarfError> {
        let node = self
            .find_aggregate(name)
            .ok_or_else(|| DwarfError::NotFound(format!("type {name:?}")))?;
        let (table, ids) = closure::build_nodes(self, &[node], pointer_depth)?;
        table.validate()?;
        let id = ids
            .first()
            .copied()
            .ok_or_else(|| DwarfError::NotFound(format!("type {name:?}")))?;
        Ok((table, id))
    }

    /// Several structs or unions by name (as in [`DebugInfo::aggregate`]) in one table, so
    /// that a struct reached from one root by pointer is the same entry as the root that
    /// defines it. Names without a definition in the debug info are `None`; the table holds
    /// the closure of those found.
    pub fn aggregates(
        &self,
        names: &[&str],
        pointer_depth: u32,
    ) -> Result<(TypeTable, Vec<Option<TypeId>>), DwarfError> {
        let found: Vec<Option<u32>> = names.iter().map(|n| self.find_aggregate(n)).collect();
        let nodes: Vec<u32> = found.iter().flatten().copied().collect();
        let (table, ids) = closure::build_nodes(self, &nodes, pointer_depth)?;
        table.validate()?;
        let mut ids = ids.into_iter();
        let out = found.iter().map(|f| f.and_then(|_| ids.next())).collect();
        Ok((table, out))
    }

    fn find_aggregate(&self, name: &str) -> Option<u32> {
        let name = name.trim();
        let (kinds, bare): (&[AggregateKind], &str) = match name.split_once(' ') {
            Some(("struct", rest)) => (&[AggregateKind::Struct], rest.trim()),
            Some(("union", rest)) => (&[AggregateKind::Union], rest.trim()),
            _ => (&[AggregateKind::Struct, AggregateKind::Union], name),
        };
        for k in kinds {
            if let Some(&n) = self.aggregates.get(&(is_union(*k), bare.to_string())) {
                return Some(n);
            }
        }
        if kinds.len() == 2 {
            // A typedef name (`sk_buff_data_t`-style names of structs).
            let mut node = *self.typedefs.get(bare)?;
            for _ in 0..vmark_proto::types::MAX_TYPE_DEPTH {
                let n = &self.index.nodes[node as usize];
                match &n.kind {
                    Kind::Typedef | Kind::Qualified(_) => node = self.canon_of(n.ty?)?,
                    Kind::Aggregate(..) if !n.declaration => return Some(node),
                    _ => return None,
                }
            }
        }
        None
    }

    /// `struct NAME` / `union NAME` for every named struct or union that has a definition,
    /// sorted, without duplicates.
    pub fn aggregate_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .aggregates
            .keys()
            .map(|(u, n)| format!("{} {n}", if *u { "union" } else { "struct" }))
            .collect();
        v.sort();
        v
    }

    /// Names of all variables with a static address (for listings and diagnostics).
    pub fn variable_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .var_named
            .iter()
            .filter(|(_, &i)| self.index.vars[i as usize].addr.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }
}

/// A variable's name, from itself or from the declaration its definition refers to.
fn var_name(index: &Index, i: u32) -> Option<String> {
    follow_var(index, i, |v| v.name.clone())
}

fn var_type(index: &Index, i: u32) -> Option<Ref> {
    follow_var(index, i, |v| v.ty)
}

fn follow_var<T>(index: &Index, mut i: u32, get: impl Fn(&index::Var) -> Option<T>) -> Option<T> {
    for _ in 0..8 {
        let v = index.vars.get(i as usize)?;
        if let Some(x) = get(v) {
            return Some(x);
        }
        let Ref::Off(o) = v.origin? else { return None };
        i = *index.var_by_offset.get(&o)?;
    }
    None
}

/// Map key for an aggregate kind (`AggregateKind` is not `Hash`).
fn is_union(k: AggregateKind) -> bool {
    k == AggregateKind::Union
}
