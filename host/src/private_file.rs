//! Files that hold what vmark copied out of a guest (memory snapshots, packets): created
//! for their owner alone, and never through a symbolic link someone left at the path.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates (or truncates) `path` with mode 0600, refusing a symbolic link there.
pub fn create(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}
