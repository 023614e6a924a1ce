//! Criterion benchmarks of each stage on generated HVR-style data of a million rows or more:
//! parse (CSV → typed Arrow), infer (types of a new table), coalesce (last change per key),
//! merge (a 250,000-change cycle into a 1,000,000-row Delta table) and the whole integrate
//! cycle as the agent runs it. `cargo bench` (set RAYON_NUM_THREADS to compare thread counts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::prelude::SessionContext;
use hvrlake::call::cycle;
use hvrlake::call::spec::{Kind, TableSpec};
use hvrlake::input::InputFile;
use hvrlake::read::csv::CsvFile;
use hvrlake::read::{FileColumns, TableLayout};
use hvrlake::schema::types::utc_micros;
use hvrlake::settings::Settings;
use hvrlake::{coalesce, table};

// The binary's allocator, set up as the binary sets it (`cli::tune_allocator`): the stages are
// timed as they run in hvrlake, not on the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TABLE_ROWS: u64 = 1_000_000;
const CYCLE_CHANGES: u64 = 250_000;
const COLUMNS: &[&str] = &[
    "order_id",
    "customer_id",
    "amount",
    "discount",
    "created_at",
    "shipped_at",
    "is_paid",
    "status",
    "note",
    "hvr_op",
    "hvr_integ_seq",
    "is_deleted",
];

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn push_row(s: &mut String, rng: &mut Rng, id: u64, op: u8, seq: u64) {
    use std::fmt::Write;
    let note = match rng.below(10) {
        0 => "\"rush, \"\"fragile\"\"\nleave at door\"".to_string(),
        1 => "Müller 東京".to_string(),
        2 => String::new(),
        _ => format!("note {}", rng.below(100_000)),
    };
    let discount = if rng.below(3) == 0 {
        String::new()
    } else {
        format!("{}.{:02}", rng.below(50), rng.below(100))
    };
    let shipped = if rng.below(2) == 0 {
        String::new()
    } else {
        format!(
            "2026-11-{:02} 10:{:02}:00",
            1 + rng.below(28),
            rng.below(60)
        )
    };
    let _ = writeln!(
        s,
        "{id},{},{}.{:02},{discount},2026-10-{:02} {:02}:{:02}:{:02}.{:06},{shipped},{},{},{note},{op},{seq:020X},{}",
        rng.below(100_000),
        rng.below(10_000),
        rng.below(100),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1_000_000),
        if rng.below(2) == 0 { "true" } else { "false" },
        ["new", "paid", "shipped", "closed"][rng.below(4) as usize],
        u8::from(op == 0),
    );
}

/// A refresh file of `rows` orders.
fn refresh_csv(rows: u64) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut s = COLUMNS.join(",") + "\n";
    for id in 1..=rows {
        push_row(&mut s, &mut rng, id, 1, id);
    }
    s
}

/// A cycle: 60% updates, 25% inserts, 15% deletes, a fifth of the keys touched again.
fn cycle_csv(changes: u64, table_rows: u64) -> String {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut s = COLUMNS.join(",") + "\n";
    let mut touched = Vec::new();
    let mut next_new = table_rows + 1;
    for i in 0..changes {
        let again = !touched.is_empty() && rng.below(5) == 0;
        let kind = rng.below(100);
        let (id, op) = if again {
            (
                touched[rng.below(touched.len() as u64) as usize],
                if kind < 85 { 2 } else { 0 },
            )
        } else if kind < 60 {
            (1 + rng.below(table_rows), 2)
        } else if kind < 85 {
            next_new += 1;
            (next_new - 1, 1)
        } else {
            (1 + rng.below(table_rows), 0)
        };
        touched.push(id);
        push_row(&mut s, &mut rng, id, op, table_rows + 1 + i);
    }
    s
}

fn table_columns() -> Arc<Schema> {
    let d = DataType::Decimal128(38, 2);
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, true),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", d.clone(), true),
        Field::new("discount", d, true),
        Field::new("created_at", utc_micros(), true),
        Field::new("shipped_at", utc_micros(), true),
        Field::new("is_paid", DataType::Boolean, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn layout(refresh: bool) -> TableLayout {
    TableLayout {
        columns: table_columns(),
        keys: vec![0],
        op_column: "hvr_op".into(),
        delete_column: "is_deleted".into(),
        seq_column: "hvr_integ_seq".into(),
        keep_extras: false,
        refresh,
    }
}

fn settings(lake: &Path) -> Settings {
    Settings::from_sources(
        Some(&format!("target={} keep_files=true", lake.display())),
        &HashMap::new(),
    )
    .unwrap()
}

fn spec(dir: &Path, files: &[&str]) -> TableSpec {
    TableSpec {
        name: "orders".into(),
        base_name: "orders".into(),
        keys: vec!["order_id".into()],
        columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
        channel_columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
        files: files
            .iter()
            .map(|f| InputFile {
                name: f.to_string(),
                source: hvrlake::input::FileRef::Local(dir.join(f)),
                expected_rows: None,
            })
            .collect(),
        app_id: None,
        cycle: None,
        captured_ms: None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn decode(text: &str, refresh: bool) -> (Vec<RecordBatch>, TableLayout) {
    let dialect = settings(Path::new("/tmp")).csv;
    let f = CsvFile::open(text.as_bytes(), "bench.csv", &dialect, 2 << 20).unwrap();
    let l = layout(refresh);
    let plan: FileColumns = l.plan(&f.header, "bench.csv").unwrap();
    (f.decode(&l, &plan, 0).unwrap(), l)
}

fn benches(c: &mut Criterion) {
    // As an integrate runs (the huge-page arena); MIMALLOC_RESERVE_OS_MEMORY=0 leaves the arena
    // out, as a refresh runs.
    hvrlake::cli::tune_allocator(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refresh = refresh_csv(TABLE_ROWS);
    let cycle = cycle_csv(CYCLE_CHANGES, TABLE_ROWS);
    let dialect = settings(Path::new("/tmp")).csv;

    let mut g = c.benchmark_group("parse");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(refresh.len() as u64));
    g.bench_function("csv_1m_rows_typed", |b| {
        b.iter(|| decode(&refresh, true).0.len())
    });
    g.bench_function("infer_1m_rows", |b| {
        b.iter(|| {
            CsvFile::open(refresh.as_bytes(), "bench.csv", &dialect, 2 << 20)
                .unwrap()
                .infer()
                .unwrap()
                .len()
        })
    });
    g.finish();

    let (changes, l) = decode(&cycle, false);
    let mut g = c.benchmark_group("coalesce");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(CYCLE_CHANGES));
    for (name, plan) in [
        ("250k_changes_hash", coalesce::Plan::Hash),
        ("250k_changes_window", coalesce::Plan::Window),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let ctx = SessionContext::new();
                rt.block_on(coalesce::coalesce_with(
                    &ctx,
                    l.change_schema(),
                    changes.clone(),
                    &["order_id".into()],
                    None,
                    plan,
                ))
                .unwrap()
                .batches
                .len()
            })
        });
    }
    g.finish();

    // A 1,000,000-row table, written once by the refresh path; every iteration works on a copy.
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("0-orders.csv"), &refresh).unwrap();
    std::fs::write(files.join("1-orders.csv"), &cycle).unwrap();
    let base = work.path().join("base");
    rt.block_on(cycle::run(
        Kind::Refresh,
        vec![spec(&files, &["0-orders.csv"])],
        &settings(&base),
        |_| {},
    ))
    .unwrap();
    let fresh = || -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir_in(work.path()).unwrap();
        copy_dir(&base.join("orders"), &d.path().join("orders"));
        let p = d.path().to_path_buf();
        (d, p)
    };

    let mut g = c.benchmark_group("merge");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.throughput(Throughput::Elements(CYCLE_CHANGES));
    g.bench_function("250k_changes_into_1m_rows", |b| {
        b.iter_batched(
            fresh,
            |(_keep, lake)| {
                rt.block_on(async {
                    let url = url::Url::from_directory_path(lake.join("orders")).unwrap();
                    let table = table::open(&url, &HashMap::new()).await.unwrap();
                    let ctx = SessionContext::new();
                    let net = coalesce::coalesce(
                        &ctx,
                        l.change_schema(),
                        changes.clone(),
                        &["order_id".into()],
                        Some(&table),
                    )
                    .await
                    .unwrap();
                    hvrlake::mode::merge::apply(
                        table,
                        net,
                        table_columns(),
                        &["order_id".into()],
                        &settings(&lake).mode_options(),
                        None,
                    )
                    .await
                    .unwrap()
                    .1
                    .version
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("cycle");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.throughput(Throughput::Bytes(cycle.len() as u64));
    g.bench_function("integ_end_250k_into_1m_rows", |b| {
        b.iter_batched(
            fresh,
            |(_keep, lake)| {
                rt.block_on(cycle::run(
                    Kind::Integrate,
                    vec![spec(&files, &["1-orders.csv"])],
                    &settings(&lake),
                    |_| {},
                ))
                .unwrap()
                .len()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(pipeline_benches, benches);
criterion_main!(pipeline_benches);
