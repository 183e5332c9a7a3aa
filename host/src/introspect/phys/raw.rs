//! Raw memory images: byte `n` of the file is guest-physical address `n`.

use super::mapped::FileBytes;
use super::{checked_end, MemError, PhysicalMemory};
use std::fs::File;
use std::path::Path;

/// A flat physical memory image read with `pread`, not mapped: a raw file may be a running
/// guest's RAM (a QEMU memory backend given as `--format raw`) or a device, which change
/// under the reader; the kernel's copy is the only read of such bytes that is not a data
/// race.
#[derive(Debug)]
pub struct RawImage {
    file: FileBytes,
    len: u64,
}

impl RawImage {
    /// Opens an image; its length is the file's length at open time.
    pub fn open(path: &Path) -> Result<Self, MemError> {
        let file =
            File::open(path).map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?
            .len();
        Ok(RawImage::from_file(file, len))
    }

    /// Wraps an open file whose first `len` bytes are physical memory from address 0.
    pub fn from_file(file: File, len: u64) -> Self {
        RawImage {
            file: FileBytes::unmapped(file, len),
            len,
        }
    }
}

impl PhysicalMemory for RawImage {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let end = checked_end(paddr, buf.len())?;
        if end > self.len {
            return Err(MemError::NotPresent(paddr.max(self.len)));
        }
        self.file.read_at(paddr, buf, paddr)
    }
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        let end = checked_end(paddr, len)?;
        if end > self.len {
            return Err(MemError::NotPresent(paddr.max(self.len)));
        }
        self.file.with_bytes(paddr, len, paddr, f)
    }
    fn max_address(&self) -> u64 {
        self.len
    }
}
