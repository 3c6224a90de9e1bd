//! Bordered tables for human output.
//!
//! Two styles share one renderer:
//! - [`Style::Cli`] is IoTDB's CLI (`IoTPrinter.printRow` in IoTDB 1.2):
//!   cells right-aligned against the border with no padding, `+---+` rules.
//!   `edgepipe cli` prints query results this way so that output (and the
//!   scripts reading it) look as they do against IoTDB.
//! - [`Style::Padded`] adds one space each side of a cell; the offline
//!   tools (`wal`, `top`) use it.
//!
//! Widths are terminal columns, not characters: a Chinese, Japanese or
//! Korean character takes two (IoTDB counts Han characters twice; the
//! Unicode East Asian Width used here agrees for Han and also covers kana,
//! hangul and full-width forms), so columns line up with such series names
//! and values.

use std::io::Write;

use unicode_width::UnicodeWidthStr;

/// How cells are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// IoTDB's CLI: `|  12|`.
    Cli,
    /// One space each side: `|   12 |`.
    Padded,
}

/// A table: a header row and data rows, all strings.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    style: Style,
}

/// Columns a string takes on a terminal.
pub(crate) fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

impl Table {
    /// A padded table with these column names.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table::with_style(
            header.iter().map(|s| s.to_string()).collect(),
            Style::Padded,
        )
    }

    /// A table with these column names in `style`.
    pub(crate) fn with_style(header: Vec<String>, style: Style) -> Table {
        Table {
            header,
            rows: Vec::new(),
            style,
        }
    }

    /// Adds a row (one cell per column).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Writes the rules, the header and the rows.
    pub(crate) fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(&self.header[i])])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let pad = match self.style {
            Style::Cli => 0,
            Style::Padded => 1,
        };
        let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
            s.push_str(&"-".repeat(w + 2 * pad));
            s.push('+');
            s
        });
        let margin = " ".repeat(pad);
        let line = |cells: &[String]| -> String {
            let mut s = String::from("|");
            for (c, w) in cells.iter().zip(&widths) {
                s.push_str(&margin);
                s.push_str(&" ".repeat(w - width(c)));
                s.push_str(c);
                s.push_str(&margin);
                s.push('|');
            }
            s
        };
        writeln!(out, "{rule}")?;
        writeln!(out, "{}", line(&self.header))?;
        writeln!(out, "{rule}")?;
        for r in &self.rows {
            writeln!(out, "{}", line(r))?;
        }
        writeln!(out, "{rule}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_borders_and_right_aligns() {
        let mut t = Table::new(&["a", "long header"]);
        t.row(vec!["12345".into(), "x".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "+-------+-------------+\n\
             |     a | long header |\n\
             +-------+-------------+\n\
             | 12345 |           x |\n\
             +-------+-------------+\n"
        );
    }

    #[test]
    fn cli_style_has_no_padding_and_counts_wide_characters_twice() {
        let mut t = Table::with_style(vec!["Time".into(), "root.车间.温度".into()], Style::Cli);
        t.row(vec!["1".into(), "高".into()]);
        t.row(vec!["22".into(), "null".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        // "root.车间.温度" is 6 narrow and 4 wide characters: 14 columns.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+----+--------------+\n\
             |Time|root.车间.温度|\n\
             +----+--------------+\n\
             |   1|            高|\n\
             |  22|          null|\n\
             +----+--------------+\n"
        );
    }
}
