//! One capture of several marks at one instant: the domain paused once, every mark copied,
//! the domain unpaused (`watch --pause`, `read --pause`). Marks read in one capture are one
//! state of the guest, which reads one after the other of a running guest are not.
//!
//! A write that is open when the domain pauses stays open until the guest runs again, so
//! reading again while paused cannot help, and reporting the capture torn would make
//! `--pause` fail exactly when the guest is busiest. The capture unpauses instead, lets the
//! guest run for [`REPAUSE_GAP_US`] (a write section is a few stores), pauses again and
//! copies again, at most [`MAX_REPAUSES`] times; a mark whose write is still open after
//! that is reported torn, as an unpaused read is after its retries. The time reported is
//! the sum of the pauses: what the capture cost the guest.

use crate::reader::{MappedMark, ReadInfo};
use crate::watch::{BackendError, PauseGuard, Pauser};
use std::time::Duration;
pub use vmark_proto::limits::{
    CAPTURE_MAX_REPAUSES as MAX_REPAUSES, CAPTURE_REPAUSE_GAP_US as REPAUSE_GAP_US,
};

/// What one capture found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Each mark's read, in the order given.
    pub reads: Vec<ReadInfo>,
    /// Time the domain was paused for it, all pauses together (ns; each from the pause
    /// request to the unpause's return).
    pub paused_ns: u64,
    /// Pauses beyond the first, for writes found open.
    pub repauses: u32,
}

/// Pauses `domid` once, copies each of `marks` into its buffer in `bufs`, unpauses; again
/// (bounded) while a write is open. The domain runs again whatever happens (the guard).
pub fn capture(
    pauser: &dyn Pauser,
    domid: u32,
    marks: &[&MappedMark],
    bufs: &mut [Vec<u8>],
) -> Result<Captured, BackendError> {
    let mut paused_ns = 0u64;
    let mut repauses = 0;
    loop {
        let guard = PauseGuard::pause(pauser, domid)?;
        // Paused, nothing in the guest moves: one copy each, no retries.
        let reads: Vec<ReadInfo> = marks
            .iter()
            .zip(bufs.iter_mut())
            .map(|(m, buf)| m.read(buf, 0))
            .collect();
        paused_ns = paused_ns.saturating_add(guard.resume()?);
        if reads.iter().all(|r| r.consistent) || repauses == MAX_REPAUSES {
            return Ok(Captured {
                reads,
                paused_ns,
                repauses,
            });
        }
        repauses += 1;
        std::thread::sleep(Duration::from_micros(REPAUSE_GAP_US));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{BufferMapper, FrameMapper, MappedMemory, Mapping};
    use std::cell::Cell;
    use std::mem::offset_of;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use vmark_proto::abi::vmark_record;

    /// A record page the "guest" writes while the host has it mapped.
    struct RecordPage(Vec<AtomicU32>);

    impl MappedMemory for RecordPage {
        fn base(&self) -> *const u8 {
            self.0.as_ptr().cast()
        }
        fn len(&self) -> usize {
            self.0.len() * 4
        }
    }

    impl RecordPage {
        fn seq(&self) -> &AtomicU32 {
            &self.0[offset_of!(vmark_record, seq) / 4]
        }
    }

    /// A guest with one write open at first; each time it runs again (unpause) the write
    /// closes if `closes` says so.
    struct Guest {
        page: Arc<RecordPage>,
        closes: bool,
        pauses: Cell<u32>,
        running: Cell<bool>,
    }

    impl Pauser for Guest {
        fn pause(&self, _: u32) -> Result<(), BackendError> {
            self.pauses.set(self.pauses.get() + 1);
            self.running.set(false);
            Ok(())
        }
        fn unpause(&self, _: u32) -> Result<(), BackendError> {
            self.running.set(true);
            let seq = self.page.seq();
            if self.closes && seq.load(Ordering::SeqCst) % 2 == 1 {
                seq.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    fn guest(seq: u32, closes: bool) -> (Guest, MappedMark) {
        let page = Arc::new(RecordPage((0..1024).map(|_| AtomicU32::new(0)).collect()));
        page.seq().store(seq, Ordering::SeqCst);
        let record = Mapping::new(page.clone());
        let var = BufferMapper::new(42u64.to_le_bytes().repeat(512))
            .map(&[0])
            .unwrap();
        let mark = MappedMark::new(var, 0, 8, record, 0, true).unwrap();
        let g = Guest {
            page,
            closes,
            pauses: Cell::new(0),
            running: Cell::new(true),
        };
        (g, mark)
    }

    #[test]
    fn one_pause_for_all_marks_and_the_guest_runs_again() {
        let (g, a) = guest(2, false);
        let (_, b) = guest(4, false);
        let mut bufs = vec![Vec::new(), Vec::new()];
        let c = capture(&g, 7, &[&a, &b], &mut bufs).unwrap();
        assert_eq!(g.pauses.get(), 1, "one pause for both marks");
        assert!(g.running.get());
        assert!(c.reads.iter().all(|r| r.consistent) && c.repauses == 0);
        assert_eq!(bufs[1], 42u64.to_le_bytes());
    }

    #[test]
    fn a_write_open_at_the_pause_is_let_finish_and_read_again() {
        let (g, m) = guest(5, true);
        let mut bufs = vec![Vec::new()];
        let c = capture(&g, 7, &[&m], &mut bufs).unwrap();
        assert_eq!((c.repauses, g.pauses.get()), (1, 2));
        assert!(c.reads[0].consistent && c.reads[0].seq == 6, "{c:?}");
        assert!(g.running.get());
    }

    #[test]
    fn a_write_that_stays_open_is_torn_after_the_bound() {
        let (g, m) = guest(5, false);
        let mut bufs = vec![Vec::new()];
        let c = capture(&g, 7, &[&m], &mut bufs).unwrap();
        assert_eq!(
            (c.repauses, g.pauses.get()),
            (MAX_REPAUSES, MAX_REPAUSES + 1)
        );
        assert!(
            !c.reads[0].consistent,
            "still open: torn, not passed off as whole"
        );
        assert!(g.running.get(), "the guest runs after the capture");
    }
}
