//! A running QEMU guest whose RAM is a shared file:
//!
//! ```text
//! qemu-system-x86_64 -object memory-backend-file,id=mem,size=4G,mem-path=/dev/shm/g,share=on \
//!                    -machine memory-backend=mem ...
//! ```
//!
//! The file is guest RAM in guest-physical order, with the x86 PCI hole cut out:
//!
//! ```text
//! file offset 0 .. below_4g                 = guest-physical 0 .. below_4g
//! file offset below_4g .. ram_size          = guest-physical 4 GiB .. 4 GiB + (ram_size - below_4g)
//! ```
//!
//! `below_4g` ("below_4g_mem_size") is the whole RAM when it fits under the hole, else
//! 3 GiB on `pc` (i440fx, when RAM >= 3.5 GiB) and 2 GiB on `q35` (when RAM >= 2.75 GiB);
//! `-machine max-ram-below-4g=` changes it: pass it explicitly with [`QemuShm::with_split`].
//! Reads are `pread`s of the live file, so they see the guest's current memory.

use super::mapped::FileBytes;
use super::segments::{Segment, SegmentMap};
use super::{MemError, PhysicalMemory, Region};
use std::fs::File;
use std::path::Path;

const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 4 * GIB;

/// QEMU x86 machine types, for the default low/high RAM split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    /// `pc` (i440fx).
    Pc,
    /// `q35`.
    Q35,
}

impl MachineType {
    /// QEMU's default `below_4g_mem_size` for `ram_size` bytes of RAM.
    pub fn below_4g(self, ram_size: u64) -> u64 {
        match self {
            MachineType::Pc if ram_size >= 0xe000_0000 => 3 * GIB,
            MachineType::Q35 if ram_size >= 0xb000_0000 => 2 * GIB,
            _ => ram_size,
        }
    }
}

/// A QEMU guest's shared RAM file.
#[derive(Debug)]
pub struct QemuShm {
    file: FileBytes,
    map: SegmentMap,
}

impl QemuShm {
    /// Opens the RAM file of a guest of machine type `machine`; RAM size is the file size.
    pub fn open(path: &Path, machine: MachineType) -> Result<Self, MemError> {
        let len = std::fs::metadata(path)
            .map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?
            .len();
        Self::with_split(path, machine.below_4g(len))
    }

    /// Opens the RAM file with an explicit `below_4g_mem_size`.
    pub fn with_split(path: &Path, below_4g: u64) -> Result<Self, MemError> {
        let file =
            File::open(path).map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?
            .len();
        let low = below_4g.min(len).min(FOUR_GIB);
        let map = SegmentMap::new(
            vec![
                Segment {
                    paddr: 0,
                    len: low,
                    file_offset: 0,
                },
                Segment {
                    paddr: FOUR_GIB,
                    len: len - low,
                    file_offset: low,
                },
            ],
            len,
        )?;
        // pread, not a mapping: QEMU writes this file while vmark reads it, and a copy the
        // kernel makes is the only read of changing bytes that is not a data race.
        Ok(QemuShm {
            file: FileBytes::unmapped(file, len),
            map,
        })
    }
}

impl PhysicalMemory for QemuShm {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.map.read(&self.file, paddr, buf)
    }
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        self.map.with_bytes(&self.file, paddr, len, f)
    }
    fn max_address(&self) -> u64 {
        self.map.max_address()
    }
    fn regions(&self) -> Vec<Region> {
        self.map.regions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_ram_follows_the_low_part_in_the_file() {
        assert_eq!(MachineType::Pc.below_4g(1 << 30), 1 << 30);
        assert_eq!(MachineType::Pc.below_4g(8 * GIB), 3 * GIB);
        assert_eq!(MachineType::Q35.below_4g(4 * GIB), 2 * GIB);
        let dir = std::env::temp_dir().join(format!("vmark-shm-{}", std::process::id()));
        let mut data = vec![0u8; 3 * 4096];
        data[4096] = 0xaa; // physical 4096
        data[2 * 4096] = 0xbb; // physical 4 GiB
        std::fs::write(&dir, &data).unwrap();
        let m = QemuShm::with_split(&dir, 2 * 4096).unwrap();
        let mut b = [0u8; 1];
        m.read(4096, &mut b).unwrap();
        assert_eq!(b[0], 0xaa);
        m.read(FOUR_GIB, &mut b).unwrap();
        assert_eq!(b[0], 0xbb);
        assert!(m.read(2 * 4096, &mut b).is_err());
        assert_eq!(m.max_address(), FOUR_GIB + 4096);
        std::fs::remove_file(&dir).unwrap();
    }
}
