//! A fixed-capacity cache with clock (second-chance) eviction.
//!
//! Used for translated pages and for copies of guest frames.
//! Capacity is fixed at construction: inserting never grows it past that, whatever the
//! guest does, and every operation is O(1) amortised (the clock hand sweeps at most twice
//! around the ring).

use hashbrown::HashMap;
use std::hash::Hash;

struct Slot<K, V> {
    key: K,
    value: V,
    referenced: bool,
}

/// A bounded map from `K` to `V` evicting with the clock algorithm.
pub struct ClockCache<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Slot<K, V>>,
    hand: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl<K: Hash + Eq + Copy, V> ClockCache<K, V> {
    /// A cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ClockCache {
            index: HashMap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    /// The entry for `key`, marking it recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        match self.index.get(key) {
            Some(&i) => {
                self.hits += 1;
                let slot = &mut self.slots[i];
                slot.referenced = true;
                Some(&slot.value)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Inserts or replaces the entry for `key`, evicting one entry when full.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i];
            slot.value = value;
            slot.referenced = true;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(Slot {
                key,
                value,
                referenced: false,
            });
            return;
        }
        // Second chance: clear reference bits until an unreferenced slot comes round.
        // Terminates within two sweeps because the first sweep clears every bit.
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.capacity;
            let slot = &mut self.slots[i];
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.index.remove(&slot.key);
            self.index.insert(key, i);
            *slot = Slot {
                key,
                value,
                referenced: false,
            };
            return;
        }
    }

    /// Drops every entry (hit and miss counters are kept).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// (hits, misses) since construction.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_capacity_and_keeps_recently_used_entries() {
        let mut c = ClockCache::new(4);
        for k in 0..4u64 {
            c.insert(k, k * 10);
        }
        assert_eq!(c.get(&0), Some(&0));
        c.insert(4, 40); // evicts 1 (0 has its second chance)
        assert_eq!(c.len(), 4);
        assert!(c.get(&1).is_none());
        assert_eq!(c.get(&0), Some(&0));
        assert_eq!(c.get(&4), Some(&40));
        for k in 100..10_000u64 {
            c.insert(k, k);
            assert!(c.len() <= 4);
        }
        c.clear();
        assert!(c.is_empty());
        assert!(c.get(&9999).is_none());
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut c = ClockCache::new(2);
        c.insert(1u32, "a");
        c.insert(1, "b");
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&1), Some(&"b"));
    }
}
