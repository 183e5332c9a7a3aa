//! Xen PV frame translation: machine frames (MFNs, what a PV guest's page tables hold) to
//! guest pseudo-physical frames (PFNs, what memory sources are indexed by), and back.
//!
//! Sources of the map:
//! - `xl dump-core` files carry `.xen_p2m` (pfn, mfn) pairs: [`P2mTable::from_pairs`];
//! - a Linux PV guest keeps its own P2M; since Linux 3.19 (and in 6.1) it is a virtually
//!   mapped linear array `xen_p2m_addr[pfn] = mfn` of `xen_p2m_size` entries (see
//!   `arch/x86/xen/p2m.c`), not the 3-level `p2m_top` tree of older kernels:
//!   [`P2mTable::from_linux_linear`] inverts it;
//! - live guests: Xen's own read-only M2P table (`machine_to_phys_mapping`), to be
//!   plugged in through [`MachineToPhys`] by the `xen` feature.

use std::collections::HashMap;

/// Maps machine frame numbers to guest pseudo-physical frame numbers.
pub trait MachineToPhys: Send + Sync {
    /// The PFN backed by machine frame `mfn`, if the guest owns it.
    fn m2p(&self, mfn: u64) -> Option<u64>;
}

/// Maps guest pseudo-physical frame numbers to machine frame numbers.
pub trait PhysToMachine: Send + Sync {
    /// The MFN backing `pfn`.
    fn p2m(&self, pfn: u64) -> Option<u64>;
}

/// Linux marks P2M entries of foreign frames with the top bit.
pub const FOREIGN_FRAME_BIT: u64 = 1 << 63;
/// Linux marks identity-mapped (I/O) P2M entries with bit 62.
pub const IDENTITY_FRAME_BIT: u64 = 1 << 62;
/// Linux's invalid P2M entry.
pub const INVALID_P2M_ENTRY: u64 = u64::MAX;

/// A P2M and its inverse, both held in hash maps (bounded by the input's length).
#[derive(Debug, Clone, Default)]
pub struct P2mTable {
    p2m: HashMap<u64, u64>,
    m2p: HashMap<u64, u64>,
}

impl P2mTable {
    /// From (pfn, mfn) pairs, as in `.xen_p2m`. Pairs with an all-ones pfn or mfn
    /// (`XC_CORE_INVALID_PFN`/`GMFN`) are skipped. A machine frame claimed twice keeps
    /// its first pfn.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut t = P2mTable::default();
        for (pfn, mfn) in pairs {
            if pfn == u64::MAX || mfn == u64::MAX {
                continue;
            }
            t.p2m.entry(pfn).or_insert(mfn);
            t.m2p.entry(mfn).or_insert(pfn);
        }
        t
    }

    /// From a Linux PV guest's linear P2M (`xen_p2m_addr[0..xen_p2m_size]`, read out of
    /// guest memory by the caller): entry `pfn` is the MFN. Invalid, foreign and identity
    /// entries are skipped.
    pub fn from_linux_linear(entries: &[u64]) -> Self {
        Self::from_pairs(
            entries
                .iter()
                .enumerate()
                .filter(|(_, &m)| {
                    m != INVALID_P2M_ENTRY && m & (FOREIGN_FRAME_BIT | IDENTITY_FRAME_BIT) == 0
                })
                .map(|(pfn, &mfn)| (pfn as u64, mfn)),
        )
    }

    /// Number of mapped frames.
    pub fn len(&self) -> usize {
        self.p2m.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.p2m.is_empty()
    }
}

impl MachineToPhys for P2mTable {
    fn m2p(&self, mfn: u64) -> Option<u64> {
        self.m2p.get(&mfn).copied()
    }
}

impl PhysToMachine for P2mTable {
    fn p2m(&self, pfn: u64) -> Option<u64> {
        self.p2m.get(&pfn).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_pairs_and_linux_arrays() {
        let t = P2mTable::from_pairs([(0, 0x500), (1, 0x123), (u64::MAX, u64::MAX)]);
        assert_eq!(t.m2p(0x123), Some(1));
        assert_eq!(t.p2m(0), Some(0x500));
        assert_eq!(t.m2p(7), None);
        assert_eq!(t.len(), 2);
        let l = P2mTable::from_linux_linear(&[
            0x900,
            INVALID_P2M_ENTRY,
            0x77 | IDENTITY_FRAME_BIT,
            0x42,
        ]);
        assert_eq!(l.m2p(0x42), Some(3));
        assert_eq!(l.m2p(0x900), Some(0));
        assert_eq!(l.len(), 2);
    }
}
