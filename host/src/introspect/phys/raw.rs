//! Raw memory images: byte `n` of the file is guest-physical address `n`.

use super::{checked_end, MemError, PhysicalMemory};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A flat physical memory image read with `pread` (no mapping: the file may shrink or be
/// a device, and `pread` reports that as an error instead of a SIGBUS).
#[derive(Debug)]
pub struct RawImage {
    file: File,
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
        Ok(RawImage { file, len })
    }

    /// Wraps an open file whose first `len` bytes are physical memory from address 0.
    pub fn from_file(file: File, len: u64) -> Self {
        RawImage { file, len }
    }
}

/// Reads `buf.len()` bytes at file offset `off`, naming `addr` in errors.
pub(crate) fn pread_exact(
    file: &File,
    off: u64,
    buf: &mut [u8],
    addr: u64,
) -> Result<(), MemError> {
    file.read_exact_at(buf, off).map_err(|e| MemError::Io {
        addr,
        reason: e.to_string(),
    })
}

impl PhysicalMemory for RawImage {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let end = checked_end(paddr, buf.len())?;
        if end > self.len {
            return Err(MemError::NotPresent(paddr.max(self.len)));
        }
        pread_exact(&self.file, paddr, buf, paddr)
    }
    fn max_address(&self) -> u64 {
        self.len
    }
}
