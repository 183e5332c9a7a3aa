//! The guest kernel's own symbol table, read out of memory: compressed kallsyms.
//!
//! Linux 6.1 (`CONFIG_KALLSYMS_BASE_RELATIVE`) emits, in `.rodata` and in this order
//! (scripts/kallsyms.c; each label 8-byte aligned):
//!
//! ```text
//! kallsyms_offsets[num]        s32: relative to kallsyms_relative_base
//! kallsyms_relative_base       u64 (relocated by KASLR: the runtime value)
//! kallsyms_num_syms            u32
//! kallsyms_names               per symbol: length (1 byte, or 2 if bit 7 is set), token indices
//! kallsyms_markers[(num+255)/256]  offset in names of every 256th symbol (u32 or u64)
//! kallsyms_token_table         256 NUL-terminated token strings
//! kallsyms_token_index[256]    u16 offset of each token in the table
//! ```
//!
//! Finding them without a symbol file (the approach of tools such as vmlinux-to-elf's
//! kallsyms finder): scan for the run of single-digit tokens `"0\01\0...9\0"` that every
//! token table holds, find the token index after it (an increasing `u16[256]` starting at 0
//! whose entries point at token starts), then walk backwards: markers (an increasing array
//! starting at 0), then `num_syms` (the count consistent with the number of markers, with
//! names that decode to exactly the marker offsets), then the relative base and offsets.
//! Every step is checked against the next, and every read is bounded by the window.

use super::phys::{MemError, PhysicalMemory, Region};
use super::symbols::{Symbol, SymbolError, SymbolTable};

/// The run of single-digit tokens every token table contains.
pub const TOKEN_SIGNATURE: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";

/// Bytes read before a signature hit (offsets + names + markers fit in this).
const WINDOW_BEFORE: u64 = 16 << 20;
/// Bytes read after it (rest of the token table and the index).
const WINDOW_AFTER: u64 = 64 << 10;
/// Largest chunk read while scanning.
const SCAN_CHUNK: u64 = 8 << 20;
/// Most signature hits examined.
const MAX_HITS: usize = 64;

/// Why kallsyms could not be found or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KallsymsError {
    /// Reading memory failed.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// No token table signature in memory.
    #[error("no kallsyms token table found in guest memory")]
    NotFound,
    /// A token table was found but the tables around it do not decode consistently.
    #[error("kallsyms tables near physical {paddr:#x} are inconsistent: {reason}")]
    Inconsistent {
        /// Where the token table is.
        paddr: u64,
        /// Which check failed.
        reason: String,
    },
    /// Symbol table limits.
    #[error(transparent)]
    Symbols(#[from] SymbolError),
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
    /// The decoded symbols.
    pub symbols: SymbolTable,
}

/// Scans all of `mem` for kallsyms and decodes the first consistent set of tables.
pub fn find(mem: &dyn PhysicalMemory) -> Result<Kallsyms, KallsymsError> {
    let hits = scan(mem, TOKEN_SIGNATURE, MAX_HITS)?;
    if hits.is_empty() {
        return Err(KallsymsError::NotFound);
    }
    let mut last_err = KallsymsError::NotFound;
    for hit in hits {
        match decode_at(mem, hit) {
            Ok(k) => return Ok(k),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// Physical addresses where `needle` occurs (at most `max`), scanning every region in
/// chunks. Holes are skipped.
pub fn scan(mem: &dyn PhysicalMemory, needle: &[u8], max: usize) -> Result<Vec<u64>, MemError> {
    let mut hits = Vec::new();
    if needle.is_empty() {
        return Ok(hits);
    }
    let overlap = needle.len() as u64 - 1;
    let mut buf = Vec::new();
    for Region { start, len } in mem.regions() {
        let end = start.saturating_add(len);
        let mut at = start;
        while at < end {
            let n = (end - at).min(SCAN_CHUNK + overlap);
            buf.resize(n as usize, 0);
            if mem.read(at, &mut buf).is_ok() {
                for i in find_all(&buf, needle) {
                    hits.push(at + i as u64);
                    if hits.len() >= max {
                        return Ok(hits);
                    }
                }
            }
            if n <= overlap {
                break;
            }
            at += n - overlap;
        }
    }
    hits.dedup();
    Ok(hits)
}

/// Offsets of `needle` in `hay`.
fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let first = needle[0];
    let mut from = 0usize;
    std::iter::from_fn(move || {
        while from + needle.len() <= hay.len() {
            let i = from
                + hay[from..=hay.len() - needle.len()]
                    .iter()
                    .position(|&b| b == first)?;
            from = i + 1;
            if &hay[i..i + needle.len()] == needle {
                return Some(i);
            }
        }
        None
    })
}

/// A window of guest memory with bounds-checked little-endian reads.
struct Window {
    base: u64,
    bytes: Vec<u8>,
}

impl Window {
    fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.bytes.get(at..at + 2)?.try_into().ok()?,
        ))
    }
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.bytes.get(at..at + 4)?.try_into().ok()?,
        ))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(
            self.bytes.get(at..at + 8)?.try_into().ok()?,
        ))
    }
    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        if size == 4 {
            self.u32(at).map(u64::from)
        } else {
            self.u64(at)
        }
    }
    fn cstr(&self, at: usize, max: usize) -> Option<&[u8]> {
        let tail = self.bytes.get(at..)?;
        let tail = &tail[..tail.len().min(max)];
        Some(&tail[..tail.iter().position(|&b| b == 0)?])
    }
}

/// Reads the window around a signature hit (page aligned; holes shrink it).
fn window(mem: &dyn PhysicalMemory, hit: u64) -> Result<Window, MemError> {
    let region = mem
        .regions()
        .into_iter()
        .find(|r| r.start <= hit && hit < r.end())
        .ok_or(MemError::NotPresent(hit))?;
    let start = hit.saturating_sub(WINDOW_BEFORE).max(region.start) & !0xfff;
    let start = start.max(region.start);
    let end = hit.saturating_add(WINDOW_AFTER).min(region.end());
    let mut bytes = vec![0u8; (end - start) as usize];
    mem.read(start, &mut bytes)?;
    Ok(Window { base: start, bytes })
}

fn decode_at(mem: &dyn PhysicalMemory, hit: u64) -> Result<Kallsyms, KallsymsError> {
    let w = window(mem, hit)?;
    let sig = (hit - w.base) as usize;
    let bad = |reason: &str| KallsymsError::Inconsistent {
        paddr: hit,
        reason: reason.to_string(),
    };
    let (table, index) =
        token_table(&w, sig).ok_or_else(|| bad("no token index after the table"))?;
    let mut tokens: Vec<&[u8]> = Vec::with_capacity(256);
    for i in 0..256 {
        let off = w.u16(index + 2 * i).ok_or_else(|| bad("token index"))? as usize;
        tokens.push(w.cstr(table + off, 256).ok_or_else(|| bad("token"))?);
    }
    let mut k = decode_tables(&w, table, index, &tokens).map_err(|r| bad(&r))?;
    k.token_table_paddr = w.base + table as u64;
    Ok(k)
}

/// Finds the token table containing the signature at `sig` and its index: returns
/// (table start, index start) as window offsets.
fn token_table(w: &Window, sig: usize) -> Option<(usize, usize)> {
    // The index follows the table (at most ~8 KiB of tokens) after alignment padding.
    for q in (sig + TOKEN_SIGNATURE.len()..sig + 16 * 1024).step_by(2) {
        if w.u16(q)? != 0 {
            continue;
        }
        let mut idx = [0usize; 256];
        let mut ok = true;
        for i in 0..256 {
            let v = w.u16(q + 2 * i)? as usize;
            if i > 0 && v <= idx[i - 1] {
                ok = false;
                break;
            }
            idx[i] = v;
        }
        if !ok {
            continue;
        }
        for pad in 0..8usize {
            // table start = q - pad - (idx[255] + len(last token) + 1)
            let Some(end) = q.checked_sub(pad) else { break };
            // The last token must end exactly at `end`.
            if end == 0 || w.bytes.get(end - 1) != Some(&0) {
                continue;
            }
            // Find where the last token starts: table start + idx[255].
            let Some(before_nul) = end.checked_sub(1) else {
                continue;
            };
            let token_start = w.bytes[..before_nul]
                .iter()
                .rposition(|&b| b == 0)
                .map_or(0, |p| p + 1);
            let Some(table) = token_start.checked_sub(idx[255]) else {
                continue;
            };
            if table > sig {
                continue;
            }
            let consistent = (1..256)
                .all(|i| table + idx[i] >= 1 && w.bytes.get(table + idx[i] - 1) == Some(&0));
            if consistent && w.bytes.get(table + idx[255]).is_some_and(|&b| b != 0) {
                return Some((table, q));
            }
        }
    }
    None
}

/// Finds `kallsyms_num_syms`, the names and the markers before the token table at
/// `table`, then the offsets, and decodes every symbol.
///
/// Candidates for `num_syms` are 8-aligned `u32`s scanning backwards from the table. For
/// each, the markers array (`(num+255)/256` entries of 4 or 8 bytes) must end at the next
/// 8-aligned label: the token table itself, or `kallsyms_seqs_of_names` (3 bytes per
/// symbol, present from 6.2 and in later 6.1 stable kernels) in front of it. A candidate
/// is accepted only when the markers start at 0, increase, and equal the offsets of every
/// 256th name entry walked from `num_syms + 8`.
fn decode_tables(
    w: &Window,
    table: usize,
    index: usize,
    tokens: &[&[u8]],
) -> Result<Kallsyms, String> {
    let mut p = table.checked_sub(8).ok_or("token table at window start")? & !7;
    loop {
        if let Some(num) = w.u32(p).map(|n| n as usize) {
            if (256..super::symbols::MAX_SYMBOLS).contains(&num) {
                let m = num.div_ceil(256);
                for seqs in [false, true] {
                    let next = if seqs {
                        match table.checked_sub(3 * num) {
                            Some(x) => x & !7,
                            None => continue,
                        }
                    } else {
                        table
                    };
                    for size in [4usize, 8] {
                        let Some(ms) = next.checked_sub(m * size).map(|x| x & !7) else {
                            continue;
                        };
                        if ms < p + 8 {
                            continue;
                        }
                        let Some(markers) = read_markers(w, ms, m, size) else {
                            continue;
                        };
                        if let Some(names) = check_names(w, p + 8, num, &markers, ms) {
                            let entries = names_offsets(w, names, num);
                            return finish(w, p, num, names, index, &entries, tokens);
                        }
                    }
                }
            }
        }
        if p < 8 {
            return Err("no kallsyms_num_syms consistent with markers and names".into());
        }
        p -= 8;
    }
}

/// `m` markers of `size` bytes at `at`, if they start at 0 and strictly increase.
fn read_markers(w: &Window, at: usize, m: usize, size: usize) -> Option<Vec<u64>> {
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        let v = w.uint(at + i * size, size)?;
        if (i == 0 && v != 0) || out.last().is_some_and(|&l| v <= l) {
            return None;
        }
        out.push(v);
    }
    Some(out)
}

/// Walks `num` name entries from `start`; checks every 256th against the markers and that
/// they end by `limit`. Returns the names start.
fn check_names(
    w: &Window,
    start: usize,
    num: usize,
    markers: &[u64],
    limit: usize,
) -> Option<usize> {
    let mut off = 0usize;
    for i in 0..num {
        if i % 256 == 0 && markers.get(i / 256).copied() != Some(off as u64) {
            return None;
        }
        let (len, hdr) = entry_len(w, start + off)?;
        off += hdr + len;
        if start + off > limit {
            return None;
        }
    }
    Some(start)
}

/// Length of a names entry and of its length prefix (1 byte, or 2 for "big" symbols).
fn entry_len(w: &Window, at: usize) -> Option<(usize, usize)> {
    let b0 = *w.bytes.get(at)? as usize;
    if b0 & 0x80 != 0 {
        let b1 = *w.bytes.get(at + 1)? as usize;
        Some(((b0 & 0x7f) | (b1 << 7), 2))
    } else {
        Some((b0, 1))
    }
}

fn names_offsets(w: &Window, start: usize, num: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(num);
    let mut off = start;
    for _ in 0..num {
        out.push(off);
        let Some((len, hdr)) = entry_len(w, off) else {
            break;
        };
        off += hdr + len;
    }
    out
}

fn finish(
    w: &Window,
    num_pos: usize,
    num: usize,
    names_start: usize,
    index: usize,
    entries: &[usize],
    tokens: &[&[u8]],
) -> Result<Kallsyms, String> {
    // Offsets and relative base: before num_syms (6.1), or after the token index (later
    // kernels). The right one has a kernel-half base and mostly sorted addresses.
    let mut candidates = Vec::new();
    if let Some(rb_pos) = num_pos.checked_sub(8) {
        if let Some(start) = rb_pos.checked_sub(num * 4) {
            candidates.push((start & !7, rb_pos));
        }
    }
    let after = (index + 512).next_multiple_of(8);
    candidates.push((after, (after + num * 4).next_multiple_of(8)));
    let mut last = String::from("no room for kallsyms_offsets");
    for (offsets_start, rb_pos) in candidates {
        match decode_symbols(w, num, offsets_start, rb_pos, entries, tokens) {
            Ok(mut k) => {
                k.names_paddr = w.base + names_start as u64;
                return Ok(k);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn decode_symbols(
    w: &Window,
    num: usize,
    offsets_start: usize,
    rb_pos: usize,
    entries: &[usize],
    tokens: &[&[u8]],
) -> Result<Kallsyms, String> {
    let relative_base = w.u64(rb_pos).ok_or("relative base")?;
    if relative_base < 0xffff_8000_0000_0000 {
        return Err(format!(
            "relative base {relative_base:#x} is not a kernel address"
        ));
    }
    let mut raw_offsets = Vec::with_capacity(num);
    for i in 0..num {
        raw_offsets.push(w.u32(offsets_start + 4 * i).ok_or("offsets")? as i32);
    }
    let absolute_percpu = raw_offsets.iter().any(|&o| o < 0);
    let mut symbols = Vec::with_capacity(num);
    let mut name = Vec::with_capacity(128);
    for (i, &at) in entries.iter().enumerate() {
        let (len, hdr) = entry_len(w, at).ok_or("names")?;
        let body = w.bytes.get(at + hdr..at + hdr + len).ok_or("names")?;
        name.clear();
        for &t in body {
            name.extend_from_slice(tokens[t as usize]);
        }
        let Some((&kind, rest)) = name.split_first() else {
            return Err(format!("symbol {i} has an empty name"));
        };
        let o = raw_offsets[i];
        let addr = if !absolute_percpu {
            relative_base.wrapping_add(u64::from(o as u32))
        } else if o >= 0 {
            o as u64
        } else {
            relative_base
                .wrapping_sub(1)
                .wrapping_sub(i64::from(o) as u64)
        };
        symbols.push(Symbol {
            name: String::from_utf8_lossy(rest).into_owned(),
            addr,
            kind: kind as char,
        });
    }
    let symbols = SymbolTable::new(symbols).map_err(|e| e.to_string())?;
    if symbols.lookup("_text").is_none() && symbols.lookup("_stext").is_none() {
        return Err("decoded symbols lack _text/_stext".into());
    }
    // kallsyms is sorted by address (percpu symbols aside): reject a misplaced offsets array.
    let kernel: Vec<u64> = symbols
        .symbols()
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
        symbols,
    })
}
