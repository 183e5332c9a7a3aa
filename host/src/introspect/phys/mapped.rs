//! Dump files read through a read-only memory mapping, without ever dying of SIGBUS.
//!
//! A read from a mapped file is a bounds check and a `memcpy`, where `pread` is a system
//! call (0.5–1 µs here): that is most of what a read of a dump costs. The danger of a
//! mapping is that a file truncated (or rewritten shorter) while mapped raises SIGBUS on
//! the first access past its new end, which would kill vmark. So every mapping is
//! registered with a process-wide SIGBUS handler: a fault inside a registered mapping
//! replaces the faulting page with a zero page (the copy then completes harmlessly) and
//! marks the mapping poisoned; the read that was under way, and every later one, returns
//! [`MemError::Io`] "the file changed while mapped". Faults elsewhere, and a SIGBUS sent by
//! a process, go to the disposition from before vmark's (restored: later mappings are then
//! read with `pread`), as if vmark had none.
//!
//! When a file cannot be mapped (a device, a pipe, no registry slot left), or should not
//! be (a sparse file on tmpfs, whose holes a mapping would fill with pages of memory), reads
//! fall back to `pread`, which reports a short file as an error by itself.

use super::{checked_end, MemError};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Mappings the SIGBUS handler can watch at once; files past that are read with `pread`.
const GUARD_SLOTS: usize = 64;

/// One watched mapping: `[start, start + len)`; `start == 0` means free.
struct GuardSlot {
    start: AtomicUsize,
    len: AtomicUsize,
    poisoned: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // an initialiser for the array only
const FREE_SLOT: GuardSlot = GuardSlot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    poisoned: AtomicBool::new(false),
};

static SLOTS: [GuardSlot; GUARD_SLOTS] = [FREE_SLOT; GUARD_SLOTS];
static INSTALL: Once = Once::new();
/// Whether vmark's handler is the SIGBUS disposition (new mappings register only then).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The page size, read once at install (sysconf is not async-signal-safe).
static PAGE: AtomicUsize = AtomicUsize::new(4096);
/// The SIGBUS disposition before vmark's, as written by `sigaction` (set once, before the
/// handler is installed, and only read afterwards).
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Puts a zero page over the faulting page of a registered mapping and poisons it; false
/// when `addr` is in none (or the zero page could not be mapped).
fn absorb(addr: usize) -> bool {
    for slot in &SLOTS {
        let start = slot.start.load(Ordering::SeqCst);
        let len = slot.len.load(Ordering::SeqCst);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        // Poisoned before the zero page exists: no reader can copy its zeros and then
        // find the mapping clean.
        slot.poisoned.store(true, Ordering::SeqCst);
        let page = PAGE.load(Ordering::Relaxed);
        // SAFETY: the page lies inside a mapping this process owns and only reads (it is
        // registered until unmapped); replacing it with an anonymous zero page changes what
        // the interrupted copy reads, and every read checks the poisoning after copying.
        // mmap is a plain system call, safe to make in a signal handler.
        let zero = unsafe {
            libc::mmap(
                (addr & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        return zero != libc::MAP_FAILED;
    }
    false
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: errno is this thread's; saved and restored so the interrupted code does not
    // see what the handler's system calls left in it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler. si_addr is the
    // faulting address only for faults the kernel raised (si_code > 0); a SIGBUS sent by a
    // process (kill, si_code <= 0) names no address.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A file cut short under a mapping faults with BUS_ADRERR (2) or BUS_OBJERR (3).
    if (code == 2 || code == 3) && absorb(addr) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    // Not ours: the disposition from before vmark handles it, as if vmark had none. A fault
    // is re-executed on return and meets it; a sent signal is raised again for it.
    INSTALLED.store(false, Ordering::SeqCst);
    // SAFETY: PREVIOUS was written by sigaction before this handler was installed;
    // sigaction and raise are async-signal-safe.
    unsafe {
        let previous = (*std::ptr::addr_of!(PREVIOUS)).as_ptr();
        libc::sigaction(sig, previous, std::ptr::null_mut());
        // Synchronous faults fault again on return; a sent signal or an asynchronous
        // machine-check report (BUS_MCEERR_AO, 5) would not, so it is raised again.
        if code <= 0 || code == 5 {
            libc::raise(sig);
        }
        *libc::__errno_location() = errno;
    }
}

fn install_handler() -> bool {
    INSTALL.call_once(|| {
        PAGE.store(page_size(), Ordering::Relaxed);
        // SAFETY: PREVIOUS is written here, once, by sigaction reading the current
        // disposition, before the handler that reads it is installed; an all-zero sigaction
        // is a valid value to fill in; the handler has the SA_SIGINFO signature.
        unsafe {
            let previous = (*std::ptr::addr_of_mut!(PREVIOUS)).as_mut_ptr();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), previous) != 0 {
                return;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) == 0 {
                INSTALLED.store(true, Ordering::SeqCst);
            }
        }
    });
    INSTALLED.load(Ordering::SeqCst)
}

/// A registration of one mapping with the SIGBUS handler; released on drop.
struct Guard(&'static GuardSlot);

impl Guard {
    fn register(start: usize, len: usize) -> Option<Guard> {
        if start == 0 || !install_handler() {
            return None;
        }
        let slot = SLOTS.iter().find(|s| {
            s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // Claimed with a placeholder start no address can fall into with len 0; now set.
        slot.poisoned.store(false, Ordering::SeqCst);
        slot.len.store(len, Ordering::SeqCst);
        slot.start.store(start, Ordering::SeqCst);
        Some(Guard(slot))
    }

    /// Whether a fault hit the mapping: called after each copy or lend, with a fence so
    /// that the check cannot be moved before the reads it vouches for.
    fn poisoned(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.0.poisoned.load(Ordering::SeqCst)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.len.store(0, Ordering::SeqCst);
        self.0.start.store(0, Ordering::SeqCst);
    }
}

/// A read-only mapping of a whole file, watched for SIGBUS. The guard is declared before
/// the map so that it is released first: no fault can name an address after it is unmapped
/// and possibly reused.
struct Watched {
    guard: Guard,
    map: memmap2::Mmap,
}

/// The bytes of a file, read by offset: mapped when possible, else with `pread`.
pub struct FileBytes {
    file: File,
    len: u64,
    mapped: Option<Watched>,
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBytes")
            .field("len", &self.len)
            .field("mapped", &self.mapped.is_some())
            .finish()
    }
}

fn changed(addr: u64) -> MemError {
    MemError::Io {
        addr,
        reason: "the file changed (was truncated) while vmark had it mapped".into(),
    }
}

/// Whether reading `file` through a mapping would fill memory: a file on tmpfs (dom0's
/// `/tmp`, `/dev/shm`) with holes in its first `len` bytes. A page fault on a hole there
/// allocates a page for it (where `pread` copies zeros), so scanning a sparse snapshot
/// allocates all the guest memory it did not write, and once the filesystem is full the
/// fault is a SIGBUS: a second snapshot in dom0's `/tmp` read that way was unreadable.
/// Errors answer "no" (the mapping is then tried).
fn holes_fill_memory(file: &File, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    /// `TMPFS_MAGIC` of `<linux/magic.h>` (ramfs is not here: it reports no holes, and
    /// `pread` fills them too).
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    // SAFETY: `st` is a statfs owned here that fstatfs fills; the descriptor is `file`'s,
    // open for the call.
    let in_memory = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        // f_type is a word whose width and sign vary between ABIs: the low 32 bits name it.
        libc::fstatfs(file.as_raw_fd(), &mut st) == 0 && st.f_type as u32 == TMPFS_MAGIC
    };
    if !in_memory {
        return false;
    }
    // SAFETY: lseek on `file`'s open descriptor. The offset it moves is shared with the
    // descriptors cloned from it, whose readers seek before each read; `read_at` (pread)
    // never uses it.
    let first_hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    u64::try_from(first_hole).is_ok_and(|hole| hole < len)
}

impl FileBytes {
    /// The first `len` bytes of `file` (its length when opened), mapped if it is a regular
    /// file that can be.
    pub fn new(file: File, len: u64) -> Self {
        let mapped = Self::map(&file, len);
        FileBytes { file, len, mapped }
    }

    /// Reads through `pread` only (for files that change size under the reader on purpose).
    pub fn unmapped(file: File, len: u64) -> Self {
        FileBytes {
            file,
            len,
            mapped: None,
        }
    }

    fn map(file: &File, len: u64) -> Option<Watched> {
        let regular = file.metadata().ok()?.file_type().is_file();
        let len_usize = usize::try_from(len).ok().filter(|&l| l > 0)?;
        if !regular || holes_fill_memory(file, len) {
            return None;
        }
        // SAFETY: a read-only shared mapping of a dump file, which vmark's callers map only
        // for formats written once (ELF cores, xl dump-core files: see `FileBytes::new`'s
        // users); a file that shrinks under it is what the SIGBUS guard turns into errors,
        // and every access goes through `read_at`/`with_bytes`, never handing out a
        // reference that outlives the poisoning check. A dump rewritten in place while
        // vmark reads it is outside this (the README says so).
        let map = unsafe { memmap2::MmapOptions::new().len(len_usize).map(file) }.ok()?;
        let guard = Guard::register(map.as_ptr() as usize, map.len())?;
        Some(Watched { guard, map })
    }

    /// Whether reads go through a mapping.
    pub fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    /// Length of the file when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes at file offset `off`; `addr` names the guest address in
    /// errors.
    pub fn read_at(&self, off: u64, buf: &mut [u8], addr: u64) -> Result<(), MemError> {
        let end = checked_end(off, buf.len())?;
        if end > self.len {
            return Err(MemError::Io {
                addr,
                reason: format!(
                    "offset {off:#x}+{:#x} is past the end of the file",
                    buf.len()
                ),
            });
        }
        match &self.mapped {
            // Only while vmark's handler is in place (a foreign SIGBUS puts the previous one
            // back: then `pread`, which cannot fault).
            Some(w) if INSTALLED.load(Ordering::Relaxed) => {
                // In bounds: end <= len == the mapping's length.
                buf.copy_from_slice(&w.map[off as usize..end as usize]);
                if w.guard.poisoned() {
                    return Err(changed(addr));
                }
                Ok(())
            }
            _ => self.file.read_exact_at(buf, off).map_err(|e| MemError::Io {
                addr,
                reason: e.to_string(),
            }),
        }
    }

    /// Runs `f` on the bytes at `off..off+len` in place when mapped (no copy), or on a copy
    /// read with `pread`; a mapping poisoned meanwhile turns `f`'s answer into an error.
    pub fn with_bytes<R>(
        &self,
        off: u64,
        len: usize,
        addr: u64,
        f: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, MemError> {
        let end = checked_end(off, len)?;
        if end > self.len {
            return Err(MemError::NotPresent(addr));
        }
        match &self.mapped {
            Some(w) if INSTALLED.load(Ordering::Relaxed) => {
                let r = f(&w.map[off as usize..end as usize]);
                if w.guard.poisoned() {
                    return Err(changed(addr));
                }
                Ok(r)
            }
            _ => {
                let mut buf = vec![0u8; len];
                self.read_at(off, &mut buf, addr)?;
                Ok(f(&buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("vmark-mapped-{}-{name}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        path
    }

    #[test]
    fn reads_what_pread_reads() {
        let bytes: Vec<u8> = (0..3 * 4096u32).map(|i| (i * 7) as u8).collect();
        let path = temp("same", &bytes);
        let mapped = FileBytes::new(File::open(&path).unwrap(), bytes.len() as u64);
        let plain = FileBytes::unmapped(File::open(&path).unwrap(), bytes.len() as u64);
        assert!(mapped.is_mapped() && !plain.is_mapped());
        for (off, n) in [(0u64, 8usize), (4093, 9), (8192, 4096), (12280, 8)] {
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            mapped.read_at(off, &mut a, off).unwrap();
            plain.read_at(off, &mut b, off).unwrap();
            assert_eq!(a, b);
            assert_eq!(a, &bytes[off as usize..off as usize + n]);
        }
        let mut past = [0u8; 8];
        assert!(mapped.read_at(12285, &mut past, 0).is_err());
        assert!(mapped.read_at(u64::MAX - 2, &mut past, 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_truncated_under_the_mapping_is_an_error_not_a_sigbus() {
        let path = temp("trunc", &vec![0xabu8; 16 * 4096]);
        let bytes = FileBytes::new(File::open(&path).unwrap(), 16 * 4096);
        assert!(bytes.is_mapped());
        let mut buf = [0u8; 16];
        bytes.read_at(8 * 4096, &mut buf, 0x8000).unwrap();
        assert_eq!(buf, [0xab; 16]);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // The first page is still in the file; a page past the new end faults.
        bytes.read_at(0, &mut buf, 0).unwrap();
        let err = bytes.read_at(12 * 4096, &mut buf, 0xc000).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        let scan = bytes.with_bytes(0, 16 * 4096, 0, &mut |b| b.len());
        assert!(scan.is_err());
        // Another mapping is not affected by the first one's poisoning.
        let other = temp("other", &[1u8; 4096]);
        let fine = FileBytes::new(File::open(&other).unwrap(), 4096);
        fine.read_at(0, &mut buf, 0).unwrap();
        assert_eq!(buf, [1; 16]);
        drop(bytes);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&other).unwrap();
    }

    /// A file on a memory filesystem (a memfd is tmpfs) of `len` bytes, written where
    /// `data` says: sparse when some are not.
    fn memory_file(len: u64, data: &[u64]) -> File {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a NUL-terminated name; the descriptor returned is owned
        // by the File made from it, and by nothing else.
        let file = unsafe {
            let fd = libc::memfd_create(c"vmark-test".as_ptr(), 0);
            assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
            File::from_raw_fd(fd)
        };
        file.set_len(len).unwrap();
        for &at in data {
            file.write_all_at(&[1u8; 4096], at).unwrap();
        }
        file
    }

    #[test]
    fn a_sparse_file_in_memory_is_read_with_pread_not_faulted_in() {
        use std::os::unix::fs::MetadataExt;
        let len = 64 << 20;
        let sparse = FileBytes::new(memory_file(len, &[0, len - 4096]), len);
        assert!(
            !sparse.is_mapped(),
            "holes of a tmpfs file would be allocated"
        );
        let mut buf = vec![0u8; 1 << 20];
        for off in (0..len).step_by(buf.len()) {
            sparse.read_at(off, &mut buf, off).unwrap();
        }
        // Two pages written (two huge pages where tmpfs uses them), not 64 MiB.
        assert!(sparse.file.metadata().unwrap().blocks() * 512 < len / 4);
        // Without holes the mapping is used.
        let all: Vec<u64> = (0..16).map(|i| i * 4096).collect();
        let whole = FileBytes::new(memory_file(16 * 4096, &all), 16 * 4096);
        assert!(whole.is_mapped());
    }

    #[test]
    fn slots_are_released_on_drop() {
        let path = temp("slots", &[2u8; 4096]);
        for _ in 0..3 * GUARD_SLOTS {
            let b = FileBytes::new(File::open(&path).unwrap(), 4096);
            assert!(b.is_mapped());
        }
        std::fs::remove_file(&path).unwrap();
    }
}
