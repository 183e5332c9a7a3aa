//! Kernel symbol tables: from the guest's kallsyms ([`super::kallsyms`]) or a
//! `System.map` file, and the KASLR offset between the two.

use hashbrown::hash_table::Entry;
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

/// Symbols indexed by name and by address. Cloning is cheap: the indexes are shared.
#[derive(Clone, Default)]
pub struct SymbolTable {
    index: Arc<Index>,
}

/// The symbols and their two indexes: names hashed (foldhash, no per-name copy: the table
/// holds positions in `symbols`), addresses sorted.
#[derive(Default)]
struct Index {
    symbols: Vec<Symbol>,
    by_name: HashTable<u32>,
    hasher: DefaultHashBuilder,
    by_addr: Vec<u32>,
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
        let hasher = DefaultHashBuilder::default();
        let mut by_name: HashTable<u32> = HashTable::with_capacity(symbols.len());
        let hash_of = |i: &u32| hasher.hash_one(symbols[*i as usize].name.as_str());
        for (i, s) in symbols.iter().enumerate() {
            let hash = hasher.hash_one(s.name.as_str());
            let same = |j: &u32| symbols[*j as usize].name == s.name;
            if let Entry::Vacant(v) = by_name.entry(hash, same, hash_of) {
                // MAX_SYMBOLS < 2^32: the position fits.
                v.insert(i as u32);
            }
        }
        let mut by_addr: Vec<u32> = (0..symbols.len() as u32).collect();
        by_addr.sort_by_key(|&i| symbols[i as usize].addr);
        Ok(SymbolTable {
            index: Arc::new(Index {
                symbols,
                by_name,
                hasher,
                by_addr,
            }),
        })
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
    pub fn get(&self, name: &str) -> Option<&Symbol> {
        let ix = &*self.index;
        let hash = ix.hasher.hash_one(name);
        ix.by_name
            .find(hash, |&i| ix.symbols[i as usize].name == name)
            .map(|&i| &ix.symbols[i as usize])
    }

    /// The symbol at or before `addr` and `addr`'s offset from it.
    pub fn nearest(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let ix = &*self.index;
        let n = ix
            .by_addr
            .partition_point(|&i| ix.symbols[i as usize].addr <= addr);
        let s = &ix.symbols[ix.by_addr[n.checked_sub(1)?] as usize];
        Some((s, addr - s.addr))
    }

    /// All symbols in source order.
    pub fn symbols(&self) -> &[Symbol] {
        &self.index.symbols
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.index.symbols.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.index.symbols.is_empty()
    }

    /// A copy with every address shifted by `delta`: applies a KASLR offset to a
    /// link-time System.map. Absolute symbols (type `A`/`a`) are not moved. A symbol that
    /// would move past either end of the address space is an error, not a wrapped address.
    pub fn relocated(&self, delta: i64) -> Result<Self, SymbolError> {
        let symbols = self
            .symbols()
            .iter()
            .map(|s| {
                let addr = if s.kind.eq_ignore_ascii_case(&'a') {
                    Some(s.addr)
                } else {
                    s.addr.checked_add_signed(delta)
                };
                addr.map(|addr| Symbol { addr, ..s.clone() })
                    .ok_or_else(|| SymbolError::Overflow {
                        name: s.name.clone(),
                        addr: s.addr,
                        delta,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(symbols)
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
    fn system_map_parses_looks_up_and_relocates() {
        let map = "ffffffff81000000 T _text\nffffffff81000000 T startup_64\n\
                   ffffffff82a0c940 D init_task\n0000000000000000 A fixed_percpu_data\n\
                   ffffffffc0000000 t helper [vmark]\n";
        let t = SymbolTable::from_system_map(map).unwrap();
        assert_eq!(t.lookup("init_task"), Some(0xffff_ffff_82a0_c940));
        assert_eq!(t.lookup("helper"), Some(0xffff_ffff_c000_0000));
        let (s, off) = t.nearest(0xffff_ffff_82a0_c950).unwrap();
        assert_eq!((s.name.as_str(), off), ("init_task", 0x10));
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
