//! Physical address ranges backed by ranges of a file, shared by the dump formats.

use super::mapped::FileBytes;
use super::{checked_end, MemError, Region};

/// One run of physical memory stored contiguously in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First guest-physical address.
    pub paddr: u64,
    /// Length in bytes.
    pub len: u64,
    /// File offset of `paddr`.
    pub file_offset: u64,
}

/// Sorted, non-overlapping segments of a file.
#[derive(Debug, Clone, Default)]
pub struct SegmentMap {
    segments: Vec<Segment>,
}

impl SegmentMap {
    /// Builds the map: sorts by address, drops empty segments, merges adjacent ones whose
    /// file ranges are adjacent too, and refuses overlaps and segments beyond `file_len`.
    pub fn new(mut segments: Vec<Segment>, file_len: u64) -> Result<Self, MemError> {
        segments.retain(|s| s.len > 0);
        segments.sort_by_key(|s| s.paddr);
        let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
        for s in segments {
            let end = s.paddr.checked_add(s.len);
            let fend = s.file_offset.checked_add(s.len);
            match (end, fend) {
                (Some(_), Some(fe)) if fe <= file_len => {}
                _ => {
                    return Err(MemError::Format(format!(
                        "segment at {:#x} (+{:#x}) lies outside the file",
                        s.paddr, s.len
                    )))
                }
            }
            if let Some(last) = out.last_mut() {
                let last_end = last.paddr + last.len;
                if s.paddr < last_end {
                    return Err(MemError::Format(format!(
                        "segments overlap at {:#x}",
                        s.paddr
                    )));
                }
                if s.paddr == last_end && s.file_offset == last.file_offset + last.len {
                    last.len += s.len;
                    continue;
                }
            }
            out.push(s);
        }
        Ok(SegmentMap { segments: out })
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Present ranges.
    pub fn regions(&self) -> Vec<Region> {
        self.segments
            .iter()
            .map(|s| Region {
                start: s.paddr,
                len: s.len,
            })
            .collect()
    }

    /// One past the highest address.
    pub fn max_address(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.paddr + s.len)
    }

    fn find(&self, addr: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.paddr <= addr);
        let s = self.segments.get(i.checked_sub(1)?)?;
        (addr < s.paddr + s.len).then_some(s)
    }

    /// File offset of `addr` and how many bytes from there are contiguous in the file.
    pub fn locate(&self, addr: u64) -> Option<(u64, u64)> {
        let s = self.find(addr)?;
        Some((s.file_offset + (addr - s.paddr), s.paddr + s.len - addr))
    }

    /// Reads `buf` at `paddr` from `file`, crossing segments as needed.
    pub fn read(&self, file: &FileBytes, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        checked_end(paddr, buf.len())?;
        let mut done = 0usize;
        while done < buf.len() {
            let addr = paddr + done as u64;
            let (off, avail) = self.locate(addr).ok_or(MemError::NotPresent(addr))?;
            let n = (buf.len() - done).min(usize::try_from(avail).unwrap_or(usize::MAX));
            file.read_at(off, &mut buf[done..done + n], addr)?;
            done += n;
        }
        Ok(())
    }

    /// Runs `f` on the bytes at `paddr..paddr+len`: in place when they lie in one segment
    /// of a mapped file, else on a copy.
    pub fn with_bytes(
        &self,
        file: &FileBytes,
        paddr: u64,
        len: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), MemError> {
        checked_end(paddr, len)?;
        match self.locate(paddr) {
            Some((off, avail)) if avail >= len as u64 => file.with_bytes(off, len, paddr, f),
            _ => {
                let mut buf = vec![0u8; len];
                self.read(file, paddr, &mut buf)?;
                f(&buf);
                Ok(())
            }
        }
    }
}
