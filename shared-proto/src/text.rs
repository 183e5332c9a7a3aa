//! Guest-supplied text made safe to show.
//!
//! Names that come from a guest (types, members, marks, modules, process names, symbols) are
//! untrusted bytes: printed raw, an escape sequence in a process name could move the cursor,
//! rewrite earlier lines, set the window title or, on some terminals, answer back. Every text
//! output of vmark passes such names through [`escape`] (for `&str`) or [`escape_bytes`] (for
//! raw bytes); JSON output needs nothing more, since serde_json escapes control characters.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character must not reach a terminal as it is: C0 and C1 controls, DEL, and the
/// Unicode formatting characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters, the byte-order mark).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// `s` with every unsafe character (see [`is_unsafe_char`]) and every backslash written as an
/// escape (`\n`, `\t`, `\\`, `\x1b`, `\u{202e}`), so that what is printed is exactly what the
/// guest holds and no two different names print alike. Borrowed when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// `s` with every unsafe character escaped as by [`escape`] and backslashes left alone: the
/// last guard at the terminal for text whose guest-supplied parts were escaped when it was
/// made (error messages), so that they are not escaped twice (`\x1b` stays `\x1b`, not
/// `\\x1b`) while anything left unescaped still cannot steer the terminal.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// Raw guest bytes as safe text: valid UTF-8 is kept (escaped as by [`escape`]), every byte
/// that is not part of valid UTF-8 is written `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => escape(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    push_escaped(&mut out, c);
                }
                for b in chunk.invalid() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if is_unsafe_char(c) => {
            if (c as u32) < 0x100 {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_once() {
        let name = "evil\x1b[2Jname";
        let message = format!("module {} is bad", escape(name));
        assert_eq!(message, "module evil\\x1b[2Jname is bad");
        // The terminal guard keeps the escaped part as it is...
        assert_eq!(escape_controls(&message), message);
        // ...and still neutralises what was not escaped.
        assert_eq!(
            escape_controls("raw \x1b here \\ stays"),
            "raw \\x1b here \\ stays"
        );
        assert!(!escape_controls("a\u{202e}b").contains('\u{202e}'));
    }

    #[test]
    fn plain_names_are_borrowed() {
        assert!(matches!(escape("tcp_sock"), Cow::Borrowed("tcp_sock")));
        assert!(matches!(escape("naïve ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_and_reordering_are_escaped() {
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ny\tz\r"), "x\\ny\\tz\\r");
        assert_eq!(escape("\u{7f}\u{9b}"), "\\x7f\\x9b");
        assert_eq!(escape("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert!(!escape("\x07\x08\x00").chars().any(is_unsafe_char));
    }

    #[test]
    fn invalid_utf8_is_hex() {
        assert_eq!(escape_bytes(b"ok\xff\x1b"), "ok\\xff\\x1b");
        assert_eq!(escape_bytes(b"plain"), "plain");
    }
}
