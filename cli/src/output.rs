//! Writing to stdout without panicking on a closed pipe, plain text tables, and colours.

use std::io::Write as _;

/// Writes `text` to stdout. A closed pipe (`hypertask list | head`) is not an error.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// An ANSI style for a whole table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Bold green: active.
    Active,
    /// Red: overdue.
    Overdue,
    /// Yellow: due today.
    DueToday,
    /// Bold: high priority.
    High,
    /// Dim: completed or deleted.
    Closed,
    /// Underlined: a header.
    Header,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Active => "1;32",
            Style::Overdue => "31",
            Style::DueToday => "33",
            Style::High => "1",
            Style::Closed => "2",
            Style::Header => "4",
        }
    }

    /// `text` in this style.
    pub(crate) fn paint(self, text: &str) -> String {
        format!("\x1b[{}m{text}\x1b[0m", self.code())
    }
}

/// A table with left-aligned columns; the last column is not padded.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    styles: Vec<Option<Style>>,
    colour: bool,
}

impl Table {
    /// A table with a header row.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
            styles: vec![Some(Style::Header)],
            colour: false,
        }
    }

    /// Colours rows by their style (a terminal that wants colours).
    pub(crate) fn coloured(mut self, colour: bool) -> Table {
        self.colour = colour;
        self
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.styled(cells, None);
    }

    /// Adds a row in a style.
    pub(crate) fn styled(&mut self, cells: Vec<String>, style: Option<Style>) {
        self.rows.push(cells);
        self.styles.push(style);
    }

    /// The table as text, one line per row.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for (row, style) in self.rows.iter().zip(&self.styles) {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            match style {
                Some(s) if self.colour => text.push_str(&s.paint(line.trim_end())),
                _ => text.push_str(line.trim_end()),
            }
            text.push('\n');
        }
        text
    }
}
