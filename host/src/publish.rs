//! The xenstore layout the guest helper publishes under
//! `/local/domain/<id>/data/vmark/` (documented in `vmark_abi.h`), parsed and validated.
//!
//! Everything here comes from the guest and is hostile until checked: each value is parsed
//! into a typed description with bounded sizes and frame counts that must match the address
//! range they claim to cover, so a bad entry becomes an error for that one mark.

use std::fmt;

/// Guest page size (x86).
pub const PAGE_SIZE: u64 = 4096;
/// Largest mark the host maps (a mark is one kernel variable).
pub const MAX_MARK_SIZE: u64 = 16 << 20;
/// Largest manifest blob (header + payload) the host reads.
pub const MAX_MANIFEST_SIZE: u64 = (4 << 20) + 4096;
/// Frame numbers above this are not memory on any x86-64 machine (52-bit physical).
pub const MAX_FRAME: u64 = (1 << 40) - 1;
/// Longest mark or module name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Marks per module the host reads.
pub const MAX_MARKS_PER_MODULE: usize = 1024;

/// Why a published entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Wrong number of fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields expected.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A number that does not parse.
    #[error("{field}: \"{}\" is not a {radix} number", vmark_proto::text::escape(.value))]
    BadNumber {
        /// Which field.
        field: &'static str,
        /// The text.
        value: String,
        /// "hex" or "decimal".
        radix: &'static str,
    },
    /// A name with characters or a length the layout does not allow.
    #[error("bad name \"{}\" (1-{MAX_NAME_LEN} characters of [A-Za-z0-9_.:-])", vmark_proto::text::escape(.0))]
    BadName(String),
    /// A size of zero or over the limit.
    #[error("{what} size {size} outside 1..={limit}")]
    BadSize {
        /// What is sized.
        what: &'static str,
        /// The size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Frame list length does not match the pages the range spans.
    #[error("{what} at {gva:#x}+{size} spans {needed} pages but {given} frames are published")]
    FrameCount {
        /// What the frames are for.
        what: &'static str,
        /// Start address.
        gva: u64,
        /// Size.
        size: u64,
        /// Pages spanned.
        needed: u64,
        /// Frames given.
        given: usize,
    },
    /// A frame number beyond any real memory.
    #[error("frame {0:#x} is beyond physical memory")]
    BadFrame(u64),
    /// An address that is not a canonical kernel address.
    #[error("address {0:#x} is not a kernel address")]
    BadAddress(u64),
    /// Unknown flag bits.
    #[error("unknown flag bits {0:#x}")]
    BadFlags(u64),
    /// A record that straddles a page (records are 64-byte aligned).
    #[error("record at {0:#x} straddles a page boundary")]
    RecordStraddles(u64),
    /// A value longer than any the helper writes
    /// ([`vmark_proto::limits::XS_MAX_VALUE_LEN`]).
    #[error("value of {len} bytes (at most {limit} accepted)")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More items than the host looks at.
    #[error("{what}: {found} published, at most {limit} are read")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// How many there are.
        found: usize,
        /// The limit.
        limit: usize,
    },
}

/// The frames that hold a guest-virtual range: `frames[i]` backs the page that holds
/// `gva - gva % PAGE_SIZE + i * PAGE_SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRange {
    /// Guest virtual address of the first byte.
    pub gva: u64,
    /// Length in bytes.
    pub size: u64,
    /// Frame numbers as a foreign mapping takes them (MFN for PV, GFN for HVM/PVH).
    pub frames: Vec<u64>,
}

impl FrameRange {
    /// Offset of the first byte within the first frame.
    pub fn page_offset(&self) -> u64 {
        self.gva % PAGE_SIZE
    }

    /// Checks a range the guest claims (a kernel address, a size in `1..=limit`) and
    /// returns how many pages it spans: the frames a [`FrameRange`] of it must have.
    pub fn pages_spanned(
        what: &'static str,
        gva: u64,
        size: u64,
        limit: u64,
    ) -> Result<u64, PublishError> {
        if !is_kernel_address(gva) {
            return Err(PublishError::BadAddress(gva));
        }
        if size == 0 || size > limit {
            return Err(PublishError::BadSize { what, size, limit });
        }
        Ok((gva % PAGE_SIZE + size).div_ceil(PAGE_SIZE))
    }

    /// A range from frames found another way (e.g. by walking the guest's page tables),
    /// checked as a published one is: address, size, frame count and frame numbers.
    pub fn new(
        what: &'static str,
        gva: u64,
        size: u64,
        limit: u64,
        frames: Vec<u64>,
    ) -> Result<FrameRange, PublishError> {
        let needed = Self::pages_spanned(what, gva, size, limit)?;
        if frames.len() as u64 != needed {
            return Err(PublishError::FrameCount {
                what,
                gva,
                size,
                needed,
                given: frames.len(),
            });
        }
        for &f in &frames {
            check_frame(f)?;
        }
        Ok(FrameRange { gva, size, frames })
    }

    fn parse(
        what: &'static str,
        gva: u64,
        size: u64,
        limit: u64,
        frames: &str,
    ) -> Result<FrameRange, PublishError> {
        let needed = Self::pages_spanned(what, gva, size, limit)?;
        // Count before collecting, so a huge list costs no allocation.
        let given = frames.split(',').count();
        if given as u64 != needed {
            return Err(PublishError::FrameCount {
                what,
                gva,
                size,
                needed,
                given,
            });
        }
        let frames = frames
            .split(',')
            .map(|f| parse_hex("frame", f))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(what, gva, size, limit, frames)
    }
}

/// A published mark: `modules/<mod>/marks/<i>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMark {
    /// Mark name (matches the manifest's).
    pub name: String,
    /// `VMARK_F_*` flags as the helper saw them.
    pub flags: u16,
    /// Guest virtual address of the mark's `vmark_record`.
    pub record_gva: u64,
    /// Frame holding the record.
    pub record_frame: u64,
    /// The variable's bytes.
    pub var: FrameRange,
}

impl PublishedMark {
    /// Parses `"<name> <flags> <record-gva> <record-frame> <var-gva> <size> <f1>,<f2>..."`.
    pub fn parse(value: &str) -> Result<PublishedMark, PublishError> {
        let fields: Vec<&str> = value.split_ascii_whitespace().take(8).collect();
        if fields.len() != 7 {
            return Err(PublishError::FieldCount {
                expected: 7,
                found: value.split_ascii_whitespace().count(),
            });
        }
        let name = parse_name(fields[0])?;
        let flags = parse_dec("flags", fields[1])?;
        if flags & !u64::from(vmark_proto::abi::VMARK_F_ALL) != 0 {
            return Err(PublishError::BadFlags(flags));
        }
        let record_gva = parse_hex("record address", fields[2])?;
        check_record_address(record_gva)?;
        let record_frame = check_frame(parse_hex("record frame", fields[3])?)?;
        let gva = parse_hex("variable address", fields[4])?;
        let size = parse_dec("size", fields[5])?;
        let var = FrameRange::parse("mark", gva, size, MAX_MARK_SIZE, fields[6])?;
        Ok(PublishedMark {
            name,
            flags: flags as u16,
            record_gva,
            record_frame,
            var,
        })
    }
}

/// A published manifest location: `modules/<mod>/manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedManifest {
    /// Where the manifest blob lives.
    pub blob: FrameRange,
}

impl PublishedManifest {
    /// Parses `"<gva> <size> <f1>,<f2>..."`.
    pub fn parse(value: &str) -> Result<PublishedManifest, PublishError> {
        let fields: Vec<&str> = value.split_ascii_whitespace().take(4).collect();
        if fields.len() != 3 {
            return Err(PublishError::FieldCount {
                expected: 3,
                found: value.split_ascii_whitespace().count(),
            });
        }
        let gva = parse_hex("manifest address", fields[0])?;
        let size = parse_dec("manifest size", fields[1])?;
        let blob = FrameRange::parse("manifest", gva, size, MAX_MANIFEST_SIZE, fields[2])?;
        Ok(PublishedManifest { blob })
    }
}

/// Checks a module or mark name from the guest.
pub fn parse_name(s: &str) -> Result<String, PublishError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(PublishError::BadName(s.chars().take(80).collect()))
    }
}

fn parse_hex(field: &'static str, s: &str) -> Result<u64, PublishError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 {
        return Err(bad(field, s, "hex"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| bad(field, s, "hex"))
}

fn parse_dec(field: &'static str, s: &str) -> Result<u64, PublishError> {
    if s.is_empty() || s.len() > 20 {
        return Err(bad(field, s, "decimal"));
    }
    s.parse().map_err(|_| bad(field, s, "decimal"))
}

/// Parses a decimal value published by the guest (event channel, grant ref, generation).
pub fn parse_number(field: &'static str, s: &str) -> Result<u64, PublishError> {
    parse_dec(field, s.trim())
}

fn bad(field: &'static str, s: &str, radix: &'static str) -> PublishError {
    PublishError::BadNumber {
        field,
        value: s.chars().take(40).collect(),
        radix,
    }
}

/// A record's address must be a kernel address and the record must not straddle a page
/// (records are 64-byte aligned, so a real one never does).
pub fn check_record_address(record_gva: u64) -> Result<(), PublishError> {
    if !is_kernel_address(record_gva) {
        return Err(PublishError::BadAddress(record_gva));
    }
    if record_gva % PAGE_SIZE + vmark_proto::abi::RECORD_SIZE as u64 > PAGE_SIZE {
        return Err(PublishError::RecordStraddles(record_gva));
    }
    Ok(())
}

/// A frame number must be one real memory can have ([`MAX_FRAME`]).
pub fn check_frame(frame: u64) -> Result<u64, PublishError> {
    if frame > MAX_FRAME {
        Err(PublishError::BadFrame(frame))
    } else {
        Ok(frame)
    }
}

/// Where a kernel, its modules and vmalloc live: the upper half of a 64-bit address space,
/// or the kernel part of a 32-bit one (i386: from `PAGE_OFFSET`, 1 GiB at the lowest with
/// `CONFIG_VMSPLIT_1G`). The host does not know the guest's word size here, so for a 64-bit
/// guest this also lets through its user range below 4 GiB: a sanity check, not a
/// boundary; the frames behind an address are what is mapped, each checked on its own.
fn is_kernel_address(a: u64) -> bool {
    a >= 0xffff_8000_0000_0000 || (0x4000_0000..=0xffff_ffff).contains(&a)
}

impl fmt::Display for FrameRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{} in", self.gva, self.size)?;
        for fr in &self.frames {
            write!(f, " {fr:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mark_spanning_two_pages() {
        let m = PublishedMark::parse(
            "tcp_copy 3 ffffffffc0a01040 1a2b ffffffffc0a02f00 2304 1a2c,1a2d",
        )
        .unwrap();
        assert_eq!(m.name, "tcp_copy");
        assert_eq!(m.flags, 3);
        assert_eq!(m.var.frames, vec![0x1a2c, 0x1a2d]);
        assert_eq!(m.var.page_offset(), 0xf00);
    }

    #[test]
    fn frame_count_must_match_the_span() {
        let e = PublishedMark::parse("x 0 ffffffffc0000000 1 ffffffffc0000ffc 8 1").unwrap_err();
        assert!(matches!(
            e,
            PublishError::FrameCount {
                needed: 2,
                given: 1,
                ..
            }
        ));
        // An absurd list is refused by counting, before anything is collected.
        let many = vec!["1"; 100_000].join(",");
        let e = PublishedMark::parse(&format!("x 0 ffffffffc0000000 1 ffffffffc0000000 8 {many}"))
            .unwrap_err();
        assert!(matches!(e, PublishError::FrameCount { .. }));
    }

    #[test]
    fn hostile_values_are_refused() {
        for (v, what) in [
            ("", "empty"),
            ("a b c", "too few fields"),
            ("x 0 ffffffffc0000000 1 ffffffffc0000000 0 1", "zero size"),
            (
                "x 0 ffffffffc0000000 1 ffffffffc0000000 99999999999 1",
                "huge size",
            ),
            ("x 0 ffffffffc0000000 1 1000 8 1", "user address"),
            (
                "x 0 ffffffffc0000fc8 1 ffffffffc0000000 8 1",
                "straddling record",
            ),
            (
                "x 0 ffffffffc0000000 1 ffffffffc0000000 8 fffffffffffff",
                "frame too high",
            ),
            (
                "x 64 ffffffffc0000000 1 ffffffffc0000000 8 1",
                "unknown flags",
            ),
            ("x 0 zz 1 ffffffffc0000000 8 1", "bad hex"),
            (
                "bad/name 0 ffffffffc0000000 1 ffffffffc0000000 8 1",
                "bad name",
            ),
            (
                "x 0 ffffffffc0000000 1 ffffffffc0000000 8 1 extra",
                "extra field",
            ),
        ] {
            assert!(PublishedMark::parse(v).is_err(), "accepted {what}: {v:?}");
        }
    }

    #[test]
    fn parses_a_manifest_location() {
        let m = PublishedManifest::parse("ffffffffc0a05000 5123 10,11").unwrap();
        assert_eq!(m.blob.size, 5123);
        assert_eq!(m.blob.frames, vec![0x10, 0x11]);
        assert!(PublishedManifest::parse("ffffffffc0a05000 99999999 10").is_err());
    }
}
