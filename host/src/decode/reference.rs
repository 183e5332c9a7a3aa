//! The original, straightforward JSON renderer, kept as an oracle for tests.
//!
//! It walks the plan's ops with one static prefix per value and renders every leaf through
//! the generic [`read_scalar`] path and `String` formatting. The fast writer in
//! [`super::json`] must produce byte-for-byte the same text; the unit tests here and
//! `tests/decode_agree.rs` compare the two on synthetic and real kernel types. Do not
//! "optimize" this module: its value is in being obviously right.

use super::{read_scalar, slice, Leaf, Op, Plan, Scalar};
use std::fmt::Write as _;

impl Plan {
    /// The sample as JSON, rendered by the slow reference implementation (for tests that
    /// check the fast [`Plan::write_json`] against it).
    #[doc(hidden)]
    pub fn to_json_reference(&self, bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut text = String::new();
        // A comma is due before a value when the enclosing container already has one.
        let mut need_comma = false;
        for op in &self.ops {
            match op {
                Op::Open { key, array } => {
                    sep(&mut text, &mut need_comma);
                    text.push_str(&key.json);
                    text.push(if *array { '[' } else { '{' });
                }
                Op::Close { array } => {
                    text.push(if *array { ']' } else { '}' });
                    need_comma = true;
                }
                Op::Scalar { key, .. }
                | Op::ScalarRun { key, .. }
                | Op::Chars { key, .. }
                | Op::Opaque { key, .. } => {
                    sep(&mut text, &mut need_comma);
                    text.push_str(&key.json);
                    out.push_str(&std::mem::take(&mut text));
                    write_value(op, bytes, &mut out);
                    need_comma = true;
                }
            }
        }
        out.push_str(&text);
        out
    }
}

fn sep(out: &mut String, need_comma: &mut bool) {
    if *need_comma {
        out.push(',');
    }
    *need_comma = false;
}

fn write_value(op: &Op, bytes: &[u8], out: &mut String) {
    match op {
        Op::Scalar {
            offset,
            scalar,
            bits,
            ..
        } => match read_scalar(bytes, *offset, *scalar, *bits) {
            Some(leaf) => write_leaf(out, leaf, *scalar),
            None => out.push_str("null"),
        },
        Op::ScalarRun {
            offset,
            scalar,
            count,
            ..
        } => {
            out.push('[');
            let step = scalar.size();
            for i in 0..*count {
                if i > 0 {
                    out.push(',');
                }
                let at = i.checked_mul(step).and_then(|d| offset.checked_add(d));
                match at.and_then(|at| read_scalar(bytes, at, *scalar, None)) {
                    Some(leaf) => write_leaf(out, leaf, *scalar),
                    None => out.push_str("null"),
                }
            }
            out.push(']');
        }
        Op::Chars { offset, len, .. } => match slice(bytes, *offset, *len) {
            Some(b) => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                push_str(out, &b[..end]);
            }
            None => out.push_str("null"),
        },
        Op::Opaque { offset, size, .. } => match slice(bytes, *offset, *size) {
            Some(b) if !b.is_empty() => {
                out.push('"');
                for byte in b {
                    let _ = write!(out, "{byte:02x}");
                }
                out.push('"');
            }
            _ => out.push_str("null"),
        },
        Op::Open { .. } | Op::Close { .. } => {}
    }
}

fn write_leaf(out: &mut String, leaf: Leaf, scalar: Scalar) {
    match leaf {
        Leaf::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Leaf::UInt(v) if matches!(scalar, Scalar::Ptr(_)) => {
            let _ = write!(out, "\"{:#x}\"", v as u64);
        }
        Leaf::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Leaf::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Leaf::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Leaf::Float(_) => out.push_str("null"),
    }
}

fn push_str(out: &mut String, s: &[u8]) {
    out.push('"');
    for ch in String::from_utf8_lossy(s).chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
