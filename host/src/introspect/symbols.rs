//! Kernel symbol tables: from the guest's kallsyms ([`super::kallsyms`]) or a
//! `System.map` file, and the KASLR offset between the two.

use hashbrown::hash_table::Entry as Slot;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;

/// x86-64 link-time address of `_text` (`__START_KERNEL_map + CONFIG_PHYSICAL_START`
/// with the default 16 MiB): KASLR shifts the kernel from here.
pub const X86_64_DEFAULT_TEXT: u64 = 0xffff_ffff_8100_0000;

/// Most symbols accepted from any source.
pub const MAX_SYMBOLS: usize = 1 << 22;

/// One kernel symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Name.
    pub name: String,
    /// Virtual address.
    pub addr: u64,
    /// `nm`-style type letter (`T` text, `D` data, `r` local rodata, ...).
    pub kind: char,
}

/// Why a symbol table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// A System.map line is malformed.
    #[error("System.map line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// More than [`MAX_SYMBOLS`] symbols.
    #[error("more than {MAX_SYMBOLS} symbols")]
    TooMany,
    /// Relocating a symbol would overflow the address space.
    #[error("symbol {} at {addr:#x} moved by {delta:#x} overflows", vmark_proto::text::escape(.name))]
    Overflow {
        /// The symbol.
        name: String,
        /// Its address.
        addr: u64,
        /// The shift.
        delta: i64,
    },
}

/// A symbol of a table, its name borrowed from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolRef<'a> {
    /// Name.
    pub name: &'a str,
    /// Virtual address.
    pub addr: u64,
    /// `nm`-style type letter.
    pub kind: char,
}

impl SymbolRef<'_> {
    /// An owned copy.
    pub fn to_symbol(&self) -> Symbol {
        Symbol {
            name: self.name.to_string(),
            addr: self.addr,
            kind: self.kind,
        }
    }
}

/// Symbols indexed by name and by address. Cloning is cheap: the indexes are shared.
#[derive(Clone, Default)]
pub struct SymbolTable {
    index: Arc<Index>,
}

/// One symbol of the table: its name is `names[start..start + len]`.
#[derive(Clone, Copy)]
struct Entry {
    addr: u64,
    start: u32,
    len: u32,
    kind: char,
}

/// The symbols and their two indexes. Names live in one string (a kernel has 150,000 of
/// them: one allocation, not one each); the name index is a hash table of positions
/// (foldhash, no copy of any name); the address index is positions sorted by address.
#[derive(Default)]
struct Index {
    names: String,
    entries: Vec<Entry>,
    by_name: HashTable<u32>,
    hasher: DefaultHashBuilder,
    by_addr: Vec<u32>,
}

impl Index {
    fn name(&self, e: &Entry) -> &str {
        // start..start+len was a whole pushed &str: in bounds, on char boundaries.
        &self.names[e.start as usize..(e.start + e.len) as usize]
    }
    fn symbol(&self, i: u32) -> SymbolRef<'_> {
        let e = &self.entries[i as usize];
        SymbolRef {
            name: self.name(e),
            addr: e.addr,
            kind: e.kind,
        }
    }
}

/// Builds a [`SymbolTable`] one symbol at a time, without an allocation per name.
#[derive(Default)]
pub struct SymbolTableBuilder {
    names: String,
    entries: Vec<Entry>,
}

impl SymbolTableBuilder {
    /// A builder with room for `symbols` symbols and `name_bytes` bytes of names.
    pub fn with_capacity(symbols: usize, name_bytes: usize) -> Self {
        SymbolTableBuilder {
            names: String::with_capacity(name_bytes),
            entries: Vec::with_capacity(symbols.min(MAX_SYMBOLS)),
        }
    }

    /// Adds a symbol; more than [`MAX_SYMBOLS`], or names past 4 GiB in all, is an error.
    pub fn push(&mut self, name: &str, addr: u64, kind: char) -> Result<(), SymbolError> {
        let start = u32::try_from(self.names.len()).map_err(|_| SymbolError::TooMany)?;
        let len = u32::try_from(name.len()).map_err(|_| SymbolError::TooMany)?;
        if self.entries.len() >= MAX_SYMBOLS || start.checked_add(len).is_none() {
            return Err(SymbolError::TooMany);
        }
        self.names.push_str(name);
        self.entries.push(Entry {
            addr,
            start,
            len,
            kind,
        });
        Ok(())
    }

    /// The table, indexed. The first symbol of a duplicated name wins for lookups.
    pub fn build(self) -> SymbolTable {
        let mut ix = Index {
            names: self.names,
            entries: self.entries,
            ..Index::default()
        };
        let mut by_name: HashTable<u32> = HashTable::with_capacity(ix.entries.len());
        for i in 0..ix.entries.len() as u32 {
            let name = ix.name(&ix.entries[i as usize]);
            let hash = ix.hasher.hash_one(name);
            let same = |j: &u32| ix.name(&ix.entries[*j as usize]) == name;
            let hash_of = |j: &u32| ix.hasher.hash_one(ix.name(&ix.entries[*j as usize]));
            if let Slot::Vacant(v) = by_name.entry(hash, same, hash_of) {
                v.insert(i);
            }
        }
        ix.by_name = by_name;
        let mut by_addr: Vec<u32> = (0..ix.entries.len() as u32).collect();
        by_addr.sort_by_key(|&i| ix.entries[i as usize].addr);
        ix.by_addr = by_addr;
        SymbolTable {
            index: Arc::new(ix),
        }
    }
}

impl std::fmt::Debug for SymbolTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymbolTable")
            .field("symbols", &self.len())
            .finish()
    }
}

impl SymbolTable {
    /// Builds the indexes. The first symbol of a duplicated name wins for lookups.
    pub fn new(symbols: Vec<Symbol>) -> Result<Self, SymbolError> {
        if symbols.len() > MAX_SYMBOLS {
            return Err(SymbolError::TooMany);
        }
        let bytes = symbols.iter().map(|s| s.name.len()).sum();
        let mut b = SymbolTableBuilder::with_capacity(symbols.len(), bytes);
        for s in &symbols {
            b.push(&s.name, s.addr, s.kind)?;
        }
        Ok(b.build())
    }

    /// Parses `System.map` text (`<hex address> <type> <name>` per line; a `[module]`
    /// suffix is kept out of the name).
    pub fn from_system_map(text: &str) -> Result<Self, SymbolError> {
        let mut symbols = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |reason: &str| SymbolError::Line {
                line: i + 1,
                reason: reason.to_string(),
            };
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected: address type name"));
            };
            let addr = u64::from_str_radix(addr, 16).map_err(|_| bad("bad address"))?;
            let kind = kind
                .chars()
                .next()
                .filter(|_| kind.len() == 1)
                .ok_or_else(|| bad("bad type"))?;
            if symbols.len() >= MAX_SYMBOLS {
                return Err(SymbolError::TooMany);
            }
            symbols.push(Symbol {
                name: name.to_string(),
                addr,
                kind,
            });
        }
        Self::new(symbols)
    }

    /// Address of `name`.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.get(name).map(|s| s.addr)
    }

    /// The symbol named `name`.
    pub fn get(&self, name: &str) -> Option<SymbolRef<'_>> {
        let ix = &*self.index;
        let hash = ix.hasher.hash_one(name);
        ix.by_name
            .find(hash, |&i| ix.name(&ix.entries[i as usize]) == name)
            .map(|&i| ix.symbol(i))
    }

    /// The symbol at or before `addr` and `addr`'s offset from it.
    pub fn nearest(&self, addr: u64) -> Option<(SymbolRef<'_>, u64)> {
        let ix = &*self.index;
        let n = ix
            .by_addr
            .partition_point(|&i| ix.entries[i as usize].addr <= addr);
        let s = ix.symbol(ix.by_addr[n.checked_sub(1)?]);
        Some((s, addr - s.addr))
    }

    /// All symbols in source order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SymbolRef<'_>> + '_ {
        let ix = &*self.index;
        (0..ix.entries.len() as u32).map(move |i| ix.symbol(i))
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// A copy with every address shifted by `delta`: applies a KASLR offset to a
    /// link-time System.map. Absolute symbols (type `A`/`a`) are not moved. A symbol that
    /// would move past either end of the address space is an error, not a wrapped address.
    pub fn relocated(&self, delta: i64) -> Result<Self, SymbolError> {
        let ix = &*self.index;
        let mut b = SymbolTableBuilder::with_capacity(self.len(), ix.names.len());
        for s in self.iter() {
            let addr = if s.kind.eq_ignore_ascii_case(&'a') {
                Some(s.addr)
            } else {
                s.addr.checked_add_signed(delta)
            };
            let addr = addr.ok_or_else(|| SymbolError::Overflow {
                name: s.name.to_string(),
                addr: s.addr,
                delta,
            })?;
            b.push(s.name, addr, s.kind)?;
        }
        Ok(b.build())
    }

    /// The KASLR slide of this table relative to a link-time table: `_text` here minus
    /// `_text` there.
    pub fn kaslr_offset_from(&self, link_time: &SymbolTable) -> Option<i64> {
        Some(
            self.lookup("_text")?
                .wrapping_sub(link_time.lookup("_text")?) as i64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_duplicated_name_wins_and_iteration_keeps_source_order() {
        let mut b = SymbolTableBuilder::with_capacity(0, 0);
        for (name, addr) in [("b", 0x30u64), ("a", 0x10), ("b", 0x20), ("", 0x40)] {
            b.push(name, addr, 't').unwrap();
        }
        let t = b.build();
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup("b"), Some(0x30));
        assert_eq!(t.lookup(""), Some(0x40));
        assert_eq!(t.lookup("c"), None);
        let names: Vec<&str> = t.iter().map(|s| s.name).collect();
        assert_eq!(names, ["b", "a", "b", ""]);
        assert_eq!(t.nearest(0x2f).map(|(s, o)| (s.addr, o)), Some((0x20, 0xf)));
        assert!(t.nearest(0xf).is_none());
        let copy = t.clone();
        assert_eq!(
            copy.get("a").map(|s| s.to_symbol().name),
            Some("a".to_string())
        );
    }

    #[test]
    fn system_map_parses_looks_up_and_relocates() {
        let map = "ffffffff81000000 T _text\nffffffff81000000 T startup_64\n\
                   ffffffff82a0c940 D init_task\n0000000000000000 A fixed_percpu_data\n\
                   ffffffffc0000000 t helper [vmark]\n";
        let t = SymbolTable::from_system_map(map).unwrap();
        assert_eq!(t.lookup("init_task"), Some(0xffff_ffff_82a0_c940));
        assert_eq!(t.lookup("helper"), Some(0xffff_ffff_c000_0000));
        let (s, off) = t.nearest(0xffff_ffff_82a0_c950).unwrap();
        assert_eq!((s.name, off), ("init_task", 0x10));
        assert!(t.nearest(0x10).unwrap().0.name == "fixed_percpu_data");
        let r = t.relocated(0x1e00_0000).unwrap();
        assert_eq!(r.lookup("_text"), Some(0xffff_ffff_9f00_0000));
        assert_eq!(r.lookup("fixed_percpu_data"), Some(0));
        assert_eq!(r.kaslr_offset_from(&t), Some(0x1e00_0000));
        // A shift past the top of the address space is refused, not wrapped to low memory.
        assert!(matches!(
            t.relocated(0x7fff_ffff_0000_0000),
            Err(SymbolError::Overflow { .. })
        ));
        assert!(SymbolTable::from_system_map("zz T x").is_err());
        assert!(SymbolTable::from_system_map("ffff").is_err());
    }
}
