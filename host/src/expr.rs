//! Derived fields: small arithmetic expressions over a sample's fields, so that `plot` and
//! `watch --fields` show what the kernel means rather than how it stores it.
//!
//! A spec is `[LABEL=]EXPR[:UNIT]`:
//!
//! ```text
//! snd_cwnd                        a field, as before
//! srtt_ms=(srtt_us>>3)/1000:ms    the smoothed RTT in milliseconds (the kernel keeps 8×µs)
//! in_flight=snd_nxt-snd_una:B     bytes sent and not yet acknowledged
//! ```
//!
//! Fields are paths into the value (`icsk.icsk_rto`, `demo_hist[3]`). Operators are C's,
//! with C's precedence: unary `-` `~` `!`, `*` `/` `%`, `+` `-`, `<<` `>>`, `<` `<=` `>`
//! `>=`, `==` `!=`, `&`, `^`, `|`, `&&`, `||`, `?:`, and parentheses. Comparisons and logic
//! give 0 or 1; `&&`, `||` and `?:` evaluate only the operand they need, as in C. Integers
//! stay exact (128-bit, overflow is an error) except that `/` gives a fraction when the
//! division is not exact; `%`, shifts and the bitwise operators need integers. Literals:
//! decimal, `0x` hex, and decimals with a point.
//!
//! A sample for which an expression fails (a field missing, a division by zero) has no
//! value for it: `plot` leaves the point out, `watch` shows it empty. So `0/0` reads as
//! "no value": `ssthresh=snd_ssthresh<0x7fffffff?snd_ssthresh:0/0` hides the kernel's
//! "not set yet" sentinel. A `:` ends the expression and starts the unit only when it is
//! not the `:` of a `?:` (there are more `:` than `?`).

use std::fmt;

/// Longest spec accepted (a user's, not a guest's; still bounded).
const MAX_SPEC: usize = 1024;
/// Deepest nesting of parentheses and unary operators.
const MAX_DEPTH: usize = 64;

/// A number an expression computes with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// Exact integer.
    Int(i128),
    /// Floating point.
    Float(f64),
}

impl Num {
    /// As `f64` (for plotting).
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field expression {spec:?}: {reason} (at byte {at})")]
pub struct ExprError {
    /// The spec.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
    /// Where.
    pub at: usize,
}

/// An expression that cannot be computed for a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A field the expression reads has no numeric value in this sample.
    #[error("field {0} has no numeric value")]
    Missing(String),
    /// Integer overflow, division by zero, a shift out of range, a bitwise operator on a
    /// fraction.
    #[error("{0}")]
    Arithmetic(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Shl,
    Shr,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Xor,
    Or,
    LogicAnd,
    LogicOr,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Field(usize),
    Lit(Num),
    Neg(Box<Node>),
    Not(Box<Node>),
    LogicNot(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
}

/// A parsed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldExpr {
    /// The name it is shown under: the LABEL, else the expression as written.
    pub label: String,
    /// The UNIT, if given.
    pub unit: Option<String>,
    /// The field paths it reads, in order of first use.
    pub fields: Vec<String>,
    node: Node,
}

impl FieldExpr {
    /// Parses `[LABEL=]EXPR[:UNIT]`.
    pub fn parse(spec: &str) -> Result<Self, ExprError> {
        let err = |reason: &str, at: usize| ExprError {
            spec: spec.to_string(),
            reason: reason.to_string(),
            at,
        };
        if spec.len() > MAX_SPEC {
            return Err(err(&format!("longer than {MAX_SPEC} bytes"), MAX_SPEC));
        }
        // `NAME=` starts a label; `NAME==` is a comparison, `a<=b` has no label.
        let (label, rest, offset) = match spec.split_once('=') {
            Some((l, r)) if is_label(l) && !r.starts_with('=') => {
                (Some(l.to_string()), r, l.len() + 1)
            }
            _ => (None, spec, 0),
        };
        // The last `:` starts the unit unless it is a `?:`'s.
        let has_unit = rest.matches(':').count() > rest.matches('?').count();
        let (body, unit) = match rest.rsplit_once(':') {
            Some((b, u)) if has_unit && !u.trim().is_empty() => (b, Some(u.trim().to_string())),
            Some((b, _)) if has_unit => return Err(err("empty unit after `:`", offset + b.len())),
            _ => (rest, None),
        };
        let mut p = Parser {
            src: body.as_bytes(),
            pos: 0,
            offset,
            fields: Vec::new(),
            depth: 0,
        };
        let node = p.conditional().map_err(|(r, at)| err(&r, at))?;
        p.skip_ws();
        if p.pos != p.src.len() {
            return Err(err("unexpected text", offset + p.pos));
        }
        Ok(FieldExpr {
            label: label.unwrap_or_else(|| body.trim().to_string()),
            unit,
            fields: p.fields,
            node,
        })
    }

    /// The field path when the spec is a bare field (no operator, label or unit).
    pub fn as_field(&self) -> Option<&str> {
        match (&self.node, &self.unit) {
            (Node::Field(0), None) if self.label == self.fields[0] => Some(&self.fields[0]),
            _ => None,
        }
    }

    /// The label with its unit, for a column header or a plot caption: `srtt_ms (ms)`.
    pub fn title(&self) -> String {
        match &self.unit {
            Some(u) => format!("{} ({u})", self.label),
            None => self.label.clone(),
        }
    }

    /// Computes the expression; `field(i)` gives the value of [`FieldExpr::fields`]`[i]`.
    pub fn eval(&self, field: &dyn Fn(usize) -> Option<Num>) -> Result<Num, EvalError> {
        eval(&self.node, &self.fields, field)
    }
}

fn is_label(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn eval(
    n: &Node,
    names: &[String],
    field: &dyn Fn(usize) -> Option<Num>,
) -> Result<Num, EvalError> {
    let arith = |m: &str| EvalError::Arithmetic(m.to_string());
    Ok(match n {
        Node::Field(i) => field(*i).ok_or_else(|| EvalError::Missing(names[*i].clone()))?,
        Node::Lit(v) => *v,
        Node::Neg(a) => match eval(a, names, field)? {
            Num::Int(i) => Num::Int(i.checked_neg().ok_or_else(|| arith("overflow"))?),
            Num::Float(f) => Num::Float(-f),
        },
        Node::Not(a) => match eval(a, names, field)? {
            Num::Int(i) => Num::Int(!i),
            Num::Float(_) => return Err(arith("~ of a fraction")),
        },
        Node::LogicNot(a) => Num::Int(i128::from(!truth(eval(a, names, field)?))),
        // C evaluates only the operand it needs: a guard such as `n && total/n` holds.
        Node::Bin(Op::LogicAnd, a, b) => Num::Int(i128::from(
            truth(eval(a, names, field)?) && truth(eval(b, names, field)?),
        )),
        Node::Bin(Op::LogicOr, a, b) => Num::Int(i128::from(
            truth(eval(a, names, field)?) || truth(eval(b, names, field)?),
        )),
        Node::Bin(op, a, b) => binary(*op, eval(a, names, field)?, eval(b, names, field)?)?,
        Node::Cond(c, a, b) => {
            if truth(eval(c, names, field)?) {
                eval(a, names, field)?
            } else {
                eval(b, names, field)?
            }
        }
    })
}

/// C's truth: anything but zero.
fn truth(v: Num) -> bool {
    match v {
        Num::Int(i) => i != 0,
        Num::Float(f) => f != 0.0,
    }
}

/// A comparison's result, or `None` for an operator that is not one.
fn compare(op: Op, a: Num, b: Num) -> Option<bool> {
    let ord = match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        _ => a.as_f64().partial_cmp(&b.as_f64()),
    };
    // NaN compares false, != true: as in C.
    Some(match (op, ord) {
        (Op::Lt, o) => o.is_some_and(|o| o.is_lt()),
        (Op::Le, o) => o.is_some_and(|o| o.is_le()),
        (Op::Gt, o) => o.is_some_and(|o| o.is_gt()),
        (Op::Ge, o) => o.is_some_and(|o| o.is_ge()),
        (Op::Eq, o) => o.is_some_and(|o| o.is_eq()),
        (Op::Ne, o) => !o.is_some_and(|o| o.is_eq()),
        _ => return None,
    })
}

fn binary(op: Op, a: Num, b: Num) -> Result<Num, EvalError> {
    let arith = |m: &str| EvalError::Arithmetic(m.to_string());
    let overflow = || arith("integer overflow");
    if let Some(r) = compare(op, a, b) {
        return Ok(Num::Int(i128::from(r)));
    }
    if let (Num::Int(x), Num::Int(y)) = (a, b) {
        return Ok(match op {
            Op::Add => Num::Int(x.checked_add(y).ok_or_else(overflow)?),
            Op::Sub => Num::Int(x.checked_sub(y).ok_or_else(overflow)?),
            Op::Mul => Num::Int(x.checked_mul(y).ok_or_else(overflow)?),
            Op::Div if y == 0 => return Err(arith("division by zero")),
            Op::Div => match (x.checked_rem(y), x.checked_div(y)) {
                (Some(0), Some(q)) => Num::Int(q),
                (Some(_), _) => Num::Float(x as f64 / y as f64),
                _ => return Err(overflow()),
            },
            Op::Rem if y == 0 => return Err(arith("division by zero")),
            Op::Rem => Num::Int(x.checked_rem(y).ok_or_else(overflow)?),
            Op::Shl | Op::Shr if !(0..128).contains(&y) => {
                return Err(arith("shift out of range (0..127)"))
            }
            // Bits shifted out (or into the sign) are an overflow, as for `*`.
            Op::Shl => match x.checked_shl(y as u32) {
                Some(r) if r >> y == x => Num::Int(r),
                _ => return Err(overflow()),
            },
            Op::Shr => Num::Int(x >> y),
            Op::And => Num::Int(x & y),
            Op::Xor => Num::Int(x ^ y),
            Op::Or => Num::Int(x | y),
            _ => unreachable!("comparisons and logic are evaluated before"),
        });
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    Ok(Num::Float(match op {
        Op::Add => x + y,
        Op::Sub => x - y,
        Op::Mul => x * y,
        Op::Div if y == 0.0 => return Err(arith("division by zero")),
        Op::Div => x / y,
        _ => return Err(arith("%, shifts and bitwise operators need integers")),
    }))
}

/// Binding power of a binary operator (C's precedence; higher binds tighter).
fn power(op: Op) -> u8 {
    match op {
        Op::Mul | Op::Div | Op::Rem => 10,
        Op::Add | Op::Sub => 9,
        Op::Shl | Op::Shr => 8,
        Op::Lt | Op::Le | Op::Gt | Op::Ge => 7,
        Op::Eq | Op::Ne => 6,
        Op::And => 5,
        Op::Xor => 4,
        Op::Or => 3,
        Op::LogicAnd => 2,
        Op::LogicOr => 1,
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    /// Where `src` starts in the spec, for error positions.
    offset: usize,
    fields: Vec<String>,
    depth: usize,
}

type PResult<T> = Result<T, (String, usize)>;

impl Parser<'_> {
    fn fail<T>(&self, reason: &str) -> PResult<T> {
        Err((reason.to_string(), self.offset + self.pos))
    }

    fn skip_ws(&mut self) {
        while self.src.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek_op(&mut self) -> Option<(Op, usize)> {
        self.skip_ws();
        let rest = &self.src[self.pos..];
        let two = |s: &[u8]| rest.starts_with(s);
        for (text, op) in [
            (&b"<<"[..], Op::Shl),
            (b">>", Op::Shr),
            (b"<=", Op::Le),
            (b">=", Op::Ge),
            (b"==", Op::Eq),
            (b"!=", Op::Ne),
            (b"&&", Op::LogicAnd),
            (b"||", Op::LogicOr),
        ] {
            if two(text) {
                return Some((op, 2));
            }
        }
        let op = match rest.first()? {
            b'*' => Op::Mul,
            b'/' => Op::Div,
            b'%' => Op::Rem,
            b'+' => Op::Add,
            b'-' => Op::Sub,
            b'<' => Op::Lt,
            b'>' => Op::Gt,
            b'&' => Op::And,
            b'^' => Op::Xor,
            b'|' => Op::Or,
            _ => return None,
        };
        Some((op, 1))
    }

    /// `COND ? A : B` (right-associative, C's lowest precedence), or a plain expression.
    fn conditional(&mut self) -> PResult<Node> {
        let cond = self.expr(0)?;
        self.skip_ws();
        if self.src.get(self.pos) != Some(&b'?') {
            return Ok(cond);
        }
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(&format!("nested deeper than {MAX_DEPTH}"));
        }
        let then = self.conditional()?;
        self.skip_ws();
        if self.src.get(self.pos) != Some(&b':') {
            return self.fail("`:` of `?:` expected");
        }
        self.pos += 1;
        let otherwise = self.conditional()?;
        self.depth -= 1;
        Ok(Node::Cond(
            Box::new(cond),
            Box::new(then),
            Box::new(otherwise),
        ))
    }

    /// Precedence climbing: operands joined by operators binding tighter than `min`.
    fn expr(&mut self, min: u8) -> PResult<Node> {
        let mut lhs = self.unary()?;
        while let Some((op, len)) = self.peek_op() {
            if power(op) <= min {
                break;
            }
            self.pos += len;
            let rhs = self.expr(power(op))?;
            lhs = Node::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Node> {
        self.skip_ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(&format!("nested deeper than {MAX_DEPTH}"));
        }
        let node = match self.src.get(self.pos) {
            Some(b'-') => {
                self.pos += 1;
                Node::Neg(Box::new(self.unary()?))
            }
            Some(b'~') => {
                self.pos += 1;
                Node::Not(Box::new(self.unary()?))
            }
            Some(b'!') => {
                self.pos += 1;
                Node::LogicNot(Box::new(self.unary()?))
            }
            Some(b'(') => {
                self.pos += 1;
                let inner = self.conditional()?;
                self.skip_ws();
                if self.src.get(self.pos) != Some(&b')') {
                    return self.fail("`)` expected");
                }
                self.pos += 1;
                inner
            }
            Some(c) if c.is_ascii_digit() => self.number()?,
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => self.field()?,
            Some(_) => return self.fail("a field, a number or `(` expected"),
            None => return self.fail("the expression ends early"),
        };
        self.depth -= 1;
        Ok(node)
    }

    fn number(&mut self) -> PResult<Node> {
        let start = self.pos;
        while self
            .src
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
        let value = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            i128::from_str_radix(hex, 16).ok().map(Num::Int)
        } else if text.contains('.') {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Num::Float)
        } else {
            text.parse::<i128>().ok().map(Num::Int)
        };
        match value {
            Some(v) => Ok(Node::Lit(v)),
            None => Err((format!("bad number {text:?}"), self.offset + start)),
        }
    }

    fn field(&mut self) -> PResult<Node> {
        let start = self.pos;
        while let Some(&c) = self.src.get(self.pos) {
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
                self.pos += 1;
            } else if c == b'[' {
                let close = self.src[self.pos..].iter().position(|&b| b == b']');
                let Some(close) = close else {
                    return self.fail("`]` expected");
                };
                let index = &self.src[self.pos + 1..self.pos + close];
                if index.is_empty() || !index.iter().all(u8::is_ascii_digit) {
                    return self.fail("an index is a number");
                }
                self.pos += close + 1;
            } else {
                break;
            }
        }
        let path = std::str::from_utf8(&self.src[start..self.pos])
            .unwrap_or("")
            .to_string();
        if path.ends_with('.') || path.contains("..") {
            return Err((format!("bad field path {path:?}"), self.offset + start));
        }
        let i = match self.fields.iter().position(|f| *f == path) {
            Some(i) => i,
            None => {
                self.fields.push(path);
                self.fields.len() - 1
            }
        };
        Ok(Node::Field(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_with(spec: &str, values: &[(&str, Num)]) -> Result<Num, EvalError> {
        let e = FieldExpr::parse(spec).unwrap();
        e.eval(&|i| {
            values
                .iter()
                .find(|(n, _)| *n == e.fields[i])
                .map(|(_, v)| *v)
        })
    }

    #[test]
    fn fields_and_labels() {
        let e = FieldExpr::parse("snd_cwnd").unwrap();
        assert_eq!(e.as_field(), Some("snd_cwnd"));
        assert_eq!(e.title(), "snd_cwnd");
        let e = FieldExpr::parse("srtt_ms=(srtt_us>>3)/1000:ms").unwrap();
        assert_eq!(e.as_field(), None);
        assert_eq!(
            (e.label.as_str(), e.unit.as_deref()),
            ("srtt_ms", Some("ms"))
        );
        assert_eq!(e.title(), "srtt_ms (ms)");
        assert_eq!(e.fields, ["srtt_us"]);
        let e = FieldExpr::parse("icsk.icsk_rto + demo_hist[3] - icsk.icsk_rto").unwrap();
        assert_eq!(e.fields, ["icsk.icsk_rto", "demo_hist[3]"]);
        assert_eq!(e.label, "icsk.icsk_rto + demo_hist[3] - icsk.icsk_rto");
    }

    #[test]
    fn c_precedence_and_exact_integers() {
        let v = [
            ("a", Num::Int(100)),
            ("b", Num::Int(7)),
            ("x", Num::Float(0.5)),
        ];
        let cases: &[(&str, Num)] = &[
            ("a-b", Num::Int(93)),
            ("a-b-b", Num::Int(86)),
            ("a+b*2", Num::Int(114)),
            ("(a+b)*2", Num::Int(214)),
            ("a>>1+1", Num::Int(25)),
            ("a/4", Num::Int(25)),
            ("a/8", Num::Float(12.5)),
            ("a%b", Num::Int(2)),
            ("a&0xf|1", Num::Int(5)),
            ("a^a", Num::Int(0)),
            ("-a+~0", Num::Int(-101)),
            ("a*x", Num::Float(50.0)),
            ("1.5*2", Num::Float(3.0)),
        ];
        for (spec, want) in cases {
            assert_eq!(eval_with(spec, &v).unwrap(), *want, "{spec}");
        }
        let logic: &[(&str, i128)] = &[
            ("a>b", 1),
            ("a<b", 0),
            ("a<=100", 1),
            ("a>=101", 0),
            ("a==100", 1),
            ("a!=100", 0),
            ("a<b+100", 1),
            ("b<a==1", 1),
            ("a&&b", 1),
            ("a&&0||b", 1),
            ("!a", 0),
            ("!!b", 1),
            ("x<1", 1),
            ("a>b?a:b", 100),
            ("a<b?a:b", 7),
            ("a<b?1:a>b?2:3", 2),
            ("(a<b?1:2)*10", 20),
            // Only the operand needed is evaluated: no division by zero here.
            ("0&&a/0", 0),
            ("1||a/0", 1),
            ("a?b:a/0", 7),
        ];
        for (spec, want) in logic {
            assert_eq!(eval_with(spec, &v).unwrap(), Num::Int(*want), "{spec}");
        }
        // Labels, units and `?:` side by side; `==` and `<=` are no labels.
        let e = FieldExpr::parse("top=a>b?a:b:segments").unwrap();
        assert_eq!(
            (e.label.as_str(), e.unit.as_deref()),
            ("top", Some("segments"))
        );
        let e = FieldExpr::parse("a>b?a:b").unwrap();
        assert_eq!((e.label.as_str(), e.unit.as_deref()), ("a>b?a:b", None));
        assert_eq!(FieldExpr::parse("a==b").unwrap().fields, ["a", "b"]);
        assert_eq!(
            FieldExpr::parse("a<=b:x").unwrap().unit.as_deref(),
            Some("x")
        );
        // The kernel's "not set yet" ssthresh has no value.
        let s = "ssthresh=snd_ssthresh<0x7fffffff?snd_ssthresh:0/0:segments";
        let unset = eval_with(s, &[("snd_ssthresh", Num::Int(0x7fff_ffff))]);
        assert!(matches!(unset, Err(EvalError::Arithmetic(_))));
        assert_eq!(
            eval_with(s, &[("snd_ssthresh", Num::Int(42))]),
            Ok(Num::Int(42))
        );
        // The kernel's 8×µs smoothed RTT in milliseconds.
        let rtt = eval_with("(srtt_us>>3)/1000", &[("srtt_us", Num::Int(8 * 1500))]);
        assert_eq!(rtt.unwrap(), Num::Float(1.5));
    }

    #[test]
    fn errors_are_clear_not_panics() {
        for bad in [
            "", "a+", "(a", "a)", "1..2", "a[", "a[x]", "a.", "=a", "9x=a", "a:", "a b", "#",
            "0xZZ", "a..b", "a?b", "a?b:", "?a:b", "a=", "a<", "a===b", "a!b",
        ] {
            assert!(FieldExpr::parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        let e = FieldExpr::parse(&deep).unwrap_err();
        assert!(e.reason.contains("deeper"), "{e}");
        let chain = format!("{}0", "a?1:".repeat(200));
        let e = FieldExpr::parse(&chain).unwrap_err();
        assert!(e.reason.contains("deeper"), "{e}");
        // Long, but flat: parsed without deep recursion; past the length limit: refused.
        assert!(FieldExpr::parse(&("a+".repeat(300) + "a")).is_ok());
        assert!(FieldExpr::parse(&"a+".repeat(600)).is_err());
        let v = [
            ("a", Num::Int(i128::MAX)),
            ("m", Num::Int(i128::MIN)),
            ("z", Num::Int(0)),
            ("f", Num::Float(1.5)),
        ];
        for (spec, want) in [
            ("a+1", "overflow"),
            ("a/z", "division by zero"),
            ("1<<200", "shift"),
            ("1<<127", "overflow"),
            ("3<<126", "overflow"),
            ("m/-1", "overflow"),
            ("m%-1", "overflow"),
            ("f>>1", "integers"),
            ("~f", "fraction"),
        ] {
            let e = eval_with(spec, &v).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
        assert_eq!(
            eval_with("missing*2", &v),
            Err(EvalError::Missing("missing".into()))
        );
    }
}
