//! The guest kernel's own symbol table, read out of memory: compressed kallsyms.
//!
//! `scripts/kallsyms.c` emits these tables into `.rodata` (each label `.balign 8` on 64-bit
//! kernels; on 32-bit ones `.balign 4`, with a 4-byte `kallsyms_relative_base`; both are
//! read):
//!
//! ```text
//! kallsyms_offsets[num]          s32, relative to kallsyms_relative_base
//! kallsyms_relative_base         u64 (relocated by KASLR: the runtime value)
//! kallsyms_num_syms              u32
//! kallsyms_names                 per symbol: length (ULEB128, 1 or 2 bytes), token indices
//! kallsyms_markers[(num+255)/256] offset in names of every 256th symbol (u32; u64 before 4.20)
//! kallsyms_seqs_of_names[num]    6.2 and 6.3 only here (4, then 3 bytes per symbol)
//! kallsyms_token_table           256 NUL-terminated token strings
//! kallsyms_token_index[256]      u16 offset of each token in the table
//! ```
//!
//! That is the order up to Linux 6.3 (and 6.1 stable). Linux 6.4 ("scripts/kallsyms:
//! change the output order") moved the offsets, the relative base and the (3-byte)
//! `kallsyms_seqs_of_names` after the token index; 6.11 dropped the absolute
//! `kallsyms_addresses` variant altogether. Both orders are read; which one a kernel uses is
//! found from the tables themselves, not from a version number.
//!
//! Finding them without a symbol file (the approach of tools such as vmlinux-to-elf's
//! kallsyms finder): scan for the run of single-digit tokens `"0\01\0...9\0"` that every
//! token table holds, find the token index after it (an increasing `u16[256]` starting at 0
//! whose entries point at token starts), then walk backwards: markers (an increasing array
//! starting at 0), then `num_syms` (the count consistent with the number of markers, with
//! names that decode to exactly the marker offsets and end where the markers start), then
//! the relative base and offsets in either place.
//!
//! Guest memory is hostile: every signature hit is a candidate, every candidate is tried
//! (a bad one is recorded and the search goes on), and the search is bounded by the
//! budgets of [`vmark_proto::limits`]: bytes scanned, candidates examined, bytes read into
//! candidate windows, steps per candidate, and decoded name length and volume. Over a
//! budget is an error naming the candidate; when no candidate decodes, the error lists what
//! was tried and why each failed.

use super::phys::{MemError, PhysicalMemory, Region};
use super::symbols::{SymbolError, SymbolTable, SymbolTableBuilder, MAX_SYMBOLS};
use std::ops::ControlFlow;
use vmark_proto::limits::{
    KALLSYMS_MAX_CANDIDATES, KALLSYMS_MAX_NAME_BYTES, KALLSYMS_MAX_NAME_LEN,
    KALLSYMS_MAX_READ_BYTES, KALLSYMS_MAX_SCAN_BYTES, KALLSYMS_MAX_STEPS, KALLSYMS_WINDOW_AFTER,
    KALLSYMS_WINDOW_BEFORE,
};

/// The run of single-digit tokens every token table contains.
pub const TOKEN_SIGNATURE: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";

/// Largest chunk read while scanning.
const SCAN_CHUNK: u64 = 8 << 20;
/// Most signature hits held at once while scanning a chunk (they are visited after it).
const SCAN_HITS_PER_PASS: usize = 4096;
/// A token table is at most 64 KiB (its index is `u16`): bytes read around a signature hit
/// to find the table and its index.
const TOKEN_TABLE_SPAN: u64 = 64 << 10;
/// Size of `kallsyms_token_index`.
const TOKEN_INDEX_BYTES: usize = 512;
/// Largest label alignment of the tables (`ALGN`: `.balign 8` on 64-bit kernels, 4 on
/// 32-bit ones).
const ALIGN: u64 = 8;

/// What a kernel's word size changes in the tables: label alignment and the width of
/// `kallsyms_relative_base` (`PTR`), and where kernel addresses start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordSize {
    /// Bytes per word (8 or 4): also the label alignment.
    pub bytes: usize,
    /// Lowest kernel-half address: `relative_base` below it is not a kernel's.
    pub min_kernel: u64,
}

/// x86-64 (and every 64-bit kernel): the kernel half starts at `0xffff8000_00000000`.
pub const WORD_64: WordSize = WordSize {
    bytes: 8,
    min_kernel: 0xffff_8000_0000_0000,
};
/// i386 and other 32-bit kernels: `PAGE_OFFSET` is at least 1 GiB (`VMSPLIT_1G`).
pub const WORD_32: WordSize = WordSize {
    bytes: 4,
    min_kernel: 0x4000_0000,
};
/// Fewest symbols a real kernel table has (fewer is taken for a chance match).
const MIN_SYMBOLS: usize = 256;
/// Candidates whose failure is spelled out in [`KallsymsError::NoneConsistent`].
const MAX_REPORTED: usize = 8;

/// Why kallsyms could not be found or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KallsymsError {
    /// Reading memory failed.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// No token table signature anywhere in memory.
    #[error("no kallsyms token table found in guest memory ({scanned:#x} bytes scanned)")]
    NotFound {
        /// Bytes scanned.
        scanned: u64,
    },
    /// One candidate: a token table was found but the tables around it do not decode
    /// consistently.
    #[error("kallsyms tables near physical {paddr:#x} are inconsistent: {reason}")]
    Inconsistent {
        /// Where the signature is.
        paddr: u64,
        /// Which check failed.
        reason: String,
    },
    /// One candidate, or the search, went over one of vmark's budgets.
    #[error("kallsyms search at physical {paddr:#x}: over the budget of {limit} {what}")]
    OverBudget {
        /// Where the candidate's signature is (for the search: where it stopped).
        paddr: u64,
        /// What was counted.
        what: &'static str,
        /// The budget.
        limit: u64,
    },
    /// Signature hits were found but none of them decodes.
    #[error("no consistent kallsyms tables in guest memory: {}", describe(*.candidates, tried, stopped.as_deref()))]
    NoneConsistent {
        /// Candidates examined.
        candidates: usize,
        /// Why the first few failed.
        tried: Vec<KallsymsError>,
        /// Why the search itself stopped early, if it did.
        stopped: Option<Box<KallsymsError>>,
    },
    /// Symbol table limits.
    #[error(transparent)]
    Symbols(#[from] SymbolError),
}

fn describe(candidates: usize, tried: &[KallsymsError], stopped: Option<&KallsymsError>) -> String {
    let mut s = format!("{candidates} token-table candidate(s) tried");
    for e in tried {
        s.push_str("; ");
        s.push_str(&e.to_string());
    }
    if candidates > tried.len() {
        s.push_str(&format!("; and {} more", candidates - tried.len()));
    }
    if let Some(e) = stopped {
        s.push_str(&format!("; the search stopped: {e}"));
    }
    s.push_str(
        " (layouts read: 64- and 32-bit base-relative kallsyms, offsets before \
         kallsyms_num_syms as in Linux <= 6.3 or after the token index as in 6.4+)",
    );
    s
}

/// Where the offsets and relative base are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Before `kallsyms_num_syms` (Linux up to 6.3, and 6.1 stable).
    OffsetsFirst,
    /// After `kallsyms_token_index` (Linux 6.4 and later).
    OffsetsAfterIndex,
}

/// Where the tables were found (physical addresses) and what they hold.
#[derive(Debug, Clone)]
pub struct Kallsyms {
    /// Physical address of `kallsyms_token_table`.
    pub token_table_paddr: u64,
    /// Physical address of `kallsyms_names`.
    pub names_paddr: u64,
    /// `kallsyms_relative_base` (runtime, KASLR applied).
    pub relative_base: u64,
    /// Whether offsets use the absolute-percpu encoding
    /// (`CONFIG_KALLSYMS_ABSOLUTE_PERCPU`).
    pub absolute_percpu: bool,
    /// Which table order the kernel uses.
    pub layout: Layout,
    /// Bytes per entry of `kallsyms_seqs_of_names` between the markers and the token
    /// table (0 when it is elsewhere or absent).
    pub seqs_between: usize,
    /// The kernel's word size, as the tables' layout shows it.
    pub word: WordSize,
    /// The decoded symbols.
    pub symbols: SymbolTable,
}

/// The budgets of one kallsyms search. [`SearchBudget::default`] is vmark's
/// ([`vmark_proto::limits`]); smaller ones are for tests and fuzzing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchBudget {
    /// Bytes of memory scanned for signatures.
    pub scan_bytes: u64,
    /// Signature hits examined.
    pub candidates: usize,
    /// Bytes read into candidate windows, all candidates together.
    pub read_bytes: u64,
    /// Steps of one candidate.
    pub steps: u64,
}

impl Default for SearchBudget {
    fn default() -> Self {
        SearchBudget {
            scan_bytes: KALLSYMS_MAX_SCAN_BYTES,
            candidates: KALLSYMS_MAX_CANDIDATES,
            read_bytes: KALLSYMS_MAX_READ_BYTES,
            steps: KALLSYMS_MAX_STEPS,
        }
    }
}

/// Scans all of `mem` for kallsyms and decodes the first consistent set of tables. Every
/// signature hit is tried (within [`KALLSYMS_MAX_CANDIDATES`]) before the search fails.
pub fn find(mem: &dyn PhysicalMemory) -> Result<Kallsyms, KallsymsError> {
    find_within(mem, &SearchBudget::default())
}

/// [`find`] within `budget`.
pub fn find_within(
    mem: &dyn PhysicalMemory,
    budget: &SearchBudget,
) -> Result<Kallsyms, KallsymsError> {
    let mut candidates = 0usize;
    let mut tried: Vec<KallsymsError> = Vec::new();
    let mut read_budget = budget.read_bytes;
    let mut stopped: Option<KallsymsError> = None;
    let mut found = None;
    let scan = scan_each(mem, TOKEN_SIGNATURE, budget.scan_bytes, &mut |hit| {
        if candidates >= budget.candidates {
            stopped = Some(KallsymsError::OverBudget {
                paddr: hit,
                what: "candidates",
                limit: budget.candidates as u64,
            });
            return ControlFlow::Break(());
        }
        candidates += 1;
        match decode_at(mem, hit, &mut read_budget, budget) {
            Ok(k) => {
                found = Some(k);
                ControlFlow::Break(())
            }
            Err(e) => {
                let search_over =
                    matches!(e, KallsymsError::OverBudget { what, .. } if what == READ_BUDGET);
                if tried.len() < MAX_REPORTED {
                    tried.push(e.clone());
                }
                if search_over {
                    stopped = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
    })?;
    if let Some(k) = found {
        return Ok(k);
    }
    if let ScanEnd::OverBudget { at } = scan.end {
        stopped.get_or_insert(KallsymsError::OverBudget {
            paddr: at,
            what: "bytes scanned",
            limit: budget.scan_bytes,
        });
    }
    if candidates == 0 && stopped.is_none() {
        return Err(KallsymsError::NotFound {
            scanned: scan.scanned,
        });
    }
    Err(KallsymsError::NoneConsistent {
        candidates,
        tried,
        stopped: stopped.map(Box::new),
    })
}

/// Decodes the tables of a token table said to start at physical `paddr` (a hint from
/// the guest, such as VMCOREINFO's `kallsyms_token_table`): the signature is looked for in
/// that table's span only, and the tables found are checked as every candidate is, within
/// vmark's budgets; `read_budget` (bytes read into candidate windows) is the caller's, to
/// share between hints. Saves [`find`]'s scan of memory when the hint is right.
pub fn find_at(
    mem: &dyn PhysicalMemory,
    paddr: u64,
    read_budget: &mut u64,
) -> Result<Kallsyms, KallsymsError> {
    let budget = SearchBudget::default();
    let region = mem
        .regions()
        .into_iter()
        .find(|r| r.start <= paddr && paddr < r.end())
        .ok_or(MemError::NotPresent(paddr))?;
    let len = (region.end() - paddr).min(TOKEN_TABLE_SPAN) as usize;
    let finder = memchr::memmem::Finder::new(TOKEN_SIGNATURE);
    let mut at = None;
    mem.with_bytes(paddr, len, &mut |b| at = finder.find(b))?;
    let hit = at.ok_or(KallsymsError::NotFound {
        scanned: len as u64,
    })?;
    decode_at(mem, paddr + hit as u64, read_budget, &budget)
}

const READ_BUDGET: &str = "bytes read into candidate windows";

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every region was scanned.
    Complete,
    /// The visitor stopped it.
    Stopped,
    /// [`KALLSYMS_MAX_SCAN_BYTES`]-like budget reached at this address.
    OverBudget {
        /// Where scanning stopped.
        at: u64,
    },
}

/// What a scan did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Bytes read.
    pub scanned: u64,
    /// Why it ended.
    pub end: ScanEnd,
}

/// Calls `visit` with each physical address where `needle` occurs, in address order,
/// scanning every region in chunks (holes and unreadable chunks are skipped), until `visit`
/// breaks or `max_bytes` have been read.
pub fn scan_each(
    mem: &dyn PhysicalMemory,
    needle: &[u8],
    max_bytes: u64,
    visit: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<ScanReport, MemError> {
    let mut scanned = 0u64;
    let done = |scanned, end| Ok(ScanReport { scanned, end });
    if needle.is_empty() {
        return done(0, ScanEnd::Complete);
    }
    let finder = memchr::memmem::Finder::new(needle);
    let overlap = needle.len() as u64 - 1;
    let mut last_hit: Option<u64> = None;
    for Region { start, len } in mem.regions() {
        let end = start.saturating_add(len);
        let mut at = start;
        while at < end {
            let Some(left) = max_bytes.checked_sub(scanned).filter(|&l| l > 0) else {
                return done(scanned, ScanEnd::OverBudget { at });
            };
            let n = (end - at).min(SCAN_CHUNK + overlap).min(left);
            scanned += n;
            // Hits are collected first and visited after: a visit reads memory itself, and a
            // mapped source's bytes are only lent for the scan.
            let mut hits = Vec::new();
            let lent = mem.with_bytes(at, n as usize, &mut |bytes| {
                let mut from = 0;
                while hits.len() < SCAN_HITS_PER_PASS {
                    let Some(i) = bytes.get(from..).and_then(|b| finder.find(b)) else {
                        break;
                    };
                    hits.push(at + (from + i) as u64);
                    // Overlapping occurrences count too: go on from the next byte.
                    from += i + 1;
                }
            });
            let full = lent.is_ok() && hits.len() >= SCAN_HITS_PER_PASS;
            let pass_last = hits.last().copied();
            if lent.is_ok() {
                for hit in hits {
                    if last_hit.is_some_and(|l| hit <= l) {
                        continue;
                    }
                    last_hit = Some(hit);
                    if visit(hit).is_break() {
                        return done(scanned, ScanEnd::Stopped);
                    }
                }
            }
            if let (true, Some(l)) = (full, pass_last) {
                // More hits than one pass holds: the next pass starts after this pass's last
                // one (its bytes are counted again, which only makes the budget stricter).
                at = l.saturating_add(1).max(at + 1);
                continue;
            }
            if at + n >= end || n <= overlap {
                break;
            }
            at += n - overlap;
        }
    }
    done(scanned, ScanEnd::Complete)
}

/// Physical addresses where `needle` occurs (at most `max`), scanning at most
/// [`KALLSYMS_MAX_SCAN_BYTES`].
pub fn scan(mem: &dyn PhysicalMemory, needle: &[u8], max: usize) -> Result<Vec<u64>, MemError> {
    let mut hits = Vec::new();
    scan_each(mem, needle, KALLSYMS_MAX_SCAN_BYTES, &mut |hit| {
        if hits.len() >= max {
            return ControlFlow::Break(());
        }
        hits.push(hit);
        if hits.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(hits)
}

/// A window of guest memory with bounds-checked little-endian reads. Positions are byte
/// offsets into the window; alignment is of the physical address (`base + offset`), which
/// keeps the kernel's link-time alignment.
struct Window<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl Window<'_> {
    fn get(&self, at: usize, len: usize) -> Option<&[u8]> {
        self.bytes.get(at..at.checked_add(len)?)
    }
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.get(at, 2)?.try_into().ok()?))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.get(at, 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.get(at, 8)?.try_into().ok()?))
    }
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        if size == 4 {
            self.u32(at).map(u64::from)
        } else {
            self.u64(at)
        }
    }
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }
    /// `at` rounded down to a multiple of `align` in physical terms (None before the window).
    fn align_down(&self, at: usize, align: u64) -> Option<usize> {
        let abs = self.base.checked_add(at as u64)?;
        usize::try_from((abs & !(align - 1)).checked_sub(self.base)?).ok()
    }
    /// `at` rounded up to a multiple of `align` in physical terms.
    fn align_up(&self, at: usize, align: u64) -> Option<usize> {
        let abs = self.base.checked_add(at as u64)?;
        let up = abs.checked_next_multiple_of(align)?;
        usize::try_from(up - self.base).ok()
    }
    fn paddr(&self, at: usize) -> u64 {
        self.base.saturating_add(at as u64)
    }
}

/// Reads `[hit - before, hit + after)` clipped to the region holding `hit`, charging
/// `budget` (None when the budget is exhausted).
fn with_window<R>(
    mem: &dyn PhysicalMemory,
    hit: u64,
    before: u64,
    after: u64,
    budget: &mut u64,
    f: impl FnOnce(&Window<'_>) -> R,
) -> Result<Option<R>, MemError> {
    let region = mem
        .regions()
        .into_iter()
        .find(|r| r.start <= hit && hit < r.end())
        .ok_or(MemError::NotPresent(hit))?;
    let start = hit.saturating_sub(before).max(region.start);
    let end = hit.saturating_add(after).min(region.end());
    let len = end - start;
    let Some(left) = budget.checked_sub(len) else {
        return Ok(None);
    };
    *budget = left;
    let len = usize::try_from(len).map_err(|_| MemError::Overflow {
        addr: start,
        len: usize::MAX,
    })?;
    // The window is the source's own bytes where it can lend them (a mapped dump), so a
    // candidate costs no copy of its tens of MiB.
    let mut f = Some(f);
    let mut out = None;
    mem.with_bytes(start, len, &mut |bytes| {
        if let Some(f) = f.take() {
            out = Some(f(&Window { base: start, bytes }));
        }
    })?;
    Ok(out)
}

/// Counts the work of one candidate against [`KALLSYMS_MAX_STEPS`].
struct Steps {
    left: u64,
}

/// The step budget ran out.
struct OutOfSteps;

impl Steps {
    fn take(&mut self, n: u64) -> Result<(), OutOfSteps> {
        self.left = self.left.checked_sub(n).ok_or(OutOfSteps)?;
        Ok(())
    }
}

/// The token table found around a signature hit: physical addresses and the tokens.
struct TokenTable {
    table: u64,
    index: u64,
    tokens: Vec<Vec<u8>>,
}

/// Why one candidate failed, before it is named by its address.
enum Reject {
    Bad(String),
    Steps,
    Read,
}

impl From<OutOfSteps> for Reject {
    fn from(_: OutOfSteps) -> Self {
        Reject::Steps
    }
}

impl From<&str> for Reject {
    fn from(s: &str) -> Self {
        Reject::Bad(s.to_string())
    }
}

impl From<String> for Reject {
    fn from(s: String) -> Self {
        Reject::Bad(s)
    }
}

/// Decodes the candidate at signature hit `hit`, charging window reads to `read_budget`.
fn decode_at(
    mem: &dyn PhysicalMemory,
    hit: u64,
    read_budget: &mut u64,
    budget: &SearchBudget,
) -> Result<Kallsyms, KallsymsError> {
    let mut steps = Steps { left: budget.steps };
    let named = |r: Reject| match r {
        Reject::Bad(reason) => KallsymsError::Inconsistent { paddr: hit, reason },
        Reject::Steps => KallsymsError::OverBudget {
            paddr: hit,
            what: "steps",
            limit: budget.steps,
        },
        Reject::Read => KallsymsError::OverBudget {
            paddr: hit,
            what: READ_BUDGET,
            limit: budget.read_bytes,
        },
    };
    // Small window first: most hits are not token tables and cost 128 KiB.
    let tt = with_window(
        mem,
        hit,
        TOKEN_TABLE_SPAN,
        TOKEN_TABLE_SPAN + TOKEN_INDEX_BYTES as u64 + ALIGN,
        read_budget,
        |small| token_table(small, hit, &mut steps),
    )?
    .ok_or_else(|| named(Reject::Read))?
    .map_err(named)?;
    with_window(
        mem,
        tt.table,
        KALLSYMS_WINDOW_BEFORE,
        (tt.index - tt.table) + TOKEN_INDEX_BYTES as u64 + KALLSYMS_WINDOW_AFTER,
        read_budget,
        |w| decode_window(w, &tt, &mut steps, &named),
    )?
    .ok_or_else(|| named(Reject::Read))?
}

/// Decodes the tables around a token table in `w`, in either word size.
fn decode_window(
    w: &Window<'_>,
    tt: &TokenTable,
    steps: &mut Steps,
    named: &dyn Fn(Reject) -> KallsymsError,
) -> Result<Kallsyms, KallsymsError> {
    // 64-bit first (what vmark mostly sees), then 32-bit; a word size the tables are not
    // laid out for fails its checks.
    let mut reasons = Vec::new();
    for word in [WORD_64, WORD_32] {
        match decode_tables(w, tt, word, steps) {
            Ok(k) => return Ok(k),
            Err(Reject::Bad(r)) => reasons.push(format!("{}-bit: {r}", word.bytes * 8)),
            Err(other) => return Err(named(other)),
        }
    }
    Err(named(Reject::Bad(reasons.join("; "))))
}

/// Finds the token table holding the signature at physical `hit` and its index.
///
/// The index is an 8-aligned `u16[256]` after the table, starting at 0 and strictly
/// increasing; the table ends with its last token's NUL, then up to 7 bytes of alignment
/// zeros before the index. Every entry must point just past a NUL, and no token may hold
/// one.
fn token_table(w: &Window, hit: u64, steps: &mut Steps) -> Result<TokenTable, Reject> {
    let sig = usize::try_from(hit - w.base).map_err(|_| "window")?;
    let sig_end = sig + TOKEN_SIGNATURE.len();
    let first = w.align_up(sig_end, 2).ok_or("window")?;
    let last = sig.saturating_add(TOKEN_TABLE_SPAN as usize);
    let mut q = first;
    'index: while q <= last {
        steps.take(1)?;
        let here = q;
        q += 2;
        if w.u16(here) != Some(0) {
            continue;
        }
        let mut idx = [0usize; 256];
        for i in 1..256 {
            steps.take(1)?;
            let Some(v) = w.u16(here + 2 * i) else {
                break 'index;
            };
            idx[i] = usize::from(v);
            if idx[i] <= idx[i - 1] {
                continue 'index;
            }
        }
        // The last token's final byte is the last non-zero byte before the index.
        let Some(z) = (sig..here).rev().find(|&i| w.byte(i) != Some(0)) else {
            continue;
        };
        let end = z + 2; // one past the last token's NUL
        if end > here || here - end >= ALIGN as usize {
            continue;
        }
        let last_start = (sig..=z)
            .rev()
            .find(|&i| i == 0 || w.byte(i - 1) == Some(0))
            .unwrap_or(z);
        let Some(table) = last_start.checked_sub(idx[255]) else {
            continue;
        };
        if table > sig {
            continue;
        }
        let mut tokens = Vec::with_capacity(256);
        for i in 0..256 {
            let start = table + idx[i];
            let stop = if i < 255 {
                table + idx[i + 1] - 1
            } else {
                end - 1
            };
            match w.get(start, stop.saturating_sub(start)) {
                Some(t) if stop >= start && w.byte(stop) == Some(0) && !t.contains(&0) => {
                    tokens.push(t.to_vec())
                }
                _ => continue 'index,
            }
        }
        return Ok(TokenTable {
            table: w.paddr(table),
            index: w.paddr(here),
            tokens,
        });
    }
    Err("no token index after the table".into())
}

/// Finds `kallsyms_num_syms`, the names and the markers before the token table, then the
/// offsets, and decodes every symbol.
///
/// Candidates for `num_syms` are 8-aligned `u32`s scanning backwards from the table. For
/// each, the markers array (`(num+255)/256` entries of 4 or 8 bytes) must end at the next
/// label: the token table itself, or `kallsyms_seqs_of_names` (3 or 4 bytes per symbol,
/// Linux 6.2 and 6.3, and some 6.1 stable kernels) in front of it. A candidate is accepted
/// only when the markers start at 0, increase, equal the offsets of every 256th name entry
/// walked from `num_syms + 8`, and the names end where the markers start; then the
/// offsets must decode (in either place) to sorted kernel addresses. A candidate that
/// fails a later check does not end the search: the next position is tried.
fn decode_tables(
    w: &Window,
    tt: &TokenTable,
    word: WordSize,
    steps: &mut Steps,
) -> Result<Kallsyms, Reject> {
    let table = usize::try_from(tt.table - w.base).map_err(|_| "window")?;
    let index = usize::try_from(tt.index - w.base).map_err(|_| "window")?;
    let (wb, align) = (word.bytes, word.bytes as u64);
    let mut last: Option<String> = None;
    let Some(mut p) = table.checked_sub(wb).and_then(|t| w.align_down(t, align)) else {
        return Err("token table at the start of memory".into());
    };
    loop {
        steps.take(1)?;
        if let Some(num) = w.u32(p).and_then(|n| usize::try_from(n).ok()) {
            if (MIN_SYMBOLS..=MAX_SYMBOLS).contains(&num) {
                let m = num.div_ceil(256);
                for seqs in [0usize, 3, 4] {
                    let Some(next) = seqs
                        .checked_mul(num)
                        .and_then(|s| table.checked_sub(s))
                        .and_then(|x| w.align_down(x, align))
                    else {
                        continue;
                    };
                    for size in [4usize, 8] {
                        let Some(ms) = m
                            .checked_mul(size)
                            .and_then(|b| next.checked_sub(b))
                            .and_then(|x| w.align_down(x, align))
                        else {
                            continue;
                        };
                        // Names follow num_syms, a u32 padded to the next label.
                        let names = p + wb;
                        if ms < names {
                            continue;
                        }
                        let Some(markers) = read_markers(w, ms, m, size, steps)? else {
                            continue;
                        };
                        let Some(entries) = check_names(w, names, num, &markers, ms, align, steps)?
                        else {
                            continue;
                        };
                        let decoded = Names {
                            entries: &entries,
                            tokens: &tt.tokens,
                            word,
                        };
                        match finish(w, p, num, index, &decoded, steps) {
                            Ok(mut k) => {
                                k.names_paddr = w.paddr(names);
                                k.token_table_paddr = tt.table;
                                k.seqs_between = seqs;
                                return Ok(k);
                            }
                            Err(Reject::Bad(e)) => last = Some(e),
                            Err(other) => return Err(other),
                        }
                    }
                }
            }
        }
        match p.checked_sub(wb) {
            Some(q) => p = q,
            None => break,
        }
    }
    Err(Reject::Bad(last.map_or_else(
        || "no kallsyms_num_syms consistent with markers and names".to_string(),
        |e| format!("names and markers agree, but {e}"),
    )))
}

/// `m` markers of `size` bytes at `at`, if they start at 0 and strictly increase.
fn read_markers(
    w: &Window,
    at: usize,
    m: usize,
    size: usize,
    steps: &mut Steps,
) -> Result<Option<Vec<u64>>, Reject> {
    let mut out = Vec::new();
    for i in 0..m {
        steps.take(1)?;
        let Some(v) = i
            .checked_mul(size)
            .and_then(|o| at.checked_add(o))
            .and_then(|a| w.uint(a, size))
        else {
            return Ok(None);
        };
        if (i == 0 && v != 0) || out.last().is_some_and(|&l| v <= l) {
            return Ok(None);
        }
        out.push(v);
    }
    Ok(Some(out))
}

/// Walks `num` name entries from `start`; checks every 256th against the markers and that
/// they end where the markers start (`markers_at`, after alignment). Returns the window
/// offset of every entry.
fn check_names(
    w: &Window,
    start: usize,
    num: usize,
    markers: &[u64],
    markers_at: usize,
    align: u64,
    steps: &mut Steps,
) -> Result<Option<Vec<usize>>, Reject> {
    let mut entries = Vec::new();
    let mut off = 0usize;
    for i in 0..num {
        steps.take(1)?;
        if i % 256 == 0 && markers.get(i / 256).copied() != Some(off as u64) {
            return Ok(None);
        }
        let Some(at) = start.checked_add(off) else {
            return Ok(None);
        };
        let Some((len, hdr)) = entry_len(w, at) else {
            return Ok(None);
        };
        entries.push(at);
        off = off.saturating_add(hdr + len);
        if start.saturating_add(off) > markers_at {
            return Ok(None);
        }
    }
    let end = start + off;
    if w.align_up(end, align) != Some(markers_at) {
        return Ok(None);
    }
    Ok(Some(entries))
}

/// Length of a names entry and of its length prefix (ULEB128: 1 byte, or 2 for "big"
/// symbols).
fn entry_len(w: &Window, at: usize) -> Option<(usize, usize)> {
    let b0 = usize::from(w.byte(at)?);
    if b0 & 0x80 != 0 {
        let b1 = usize::from(w.byte(at.checked_add(1)?)?);
        Some(((b0 & 0x7f) | (b1 << 7), 2))
    } else {
        Some((b0, 1))
    }
}

/// What the symbols are decoded with: where each names entry starts, the tokens, and the
/// kernel's word size.
struct Names<'a> {
    entries: &'a [usize],
    tokens: &'a [Vec<u8>],
    word: WordSize,
}

/// Decodes the symbols with the offsets and relative base in one of their two places.
fn finish(
    w: &Window,
    num_pos: usize,
    num: usize,
    index: usize,
    names: &Names<'_>,
    steps: &mut Steps,
) -> Result<Kallsyms, Reject> {
    let word = names.word;
    let offsets_bytes = num.checked_mul(4).ok_or("offsets size")?;
    let align = word.bytes as u64;
    let mut candidates = Vec::new();
    // Linux <= 6.3: offsets, relative base, then num_syms.
    if let Some(rb) = num_pos.checked_sub(word.bytes) {
        if let Some(start) = rb
            .checked_sub(offsets_bytes)
            .and_then(|s| w.align_down(s, align))
        {
            candidates.push((Layout::OffsetsFirst, start, rb));
        }
    }
    // Linux >= 6.4: after the token index.
    if let Some(start) = index
        .checked_add(TOKEN_INDEX_BYTES)
        .and_then(|a| w.align_up(a, align))
    {
        if let Some(rb) = start
            .checked_add(offsets_bytes)
            .and_then(|a| w.align_up(a, align))
        {
            candidates.push((Layout::OffsetsAfterIndex, start, rb));
        }
    }
    let mut reasons = Vec::new();
    for (layout, offsets_start, rb_pos) in candidates {
        match decode_symbols(w, num, offsets_start, rb_pos, names, steps) {
            Ok(mut k) => {
                k.layout = layout;
                return Ok(k);
            }
            Err(Reject::Bad(e)) => reasons.push(format!("{layout:?}: {e}")),
            Err(other) => return Err(other),
        }
    }
    Err(Reject::Bad(format!(
        "no offsets decode ({})",
        reasons.join("; ")
    )))
}

fn decode_symbols(
    w: &Window,
    num: usize,
    offsets_start: usize,
    rb_pos: usize,
    names: &Names<'_>,
    steps: &mut Steps,
) -> Result<Kallsyms, Reject> {
    let (word, entries, tokens) = (names.word, names.entries, names.tokens);
    let relative_base = w
        .uint(rb_pos, word.bytes)
        .ok_or("relative base outside memory read")?;
    if relative_base < word.min_kernel {
        return Err(format!("relative base {relative_base:#x} is not a kernel address").into());
    }
    // A 32-bit kernel's addresses stay below 4 GiB.
    let top = if word.bytes == 4 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    };
    let offsets = w
        .get(offsets_start, num.checked_mul(4).ok_or("offsets")?)
        .ok_or("offsets outside memory read")?;
    let offset =
        |i: usize| i32::from_le_bytes(offsets[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
    let absolute_percpu = (0..num).any(|i| offset(i) < 0);
    // Names average under 20 bytes: room for that, grown if needed (never past the budget).
    let mut symbols =
        SymbolTableBuilder::with_capacity(num, num.saturating_mul(20).min(KALLSYMS_MAX_NAME_BYTES));
    let mut name = Vec::with_capacity(KALLSYMS_MAX_NAME_LEN);
    let mut name_bytes = 0usize;
    for (i, &at) in entries.iter().enumerate() {
        steps.take(1)?;
        let (len, hdr) = entry_len(w, at).ok_or("names")?;
        let body = w.get(at + hdr, len).ok_or("names")?;
        name.clear();
        for &t in body {
            let token = &tokens[usize::from(t)];
            if name.len() + token.len() > KALLSYMS_MAX_NAME_LEN {
                return Err(format!(
                    "symbol {i}'s name is longer than {KALLSYMS_MAX_NAME_LEN} bytes"
                )
                .into());
            }
            name.extend_from_slice(token);
        }
        name_bytes += name.len();
        if name_bytes > KALLSYMS_MAX_NAME_BYTES {
            return Err(format!("names exceed {KALLSYMS_MAX_NAME_BYTES} bytes in all").into());
        }
        let Some((&kind, rest)) = name.split_first() else {
            return Err(format!("symbol {i} has an empty name").into());
        };
        let o = offset(i);
        let addr = if !absolute_percpu {
            relative_base.checked_add(u64::from(o as u32))
        } else if o >= 0 {
            Some(o as u64)
        } else {
            // Negative offsets count down from relative_base - 1 (kernel/kallsyms.c).
            relative_base
                .checked_sub(1)
                .and_then(|b| b.checked_add(u64::from(o.unsigned_abs())))
        };
        let addr = addr
            .filter(|&a| a <= top)
            .ok_or_else(|| format!("symbol {i}'s address overflows"))?;
        symbols
            .push(&String::from_utf8_lossy(rest), addr, kind as char)
            .map_err(|e| e.to_string())?;
    }
    let symbols = symbols.build();
    if symbols.lookup("_text").is_none() && symbols.lookup("_stext").is_none() {
        return Err("decoded symbols lack _text/_stext".into());
    }
    // kallsyms is sorted by address (percpu symbols aside): reject a misplaced offsets array.
    let kernel: Vec<u64> = symbols
        .iter()
        .map(|s| s.addr)
        .filter(|&a| a >= relative_base)
        .collect();
    let unsorted = kernel.windows(2).filter(|p| p[1] < p[0]).count();
    if kernel.len() < num / 2 || unsorted > num / 100 {
        return Err("decoded addresses are not sorted: wrong offsets array".into());
    }
    Ok(Kallsyms {
        token_table_paddr: 0,
        names_paddr: 0,
        relative_base,
        absolute_percpu,
        layout: Layout::OffsetsFirst,
        seqs_between: 0,
        word,
        symbols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::phys::VecMemory;

    /// How the synthetic tables are laid out.
    #[derive(Clone, Copy)]
    struct Spec {
        layout: Layout,
        /// Bytes of `kallsyms_seqs_of_names` between markers and token table (0: none).
        seqs: usize,
        /// Make the signature start at an odd address (as in Debian's 6.12 kernel).
        odd_signature: bool,
        /// Value written as `kallsyms_num_syms` (None: the real count).
        num_override: Option<u32>,
        relative_base: u64,
        /// Word size: 8, or 4 for a 32-bit kernel.
        word: usize,
    }

    const SPEC: Spec = Spec {
        layout: Layout::OffsetsFirst,
        seqs: 0,
        odd_signature: false,
        num_override: None,
        relative_base: 0xffff_ffff_8100_0000,
        word: 8,
    };

    fn align(v: &mut Vec<u8>, to: usize) {
        while !v.len().is_multiple_of(to) {
            v.push(0);
        }
    }

    /// Tables as scripts/kallsyms.c writes them, for `symbols` (type letter, name, offset
    /// from the relative base), starting at an 8-aligned offset of the returned bytes.
    /// Tokens are the identity (token `c` is the character `c`), except token 1 (`"ab"`,
    /// to move the signature to an odd address when asked) and token 0x80 (200 `x`s).
    fn tables(spec: Spec, symbols: &[(char, String, u32)]) -> Vec<u8> {
        let num = symbols.len();
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|c| vec![c.max(1)]).collect();
        tokens[1] = if spec.odd_signature {
            b"abc".to_vec()
        } else {
            b"ab".to_vec()
        };
        tokens[0x80] = vec![b'x'; 200];
        let mut names = Vec::new();
        let mut markers = Vec::new();
        for (i, (kind, name, _)) in symbols.iter().enumerate() {
            if i % 256 == 0 {
                markers.push(names.len() as u32);
            }
            let mut body = vec![*kind as u8];
            body.extend(name.bytes());
            // "@@@" stands for three long tokens (a name of 600 bytes).
            let body: Vec<u8> = body
                .into_iter()
                .map(|b| if b == b'@' { 0x80 } else { b })
                .collect();
            names.push(body.len() as u8);
            names.extend(body);
        }
        let mut offsets = Vec::new();
        for (_, _, off) in symbols {
            offsets.extend(off.to_le_bytes());
        }
        let mut table = Vec::new();
        let mut index = Vec::new();
        for t in &tokens {
            index.extend((table.len() as u16).to_le_bytes());
            table.extend(t);
            table.push(0);
        }
        let num_bytes = spec.num_override.unwrap_or(num as u32).to_le_bytes();
        let mut out = Vec::new();
        let w = spec.word;
        let push_offsets = |out: &mut Vec<u8>| {
            align(out, w);
            out.extend(&offsets);
            align(out, w);
            out.extend(&spec.relative_base.to_le_bytes()[..w]);
        };
        if spec.layout == Layout::OffsetsFirst {
            push_offsets(&mut out);
        }
        align(&mut out, w);
        out.extend(num_bytes);
        align(&mut out, w);
        out.extend(&names);
        align(&mut out, w);
        for m in &markers {
            out.extend(m.to_le_bytes());
        }
        align(&mut out, w);
        out.extend(vec![0u8; spec.seqs * num]);
        align(&mut out, w);
        out.extend(&table);
        align(&mut out, w);
        out.extend(&index);
        if spec.layout == Layout::OffsetsAfterIndex {
            push_offsets(&mut out);
        }
        out.extend([0u8; 64]);
        out
    }

    /// 300 symbols: `_text` at the base, then `sym_N` at increasing offsets.
    fn symbols() -> Vec<(char, String, u32)> {
        let mut s = vec![('T', "_text".to_string(), 0)];
        for i in 1..300u32 {
            s.push(('t', format!("sym_{i}"), i * 0x40));
        }
        s
    }

    /// Memory holding `parts` at 8-aligned addresses from 64 KiB, 256 KiB apart.
    fn memory(parts: &[Vec<u8>]) -> VecMemory {
        let mut mem = VecMemory::new(vec![0; 64 << 10]);
        for (i, p) in parts.iter().enumerate() {
            mem.put((64 << 10) + (i as u64) * (256 << 10), p);
        }
        let len = mem.max_address() + (64 << 10);
        mem.bytes_mut().resize(len as usize, 0);
        mem
    }

    /// A token table signature with nothing consistent around it.
    fn planted() -> Vec<u8> {
        let mut v = b"garbage".to_vec();
        v.extend(TOKEN_SIGNATURE);
        v.extend([0xffu8; 64]);
        v
    }

    #[test]
    fn decodes_6_1_and_6_4_layouts_64_and_32_bit_with_odd_signatures() {
        for spec in [
            SPEC,
            Spec { seqs: 3, ..SPEC },
            Spec { seqs: 4, ..SPEC },
            Spec {
                layout: Layout::OffsetsAfterIndex,
                odd_signature: true,
                ..SPEC
            },
            Spec {
                word: 4,
                relative_base: 0xc100_0000,
                ..SPEC
            },
            Spec {
                word: 4,
                relative_base: 0xc100_0000,
                odd_signature: true,
                layout: Layout::OffsetsAfterIndex,
                ..SPEC
            },
        ] {
            let mem = memory(&[tables(spec, &symbols())]);
            let k = find(&mem).unwrap_or_else(|e| panic!("{:?}: {e}", spec.layout));
            assert_eq!(k.layout, spec.layout);
            assert_eq!(k.seqs_between, spec.seqs);
            assert_eq!(k.symbols.len(), 300);
            assert_eq!(k.word.bytes, spec.word);
            assert_eq!(k.symbols.lookup("_text"), Some(spec.relative_base));
            assert_eq!(
                k.symbols.lookup("sym_299"),
                Some(spec.relative_base + 299 * 0x40)
            );
        }
    }

    #[test]
    fn a_hint_finds_the_tables_without_a_scan_and_a_wrong_one_fails_cleanly() {
        // A decoy first: find() would try it, find_at() at the real table does not.
        let mem = memory(&[planted(), tables(SPEC, &symbols())]);
        let k = find(&mem).unwrap();
        let mut read = KALLSYMS_MAX_READ_BYTES;
        let budget = &mut read;
        let at = find_at(&mem, k.token_table_paddr, budget).unwrap();
        assert_eq!(at.token_table_paddr, k.token_table_paddr);
        assert_eq!(at.symbols.len(), 300);
        assert_eq!(at.symbols.lookup("sym_7"), k.symbols.lookup("sym_7"));
        // Pointing at the decoy, at nothing, or past memory is an error, not a panic.
        assert!(find_at(&mem, 64 << 10, budget).is_err());
        assert!(matches!(
            find_at(&mem, 0, budget),
            Err(KallsymsError::NotFound { .. })
        ));
        assert!(find_at(&mem, mem.max_address() + 4096, budget).is_err());
        // A spent budget refuses further hints.
        assert!(find_at(&mem, k.token_table_paddr, &mut 0).is_err());
    }

    #[test]
    fn bad_candidates_before_a_good_one_do_not_hide_it() {
        // Issue 9: Debian's 6.12 kernel (offsets after the index, a signature at an odd
        // address) behind stray signatures that decode to nothing.
        let good = tables(
            Spec {
                layout: Layout::OffsetsAfterIndex,
                odd_signature: true,
                ..SPEC
            },
            &symbols(),
        );
        let mem = memory(&[planted(), planted(), good, planted()]);
        let k = find(&mem).unwrap();
        assert_eq!(k.symbols.len(), 300);
        assert!(k.token_table_paddr > (64 << 10) + 2 * (256 << 10));
    }

    #[test]
    fn when_nothing_decodes_the_error_names_every_candidate_tried() {
        let mem = memory(&[planted(), planted(), planted()]);
        let Err(e) = find(&mem) else {
            panic!("planted signatures decoded");
        };
        let KallsymsError::NoneConsistent {
            candidates, tried, ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!((*candidates, tried.len()), (3, 3));
        let text = e.to_string();
        for i in 0..3u64 {
            let at = (64 << 10) + i * (256 << 10) + 7;
            assert!(text.contains(&format!("{at:#x}")), "{text}");
        }
        assert!(text.contains("no token index"), "{text}");
        assert!(matches!(
            find(&VecMemory::new(vec![0; 4096])),
            Err(KallsymsError::NotFound { scanned: 4096 })
        ));
    }

    #[test]
    fn names_longer_than_ksym_name_len_and_absurd_counts_are_refused() {
        let mut syms = symbols();
        syms[5].1 = "long@@@".into(); // 3 tokens of 200 bytes
        let e = find(&memory(&[tables(SPEC, &syms)]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("longer than 512 bytes"), "{e}");
        let spec = Spec {
            num_override: Some(1 << 31),
            ..SPEC
        };
        let e = find(&memory(&[tables(spec, &symbols())]));
        assert!(matches!(e, Err(KallsymsError::NoneConsistent { .. })));
    }

    #[test]
    fn addresses_past_the_top_of_the_address_space_are_refused() {
        let spec = Spec {
            relative_base: u64::MAX - 0xfff,
            ..SPEC
        };
        let e = find(&memory(&[tables(spec, &symbols())]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("address overflows"), "{e}");
    }

    #[test]
    fn budgets_end_a_candidate_and_the_search_with_typed_errors() {
        let mem = memory(&[tables(SPEC, &symbols())]);
        let tight = SearchBudget {
            steps: 100,
            ..SearchBudget::default()
        };
        let Err(KallsymsError::NoneConsistent { tried, .. }) = find_within(&mem, &tight) else {
            panic!("not NoneConsistent");
        };
        assert!(matches!(
            tried[0],
            KallsymsError::OverBudget {
                what: "steps",
                limit: 100,
                ..
            }
        ));
        let mem = memory(&[planted(), planted(), planted(), planted()]);
        let two = SearchBudget {
            candidates: 2,
            ..SearchBudget::default()
        };
        let Err(KallsymsError::NoneConsistent {
            candidates,
            stopped,
            ..
        }) = find_within(&mem, &two)
        else {
            panic!("not NoneConsistent");
        };
        assert_eq!(candidates, 2);
        assert!(matches!(
            stopped.as_deref(),
            Some(KallsymsError::OverBudget {
                what: "candidates",
                ..
            })
        ));
        let small = SearchBudget {
            scan_bytes: 4096,
            ..SearchBudget::default()
        };
        let e = find_within(&mem, &small).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("bytes scanned"), "{e}");
    }
}
