//! The translation cache: a direct-mapped table of (page-table root, virtual page) →
//! physical page, of fixed size.
//!
//! Direct-mapped because a cached translation must cost about what a hash-table probe
//! does (one multiply, one index, two compares) and nothing is ever allocated after
//! construction: a hostile guest's address spaces can only evict entries, never grow the
//! table. A conflict evicts the previous entry, which a walk re-creates.

/// One cached translation; `root == EMPTY` marks a free slot (no page-table root is at
/// the top of the address space: roots are page-aligned physical addresses).
#[derive(Clone, Copy)]
struct Entry {
    root: u64,
    vpage: u64,
    ppage: u64,
}

const EMPTY: u64 = u64::MAX;
const FREE: Entry = Entry {
    root: EMPTY,
    vpage: 0,
    ppage: 0,
};

/// Most slots a cache is made with (24 MiB of entries).
pub const MAX_ENTRIES: usize = 1 << 20;

/// A fixed-size direct-mapped translation cache.
pub struct Tlb {
    entries: Box<[Entry]>,
    mask: usize,
    hits: u64,
    misses: u64,
}

impl Tlb {
    /// A cache of `entries` slots, rounded up to a power of two (at least 1, at most
    /// [`MAX_ENTRIES`]).
    pub fn new(entries: usize) -> Self {
        let n = entries.clamp(1, MAX_ENTRIES).next_power_of_two();
        Tlb {
            entries: vec![FREE; n].into_boxed_slice(),
            mask: n - 1,
            hits: 0,
            misses: 0,
        }
    }

    fn slot(&self, root: u64, vpage: u64) -> usize {
        // Fibonacci hashing of the page number mixed with the root: neighbouring pages
        // land in different slots, and one page in two address spaces does too.
        let key = vpage ^ root.rotate_left(29);
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & self.mask
    }

    /// The physical page cached for `vpage` (a virtual address divided by the page size)
    /// under `root`.
    pub fn get(&mut self, root: u64, vpage: u64) -> Option<u64> {
        let e = self.entries[self.slot(root, vpage)];
        if e.root == root && e.vpage == vpage && root != EMPTY {
            self.hits += 1;
            Some(e.ppage)
        } else {
            self.misses += 1;
            None
        }
    }

    /// Caches `ppage` for (`root`, `vpage`), replacing whatever shared its slot.
    pub fn insert(&mut self, root: u64, vpage: u64, ppage: u64) {
        if root == EMPTY {
            return;
        }
        let i = self.slot(root, vpage);
        self.entries[i] = Entry { root, vpage, ppage };
    }

    /// Forgets every translation.
    pub fn clear(&mut self) {
        self.entries.fill(FREE);
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_per_root_evicts_on_conflict_and_clears() {
        assert_eq!(Tlb::new(usize::MAX).entries.len(), MAX_ENTRIES);
        let mut t = Tlb::new(5);
        assert_eq!(t.entries.len(), 8);
        assert_eq!(t.get(0x1000, 7), None);
        t.insert(0x1000, 7, 0x42);
        assert_eq!(t.get(0x1000, 7), Some(0x42));
        assert_eq!(t.get(0x2000, 7), None, "another address space");
        t.insert(0x2000, 7, 0x43);
        // Whatever the slots, each answer is the one inserted for that key or none.
        for (root, want) in [(0x1000, 0x42), (0x2000, 0x43)] {
            assert!(matches!(t.get(root, 7), Some(p) if p == want) || t.get(root, 7).is_none());
        }
        for v in 0..64 {
            t.insert(0x3000, v, v + 100);
        }
        let cached = (0..64)
            .filter(|&v| t.get(0x3000, v) == Some(v + 100))
            .count();
        assert!((1..=8).contains(&cached), "{cached}");
        assert!((0..64).all(|v| t.get(0x3000, v).is_none_or(|p| p == v + 100)));
        t.clear();
        assert!((0..64).all(|v| t.get(0x3000, v).is_none()));
        t.insert(EMPTY, 1, 2);
        assert_eq!(t.get(EMPTY, 1), None, "the free marker is never a key");
    }
}
