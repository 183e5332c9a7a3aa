//! Reading a mapped mark: consistent copies without pausing the guest.
//!
//! A mark written under `VMARK_WRITE_BEGIN/END` has a sequence counter in its record that is
//! odd while a write is open. A read copies the counter, the bytes, and the counter again;
//! if both counters are equal and even, no write overlapped the copy. Otherwise the read is
//! retried a bounded number of times and then reported as torn, never silently mixed.

use crate::frames::Mapping;
use std::mem::offset_of;
use std::sync::atomic::{fence, Ordering};
use vmark_proto::abi::vmark_record;

/// A mark whose frames (the variable's and its record's) are mapped, ready to sample.
#[derive(Debug, Clone)]
pub struct MappedMark {
    var: Mapping,
    var_offset: usize,
    size: usize,
    record: Mapping,
    record_offset: usize,
    has_seq: bool,
}

/// What one read found besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadInfo {
    /// The bytes are one consistent version (always true for marks without a sequence).
    pub consistent: bool,
    /// Attempts beyond the first.
    pub retries: u32,
    /// The write sequence seen (0 for marks without one).
    pub seq: u32,
    /// The record's trigger counter.
    pub triggers: u64,
    /// Guest clock (ns) of the last trigger.
    pub last_trigger_ns: u64,
}

impl MappedMark {
    /// A mark of `size` bytes at `var_offset` in `var`, with its record at `record_offset`
    /// in `record`. Fails when either lies outside its mapping.
    pub fn new(
        var: Mapping,
        var_offset: usize,
        size: usize,
        record: Mapping,
        record_offset: usize,
        has_seq: bool,
    ) -> Option<MappedMark> {
        let fits = |m: &Mapping, off: usize, len: usize| {
            off.checked_add(len).is_some_and(|e| e <= m.len())
        };
        if !fits(&var, var_offset, size) || !fits(&record, record_offset, size_of::<vmark_record>())
        {
            return None;
        }
        Some(MappedMark {
            var,
            var_offset,
            size,
            record,
            record_offset,
            has_seq,
        })
    }

    /// Size of a sample.
    pub fn size(&self) -> usize {
        self.size
    }

    fn record_u32(&self, field: usize) -> u32 {
        self.record
            .read_u32(self.record_offset + field)
            .unwrap_or(0)
    }

    fn record_u64(&self, field: usize) -> u64 {
        self.record
            .read_u64(self.record_offset + field)
            .unwrap_or(0)
    }

    /// The record's current trigger count.
    pub fn triggers(&self) -> u64 {
        self.record_u64(offset_of!(vmark_record, triggers))
    }

    /// Copies the mark into `out` (resized to the mark's size), retrying up to `max_retries`
    /// times while a write overlaps.
    pub fn read(&self, out: &mut Vec<u8>, max_retries: u32) -> ReadInfo {
        out.resize(self.size, 0);
        let seq_at = offset_of!(vmark_record, seq);
        let mut retries = 0;
        loop {
            let before = if self.has_seq {
                self.record_u32(seq_at)
            } else {
                0
            };
            fence(Ordering::Acquire);
            let copied = self.var.copy_out(self.var_offset, out);
            fence(Ordering::Acquire);
            let after = if self.has_seq {
                self.record_u32(seq_at)
            } else {
                0
            };
            let consistent = copied && before == after && before % 2 == 0;
            if consistent || retries >= max_retries {
                return ReadInfo {
                    consistent,
                    retries,
                    seq: after,
                    triggers: self.triggers(),
                    last_trigger_ns: self.record_u64(offset_of!(vmark_record, last_trigger_ns)),
                };
            }
            retries += 1;
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{FrameMapper, MappedMemory};
    use std::sync::Arc;

    struct Shared(Vec<u8>);
    impl MappedMemory for Shared {
        fn base(&self) -> *const u8 {
            self.0.as_ptr()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
    }

    fn record_page(seq: u32, triggers: u64) -> Mapping {
        let mut page = vec![0u8; 4096];
        let at = 128;
        page[at + offset_of!(vmark_record, seq)..][..4].copy_from_slice(&seq.to_le_bytes());
        page[at + offset_of!(vmark_record, triggers)..][..8]
            .copy_from_slice(&triggers.to_le_bytes());
        Mapping::new(Arc::new(Shared(page)))
    }

    #[test]
    fn even_sequence_reads_are_consistent() {
        let var = crate::frames::BufferMapper::new(vec![7u8; 4096])
            .map(&[0])
            .unwrap();
        let m = MappedMark::new(var, 100, 8, record_page(4, 9), 128, true).unwrap();
        let mut buf = Vec::new();
        let info = m.read(&mut buf, 3);
        assert!(info.consistent);
        assert_eq!(info.retries, 0);
        assert_eq!(info.triggers, 9);
        assert_eq!(buf, vec![7u8; 8]);
    }

    #[test]
    fn an_open_write_is_retried_then_flagged() {
        let var = crate::frames::BufferMapper::new(vec![0u8; 4096])
            .map(&[0])
            .unwrap();
        let m = MappedMark::new(var, 0, 8, record_page(5, 0), 128, true).unwrap();
        let mut buf = Vec::new();
        let info = m.read(&mut buf, 3);
        assert!(!info.consistent);
        assert_eq!(info.retries, 3);
    }

    #[test]
    fn out_of_range_marks_are_refused() {
        let var = crate::frames::BufferMapper::new(vec![0u8; 4096])
            .map(&[0])
            .unwrap();
        assert!(MappedMark::new(var.clone(), 4090, 8, record_page(0, 0), 0, false).is_none());
        assert!(MappedMark::new(var, 0, 8, record_page(0, 0), 4090, false).is_none());
    }
}
