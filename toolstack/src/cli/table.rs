//! docker's table layout. docker's CLI aligns its tables with its copy of Go's text/tabwriter
//! (docker/cli cli/command/formatter/tabwriter: Go's algorithm, with a cell's width measured
//! in terminal columns instead of runes), set up as `NewWriter(out, 10, 1, 3, ' ', 0)` for
//! every formatter table (ps, images, volume ls, network ls, stats, `--format table`) and with
//! a minimum width of 20 for `docker top`. This is that algorithm, so hx's tables match docker's
//! byte for byte for the same cells:
//! - a cell ends at a tab (or `\v`); the text after a line's last tab is its last cell, which
//!   belongs to no column and is never padded;
//! - tab-terminated cells in consecutive lines form a column (a line with fewer cells ends it:
//!   Go's elastic tabstops), as wide as its widest cell plus the padding, at least `min_width`;
//! - cells are left-aligned and padded with spaces, also an empty cell in the middle of a line
//!   (and a line whose last cell is empty keeps the padding before it);
//! - `\f` ends a line and every column, and is written as a newline.
use unicode_width::UnicodeWidthStr;

/// A tabwriter's settings: the minimum column width (padding included) and the padding.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub min_width: usize,
    pub padding: usize,
}

/// docker's formatter tables: `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`.
pub const DOCKER: Layout = Layout {
    min_width: 10,
    padding: 3,
};

/// `docker top`: `tabwriter.NewWriter(out, 20, 1, 3, ' ', 0)`.
pub const DOCKER_TOP: Layout = Layout {
    min_width: 20,
    padding: 3,
};

/// A header and rows as docker prints them; every cell is made one line first (a newline or
/// tab in an image's CMD or a name would otherwise fake a row or a column; `outln!` escapes
/// the rest, which is then already clean, so widths are those of what the terminal shows).
pub fn print(layout: Layout, header: &[&str], rows: &[Vec<String>]) {
    let mut text = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push('\t');
            }
            text.push_str(&hx_engine::sanitize::line(cell).to_cow());
        }
        text.push('\n');
    };
    push_row(&mut header.iter().copied());
    for r in rows {
        push_row(&mut r.iter().map(String::as_str));
    }
    hx_engine::output::write_out(format_args!("{}", align(&text, layout)));
}

/// docker's Ellipsis (formatter/displayutils.go): `s` cut to `max` terminal columns, the last
/// one an ellipsis (`"sleep 1000000000000…"` for ps's COMMAND at 20).
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.width() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut width = 0;
    for c in s.chars() {
        width += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if width > max.saturating_sub(1) {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// One cell: its text and its width in terminal columns.
struct Cell<'a> {
    text: &'a str,
    width: usize,
}

/// One line: its cells (the last is the text after the last tab) and how it ended.
struct Line<'a> {
    cells: Vec<Cell<'a>>,
    /// `\n` or `\f` ended it (only the input's last line can lack one).
    ended: bool,
}

impl Line<'_> {
    /// How many of its cells are in columns (all but the last).
    fn columns(&self) -> usize {
        self.cells.len().saturating_sub(1)
    }
}

/// `text` laid out as docker's tabwriter writes it.
pub fn align(text: &str, layout: Layout) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    // A form feed flushes: what follows starts new columns.
    let mut sections = text.split('\u{c}').peekable();
    while let Some(section) = sections.next() {
        let lines = split_lines(section, sections.peek().is_some());
        let mut widths = Vec::new();
        format(&mut out, &lines, 0, lines.len(), &mut widths, layout);
    }
    out
}

/// A section's lines. Its last piece (after its last newline) is a line the form feed after it
/// ended, else the input's unfinished last line, where Go keeps only the cells a tab ended (an
/// empty text after the last tab is no cell: `a\tb\t` ends in a cell that is not padded).
fn split_lines(section: &str, form_feed_follows: bool) -> Vec<Line<'_>> {
    let mut lines: Vec<Line> = section
        .split('\n')
        .map(|l| Line {
            cells: l
                .split(['\t', '\u{b}'])
                .map(|text| Cell {
                    text,
                    width: text.width(),
                })
                .collect(),
            ended: true,
        })
        .collect();
    if !form_feed_follows {
        if let Some(mut last) = lines.pop() {
            if last.cells.last().is_some_and(|c| c.text.is_empty()) {
                last.cells.pop();
            }
            if !last.cells.is_empty() {
                lines.push(Line {
                    ended: false,
                    ..last
                });
            }
        }
    }
    lines
}

/// Go's `format`: lines `line0..line1` all have cells in the columns whose widths are known
/// (`widths`); the next column's blocks (runs of consecutive lines having a cell in it) are
/// measured and formatted in turn, the lines between them written with the widths known.
fn format(
    out: &mut String,
    lines: &[Line],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    layout: Layout,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column >= lines[this].columns() {
            this += 1;
            continue;
        }
        write_lines(out, &lines[line0..this], widths);
        line0 = this;
        let mut width = layout.min_width;
        while this < line1 && column < lines[this].columns() {
            width = width.max(lines[this].cells[column].width + layout.padding);
            this += 1;
        }
        widths.push(width);
        format(out, lines, line0, this, widths, layout);
        widths.pop();
        line0 = this;
    }
    write_lines(out, &lines[line0..line1], widths);
}

fn write_lines(out: &mut String, lines: &[Line], widths: &[usize]) {
    for line in lines {
        for (j, cell) in line.cells.iter().enumerate() {
            out.push_str(cell.text);
            if let Some(w) = widths.get(j) {
                let pad = w.saturating_sub(cell.width);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if line.ended {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn docker(text: &str) -> String {
        align(text, DOCKER)
    }

    #[test]
    fn columns_are_text_plus_padding_and_at_least_the_minimum() {
        assert_eq!(docker("a\tb\n"), "a         b\n");
        assert_eq!(docker("NAMES\tSTATE\n"), "NAMES     STATE\n");
        assert_eq!(docker("CONTAINER ID\tX\n"), "CONTAINER ID   X\n");
        assert_eq!(docker("0123456\tX\n"), "0123456   X\n");
        assert_eq!(docker("01234567\tX\n"), "01234567   X\n");
        assert_eq!(
            align("a\tb\n", DOCKER_TOP),
            format!("a{}b\n", " ".repeat(19))
        );
    }

    #[test]
    fn the_last_cell_is_not_padded_but_an_empty_one_keeps_what_precedes_it() {
        assert_eq!(
            docker("a\tbbbbbbbbbbbbbbbbbbbb\nc\td\n"),
            "a         bbbbbbbbbbbbbbbbbbbb\nc         d\n"
        );
        assert_eq!(docker("a\t\n"), "a         \n");
        assert_eq!(docker("a\t\tc\n"), "a                   c\n");
    }

    #[test]
    fn a_line_with_fewer_cells_ends_a_column() {
        // Go's doc example: the b and c columns are distinct, d and e in none.
        let out = docker("aaaa\tbbb\td\naa\tb\tdd\na\naa\tcccc\teee\n");
        assert_eq!(
            out,
            "aaaa      bbb       d\n\
             aa        b         dd\n\
             a\n\
             aa        cccc      eee\n"
        );
        let out = align(
            "aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n",
            Layout {
                min_width: 0,
                padding: 1,
            },
        );
        assert_eq!(out, "aaaa bbb d\naa   b   dd\na    \naa   cccc eee\n");
    }

    #[test]
    fn widths_are_terminal_columns() {
        // East Asian wide characters take two columns, combining marks none, `…` one.
        assert_eq!(docker("日本語日本語\tx\n"), "日本語日本語   x\n");
        assert_eq!(docker("e\u{301}\tx\n"), "e\u{301}         x\n");
        assert_eq!(docker("\"sleep 10…\"\tx\n"), "\"sleep 10…\"   x\n");
    }

    #[test]
    fn form_feeds_start_new_columns_and_a_missing_last_newline_stays_missing() {
        assert_eq!(
            docker("aaaaaaaaaaaa\tb\n\u{c}c\td\n"),
            "aaaaaaaaaaaa   b\n\nc         d\n"
        );
        assert_eq!(
            docker("aaaaaaaaaaaa\tb\u{c}c\td"),
            "aaaaaaaaaaaa   b\nc         d"
        );
        assert_eq!(docker(""), "");
        // An unfinished last line's empty text after its last tab is no cell.
        assert_eq!(docker("a\tb\t"), "a         b");
        assert_eq!(docker("\t"), "");
        assert_eq!(docker("\n\n"), "\n\n");
    }

    /// The layout of a table whose lines all have the same number of cells, worked out
    /// directly: each column as wide as its widest cell plus the padding, at least the minimum.
    fn uniform_table(rows: &[Vec<String>], layout: Layout) -> String {
        let columns = rows.first().map_or(0, |r| r.len() - 1);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let widest = rows.iter().map(|r| r[c].width()).max().unwrap_or(0);
                layout.min_width.max(widest + layout.padding)
            })
            .collect();
        let mut out = String::new();
        for r in rows {
            for (c, cell) in r.iter().enumerate() {
                out.push_str(cell);
                if c < columns {
                    out.push_str(&" ".repeat(widths[c] - cell.width()));
                }
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn ellipsis_cuts_at_display_width() {
        assert_eq!(ellipsis("sleep 1000", 20), "sleep 1000");
        assert_eq!(ellipsis("12345678901234567890", 20), "12345678901234567890");
        assert_eq!(
            ellipsis("123456789012345678901", 20),
            "1234567890123456789…"
        );
        assert_eq!(
            ellipsis("日本語日本語日本語日本語", 20),
            "日本語日本語日本語…"
        );
    }

    proptest! {
        #[test]
        fn uniform_tables_lay_out_as_the_rule_says(
            width in 1usize..6,
            rows in proptest::collection::vec(
                proptest::collection::vec("[a-z日é… ]{0,14}", 6), 0..8),
            min_width in 0usize..24,
            padding in 0usize..5,
        ) {
            let rows: Vec<Vec<String>> = rows.into_iter().map(|mut r| { r.truncate(width); r }).collect();
            let layout = Layout { min_width, padding };
            let text: String = rows.iter().map(|r| format!("{}\n", r.join("\t"))).collect();
            prop_assert_eq!(align(&text, layout), uniform_table(&rows, layout));
        }

        /// Any text, tabs, newlines and form feeds included: the cells come out in order with
        /// only spaces added, and each line break stays one.
        #[test]
        fn any_text_keeps_its_cells_in_order(text in "[a-c日\t\n\u{c} ]{0,60}") {
            let out = align(&text, DOCKER);
            let strip = |s: &str| s.replace(['\t', ' '], "").replace('\u{c}', "\n");
            prop_assert_eq!(strip(&out), strip(&text));
            prop_assert!(!out.contains('\t'));
        }
    }
}
