//! Plain-text tables whose columns fit their content (a DN or an RFC 3339 time with fractions
//! no longer pushes the rest of a row out of line). Every cell is escaped
//! (`layercrypt_proto::text`): table cells come from the broker and from callers.

use std::io::{self, Write};

use layercrypt_proto::text::escape;

/// A table: a header and rows of the same number of cells.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells escaped here).
    pub fn row(&mut self, cells: &[&str]) {
        self.rows
            .push(cells.iter().map(|c| escape(c).into_owned()).collect());
    }

    /// Writes the table: two spaces between columns, the last one not padded.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_longest_cell() {
        let mut t = Table::new(&["GRANT", "WHO", "EXPIRES"]);
        t.row(&[
            "g-1",
            "/DC=eu/DC=rcauth/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-",
            "never",
        ]);
        t.row(&["g-22", "alice@egi.eu", "2027-01-01T00:00:00Z"]);
        let mut out = Vec::new();
        t.write(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        // The third column starts at the same place on every line.
        let starts: Vec<usize> = lines
            .iter()
            .zip(["EXPIRES", "never", "2027-01-01T00:00:00Z"])
            .map(|(l, v)| l.find(v).expect("cell"))
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn cells_are_escaped() {
        let mut t = Table::new(&["A", "B"]);
        t.row(&["x\x1b[2K", "y"]);
        let mut out = Vec::new();
        t.write(&mut out).expect("write");
        assert!(!out.contains(&0x1b));
    }
}
