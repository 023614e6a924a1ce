//! The parallel CSV reader gives exactly what a plain sequential read gives, whatever the
//! piece size: boundaries fall inside quoted fields, doubled quotes and multibyte characters,
//! and values are short or long.

use std::sync::Arc;

use crate::helpers::Rng;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema};
use hvrlake::read::TableLayout;
use hvrlake::read::csv::CsvFile;
use hvrlake::settings::{CsvDialect, Encoding};

/// A deliberately naive reader: one character at a time, RFC 4180 rules, empty unquoted = NULL.
fn sequential(text: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut in_quotes, mut after_quote) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                    after_quote = true;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if cur.is_empty() && !after_quote => {
                in_quotes = true;
                quoted = true;
            }
            ',' | '\n' => {
                let v = if cur.is_empty() && !quoted {
                    None
                } else {
                    Some(std::mem::take(&mut cur))
                };
                row.push(v);
                quoted = false;
                after_quote = false;
                if c == '\n' {
                    rows.push(std::mem::take(&mut row));
                }
            }
            c => cur.push(c),
        }
    }
    rows
}

fn random_csv(rng: &mut Rng, rows: usize, cols: usize) -> String {
    const PIECES: &[&str] = &[
        "a", "é", "東京", "😀", ",", "\"", "\n", " ", "xyz", "0", "Müller",
    ];
    let mut s = (0..cols)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for _ in 0..rows {
        let cells: Vec<String> = (0..cols)
            .map(|_| match rng.below(6) {
                0 => String::new(),
                1 => "\"\"".into(),
                _ => {
                    // Now and then a long value: text of 33 to 64 bytes and of more than 64
                    // is copied differently from short text.
                    let n = if rng.below(8) == 0 {
                        10 + rng.below(30)
                    } else {
                        1 + rng.below(6)
                    };
                    let v: String = (0..n)
                        .map(|_| PIECES[rng.below(PIECES.len() as u64) as usize])
                        .collect();
                    if v.contains([',', '"', '\n']) || rng.below(4) == 0 {
                        format!("\"{}\"", v.replace('"', "\"\""))
                    } else {
                        v
                    }
                }
            })
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

fn parallel(text: &str, cols: usize, chunk: usize) -> Vec<Vec<Option<String>>> {
    let dialect = CsvDialect {
        separator: b',',
        quote: b'"',
        null: None,
        encoding: Encoding::Utf8,
    };
    let f = CsvFile::open(text.as_bytes(), "r.csv", &dialect, chunk).unwrap();
    let fields: Vec<Field> = (0..cols)
        .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
        .collect();
    let layout = TableLayout::refresh_of(Arc::new(Schema::new(fields)), false);
    let plan = layout.plan(&f.header, "r.csv").unwrap();
    let mut out = Vec::new();
    for b in f.decode(&layout, &plan, 0).unwrap() {
        for r in 0..b.num_rows() {
            out.push(
                (0..cols)
                    .map(|c| {
                        let a = b.column(c).as_string::<i32>();
                        if a.is_null(r) {
                            None
                        } else {
                            Some(a.value(r).to_string())
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

#[test]
fn parallel_reads_equal_a_sequential_read_for_every_piece_size() {
    let mut rng = Rng(7);
    for (rows, cols) in [(200, 3), (50, 1), (500, 6)] {
        let text = random_csv(&mut rng, rows, cols);
        let want = sequential(&text)[1..].to_vec(); // without the header
        assert_eq!(want.len(), rows);
        let mut sizes: Vec<usize> = (1..64).collect();
        sizes.extend([
            97,
            128,
            255,
            1000,
            4096,
            text.len() / 3,
            text.len() / 2,
            text.len(),
            text.len() + 1,
        ]);
        for chunk in sizes {
            assert_eq!(
                parallel(&text, cols, chunk.max(1)),
                want,
                "rows {rows} cols {cols} chunk {chunk}"
            );
        }
    }
}
