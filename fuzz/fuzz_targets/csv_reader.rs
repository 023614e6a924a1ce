//! The CSV reader on arbitrary bytes: it must never panic or hang, and cutting a file into
//! small pieces must give exactly what reading it whole gives (the same rows and values, or
//! an error both ways).
//!
//! Input: byte 0 picks the piece size (1..=64 bytes), byte 1 the separator and the NULL
//! token, the rest is the file.

#![no_main]

use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use hvrlake::read::TableLayout;
use hvrlake::read::csv::CsvFile;
use hvrlake::settings::{CsvDialect, Encoding};
use libfuzzer_sys::fuzz_target;

type Rows = Vec<Vec<String>>;

fn read(text: &[u8], dialect: &CsvDialect, chunk: usize) -> Result<Rows, String> {
    let f = CsvFile::open(text, "fuzz.csv", dialect, chunk).map_err(|e| e.to_string())?;
    let inferred = f.infer().map_err(|e| e.to_string())?;
    let fields: Vec<Field> = f
        .header
        .iter()
        .zip(&inferred)
        .map(|(name, inf)| Field::new(name, inf.result().arrow(), true))
        .collect();
    let layout = TableLayout::refresh_of(Arc::new(Schema::new(fields)), true);
    let plan = layout.plan(&f.header, "fuzz.csv").map_err(|e| e.to_string())?;
    let batches = f.decode(&layout, &plan, 0).map_err(|e| e.to_string())?;
    let options = FormatOptions::default().with_null("\u{0}NULL");
    let mut rows = Vec::new();
    for b in &batches {
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for r in 0..b.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    Ok(rows)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = data[0] as usize % 64 + 1;
    let (separator, null) = match data[1] % 4 {
        0 => (b',', None),
        1 => (b'|', None),
        2 => (b';', Some("NULL".to_string())),
        _ => (b'\t', Some("\\N".to_string())),
    };
    let dialect = CsvDialect {
        separator,
        quote: b'"',
        null,
        encoding: Encoding::Utf8,
    };
    let text = &data[2..];
    let whole = read(text, &dialect, 1 << 30);
    let pieces = read(text, &dialect, chunk);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "piece size {chunk} changed the rows"),
        (Err(_), Err(_)) => {}
        _ => panic!("piece size {chunk}: whole {whole:?} but in pieces {pieces:?}"),
    }
});
