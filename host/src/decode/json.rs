//! The compact JSON writer: a [`Plan`](super::Plan)'s ops compiled into specialized steps.
//!
//! The braces, brackets, commas and keys between two values never change, so they are
//! merged into one span of constant text that precedes each value (its last 32 bytes are
//! kept in the step itself, so most steps read nothing else). Each value is one
//! [`Value`] step that knows its exact width and signedness (bitfields: byte, shift and
//! width), so rendering a sample is a loop of "copy a span, load a few bytes, format an
//! integer" without the generic 128-bit path. An array of scalars is one step with a
//! tight loop. The rare kinds (floats, 128-bit integers, strings, opaque bytes) are left
//! to the generic writer; they split the steps into [`Segment`]s.
//!
//! Each segment is written into the output's own bytes: the output is first grown by an
//! upper bound of the segment's length, then every piece is written as a fixed-size
//! chunk into a fixed-size window at the current position, and finally the output is cut
//! to what was written. A copy of a constant length is a few moves where one of variable
//! length is a call to `memcpy`, and a window of constant size needs one bounds check
//! where each small write into a `Vec` needs a capacity check and a length update; those
//! were most of the cost of a sample. Integers are formatted in registers, eight digits
//! at a time: digits assembled in a stack buffer and copied out stall on store-to-load
//! forwarding.

use super::{DecodeError, Op, Scalar};

/// Constant text up to this long is copied as one fixed-size chunk.
const CHUNK: usize = 32;
/// The window a value is written into (the longest is a sign and 20 digits in up to
/// three 8-byte stores, or a pointer's `"0x…"`).
const VALUE: usize = 32;
/// Slack at the end of a segment's room, so the last window fits.
const SLACK: usize = CHUNK + VALUE;
/// The largest output reserved in advance (larger outputs grow as usual).
const MAX_RESERVE: usize = 1 << 20;
/// Longest rendering of a float (`f64` `Display` of a subnormal is 326 bytes).
const MAX_FLOAT: usize = 330;

/// A span of the constant text pool.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// How to render one value of the sample.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// Unsigned integers (also unsigned enums) of 1, 2, 4 and 8 bytes at an offset.
    U8(u32),
    U16(u32),
    U32(u32),
    U64(u32),
    /// Signed integers (also signed enums).
    I8(u32),
    I16(u32),
    I32(u32),
    I64(u32),
    /// `_Bool`.
    Bool(u32),
    /// A pointer: `"0x…"` (8 bytes; `Ptr32`: 4 bytes, of a 32-bit guest).
    Ptr(u32),
    Ptr32(u32),
    /// A bitfield of at most 64 bits within at most 8 bytes.
    Bits(BitKind, Bits),
    /// `[a,b,…]`: `count` (at least one) elements of one kind from `offset` on.
    Run {
        num: Num,
        offset: u32,
        count: u32,
    },
}

/// The kind of the elements of a [`Value::Run`].
#[derive(Debug, Clone, Copy)]
enum Num {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    Bool,
    Ptr,
    Ptr32,
}

impl Num {
    /// Longest rendering (`null` included).
    fn bound(self) -> usize {
        match self {
            Num::U8 | Num::I8 => 4,
            Num::U16 => 5,
            Num::I16 => 6,
            Num::U32 => 10,
            Num::I32 => 11,
            Num::U64 | Num::I64 | Num::Ptr | Num::Ptr32 => 20,
            Num::Bool => 5,
        }
    }
}

/// How a bitfield's bits are interpreted.
#[derive(Debug, Clone, Copy)]
enum BitKind {
    Unsigned,
    Signed,
    Bool,
}

/// A bitfield: the bytes `first..first + nbytes` read as a little-endian integer, shifted
/// right by `shift` and cut to `width` bits (`1..=64`, `shift + width <= 64`).
#[derive(Debug, Clone, Copy)]
struct Bits {
    first: u32,
    nbytes: u8,
    shift: u8,
    width: u8,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    /// The last (up to) [`CHUNK`] bytes of the constant text before the value, so most
    /// steps need nothing from the text pool.
    chunk: [u8; CHUNK],
    /// Constant text before the value, in the pool.
    text: Span,
    value: Value,
    /// The op the value comes from (for the generic writer, should the fast one fail).
    op: u32,
}

/// Specialized steps up to a value rendered by the generic writer (or the end).
#[derive(Debug, Clone)]
struct Segment {
    /// `steps[start..end]`.
    start: u32,
    end: u32,
    /// Constant text after the steps: before the generic value, or the end of the JSON.
    text: Span,
    /// The op rendered by the generic writer after the text, if any.
    generic: Option<u32>,
    /// An upper bound of the output of the steps and the text, plus [`SLACK`].
    room: usize,
}

/// The compiled JSON form of a plan.
#[derive(Debug, Clone, Default)]
pub(super) struct Program {
    steps: Vec<Step>,
    segments: Vec<Segment>,
    /// Constant text (keys and punctuation), followed by [`CHUNK`] bytes of padding so
    /// every span can be copied as a fixed-size chunk.
    text: Vec<u8>,
    /// An upper bound of the output's length (capped), reserved before writing.
    reserve: usize,
}

/// What a leaf op compiles to.
enum Compiled {
    /// Its rendering does not depend on the sample.
    Const(&'static str),
    Value(Value),
    /// Rendered by the generic writer.
    Generic,
}

/// The elements of a run: `[`, each element after `[` or `,`, and `]`; each written into
/// its own window of `$buf`, starting at `$pos`. Evaluates to the length written, or
/// returns `None` from the enclosing function when `$buf` is too short.
macro_rules! run {
    ($buf:ident, $pos:ident, $bytes:ident, $offset:ident, $count:ident, $n:literal, |$w:ident, $b:ident| $fmt:expr) => {{
        let mut at = $pos;
        let mut sep = b'[';
        for i in 0..$count {
            let window = $buf.get_mut(at..)?.first_chunk_mut::<{ VALUE + 1 }>()?;
            let (head, rest) = window.split_first_mut()?;
            *head = sep;
            sep = b',';
            let $w: &mut [u8; VALUE] = rest.first_chunk_mut()?;
            at += 1 + match load::<$n>($bytes, $offset + i * $n) {
                Some($b) => $fmt,
                None => null($w),
            };
        }
        *$buf.get_mut(at)? = b']';
        at + 1 - $pos
    }};
}

impl Program {
    /// Compiles the ops of a plan.
    pub(super) fn new(ops: &[Op]) -> Result<Program, DecodeError> {
        let mut steps = Vec::new();
        let mut segments = Vec::new();
        let mut text: Vec<u8> = Vec::new();
        // Start of the text not yet in a step; the open segment's first step, start of its
        // text and bound of its values.
        let mut start = 0usize;
        let (mut first, mut first_text, mut values) = (0usize, 0usize, 0usize);
        let mut reserve = 0usize;
        // A comma is due before a value when the enclosing container already has one.
        let mut need_comma = false;
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Open { key, array } => {
                    if std::mem::take(&mut need_comma) {
                        text.push(b',');
                    }
                    text.extend_from_slice(key.json.as_bytes());
                    text.push(if *array { b'[' } else { b'{' });
                }
                Op::Close { array } => {
                    text.push(if *array { b']' } else { b'}' });
                    need_comma = true;
                }
                Op::Scalar { key, .. }
                | Op::ScalarRun { key, .. }
                | Op::Chars { key, .. }
                | Op::Opaque { key, .. } => {
                    if std::mem::take(&mut need_comma) {
                        text.push(b',');
                    }
                    text.extend_from_slice(key.json.as_bytes());
                    need_comma = true;
                    match compile_leaf(op) {
                        // Constant text, part of the next step's (or the end's).
                        Compiled::Const(s) => text.extend_from_slice(s.as_bytes()),
                        Compiled::Value(value) => {
                            values = values.saturating_add(value_bound(value));
                            let tail = &text[start.max(text.len().saturating_sub(CHUNK))..];
                            let mut chunk = [b' '; CHUNK];
                            chunk[..tail.len()].copy_from_slice(tail);
                            steps.push(Step {
                                chunk,
                                text: span(start, text.len())?,
                                value,
                                op: index(i)?,
                            });
                            start = text.len();
                        }
                        Compiled::Generic => {
                            let room = (text.len() - first_text)
                                .saturating_add(values)
                                .saturating_add(SLACK);
                            segments.push(Segment {
                                start: index(first)?,
                                end: index(steps.len())?,
                                text: span(start, text.len())?,
                                generic: Some(index(i)?),
                                room,
                            });
                            reserve = reserve
                                .saturating_add(room)
                                .saturating_add(generic_bound(op));
                            start = text.len();
                            (first, first_text, values) = (steps.len(), start, 0);
                        }
                    }
                }
            }
        }
        let room = (text.len() - first_text)
            .saturating_add(values)
            .saturating_add(SLACK);
        segments.push(Segment {
            start: index(first)?,
            end: index(steps.len())?,
            text: span(start, text.len())?,
            generic: None,
            room,
        });
        text.resize(text.len() + CHUNK, b' ');
        Ok(Program {
            steps,
            segments,
            text,
            reserve: reserve.saturating_add(room).min(MAX_RESERVE),
        })
    }

    /// Leaves no room for any segment, so every one takes the slow path (for tests).
    #[cfg(test)]
    pub(super) fn starve(&mut self) {
        for segment in &mut self.segments {
            segment.room = 0;
        }
    }

    /// A good capacity for the output of one sample.
    pub(super) fn reserve(&self) -> usize {
        self.reserve
    }

    /// Appends the JSON of a sample to `out`; `generic` renders an op the program does not
    /// specialize.
    pub(super) fn write(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        mut generic: impl FnMut(usize, &mut Vec<u8>),
    ) {
        out.reserve(self.reserve);
        for segment in &self.segments {
            let steps = self
                .steps
                .get(segment.start as usize..segment.end as usize)
                .unwrap_or_default();
            let start = out.len();
            out.resize(start + segment.room, 0);
            let written = out
                .get_mut(start..)
                .and_then(|buf| self.render(steps, segment.text, bytes, buf));
            match written {
                Some(n) => out.truncate(start + n),
                None => {
                    // Out of room: the bound is wrong (a bug, never the sample's doing).
                    // Still render the segment right, value by value.
                    out.truncate(start);
                    for step in steps {
                        self.put_text_vec(out, step.text);
                        generic(step.op as usize, out);
                    }
                    self.put_text_vec(out, segment.text);
                }
            }
            if let Some(op) = segment.generic {
                generic(op as usize, out);
            }
        }
    }

    /// Renders `steps` and then the constant `text` at the start of `buf`; returns the
    /// length written, or `None` when `buf` is too short.
    #[inline(always)]
    fn render(&self, steps: &[Step], text: Span, bytes: &[u8], buf: &mut [u8]) -> Option<usize> {
        let mut pos = 0;
        for step in steps {
            let len = step.text.len as usize;
            if len > CHUNK {
                // A long text (rare): all but its last chunk from the pool.
                let (start, head) = (step.text.start as usize, len - CHUNK);
                let src = self.text.get(start..start + head)?;
                buf.get_mut(pos..pos + head)?.copy_from_slice(src);
                pos += head;
            }
            // One window for the text and the value that follows it.
            let window = buf.get_mut(pos..)?.first_chunk_mut::<{ CHUNK + VALUE }>()?;
            *window.first_chunk_mut::<CHUNK>()? = step.chunk;
            let len = len.min(CHUNK);
            pos += len;
            let w = window.get_mut(len..)?.first_chunk_mut::<VALUE>()?;
            pos += match step.value {
                Value::U8(o) => leaf::<1>(w, bytes, o, |w, b| dec_u8(w, b[0])),
                Value::U16(o) => leaf(w, bytes, o, |w, b| dec(w, u16::from_le_bytes(b).into())),
                Value::U32(o) => leaf(w, bytes, o, |w, b| dec_u32(w, u32::from_le_bytes(b))),
                Value::U64(o) => leaf(w, bytes, o, |w, b| dec(w, u64::from_le_bytes(b))),
                Value::I8(o) => leaf(w, bytes, o, |w, b| dec_i8(w, i8::from_le_bytes(b))),
                Value::I16(o) => leaf(w, bytes, o, |w, b| {
                    dec_signed(w, i16::from_le_bytes(b).into())
                }),
                Value::I32(o) => leaf(w, bytes, o, |w, b| dec_i32(w, i32::from_le_bytes(b))),
                Value::I64(o) => leaf(w, bytes, o, |w, b| dec_signed(w, i64::from_le_bytes(b))),
                Value::Bool(o) => leaf::<1>(w, bytes, o, |w, b| boolean(w, b[0] != 0)),
                Value::Ptr(o) => leaf(w, bytes, o, |w, b| ptr(w, u64::from_le_bytes(b))),
                Value::Ptr32(o) => leaf(w, bytes, o, |w, b| ptr(w, u32::from_le_bytes(b).into())),
                Value::Bits(kind, bits) => match read_bits(bytes, bits) {
                    Some(v) => match kind {
                        BitKind::Unsigned => dec(w, v),
                        BitKind::Signed => {
                            let unused = 64 - u32::from(bits.width);
                            dec_signed(w, ((v << unused) as i64) >> unused)
                        }
                        BitKind::Bool => boolean(w, v != 0),
                    },
                    None => null(w),
                },
                Value::Run { num, offset, count } => {
                    let (offset, count) = (offset as usize, count as usize);
                    match num {
                        Num::U8 => run!(buf, pos, bytes, offset, count, 1, |w, b| dec_u8(w, b[0])),
                        Num::U16 => run!(buf, pos, bytes, offset, count, 2, |w, b| dec(
                            w,
                            u16::from_le_bytes(b).into()
                        )),
                        Num::U32 => run!(buf, pos, bytes, offset, count, 4, |w, b| dec_u32(
                            w,
                            u32::from_le_bytes(b)
                        )),
                        Num::U64 => run!(buf, pos, bytes, offset, count, 8, |w, b| dec(
                            w,
                            u64::from_le_bytes(b)
                        )),
                        Num::I8 => run!(buf, pos, bytes, offset, count, 1, |w, b| dec_i8(
                            w,
                            i8::from_le_bytes(b)
                        )),
                        Num::I16 => run!(buf, pos, bytes, offset, count, 2, |w, b| dec_signed(
                            w,
                            i16::from_le_bytes(b).into()
                        )),
                        Num::I32 => run!(buf, pos, bytes, offset, count, 4, |w, b| dec_i32(
                            w,
                            i32::from_le_bytes(b)
                        )),
                        Num::I64 => run!(buf, pos, bytes, offset, count, 8, |w, b| dec_signed(
                            w,
                            i64::from_le_bytes(b)
                        )),
                        Num::Bool => run!(buf, pos, bytes, offset, count, 1, |w, b| boolean(
                            w,
                            b[0] != 0
                        )),
                        Num::Ptr => run!(buf, pos, bytes, offset, count, 8, |w, b| ptr(
                            w,
                            u64::from_le_bytes(b)
                        )),
                        Num::Ptr32 => run!(buf, pos, bytes, offset, count, 4, |w, b| ptr(
                            w,
                            u32::from_le_bytes(b).into()
                        )),
                    }
                }
            };
        }
        self.put_text(buf, pos, text)
    }

    /// Copies a span of constant text to `buf[pos..]`; returns the new position.
    #[inline(always)]
    fn put_text(&self, buf: &mut [u8], pos: usize, span: Span) -> Option<usize> {
        let (start, len) = (span.start as usize, span.len as usize);
        if len <= CHUNK {
            // The pool is padded, so a short span can be copied as a whole chunk.
            let src = self.text.get(start..)?.first_chunk::<CHUNK>()?;
            *buf.get_mut(pos..)?.first_chunk_mut::<CHUNK>()? = *src;
        } else {
            let src = self.text.get(start..start + len)?;
            buf.get_mut(pos..pos + len)?.copy_from_slice(src);
        }
        Some(pos + len)
    }

    /// Appends a span of constant text to `out`.
    fn put_text_vec(&self, out: &mut Vec<u8>, span: Span) {
        let (start, len) = (span.start as usize, span.len as usize);
        if let Some(t) = self.text.get(start..start + len) {
            out.extend_from_slice(t);
        }
    }
}

/// Compiles one leaf op.
fn compile_leaf(op: &Op) -> Compiled {
    match op {
        Op::Scalar {
            offset,
            scalar,
            bits: None,
            ..
        } => match (num(*scalar), u32::try_from(*offset)) {
            (Some(n), Ok(o)) => Compiled::Value(match n {
                Num::U8 => Value::U8(o),
                Num::U16 => Value::U16(o),
                Num::U32 => Value::U32(o),
                Num::U64 => Value::U64(o),
                Num::I8 => Value::I8(o),
                Num::I16 => Value::I16(o),
                Num::I32 => Value::I32(o),
                Num::I64 => Value::I64(o),
                Num::Bool => Value::Bool(o),
                Num::Ptr => Value::Ptr(o),
                Num::Ptr32 => Value::Ptr32(o),
            }),
            _ => Compiled::Generic,
        },
        Op::Scalar {
            offset,
            scalar,
            bits: Some((bit_offset, width)),
            ..
        } => {
            let kind = match scalar {
                Scalar::Int(_) | Scalar::Enum(_, true, _) => BitKind::Signed,
                Scalar::Bool => BitKind::Bool,
                // A pointer bitfield renders in hex, through the generic path.
                Scalar::Ptr(_) => return Compiled::Generic,
                _ => BitKind::Unsigned,
            };
            let shift = (bit_offset % 8) as u8;
            let first = offset
                .checked_add(u64::from(bit_offset / 8))
                .and_then(|f| u32::try_from(f).ok());
            match first {
                Some(first)
                    if (1..=64).contains(width) && u32::from(shift) + u32::from(*width) <= 64 =>
                {
                    Compiled::Value(Value::Bits(
                        kind,
                        Bits {
                            first,
                            nbytes: (shift + width).div_ceil(8),
                            shift,
                            width: *width,
                        },
                    ))
                }
                _ => Compiled::Generic,
            }
        }
        Op::ScalarRun {
            offset,
            scalar,
            count,
            ..
        } => {
            if *count == 0 {
                return Compiled::Const("[]");
            }
            match (num(*scalar), u32::try_from(*offset), u32::try_from(*count)) {
                (Some(num), Ok(offset), Ok(count)) => {
                    Compiled::Value(Value::Run { num, offset, count })
                }
                _ => Compiled::Generic,
            }
        }
        // Nothing to show: `null` whatever the sample.
        Op::Opaque { size: 0, .. } => Compiled::Const("null"),
        Op::Chars { .. } | Op::Opaque { .. } | Op::Open { .. } | Op::Close { .. } => {
            Compiled::Generic
        }
    }
}

/// The specialized kind of a scalar, if it has one.
fn num(scalar: Scalar) -> Option<Num> {
    Some(match scalar {
        Scalar::Int(1) | Scalar::Enum(1, true, _) => Num::I8,
        Scalar::Int(2) | Scalar::Enum(2, true, _) => Num::I16,
        Scalar::Int(4) | Scalar::Enum(4, true, _) => Num::I32,
        Scalar::Int(8) | Scalar::Enum(8, true, _) => Num::I64,
        Scalar::UInt(1) | Scalar::Enum(1, false, _) | Scalar::RawFloat(1) => Num::U8,
        Scalar::UInt(2) | Scalar::Enum(2, false, _) | Scalar::RawFloat(2) => Num::U16,
        Scalar::UInt(4) | Scalar::Enum(4, false, _) | Scalar::RawFloat(4) => Num::U32,
        Scalar::UInt(8) | Scalar::Enum(8, false, _) | Scalar::RawFloat(8) => Num::U64,
        Scalar::Bool => Num::Bool,
        Scalar::Ptr(8) => Num::Ptr,
        Scalar::Ptr(4) => Num::Ptr32,
        _ => return None,
    })
}

/// An upper bound of the length of a value's rendering.
fn value_bound(value: Value) -> usize {
    match value {
        Value::U8(_) => Num::U8.bound(),
        Value::U16(_) => Num::U16.bound(),
        Value::U32(_) => Num::U32.bound(),
        Value::U64(_) => Num::U64.bound(),
        Value::I8(_) => Num::I8.bound(),
        Value::I16(_) => Num::I16.bound(),
        Value::I32(_) => Num::I32.bound(),
        Value::I64(_) => Num::I64.bound(),
        Value::Bool(_) => Num::Bool.bound(),
        Value::Ptr(_) => Num::Ptr.bound(),
        Value::Ptr32(_) => Num::Ptr32.bound(),
        Value::Bits(..) => 20,
        // `[`, the elements each with a `,` or the `]`.
        Value::Run { num, count, .. } => (count as usize).saturating_mul(num.bound() + 1) + 1,
    }
}

/// An estimate of the length of a generic value's rendering (for reserving the output).
fn generic_bound(op: &Op) -> usize {
    let sat = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    match op {
        Op::ScalarRun { count, .. } => sat(*count).saturating_mul(MAX_FLOAT + 1),
        // Each byte may become a 6-byte escape.
        Op::Chars { len, .. } => sat(*len).saturating_mul(6).saturating_add(2),
        Op::Opaque { size, .. } => sat(*size).saturating_mul(2).saturating_add(2),
        _ => MAX_FLOAT,
    }
}

fn index(i: usize) -> Result<u32, DecodeError> {
    u32::try_from(i).map_err(|_| DecodeError::TooManyFields)
}

fn span(start: usize, end: usize) -> Result<Span, DecodeError> {
    Ok(Span {
        start: index(start)?,
        len: index(end - start)?,
    })
}

/// `N` bytes of the sample at `offset`, if it has them.
#[inline(always)]
fn load<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..)?.first_chunk::<N>().copied()
}

/// One leaf of `N` bytes, rendered by `f` into `w`, or `null` beyond the sample; returns
/// the length written.
#[inline(always)]
fn leaf<const N: usize>(
    w: &mut [u8; VALUE],
    bytes: &[u8],
    offset: u32,
    f: impl FnOnce(&mut [u8; VALUE], [u8; N]) -> usize,
) -> usize {
    match load::<N>(bytes, offset as usize) {
        Some(b) => f(w, b),
        None => null(w),
    }
}

/// A bitfield's value (masked, not sign-extended), or `None` beyond the sample.
#[inline(always)]
fn read_bits(bytes: &[u8], bits: Bits) -> Option<u64> {
    let first = bits.first as usize;
    let covered = bytes.get(first..first + usize::from(bits.nbytes))?;
    let raw = match load::<8>(bytes, first) {
        Some(b) => u64::from_le_bytes(b),
        // Near the end of the sample: only the covered bytes.
        None => covered
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    };
    let mask = u64::MAX >> (64 - u32::from(bits.width));
    Some((raw >> bits.shift) & mask)
}

/// Writes `null`; returns its length.
#[inline(always)]
fn null(w: &mut [u8; VALUE]) -> usize {
    put(w, 0, b"null");
    4
}

/// Writes `true` or `false`; returns the length.
#[inline(always)]
fn boolean(w: &mut [u8; VALUE], b: bool) -> usize {
    put(w, 0, if b { b"true " } else { b"false" });
    5 - usize::from(b)
}

/// Copies `chunk` to `w[at..]` if it fits (it always does where it is used).
#[inline(always)]
fn put<const N: usize>(w: &mut [u8; VALUE], at: usize, chunk: &[u8; N]) {
    if let Some(dst) = w.get_mut(at..).and_then(|d| d.first_chunk_mut::<N>()) {
        *dst = *chunk;
    }
}

/// `'0'` in every byte.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// The 8 decimal digits of `v < 10^8` (with leading zeros) as values `0..=9`, one per byte,
/// the most significant in the lowest byte (so `to_le_bytes` is in reading order).
#[inline(always)]
fn digits8(v: u32) -> u64 {
    let v = u64::from(v);
    // Two 4-digit halves in 32-bit lanes, the high half in the low lane.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    // Each lane / 100 (exact below 10^4), then two 2-digit groups in 16-bit lanes.
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    // Each lane / 10 (exact below 100), then one digit per byte.
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | ((x - tens * 10) << 8)
}

/// Writes `v < 10^8` in decimal without leading zeros at `w[at..]`; returns its length.
#[inline(always)]
fn head(w: &mut [u8; VALUE], at: usize, v: u32) -> usize {
    let d = digits8(v);
    // Leading zero digits are the zero low bytes; the last digit always stays.
    let skip = (d | 1 << 56).trailing_zeros() / 8;
    put(w, at, &((d + ASCII_ZEROS) >> (8 * skip)).to_le_bytes());
    8 - skip as usize
}

/// Writes `v < 10^8` as exactly 8 decimal digits at `w[at..]`.
#[inline(always)]
fn eight(w: &mut [u8; VALUE], at: usize, v: u32) {
    put(w, at, &(digits8(v) + ASCII_ZEROS).to_le_bytes());
}

/// Writes `v` in decimal at `w[at..]`; returns its length (at most 20).
#[inline(always)]
fn dec_at(w: &mut [u8; VALUE], at: usize, v: u64) -> usize {
    const E8: u64 = 100_000_000;
    if v < E8 {
        head(w, at, v as u32)
    } else if v < E8 * E8 {
        let n = head(w, at, (v / E8) as u32);
        eight(w, at + n, (v % E8) as u32);
        n + 8
    } else {
        let rest = v % (E8 * E8);
        let n = head(w, at, (v / (E8 * E8)) as u32);
        eight(w, at + n, (rest / E8) as u32);
        eight(w, at + n + 8, (rest % E8) as u32);
        n + 16
    }
}

/// Writes `v` in decimal; returns its length.
#[inline(always)]
fn dec(w: &mut [u8; VALUE], v: u64) -> usize {
    dec_at(w, 0, v)
}

/// `"00"`, `"01"`, …, `"99"`, each as a little-endian `u16`.
const PAIRS: [u16; 100] = {
    let mut t = [0u16; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = (b'0' + (i / 10) as u8) as u16 | ((b'0' + (i % 10) as u8) as u16) << 8;
        i += 1;
    }
    t
};

/// `"0"`, …, `"255"` left-aligned in the low bytes of a `u32`, with the length in the top
/// byte.
const BYTES: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u32, (i / 10 % 10) as u32, (i % 10) as u32);
        t[i] = if i >= 100 {
            (b'0' as u32 + h) | (b'0' as u32 + d) << 8 | (b'0' as u32 + u) << 16 | 3 << 24
        } else if i >= 10 {
            (b'0' as u32 + d) | (b'0' as u32 + u) << 8 | 2 << 24
        } else {
            (b'0' as u32 + u) | 1 << 24
        };
        i += 1;
    }
    t
};

/// Writes a byte's value in decimal at `w[at..]`; returns its length.
#[inline(always)]
fn dec_u8_at(w: &mut [u8; VALUE], at: usize, v: u8) -> usize {
    let e = BYTES[usize::from(v)];
    put(w, at, &e.to_le_bytes());
    (e >> 24) as usize
}

/// Writes a byte's value in decimal; returns its length.
#[inline(always)]
fn dec_u8(w: &mut [u8; VALUE], v: u8) -> usize {
    dec_u8_at(w, 0, v)
}

/// Writes a signed byte's value in decimal; returns its length.
#[inline(always)]
fn dec_i8(w: &mut [u8; VALUE], v: i8) -> usize {
    w[0] = b'-';
    let minus = usize::from(v < 0);
    minus + dec_u8_at(w, minus, v.unsigned_abs())
}

/// Writes a 32-bit value in decimal at `w[at..]`; returns its length.
#[inline(always)]
fn dec_u32_at(w: &mut [u8; VALUE], at: usize, v: u32) -> usize {
    const E8: u32 = 100_000_000;
    if v < E8 {
        head(w, at, v)
    } else {
        // Ten digits at most: the first two from a table.
        let h = v / E8;
        let pair = PAIRS[(h % 100) as usize];
        let one = usize::from(h < 10);
        put(w, at, &(pair >> (8 * one)).to_le_bytes());
        let n = 2 - one;
        eight(w, at + n, v % E8);
        n + 8
    }
}

/// Writes a 32-bit value in decimal; returns its length.
#[inline(always)]
fn dec_u32(w: &mut [u8; VALUE], v: u32) -> usize {
    dec_u32_at(w, 0, v)
}

/// Writes a signed 32-bit value in decimal; returns its length.
#[inline(always)]
fn dec_i32(w: &mut [u8; VALUE], v: i32) -> usize {
    w[0] = b'-';
    let minus = usize::from(v < 0);
    minus + dec_u32_at(w, minus, v.unsigned_abs())
}

/// Writes `v` in decimal; returns its length.
#[inline(always)]
fn dec_signed(w: &mut [u8; VALUE], v: i64) -> usize {
    // Branch-free: the sign of sample values is unpredictable.
    w[0] = b'-';
    let minus = usize::from(v < 0);
    minus + dec_at(w, minus, v.unsigned_abs())
}

/// The 8 hex digits of `v` in ASCII, the most significant in the lowest byte (so
/// `to_le_bytes` is in reading order).
#[inline(always)]
fn hex8(v: u32) -> u64 {
    // The bytes of `v`, the most significant first, one per 16-bit lane.
    let x = u64::from(v.swap_bytes());
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    // Each byte's high nibble, then its low one, one per byte.
    let x = ((x >> 4) & 0x000f_000f_000f_000f) | ((x & 0x000f_000f_000f_000f) << 8);
    // Adding 0x76 sets bit 7 of the bytes of 10..=15; those need `'a' - '0' - 10` = 0x27
    // more than `'0'`. (Shifts, not a multiplication, which would be vectorized badly.)
    let m = (x + 0x7676_7676_7676_7676) & 0x8080_8080_8080_8080;
    x + ASCII_ZEROS + ((m >> 2) | (m >> 5) | (m >> 6) | (m >> 7))
}

/// Writes a pointer: `"0x`, lowercase hex without leading zeros (at least one digit),
/// `"`; returns the length.
#[inline(always)]
fn ptr(w: &mut [u8; VALUE], v: u64) -> usize {
    let digits = ((64 - v.leading_zeros()).div_ceil(4)).max(1) as usize;
    // Move the first significant digit to the top, so the digits start the text.
    let v = v << (4 * (16 - digits));
    put(w, 0, b"\"0x");
    put(w, 3, &hex8((v >> 32) as u32).to_le_bytes());
    put(w, 11, &hex8(v as u32).to_le_bytes());
    if let Some(quote) = w.get_mut(3 + digits) {
        *quote = b'"';
    }
    4 + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut [u8; VALUE]) -> usize) -> String {
        let mut w = [b'?'; VALUE];
        let n = f(&mut w);
        String::from_utf8(w[..n].to_vec()).unwrap()
    }

    #[test]
    fn integers_format_like_core() {
        let mut cases: Vec<u64> = (0..100_000).collect();
        for p in 0..20 {
            let t = 10u64.pow(p);
            cases.extend([t - 1, t, t + 1, t.wrapping_mul(3) + 7, t + t / 2]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.extend([x, x >> 20, x >> 40, x % 100_000_000]);
        }
        cases.extend([u64::MAX, u64::MAX - 1, 1 << 63, 12_345_678_901_234_567_890]);
        cases.extend([
            u32::MAX.into(),
            i32::MAX as u64,
            i32::MIN as u64,
            4_000_000_000,
        ]);
        for v in cases {
            assert_eq!(render(|w| dec(w, v)), v.to_string());
            assert_eq!(render(|w| dec_u32(w, v as u32)), (v as u32).to_string());
            assert_eq!(render(|w| dec_i32(w, v as i32)), (v as i32).to_string());
            assert_eq!(render(|w| dec_u8(w, v as u8)), (v as u8).to_string());
            assert_eq!(render(|w| dec_i8(w, v as i8)), (v as i8).to_string());
            for s in [v as i64, (v as i64).wrapping_neg(), i64::MIN, i64::MAX] {
                assert_eq!(render(|w| dec_signed(w, s)), s.to_string());
            }
        }
    }

    #[test]
    fn pointers_format_like_core() {
        let mut cases = vec![0u64, 1, 0xf, 0x10, 0xabc, u64::MAX, 0xffff_8880_0123_4567];
        cases.extend((0..64).map(|i| 1u64 << i));
        cases.extend((0..64).map(|i| (1u64 << i) - 1));
        cases.extend((0..64).map(|i| 0x0123_4567_89ab_cdefu64 >> i));
        for v in cases {
            assert_eq!(render(|w| ptr(w, v)), format!("\"{v:#x}\""));
        }
    }

    #[test]
    fn booleans_and_null() {
        assert_eq!(render(|w| boolean(w, true)), "true");
        assert_eq!(render(|w| boolean(w, false)), "false");
        assert_eq!(render(null), "null");
    }
}
