//! The data files hvrlake encodes itself (`commit::encode`): every supported type, NULLs and
//! all-NULL columns, row groups and files rolled over, read back with parquet-rs's own
//! reader; and the statistics of each file's `Add` are the ones delta-rs's writer gives the
//! same rows.

use std::sync::Arc;

use crate::helpers::Rng;
use arrow::array::{
    ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::kernel::Add;
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use hvrlake::write::encode::{DataFileWriter, PAGE_ROWS, ROW_GROUP_ROWS, supported};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("d5", DataType::Decimal128(5, 2), true),
        Field::new("d12", DataType::Decimal128(12, 3), true),
        Field::new("d38", DataType::Decimal128(38, 2), true),
        Field::new("d30", DataType::Decimal128(30, 0), true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("tsn", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("text", DataType::Utf8, true),
        Field::new("bin", DataType::Binary, true),
        Field::new("never", DataType::Utf8, true),
        // Distinct values arrive slowly: the first pages of a row group use the dictionary,
        // the later ones PLAIN once it is full.
        Field::new("grows", DataType::Utf8, true),
    ]))
}

/// `rows` rows from `first` on: every nullable column NULL now and then (each at its own
/// rate), negative numbers, multibyte and empty text, one column never set.
fn batch(schema: &SchemaRef, rng: &mut Rng, first: i64, rows: usize) -> RecordBatch {
    let mut r = |n: u64| rng.below(n) as i64;
    let mut cols: Vec<Vec<i64>> = Vec::new();
    for _ in 0..schema.fields().len() {
        cols.push((0..rows).map(|_| r(1 << 40) - (1 << 39)).collect());
    }
    let nulls: Vec<Vec<bool>> = (0..schema.fields().len())
        .map(|c| (0..rows).map(|i| (i * 7 + c * 3) % (5 + c) == 0).collect())
        .collect();
    macro_rules! opt {
        ($c:expr, $i:expr, $v:expr) => {
            (!nulls[$c][$i]).then(|| $v)
        };
    }
    let words = [
        "",
        "a",
        "Müller",
        "東京 café",
        "x\"y,z\nw",
        "zzz",
        "Ørsted 😀",
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(first..first + rows as i64)),
        Arc::new(Int8Array::from_iter(
            (0..rows).map(|i| opt!(1, i, cols[1][i] as i8)),
        )),
        Arc::new(Int16Array::from_iter(
            (0..rows).map(|i| opt!(2, i, cols[2][i] as i16)),
        )),
        Arc::new(Int32Array::from_iter(
            (0..rows).map(|i| opt!(3, i, cols[3][i] as i32)),
        )),
        Arc::new(Float32Array::from_iter(
            (0..rows).map(|i| opt!(4, i, cols[4][i] as f32 / 1e6)),
        )),
        Arc::new(Float64Array::from_iter(
            (0..rows).map(|i| opt!(5, i, cols[5][i] as f64 / 1e3)),
        )),
        Arc::new(BooleanArray::from_iter(
            (0..rows).map(|i| opt!(6, i, cols[6][i] % 3 == 0)),
        )),
        Arc::new(Date32Array::from_iter(
            (0..rows).map(|i| opt!(7, i, (cols[7][i] % 40_000) as i32)),
        )),
        Arc::new(
            Decimal128Array::from_iter(
                (0..rows).map(|i| opt!(8, i, (cols[8][i] % 99_999) as i128)),
            )
            .with_precision_and_scale(5, 2)
            .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from_iter(
                (0..rows).map(|i| opt!(9, i, (cols[9][i] % 999_999_999_999) as i128)),
            )
            .with_precision_and_scale(12, 3)
            .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from_iter(
                (0..rows).map(|i| opt!(10, i, cols[10][i] as i128 * 1_000_000_007)),
            )
            .with_precision_and_scale(38, 2)
            .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from_iter((0..rows).map(|i| opt!(11, i, cols[11][i] as i128 * 977)))
                .with_precision_and_scale(30, 0)
                .unwrap(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                (0..rows).map(|i| opt!(12, i, cols[12][i] % 4_000_000_000_000_000)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(TimestampNanosecondArray::from_iter(
            // After 1970: delta-rs 1.1 drops the statistics of earlier nanosecond timestamps.
            (0..rows).map(|i| opt!(13, i, (cols[13][i] + (1 << 39)) * 1_000)),
        )),
        Arc::new(StringArray::from_iter((0..rows).map(|i| {
            opt!(
                14,
                i,
                format!("{} {}", words[i % words.len()], cols[14][i] % 100)
            )
        }))),
        Arc::new(BinaryArray::from_iter((0..rows).map(|i| {
            opt!(15, i, cols[15][i].to_le_bytes()[..i % 9].to_vec())
        }))),
        Arc::new(StringArray::from_iter((0..rows).map(|_| None::<String>))),
        Arc::new(StringArray::from_iter(
            (0..rows).map(|i| opt!(16, i, format!("{:024}", (first + i as i64) / 4))),
        )),
    ];
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// Batches of uneven sizes adding up to `rows`.
fn batches(schema: &SchemaRef, rows: usize) -> Vec<RecordBatch> {
    let mut rng = Rng(7);
    let mut out = Vec::new();
    let mut at = 0;
    while at < rows {
        let n = (1 + rng.below(40_000) as usize).min(rows - at);
        out.push(batch(schema, &mut rng, at as i64, n));
        at += n;
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn local_store(dir: &std::path::Path) -> Arc<dyn object_store::ObjectStore> {
    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap())
}

fn own_files(dir: &std::path::Path, input: &[RecordBatch], target_bytes: u64) -> Vec<Add> {
    let schema = input[0].schema();
    runtime().block_on(async {
        let mut w = DataFileWriter::new(local_store(dir), schema, 32, target_bytes).unwrap();
        for b in input {
            w.write(b).await.unwrap();
        }
        w.close().await.unwrap()
    })
}

fn read_back(dir: &std::path::Path, adds: &[Add]) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for a in adds {
        let f = std::fs::File::open(dir.join(&a.path)).unwrap();
        assert_eq!(f.metadata().unwrap().len() as i64, a.size, "{}", a.path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        out.extend(reader.map(|b| b.unwrap()));
    }
    out
}

fn stats(add: &Add) -> serde_json::Value {
    serde_json::from_str(add.stats.as_deref().expect("stats")).unwrap()
}

#[test]
fn every_supported_type_reads_back_exactly_across_row_groups_and_files() {
    let schema = schema();
    assert!(supported(&schema));
    let rows = 2 * ROW_GROUP_ROWS + 12_345;
    let input = batches(&schema, rows);
    let dir = tempfile::tempdir().unwrap();
    // A target of one byte: every row group ends its file.
    let adds = own_files(dir.path(), &input, 1);
    assert_eq!(adds.len(), 3, "one file per row group");
    let back = read_back(dir.path(), &adds);
    let want = arrow::compute::concat_batches(&schema, &input).unwrap();
    let got = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
    assert_eq!(got.num_rows(), rows);
    for (i, f) in schema.fields().iter().enumerate() {
        assert_eq!(
            got.schema().field(i).data_type(),
            f.data_type(),
            "{}",
            f.name()
        );
        assert_eq!(
            got.column(i).as_ref(),
            want.column(i).as_ref(),
            "column {}",
            f.name()
        );
    }
    // The pages' encodings, from the first file's first row group: the text column by
    // dictionary, the column whose dictionary fills up by dictionary and then lengths and
    // bytes apart, binary likewise, the column that is always NULL and the wide decimals
    // PLAIN, numbers stored as INT32/INT64 as packed differences.
    let file = std::fs::File::open(dir.path().join(&adds[0].path)).unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
    // In the form parquet-mr parses (`APP version V (build B)`), or Spark ignores the text
    // and decimal statistics.
    let created_by = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .created_by()
        .unwrap()
        .to_string();
    let form = regex::Regex::new(r"^\S+ version [^(]*?\s*\(build [^)]*\)$").unwrap();
    assert!(form.is_match(&created_by), "{created_by}");
    let group = parquet::file::reader::FileReader::get_row_group(&reader, 0).unwrap();
    let encodings = |name: &str| {
        let i = schema.index_of(name).unwrap();
        let mut seen = Vec::new();
        for page in group.get_column_page_reader(i).unwrap() {
            let page = page.unwrap();
            if !seen.contains(&(page.page_type(), page.encoding())) {
                seen.push((page.page_type(), page.encoding()));
            }
        }
        seen
    };
    use parquet::basic::{Encoding::*, PageType::*};
    assert_eq!(
        encodings("text"),
        [(DICTIONARY_PAGE, PLAIN), (DATA_PAGE, RLE_DICTIONARY)]
    );
    assert_eq!(
        encodings("grows"),
        [
            (DICTIONARY_PAGE, PLAIN),
            (DATA_PAGE, RLE_DICTIONARY),
            (DATA_PAGE, DELTA_LENGTH_BYTE_ARRAY)
        ]
    );
    assert_eq!(encodings("bin"), [(DATA_PAGE, DELTA_LENGTH_BYTE_ARRAY)]);
    assert_eq!(encodings("never"), [(DATA_PAGE, PLAIN)]);
    assert_eq!(encodings("d38"), [(DATA_PAGE, PLAIN)]);
    assert_eq!(encodings("d12"), [(DATA_PAGE, DELTA_BINARY_PACKED)]);
    assert_eq!(encodings("ts"), [(DATA_PAGE, DELTA_BINARY_PACKED)]);
    // The offset index: rows read through it (pages skipped) are the rows written.
    let file = std::fs::File::open(dir.path().join(&adds[1].path)).unwrap();
    let options = ArrowReaderOptions::new()
        .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    let index = builder.metadata().offset_index().expect("an offset index");
    assert!(
        index[0]
            .iter()
            .all(|c| c.page_locations().len() == ROW_GROUP_ROWS / PAGE_ROWS)
    );
    let selection = RowSelection::from(vec![RowSelector::skip(50_000), RowSelector::select(1_000)]);
    let picked: Vec<RecordBatch> = builder
        .with_row_selection(selection)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let picked = arrow::compute::concat_batches(&picked[0].schema(), &picked).unwrap();
    let from = ROW_GROUP_ROWS + 50_000;
    for i in 0..schema.fields().len() {
        assert_eq!(
            picked.column(i).as_ref(),
            want.column(i).slice(from, 1_000).as_ref(),
            "column {} through the offset index",
            schema.field(i).name()
        );
    }
    let counted: u64 = adds
        .iter()
        .map(|a| stats(a)["numRecords"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, rows as u64);
}

#[test]
fn file_statistics_are_the_ones_delta_rs_writes_for_the_same_rows() {
    let schema = schema();
    let input = batches(&schema, ROW_GROUP_ROWS + 5_000);
    let own_dir = tempfile::tempdir().unwrap();
    let own = own_files(own_dir.path(), &input, u64::MAX);
    assert_eq!(own.len(), 1);
    let theirs_dir = tempfile::tempdir().unwrap();
    let theirs = runtime().block_on(async {
        let config = WriterConfig::new(
            schema.clone(),
            vec![],
            Some(hvrlake::write::writer_properties(&schema)),
            None,
            None,
            DataSkippingNumIndexedCols::NumColumns(32),
            None,
        );
        let mut w = DeltaWriter::new(local_store(theirs_dir.path()), config);
        for b in &input {
            w.write(b).await.unwrap();
        }
        w.close().await.unwrap()
    });
    assert_eq!(theirs.len(), 1);
    let (ours, expected) = (stats(&own[0]), stats(&theirs[0]));
    // Column by column, so a difference names its column.
    for key in ["minValues", "maxValues", "nullCount"] {
        let (o, e) = (
            ours[key].as_object().unwrap(),
            expected[key].as_object().unwrap(),
        );
        for f in schema.fields() {
            assert_eq!(o.get(f.name()), e.get(f.name()), "{key}.{}", f.name());
        }
        assert_eq!(o.len(), e.len(), "{key}: {o:?} against {e:?}");
    }
    assert_eq!(ours["numRecords"], expected["numRecords"]);
    assert_eq!(
        ours["nullCount"]["never"],
        serde_json::json!(input.iter().map(|b| b.num_rows()).sum::<usize>())
    );
}

#[test]
fn statistics_cover_only_the_indexed_columns_and_leave_out_long_text() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("long", DataType::Utf8, true),
        Field::new("late", DataType::Int64, true),
    ]));
    let long = "é".repeat(40);
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(3), None, Some(-2)])),
            Arc::new(StringArray::from(vec![
                Some("short"),
                Some(long.as_str()),
                None,
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adds = runtime().block_on(async {
        let mut w = DataFileWriter::new(local_store(dir.path()), schema, 2, u64::MAX).unwrap();
        w.write(&b).await.unwrap();
        w.close().await.unwrap()
    });
    let s = stats(&adds[0]);
    assert_eq!(s["minValues"]["k"], -2);
    assert_eq!(s["maxValues"]["k"], 3);
    assert_eq!(s["nullCount"]["k"], 1);
    assert!(s["minValues"].get("long").is_none(), "{s}");
    assert_eq!(s["nullCount"]["long"], 1);
    assert!(
        s["nullCount"].get("late").is_none(),
        "only 2 columns indexed: {s}"
    );
    let back = read_back(dir.path(), &adds);
    assert_eq!(back[0].column(1).as_ref(), b.column(1).as_ref());
}

/// Integer columns are written DELTA_BINARY_PACKED: every bit width from 0 to 64 (runs of
/// one value, steps, random values of each width, the extremes next to each other so the
/// differences wrap), NULLs among them, and value counts that end a block or a miniblock
/// early, must read back exactly and keep their statistics.
#[test]
fn integers_are_delta_packed_and_read_back_at_every_width() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i64", DataType::Int64, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i8", DataType::Int8, false),
    ]));
    let mut rng = Rng(11);
    let mut wide: Vec<i64> = Vec::new();
    for width in (0..=64u32).cycle().take(3 * 65) {
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        let base = rng.next() as i64;
        wide.extend((0..40).map(|_| base.wrapping_add((rng.next() & mask) as i64)));
        wide.extend([i64::MIN, i64::MAX, i64::MIN, 0, -1, i64::MAX]);
        wide.extend(std::iter::repeat_n(base, 33));
        wide.extend((0..35).map(|i| base.wrapping_sub(i * 7)));
    }
    let narrow = |i: usize, x: i64| match i % 5 {
        0 => i32::MIN,
        1 => i32::MAX,
        _ => (x >> (i % 40)) as i32,
    };
    let dir = tempfile::tempdir().unwrap();
    for rows in [
        1,
        2,
        3,
        32,
        33,
        128,
        129,
        130,
        161,
        PAGE_ROWS - 1,
        PAGE_ROWS + 1,
        wide.len(),
    ] {
        let input = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 9 != 5).then_some(wide[i])),
                )),
                Arc::new(Int32Array::from_iter(
                    (0..rows).map(|i| (i % 7 != 3).then_some(narrow(i, wide[i]))),
                )),
                Arc::new(Int8Array::from_iter_values(
                    (0..rows).map(|i| wide[i] as i8),
                )),
            ],
        )
        .unwrap();
        let sub = dir.path().join(rows.to_string());
        std::fs::create_dir(&sub).unwrap();
        let adds = own_files(&sub, std::slice::from_ref(&input), u64::MAX);
        let back = read_back(&sub, &adds);
        let got = arrow::compute::concat_batches(&schema, &back).unwrap();
        assert_eq!(got, input, "{rows} rows");
        let file = std::fs::File::open(sub.join(&adds[0].path)).unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
        let group = parquet::file::reader::FileReader::get_row_group(&reader, 0).unwrap();
        for c in 0..3 {
            for page in group.get_column_page_reader(c).unwrap() {
                let page = page.unwrap();
                // (No page here is all NULL: such a page would be PLAIN, and empty.)
                assert_eq!(
                    page.encoding(),
                    parquet::basic::Encoding::DELTA_BINARY_PACKED,
                    "column {c}, {rows} rows"
                );
            }
        }
        let st = stats(&adds[0]);
        let valid: Vec<i64> = (0..rows).filter(|i| i % 9 != 5).map(|i| wide[i]).collect();
        if let (Some(lo), Some(hi)) = (valid.iter().min(), valid.iter().max()) {
            assert_eq!(st["minValues"]["i64"], *lo, "{rows} rows");
            assert_eq!(st["maxValues"]["i64"], *hi, "{rows} rows");
        }
    }
}

/// Binary and text whose NULL slots still hold bytes (arrays sliced or built from buffers):
/// only the non-NULL values are written.
#[test]
fn null_slots_that_hold_bytes_are_left_out() {
    use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
    let schema = Arc::new(Schema::new(vec![
        Field::new("b", DataType::Binary, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let rows = 3 * PAGE_ROWS / 2;
    let mut offsets = vec![0i32];
    let mut bytes = Vec::new();
    for i in 0..rows {
        // Distinct values: the text dictionary fills up and its pages spill.
        bytes.extend_from_slice(format!("{i:07}-{}", "x".repeat(i % 40)).as_bytes());
        offsets.push(bytes.len() as i32);
    }
    let valid = NullBuffer::from((0..rows).map(|i| i % 3 != 1).collect::<Vec<_>>());
    let offsets = OffsetBuffer::new(offsets.into());
    let data = Buffer::from(bytes);
    let b = BinaryArray::new(offsets.clone(), data.clone(), Some(valid.clone()));
    let s = StringArray::new(offsets, data, Some(valid));
    let input = RecordBatch::try_new(schema.clone(), vec![Arc::new(b), Arc::new(s)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adds = own_files(dir.path(), std::slice::from_ref(&input), u64::MAX);
    let back = read_back(dir.path(), &adds);
    let got = arrow::compute::concat_batches(&schema, &back).unwrap();
    let want_b: Vec<Option<&[u8]>> = input.column(0).as_binary::<i32>().iter().collect();
    let got_b: Vec<Option<&[u8]>> = got.column(0).as_binary::<i32>().iter().collect();
    assert_eq!(got_b, want_b);
    let want_s: Vec<Option<&str>> = input.column(1).as_string::<i32>().iter().collect();
    let got_s: Vec<Option<&str>> = got.column(1).as_string::<i32>().iter().collect();
    assert_eq!(got_s, want_s);
}
