//! Device and measurement names, by IoTDB 1.2's rules: which names are
//! legal, which must be written in backquotes, and the one written form a
//! name is stored under.
//!
//! A path is nodes joined by `.`; the first is `root`. A node is written
//! either bare or in backquotes:
//!
//! - **Bare**: letters `A-Z a-z`, digits, `_`, and the CJK range
//!   U+2E80..U+9FFF (IoTDB's `IDENTIFIER_PATTERN`); not a number (`1`,
//!   `007`, `1e5`, `2L`, `3f`: IoTDB's `isRealNumber`); not a reserved word
//!   (`root`, `time`, `timestamp`, any case); not a wildcard (`*`, `**`).
//! - **Backquoted**: `` `anything` ``, a backquote inside written twice
//!   (`` `a``b` `` is the name ``a`b``). Dots inside belong to the name:
//!   `` root.sg.`a.b` `` has three nodes.
//!
//! A name is stored (and shown) in its *canonical* written form: bare when
//! it may be bare, else backquoted (`` `abc` `` is stored as `abc`;
//! `` `1` `` and `` `a b` `` keep their backquotes), as IoTDB's
//! `removeBackQuotesIfNecessary` does. Two differences from IoTDB 1.2,
//! both stricter: a reserved word keeps its backquotes (IoTDB strips them
//! from `` `time` ``, leaving a name no statement can write back), and no
//! name may contain a control character (U+0000..U+001F, U+007F), quoted or
//! not — they break logs, the CLI and every tool that prints a path.
//!
//! The rules hold for every way a name arrives (SQL, the client RPC, a
//! pipe's tablets); a measurement is always one node, never re-split into a
//! device suffix and a name (`a.b` on `root.sg.d` is refused, not turned
//! into `root.sg.d.a` + `b`).

use std::borrow::Cow;
use std::fmt;

use crate::event::{Event, SchemaOp};

/// Reserved words: not a bare node anywhere (IoTDB's `reservedWords`).
pub const RESERVED: [&str; 3] = ["root", "time", "timestamp"];

/// The status code of every name error (IoTDB's `ILLEGAL_PATH`).
pub const ILLEGAL_PATH: i32 = crate::types::status::ILLEGAL_PATH;

/// What is wrong with one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// An empty node (`root..a`, a trailing dot, `` `` ``).
    Empty,
    /// A bare node with a character outside letters, digits, `_` and CJK.
    NeedsQuotes(char),
    /// A bare node that reads as a number.
    Number,
    /// A bare reserved word.
    Reserved,
    /// `*` or `**` (or a partial wildcard such as `a*`) where a name is needed.
    Wildcard,
    /// A backquote that is not closed, or a lone one inside a quoted node.
    Backquote,
    /// A control character, which no name may contain.
    Control(char),
    /// A measurement written as several nodes (`a.b`).
    SeveralNodes,
    /// A device path not starting at `root`, or naming only `root`.
    NotUnderRoot,
    /// A legal name not in its canonical written form (a pipe's tablet or
    /// change-log event must carry the stored form).
    NotCanonical(String),
}

/// An illegal device, measurement or path: which name, why, and how to
/// write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What was checked, as given (a device path, a measurement).
    pub given: String,
    /// The offending node, as written.
    pub node: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl NameError {
    fn new(given: &str, node: &str, problem: Problem) -> NameError {
        NameError {
            given: given.to_string(),
            node: node.to_string(),
            problem,
        }
    }

    /// IoTDB's status code for it: `ILLEGAL_PATH` (509).
    pub fn code(&self) -> i32 {
        ILLEGAL_PATH
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // IoTDB's wording first ("X is not a legal path"), then why and
        // what to write instead.
        let given = printable(&self.given);
        let node = printable(&self.node);
        write!(f, "{given} is not a legal path, because ")?;
        match &self.problem {
            Problem::Empty => write!(f, "it has an empty node"),
            Problem::NeedsQuotes(c) => write!(
                f,
                "node {node} contains {}, which a name may only contain in backquotes: write {}",
                describe(*c),
                quote(&self.node)
            ),
            Problem::Number => write!(
                f,
                "node {node} is a number, which a name may only be in backquotes: write {}",
                quote(&self.node)
            ),
            Problem::Reserved => write!(
                f,
                "{node} is a reserved word (root, time, timestamp), which a name may only be in backquotes: write {}",
                quote(&self.node)
            ),
            Problem::Wildcard => write!(
                f,
                "node {node} is a wildcard, which a device or measurement name cannot be; a name made of * is written in backquotes: {}",
                quote(&self.node)
            ),
            Problem::Backquote => write!(
                f,
                "node {node} has an unbalanced backquote; a quoted name is written `...`, with a backquote inside written twice (``)"
            ),
            Problem::Control(c) => write!(
                f,
                "node {node} contains the control character {}, which no name may contain",
                describe(*c)
            ),
            Problem::SeveralNodes => write!(
                f,
                "measurement {node} is more than one node; a measurement is a single name (write {} if the dot is part of the name, or put the other nodes in the device)",
                quote(&self.node)
            ),
            Problem::NotUnderRoot => write!(
                f,
                "a device path starts with root and names at least one node after it, e.g. root.sg.d"
            ),
            Problem::NotCanonical(c) => write!(f, "node {node} must be written {c}"),
        }
    }
}

impl std::error::Error for NameError {}

/// `s` with control characters escaped, for messages and logs.
fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.escape_debug().to_string())
    } else {
        Cow::Borrowed(s)
    }
}

fn describe(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else if c.is_control() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

/// Whether `c` may appear in a bare node (IoTDB's `IDENTIFIER_PATTERN`).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || ('\u{2E80}'..='\u{9FFF}').contains(&c)
}

fn is_control(c: char) -> bool {
    c.is_control() && (u32::from(c) < 0x20 || c == '\u{7F}')
}

/// Whether `s` reads as a number, as IoTDB's `PathUtils.isRealNumber` (a
/// sign, leading zeros, digits, a fraction, an exponent, a Java type
/// suffix: `1`, `007`, `-1.5`, `1e5`, `2L`, `3f`).
pub fn is_real_number(s: &str) -> bool {
    let s = s
        .strip_prefix('+')
        .or_else(|| s.strip_prefix('-'))
        .unwrap_or(s);
    let b = s.as_bytes();
    // IoTDB strips leading zeros before asking Java whether the rest is a
    // number; all zeros is a number.
    let first = b.iter().position(|&c| c != b'0');
    let b = match first {
        None => return !b.is_empty(),
        Some(i) => &b[i..],
    };
    let digits = |b: &[u8], at: usize| b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(b, 0);
    let int_digits = i;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = digits(b, i + 1);
        i += 1 + frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    let mut plain_integer = frac_digits == 0 && b.get(int_digits) != Some(&b'.');
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let e = digits(b, j);
        if e == 0 {
            return false;
        }
        i = j + e;
        plain_integer = false;
    }
    match &b[i..] {
        [] => true,
        [b'f' | b'F' | b'd' | b'D'] => true,
        [b'l' | b'L'] => plain_integer,
        _ => false,
    }
}

/// Whether the name `raw` must be written in backquotes.
pub fn needs_quotes(raw: &str) -> bool {
    raw.is_empty()
        || !raw.chars().all(is_name_char)
        || is_real_number(raw)
        || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(raw))
}

/// The canonical written form of the name `raw`: bare when it may be,
/// else in backquotes with inner backquotes doubled.
pub fn quote(raw: &str) -> Cow<'_, str> {
    if needs_quotes(raw) {
        Cow::Owned(format!("`{}`", raw.replace('`', "``")))
    } else {
        Cow::Borrowed(raw)
    }
}

/// The name a written node stands for (backquotes removed, doubled ones
/// undone); a bare node stands for itself.
pub fn unquote(node: &str) -> Cow<'_, str> {
    match node
        .strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .filter(|_| node.len() >= 2)
    {
        Some(inner) if inner.contains("``") => Cow::Owned(inner.replace("``", "`")),
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(node),
    }
}

/// Checks the name `raw` (as a quoted node would carry it) and returns its
/// canonical written form.
///
/// # Errors
/// An empty name or one with a control character.
pub fn name_to_node(raw: &str) -> Result<Cow<'_, str>, Problem> {
    if raw.is_empty() {
        return Err(Problem::Empty);
    }
    if let Some(c) = raw.chars().find(|&c| is_control(c)) {
        return Err(Problem::Control(c));
    }
    Ok(quote(raw))
}

/// Checks a bare (unquoted) node.
///
/// # Errors
/// Why it is not a legal bare node.
pub fn check_bare(node: &str) -> Result<(), Problem> {
    if node.is_empty() {
        return Err(Problem::Empty);
    }
    if node.contains('*') && node.chars().all(|c| c == '*' || is_name_char(c)) {
        return Err(Problem::Wildcard);
    }
    if let Some(c) = node.chars().find(|&c| is_control(c)) {
        return Err(Problem::Control(c));
    }
    if let Some(c) = node.chars().find(|&c| !is_name_char(c)) {
        return Err(if c == '`' {
            Problem::Backquote
        } else {
            Problem::NeedsQuotes(c)
        });
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(node)) {
        return Err(Problem::Reserved);
    }
    if is_real_number(node) {
        return Err(Problem::Number);
    }
    Ok(())
}

/// Checks one written node (bare or backquoted) and returns its canonical
/// form.
///
/// # Errors
/// Why it is not a legal node.
pub fn canonical_node(node: &str) -> Result<Cow<'_, str>, Problem> {
    if node.len() >= 2 && node.starts_with('`') && node.ends_with('`') {
        let inner = &node[1..node.len() - 1];
        // Inside, backquotes come in pairs.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '`' && chars.next() != Some('`') {
                return Err(Problem::Backquote);
            }
        }
        let raw = unquote(node);
        name_to_node(&raw)?;
        // With its pairs checked, a quoted node is already written the
        // canonical way when it needs its quotes; a name that does not
        // holds no backquote, so it is `inner`.
        return Ok(Cow::Borrowed(if needs_quotes(&raw) { node } else { inner }));
    }
    check_bare(node)?;
    Ok(Cow::Borrowed(node))
}

/// Splits a written path into its written nodes, dots inside backquotes
/// staying in their node. A node keeps its backquotes.
///
/// # Errors
/// An unclosed backquote, text glued to a quoted node (`` `a`b ``), or an
/// empty node.
pub fn split_nodes(path: &str) -> Result<Vec<&str>, NameError> {
    let mut out = Vec::with_capacity(path.bytes().filter(|&b| b == b'.').count() + 1);
    let b = path.as_bytes();
    let mut start = 0;
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'`') {
            // A quoted node runs to the backquote not followed by another.
            let mut j = i + 1;
            loop {
                match b.get(j) {
                    None => return Err(NameError::new(path, &path[start..], Problem::Backquote)),
                    Some(b'`') if b.get(j + 1) == Some(&b'`') => j += 2,
                    Some(b'`') => break,
                    Some(_) => j += 1,
                }
            }
            i = j + 1;
            if !matches!(b.get(i), None | Some(b'.')) {
                let end = path[i..].find('.').map_or(path.len(), |k| i + k);
                return Err(NameError::new(path, &path[start..end], Problem::Backquote));
            }
        } else {
            while let Some(&c) = b.get(i) {
                if c == b'.' {
                    break;
                }
                i += 1;
            }
        }
        let node = &path[start..i];
        if node.is_empty() {
            return Err(NameError::new(path, node, Problem::Empty));
        }
        out.push(node);
        if i >= b.len() {
            return Ok(out);
        }
        i += 1;
        start = i;
        if i == b.len() {
            return Err(NameError::new(path, "", Problem::Empty));
        }
    }
}

/// Checks a device path (`root.sg.d`, nodes bare or backquoted, no
/// wildcards) and returns its canonical form (`ROOT` → `root`, needless
/// backquotes dropped).
///
/// # Errors
/// A [`NameError`] naming the first illegal node.
pub fn canonical_device(path: &str) -> Result<Cow<'_, str>, NameError> {
    let nodes = split_nodes(path)?;
    if nodes.len() < 2 || !nodes[0].eq_ignore_ascii_case("root") {
        return Err(NameError::new(path, nodes[0], Problem::NotUnderRoot));
    }
    let mut changed = nodes[0] != "root";
    let mut canon = Vec::with_capacity(nodes.len());
    canon.push(Cow::Borrowed("root"));
    for n in &nodes[1..] {
        let c = canonical_node(n).map_err(|p| NameError::new(path, n, p))?;
        changed |= c != *n;
        canon.push(c);
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(canon.join(".")))
}

/// Checks a measurement (one node, bare or backquoted) and returns its
/// canonical form, as IoTDB's `checkAndReturnSingleMeasurement`.
///
/// # Errors
/// A [`NameError`]; a dotted bare measurement is [`Problem::SeveralNodes`].
pub fn canonical_measurement(m: &str) -> Result<Cow<'_, str>, NameError> {
    let quoted = m.len() >= 2 && m.starts_with('`') && m.ends_with('`');
    if !quoted && m.contains('.') && !m.contains('`') {
        // `a.b` would silently become device suffix `a` + measurement `b`.
        if m.split('.').all(|n| !n.is_empty()) {
            return Err(NameError::new(m, m, Problem::SeveralNodes));
        }
        return Err(NameError::new(m, m, Problem::NeedsQuotes('.')));
    }
    if !quoted && m.contains('`') {
        return Err(NameError::new(m, m, Problem::Backquote));
    }
    canonical_node(m).map_err(|p| NameError::new(m, m, p))
}

/// Checks that a tablet's device and measurements are legal and already in
/// canonical form: what the store accepts. One pass over the names, never
/// over the rows.
///
/// # Errors
/// A [`NameError`] for the first bad name; [`Problem::NotCanonical`] names
/// the form to write.
pub fn check_tablet(device: &str, measurements: &[String]) -> Result<(), NameError> {
    check_tablet_names(device, measurements.iter().map(String::as_str))
}

/// [`check_tablet`] for names borrowed from anywhere (a tablet read in
/// place).
///
/// # Errors
/// As [`check_tablet`].
pub fn check_tablet_names<'m>(
    device: &str,
    measurements: impl IntoIterator<Item = &'m str>,
) -> Result<(), NameError> {
    if !is_plain_canonical_device(device) {
        let d = canonical_device(device)?;
        if d != device {
            return Err(not_canonical(device, device, &d));
        }
    }
    for m in measurements {
        if is_plain_canonical_node(m) {
            continue;
        }
        let c = canonical_measurement(m)?;
        if c != m {
            return Err(not_canonical(m, m, &c));
        }
    }
    Ok(())
}

/// Whether `node` is a legal bare node (what [`check_bare`] accepts),
/// hence already canonical: the usual name, checked without allocating.
/// `false` says only "not this easy case" (the full check decides).
fn is_plain_canonical_node(node: &str) -> bool {
    !node.is_empty()
        && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(node))
        && !is_real_number(node)
}

/// Whether `path` is `root` followed by one or more legal bare nodes (the
/// usual device, which [`canonical_device`] returns unchanged), checked
/// without allocating. `false` says only "not this easy case".
fn is_plain_canonical_device(path: &str) -> bool {
    let mut nodes = path.split('.');
    nodes.next() == Some("root") && {
        let mut any = false;
        nodes.all(|n| {
            any = true;
            is_plain_canonical_node(n)
        }) && any
    }
}

fn not_canonical(given: &str, node: &str, canon: &str) -> NameError {
    NameError::new(given, node, Problem::NotCanonical(canon.to_string()))
}

/// Checks a full series path (a device of at least two nodes plus a
/// measurement) is legal and canonical.
///
/// # Errors
/// A [`NameError`] for the first bad node.
pub fn check_series(path: &str) -> Result<(), NameError> {
    let nodes = split_nodes(path)?;
    if nodes.len() < 3 {
        return Err(NameError::new(path, path, Problem::NotUnderRoot));
    }
    let d = canonical_device(path)?;
    if d != path {
        return Err(not_canonical(path, path, &d));
    }
    Ok(())
}

/// Checks the names an event would write (tablets, created series and
/// databases). Deletes carry patterns and name nothing new; dropping a
/// database must work whatever its name.
///
/// # Errors
/// A [`NameError`] for the first bad name.
pub fn check_event(ev: &Event) -> Result<(), NameError> {
    match ev {
        Event::Tablet(t) => check_tablet(&t.device, &t.measurements),
        Event::Schema(SchemaOp::CreateTimeseries { path, .. }) => check_series(path),
        Event::Schema(SchemaOp::CreateDatabase(p)) => {
            let d = canonical_device(p)?;
            if d != p.as_str() {
                return Err(not_canonical(p, p, &d));
            }
            Ok(())
        }
        Event::Schema(SchemaOp::DeleteDatabase(_)) | Event::Delete { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(p: &str) -> Result<String, Problem> {
        canonical_device(p)
            .map(|c| c.into_owned())
            .map_err(|e| e.problem)
    }

    fn meas(m: &str) -> Result<String, Problem> {
        canonical_measurement(m)
            .map(|c| c.into_owned())
            .map_err(|e| e.problem)
    }

    #[test]
    fn real_numbers_as_iotdb_reads_them() {
        for n in [
            "1", "007", "0", "000", "1e5", "1E5", "2L", "3f", "3D", "1.5", "-1", "+2.5e-3", "1e5f",
            "10l",
        ] {
            assert!(is_real_number(n), "{n}");
        }
        for n in [
            "", "a1", "1a", "1e", "e5", "0L", "1.5L", "1e5L", "0x1F", "1_0", "+-1", ".", "1h",
            "1ms",
        ] {
            assert!(!is_real_number(n), "{n}");
        }
    }

    #[test]
    fn the_findings_are_refused_with_what_to_write() {
        // Issue 7, finding 10: devices.
        assert_eq!(dev("root.a b"), Err(Problem::NeedsQuotes(' ')));
        assert_eq!(dev("root.a\0b"), Err(Problem::Control('\0')));
        assert_eq!(dev("root.`a"), Err(Problem::Backquote));
        assert_eq!(dev("root.a`b"), Err(Problem::Backquote));
        assert_eq!(dev("root.`a`b"), Err(Problem::Backquote));
        assert_eq!(dev("root.`a`b`"), Err(Problem::Backquote));
        // Measurements.
        assert_eq!(meas("*"), Err(Problem::Wildcard));
        assert_eq!(meas("**"), Err(Problem::Wildcard));
        assert_eq!(meas("s*"), Err(Problem::Wildcard));
        assert_eq!(meas("time"), Err(Problem::Reserved));
        assert_eq!(meas("TimeStamp"), Err(Problem::Reserved));
        assert_eq!(meas("x y"), Err(Problem::NeedsQuotes(' ')));
        assert_eq!(meas("a.b"), Err(Problem::SeveralNodes));
        assert_eq!(meas("1"), Err(Problem::Number));
        assert_eq!(meas(""), Err(Problem::Empty));
        assert_eq!(meas("``"), Err(Problem::Empty));
        assert_eq!(meas("`a\0`"), Err(Problem::Control('\0')));
        let e = canonical_measurement("x y").unwrap_err();
        assert_eq!(e.code(), 509);
        assert_eq!(
            e.to_string(),
            "x y is not a legal path, because node x y contains a space, which a name may only contain in backquotes: write `x y`"
        );
        let e = canonical_measurement("a.b").unwrap_err().to_string();
        assert!(
            e.contains("more than one node") && e.contains("`a.b`"),
            "{e}"
        );
        let e = canonical_device("root.a\0b").unwrap_err().to_string();
        assert!(e.contains("root.a\\0b") && e.contains("U+0000"), "{e}");
        let e = canonical_measurement("time").unwrap_err().to_string();
        assert!(e.contains("reserved") && e.contains("`time`"), "{e}");
    }

    #[test]
    fn backquotes_make_anything_a_name() {
        assert_eq!(meas("`x y`").unwrap(), "`x y`");
        assert_eq!(meas("`*`").unwrap(), "`*`");
        assert_eq!(meas("`time`").unwrap(), "`time`");
        assert_eq!(meas("`a.b`").unwrap(), "`a.b`");
        assert_eq!(meas("`1`").unwrap(), "`1`");
        assert_eq!(meas("`a``b`").unwrap(), "`a``b`");
        // Needless backquotes are dropped (IoTDB's removeBackQuotesIfNecessary).
        assert_eq!(meas("`abc`").unwrap(), "abc");
        assert_eq!(meas("s1").unwrap(), "s1");
        assert_eq!(meas("温度").unwrap(), "温度");
        assert_eq!(meas("1TS").unwrap(), "1TS");
        assert_eq!(meas("`é`").unwrap(), "`é`");
        assert_eq!(meas("é"), Err(Problem::NeedsQuotes('é')));
        assert_eq!(meas("`a`b`"), Err(Problem::Backquote));
        assert_eq!(unquote("`a``b`"), "a`b");
        assert_eq!(quote("a`b"), "`a``b`");
        assert_eq!(quote("ab"), "ab");
    }

    #[test]
    fn devices_split_on_dots_outside_backquotes() {
        assert_eq!(
            split_nodes("root.sg.`www.``baidu.com`.a").unwrap(),
            ["root", "sg", "`www.``baidu.com`", "a"]
        );
        assert_eq!(dev("root.sg.`a.b`").unwrap(), "root.sg.`a.b`");
        assert_eq!(dev("ROOT.sg.`d1`").unwrap(), "root.sg.d1");
        assert_eq!(dev("root.sg.d1").unwrap(), "root.sg.d1");
        assert!(matches!(
            canonical_device("root.sg.d1").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(dev("root"), Err(Problem::NotUnderRoot));
        assert_eq!(dev("sg.d"), Err(Problem::NotUnderRoot));
        assert_eq!(dev("root..d"), Err(Problem::Empty));
        assert_eq!(dev("root.d."), Err(Problem::Empty));
        assert_eq!(dev("root.sg.*"), Err(Problem::Wildcard));
        assert_eq!(dev("root.sg.**"), Err(Problem::Wildcard));
        assert_eq!(dev("root.sg.1"), Err(Problem::Number));
        assert_eq!(dev("root.sg.root"), Err(Problem::Reserved));
        assert_eq!(dev("root.sg.`1`").unwrap(), "root.sg.`1`");
    }

    #[test]
    fn stored_forms_are_checked_strictly() {
        check_tablet("root.sg.d", &["s1".into(), "`a b`".into()]).unwrap();
        let e = check_tablet("root.sg.d", &["`s1`".into()]).unwrap_err();
        assert_eq!(e.problem, Problem::NotCanonical("s1".into()));
        assert!(e.to_string().contains("must be written s1"), "{e}");
        assert!(check_tablet("ROOT.sg.d", &["s".into()]).is_err());
        assert!(check_tablet("root.p2.f", &["a.b".into()]).is_err());
        check_series("root.sg.d.`a.b`").unwrap();
        assert!(check_series("root.sg").is_err());
        assert!(check_series("root.sg.d.*").is_err());
    }

    #[test]
    fn the_quick_check_agrees_with_the_full_one() {
        // The allocation-free path of `check_tablet` may only say yes
        // where the full check says the name is legal and canonical.
        let nodes = [
            "s",
            "s1",
            "_",
            "a_b",
            "Temperature",
            "d0",
            "1",
            "007",
            "1e5",
            "2L",
            "3f",
            "0x1",
            "e5",
            "time",
            "TIME",
            "root",
            "Timestamp",
            "",
            "*",
            "a*",
            "a b",
            "a-b",
            "`s`",
            "`1`",
            "a`b",
            "温度",
            "a.b",
            "\u{1}",
            "NaN",
            "Infinity",
        ];
        for n in nodes {
            if is_plain_canonical_node(n) {
                assert_eq!(canonical_measurement(n).as_deref(), Ok(n), "{n}");
            }
            assert_eq!(
                check_tablet("root.sg.d", &[n.to_string()]).is_ok(),
                canonical_measurement(n).is_ok_and(|c| c == n),
                "{n}"
            );
            for d in [
                format!("root.sg.{n}"),
                format!("root.{n}"),
                format!("{n}.sg.d"),
            ] {
                if is_plain_canonical_device(&d) {
                    assert_eq!(canonical_device(&d).as_deref(), Ok(d.as_str()), "{d}");
                }
                assert_eq!(
                    check_tablet(&d, &["s".into()]).is_ok(),
                    canonical_device(&d).is_ok_and(|c| c == d.as_str()),
                    "{d}"
                );
            }
        }
        assert!(!is_plain_canonical_device("root"));
        assert!(!is_plain_canonical_device("root."));
        assert!(!is_plain_canonical_device("root..d"));
        assert!(is_plain_canonical_device("root.sg.d"));
    }
}
