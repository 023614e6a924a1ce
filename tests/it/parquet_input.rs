//! Parquet as HVR 6 writes it (format v2: int96 timestamps, decimals, GZIP pages), made by
//! pyarrow so the bytes come from an independent writer.

use std::process::Command;

use crate::helpers::{Hvr, Table, row};

/// The Python with pyarrow that scripts/test prepares (HVRLAKE_TEST_PYTHON).
fn python() -> String {
    std::env::var("HVRLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn write_parquet(path: &std::path::Path, script: &str) {
    let full = format!(
        "import sys, decimal, datetime as dt\nimport pyarrow as pa, pyarrow.parquet as pq\nout = sys.argv[1]\n{script}\n"
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(full)
        .arg(path)
        .output()
        .expect("run python (set HVRLAKE_TEST_PYTHON, see scripts/test)");
    assert!(
        out.status.success(),
        "pyarrow failed (run through scripts/test): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hvr_parquet_v2_with_int96_and_gzip() {
    let h = Hvr::new();
    let t = Table::new(
        "p",
        &["id"],
        &[
            "id",
            "amount",
            "ts",
            "name",
            "hvr_op",
            "hvr_integ_seq",
            "is_deleted",
        ],
    );
    let script = r#"
def table(rows):
    cols = list(zip(*rows))
    return pa.table({
        "id": pa.array(cols[0], pa.int32()),
        "amount": pa.array([decimal.Decimal(x) if x else None for x in cols[1]], pa.decimal128(10, 2)),
        "ts": pa.array([dt.datetime.fromisoformat(x) if x else None for x in cols[2]], pa.timestamp("ns")),
        "name": pa.array(cols[3], pa.string()),
        "hvr_op": pa.array(cols[4], pa.int32()),
        "hvr_integ_seq": pa.array(cols[5], pa.string()),
        "is_deleted": pa.array(cols[6], pa.int32()),
    })
rows = [
    (1, "10.50", "2026-11-20 09:15:00.123456", "a", 1, "0A|1", 0),
    (2, None, None, None, 1, "0A|2", 0),
    (3, "3.00", "2026-01-01 00:00:00", "Müller", 1, "0A|3", 0),
]
pq.write_table(table(rows), out, compression="gzip", use_deprecated_int96_timestamps=True, row_group_size=2)
"#;
    write_parquet(&h.loc.path().join("1-p.parquet"), script);
    let out = h.ok("integ_end", &[&t], &["1-p.parquet"]);
    assert!(
        out.stdout.contains("p: rows_in=3 inserted=3"),
        "{}",
        out.stdout
    );
    assert_eq!(
        h.rows("p").rows,
        vec![
            row(&["1", "10.50", "2026-11-20 09:15:00.123456", "a"]),
            row(&["2", "NULL", "NULL", "NULL"]),
            row(&["3", "3.00", "2026-01-01 00:00:00", "Müller"]),
        ]
    );
    let script2 = r#"
rows = [
    (3, "3.00", "2026-01-01 00:00:00", "Müller", 0, "0B|2", 1),
    (1, "11.00", "2026-11-21 00:00:00", "a2", 2, "0B|1", 0),
    (3, "4.00", "2026-01-02 00:00:00", "gone", 2, "0B|1", 0),
]
cols = list(zip(*rows))
t = pa.table({
    "id": pa.array(cols[0], pa.int64()),
    "amount": pa.array([decimal.Decimal(x) for x in cols[1]], pa.decimal128(10, 2)),
    "ts": pa.array([dt.datetime.fromisoformat(x) for x in cols[2]], pa.timestamp("ns")),
    "name": pa.array(cols[3], pa.string()),
    "hvr_op": pa.array(cols[4], pa.int32()),
    "hvr_integ_seq": pa.array(cols[5], pa.string()),
    "is_deleted": pa.array(cols[6], pa.int32()),
})
pq.write_table(t, out, compression="gzip", use_deprecated_int96_timestamps=True)
"#;
    write_parquet(&h.loc.path().join("2-p.parquet"), script2);
    h.ok("integ_end", &[&t], &["2-p.parquet"]);
    assert_eq!(
        h.rows("p").rows,
        vec![
            row(&["1", "11.00", "2026-11-21 00:00:00", "a2"]),
            row(&["2", "NULL", "NULL", "NULL"])
        ]
    );
}
