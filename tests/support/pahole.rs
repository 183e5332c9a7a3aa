//! Running pahole (Debian `dwarves`, 1.24 in bookworm) and parsing its `-C NAME` output.
//!
//! # Output format parsed
//!
//! ```text
//! struct NAME {
//!     TYPE NAME;                         /* OFFSET SIZE */
//!     TYPE NAME:WIDTH;                   /* OFFSET:BIT SIZE */
//!     union {                            anonymous struct/union, expanded inline,
//!         ...                            members at ABSOLUTE offsets
//!     };                                 /* OFFSET SIZE */
//!     struct {
//!         ...
//!     } NAME;                            /* OFFSET SIZE */   named member of anonymous type
//!     /* XXX ... */, /* --- cacheline ... */, "TYPE :0;" (no offset comment): ignored
//!     /* size: N, cachelines: M, members: K */
//! };
//! ```
//!
//! # Bitfield convention (`/* OFFSET:BIT SIZE */`)
//!
//! From dwarves' `dwarf_loader.c` (DWARF 5 `DW_AT_data_bit_offset` path) and confirmed by
//! experiment: with `S` = sizeof the bitfield's declared type (the "storage unit", printed
//! as SIZE) and `b` = the field's first bit counted little-endian from the start of the
//! DIRECTLY enclosing struct/union, pahole prints
//! `OFFSET = base + floor(b / 8S) * S` (the S-aligned unit holding the first bit, plus the
//! absolute offset `base` of the enclosing type) and `BIT = b mod 8S` (bit within that unit,
//! LSB = 0). Hence `OFFSET * 8 + BIT` is the field's first bit counted from the start of the
//! OUTERMOST type — exactly vmark's JSON `bit_offset` — which is what the tests compare.
//! (For old-style `DW_AT_bit_offset`, counted from the unit's MSB, pahole converts to the
//! same little-endian convention first.)

use std::path::Path;
use std::process::Command;

/// One member line (or anonymous-type container) of pahole's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaholeMember {
    /// Member name; `None` for an anonymous struct/union.
    pub name: Option<String>,
    /// Printed byte offset (absolute; for bitfields the storage unit's offset).
    pub offset: u64,
    /// Printed size (bitfields: the storage unit's size).
    pub size: u64,
    /// Bitfields: (bit within the storage unit, width).
    pub bits: Option<(u64, u64)>,
    /// Nesting depth of inline expansion (0 = direct member).
    pub depth: usize,
    /// Whether this is an expanded anonymous struct/union (its members follow).
    pub container: bool,
}

impl PaholeMember {
    /// First bit from the start of the outermost type (see the module docs).
    pub fn absolute_bit(&self) -> Option<u64> {
        self.bits.map(|(bit, _)| self.offset * 8 + bit)
    }
}

/// A parsed `pahole -C` layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaholeLayout {
    /// `struct NAME` / `union NAME`.
    pub name: String,
    /// From the `/* size: N, ... */` footer.
    pub size: u64,
    /// Members in pre-order (containers before their members).
    pub members: Vec<PaholeMember>,
}

/// pahole's version (`v1.24`), or an error naming the install script.
pub fn version() -> Result<String, String> {
    let out = Command::new("pahole")
        .arg("--version")
        .output()
        .map_err(|e| format!("pahole not found ({e}); {}", crate::kbuild::INSTALL_HINT))?;
    if !out.status.success() {
        return Err(format!(
            "pahole --version failed; {}",
            crate::kbuild::INSTALL_HINT
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `pahole -C NAME FILE` and parses the result. `name` is a bare tag (`tcp_sock`).
pub fn layout(file: &Path, name: &str) -> Result<PaholeLayout, String> {
    let out = Command::new("pahole")
        .arg("-C")
        .arg(name)
        .arg(file)
        .output()
        .map_err(|e| format!("running pahole: {e}; {}", crate::kbuild::INSTALL_HINT))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Err(format!(
            "pahole -C {name} {} printed nothing ({}): {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text)
}

/// Parses one `pahole -C` struct or union.
pub fn parse(text: &str) -> Result<PaholeLayout, String> {
    let mut lines = text.lines();
    let header = lines
        .by_ref()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("empty pahole output")?;
    let name = header
        .strip_suffix('{')
        .map(str::trim)
        .filter(|n| n.starts_with("struct ") || n.starts_with("union "))
        .ok_or_else(|| format!("unexpected first line {header:?}"))?
        .to_string();
    let mut members: Vec<PaholeMember> = Vec::new();
    // Indices of open containers in `members`.
    let mut open: Vec<usize> = Vec::new();
    let mut size = None;
    // Inside an anonymous enum's body, which pahole prints inline.
    let mut in_enum = false;
    for raw in lines {
        let mut line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("/* size: ") {
            let n = rest.split(',').next().unwrap_or("").trim();
            size = Some(
                n.parse::<u64>()
                    .map_err(|_| format!("bad size line {line:?}"))?,
            );
            continue;
        }
        if line.starts_with("/*") {
            continue;
        }
        if in_enum {
            match line.strip_prefix('}') {
                // `} name:16;  /* ... */` closes an anonymous enum printed inline: the
                // member line proper.
                Some(rest) => {
                    in_enum = false;
                    line = rest;
                }
                None => continue, // an enumerator
            }
        } else if line.starts_with("enum") && line.ends_with('{') {
            in_enum = true;
            continue;
        } else if line.ends_with('{') {
            members.push(PaholeMember {
                name: None,
                offset: 0,
                size: 0,
                bits: None,
                depth: open.len(),
                container: true,
            });
            open.push(members.len() - 1);
            continue;
        }
        if line.starts_with('}') && !in_enum {
            let Some(idx) = open.pop() else {
                break; // the closing `};` of the type itself
            };
            let (decl, comment) = split_comment(line)
                .ok_or_else(|| format!("container close without offsets: {line:?}"))?;
            let (offset, bit, sz) = parse_comment(comment)?;
            let inner = strip_attributes(decl.trim_start_matches('}'))
                .trim()
                .trim_end_matches(';')
                .trim()
                .to_string();
            let m = &mut members[idx];
            m.name = (!inner.is_empty()).then(|| member_name(&inner)).flatten();
            m.offset = offset;
            m.size = sz;
            if bit.is_some() {
                return Err(format!("bitfield comment on a container: {line:?}"));
            }
            continue;
        }
        let Some((decl, comment)) = split_comment(line) else {
            continue; // e.g. `u64 :0;` alignment lines pahole synthesises
        };
        let (offset, bit, sz) = parse_comment(comment)?;
        let decl = strip_attributes(decl)
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_string();
        let (decl, width) = match bit {
            Some(_) => {
                let (d, w) = decl
                    .rsplit_once(':')
                    .ok_or_else(|| format!("bitfield without width: {line:?}"))?;
                (
                    d.trim().to_string(),
                    Some(
                        w.trim()
                            .parse::<u64>()
                            .map_err(|_| format!("bad width in {line:?}"))?,
                    ),
                )
            }
            None => (decl, None),
        };
        members.push(PaholeMember {
            name: member_name(&decl),
            offset,
            size: sz,
            bits: bit.zip(width),
            depth: open.len(),
            container: false,
        });
    }
    Ok(PaholeLayout {
        name,
        size: size.ok_or("no /* size: */ footer")?,
        members,
    })
}

/// Splits `DECL /* COMMENT */` at the trailing comment.
fn split_comment(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_suffix("*/")?;
    let start = body.rfind("/*")?;
    Some((&line[..start], &body[start + 2..]))
}

/// `OFFSET SIZE` or `OFFSET:BIT SIZE`.
fn parse_comment(c: &str) -> Result<(u64, Option<u64>, u64), String> {
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("bad number {s:?} in /*{c}*/"))
    };
    let (pos, size) = c
        .trim()
        .rsplit_once(char::is_whitespace)
        .ok_or_else(|| format!("bad offset comment /*{c}*/"))?;
    match pos.split_once(':') {
        Some((o, b)) => Ok((num(o)?, Some(num(b)?), num(size)?)),
        None => Ok((num(pos)?, None, num(size)?)),
    }
}

/// Removes `__attribute__((...))` groups.
fn strip_attributes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("__attribute__") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "__attribute__".len()..];
        // Skip the balanced parenthesised group.
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, ch) in after.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The declared name in a C declaration: `int (*fn)(void)` → `fn`, `char comm[16]` →
/// `comm`, `struct x * p` → `p`, `struct tz_zoo * (*ops)(int)[2]` → `ops`.
pub fn member_name(decl: &str) -> Option<String> {
    // Function pointers (and pointers to arrays): the name follows the first `(*`.
    let mut from = 0;
    while let Some(p) = decl[from..].find("(*") {
        let after = &decl[from + p + 2..];
        let after = after.trim_start_matches(|c: char| c == '*' || c.is_whitespace());
        let ident: String = after.chars().take_while(|&c| is_ident(c)).collect();
        if !ident.is_empty() && !matches!(ident.as_str(), "const" | "volatile" | "restrict") {
            return Some(ident);
        }
        from += p + 2;
    }
    // Otherwise: drop array suffixes, take the last identifier.
    let mut d = decl.trim();
    while d.ends_with(']') {
        d = d[..d.rfind('[')?].trim_end();
    }
    let ident: String = d
        .chars()
        .rev()
        .take_while(|&c| is_ident(c))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!ident.is_empty()).then_some(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "struct bf {
	unsigned int               a:3;                  /*     0: 0  4 */
	unsigned int               b:5;                  /*     0: 3  4 */

	/* XXX 24 bits hole, try to pack */

	/* Force alignment to the next boundary: */
	short unsigned int         :0;

	void                       (*destructor)(struct sock *); /*   616     8 */
	union {
		int                u1;                   /*    16     4 */
		struct {
			short int  s1:3;                 /*    16: 0  2 */
			short int  s2;                   /*    18     2 */
		};                                       /*    16     4 */
	};                                               /*    16     4 */
	struct {
		int                q;                    /*    20     4 */
	} named;                                         /*    20     4 */
	struct rb_node             rb __attribute__((__aligned__(8))); /*   408    24 */
	char                       comm[16];             /*    24    16 */
	enum {
		RTNL_LINK_INITIALIZED  = 0,
		RTNL_LINK_INITIALIZING = 1,
	} rtnl_link_state:16;                               /*  1256:16  4 */
	int                        z[];                  /*    24     0 */

	/* size: 24, cachelines: 1, members: 10 */
} __attribute__((__aligned__(16)));
";

    #[test]
    fn parses_pahole_text() {
        let l = parse(SAMPLE).unwrap();
        assert_eq!(l.name, "struct bf");
        assert_eq!(l.size, 24);
        let names: Vec<Option<&str>> = l.members.iter().map(|m| m.name.as_deref()).collect();
        assert_eq!(
            names,
            vec![
                Some("a"),
                Some("b"),
                Some("destructor"),
                None,
                Some("u1"),
                None,
                Some("s1"),
                Some("s2"),
                Some("named"),
                Some("q"),
                Some("rb"),
                Some("comm"),
                Some("rtnl_link_state"),
                Some("z")
            ]
        );
        assert_eq!(l.members[1].bits, Some((3, 5)));
        assert_eq!(l.members[6].absolute_bit(), Some(128));
        assert_eq!(l.members[6].depth, 2);
        assert_eq!((l.members[3].offset, l.members[3].size), (16, 4));
        assert!(l.members[8].container);
    }

    #[test]
    fn names_of_declarations() {
        assert_eq!(member_name("int (*fn)(void)").as_deref(), Some("fn"));
        assert_eq!(
            member_name("struct tz_zoo * (*ops)(struct tz_zoo * restrict , int)[2]").as_deref(),
            Some("ops")
        );
        assert_eq!(member_name("const char  * name").as_deref(), Some("name"));
        assert_eq!(member_name("int grid[3][4][5]").as_deref(), Some("grid"));
    }
}
