//! Plain bordered tables for human output, in the style of IoTDB's CLI.

use std::io::Write;

/// A table: a header row and data rows, all strings.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub(crate) fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
            s
        });
        let line = |cells: &[String]| -> String {
            let mut s = String::from("|");
            for (c, w) in cells.iter().zip(&widths) {
                s.push_str(&format!(" {c:>w$} |"));
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
}
