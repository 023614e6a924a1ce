//! A channel's shape: many tables in one call, read and committed side by side, with
//! summaries in table order, nothing committed when one table's file is bad, the replication
//! latency from `HVR_TBL_CAP_TSTAMP`, and per file the cheaper of marking and rewriting.

use crate::helpers::{Hvr, Table, csv, row};

const COLS: &[&str] = &["id", "v", "hvr_op", "hvr_integ_seq"];
const TABLES: usize = 150;

fn tables() -> Vec<Table> {
    (0..TABLES)
        .map(|i| Table::new(&format!("t{i:03}"), &["id"], COLS))
        .collect()
}

/// The table names of the summary lines on `stdout`, in the order printed.
fn summary_order(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("hvrlake: "))
        .filter_map(|l| l.split_once(": ").map(|(_, rest)| rest))
        .filter_map(|l| l.split_once(':').map(|(t, _)| t.to_string()))
        .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_call_of_150_tables_with_one_bad_file_commits_nothing_and_names_it() {
    let h = Hvr::new();
    let ts = tables();
    let refs: Vec<&Table> = ts.iter().collect();
    let names: Vec<String> = ts.iter().map(|t| t.name.clone()).collect();
    let mut files = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let f = format!("0-{}.csv", t.name);
        let rows: Vec<_> = (1..=3)
            .map(|k| row(&[&k.to_string(), &format!("r{i}"), "1", "1"]))
            .collect();
        h.write(&f, csv(COLS, &rows));
        files.push(f);
    }
    let file_refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = h.ok("refr_write_end", &refs, &file_refs);
    assert_eq!(
        summary_order(&out.stdout),
        names,
        "summaries in table order"
    );
    for t in &names {
        assert_eq!(h.version(t), Some(0), "{t}: a new table is one commit");
    }

    // A cycle for every table; the 137th table's file has a key that is not a number.
    let mut files = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let f = format!("1-{}.csv", t.name);
        let key = if i == 136 { "x9" } else { "2" };
        h.write(
            &f,
            format!("id,v,hvr_op,hvr_integ_seq\n1,u{i},1,5\n{key},d,0,6\n"),
        );
        files.push(f);
    }
    let file_refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = h.call("integ_end", &refs, &file_refs);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with("F_JX0D03: ") && out.stderr.contains("1-t136.csv"),
        "names the file: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing committed: {}", out.stdout);
    for t in &names {
        assert_eq!(h.version(t), Some(0), "{t} stays at its version");
    }
    assert!(file_refs.iter().all(|f| h.has_file(f)), "every file stays");

    // Corrected, and called again with the capture times: all apply, in order, with latency.
    h.write(
        "1-t136.csv",
        "id,v,hvr_op,hvr_integ_seq\n1,u136,1,5\n2,d,0,6\n",
    );
    let captured = now_secs() - 30;
    let mut stamps: Vec<String> = (0..TABLES).map(|_| captured.to_string()).collect();
    // HVR's date-time form, its colons inside a colon list.
    stamps[1] = chrono::DateTime::from_timestamp(captured as i64, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let stamps = stamps.join(":");
    let out = h.call_with(
        "integ_end",
        &refs,
        &file_refs,
        Some(&h.full_userarg()),
        &[("HVR_TBL_CAP_TSTAMP", stamps.as_str())],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        summary_order(&out.stdout),
        names,
        "summaries in table order"
    );
    for line in out.stdout.lines().take(2) {
        let latency: f64 = line
            .split_once(" latency=")
            .unwrap_or_else(|| panic!("no latency: {line}"))
            .1
            .parse()
            .unwrap();
        assert!((30.0..300.0).contains(&latency), "{line}");
    }
    for (i, t) in names.iter().enumerate() {
        assert_eq!(
            h.rows(t).rows,
            vec![row(&["1", &format!("u{i}")]), row(&["3", &format!("r{i}")])],
            "{t}"
        );
    }
    let inspect = std::process::Command::new(env!("CARGO_BIN_EXE_hvrlake"))
        .args(["inspect", "--target", &h.target(), "t000"])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    let latency: f64 = inspect
        .split_once(" latency ")
        .and_then(|(_, l)| l.split('s').next())
        .unwrap_or_else(|| panic!("{inspect}"))
        .parse()
        .unwrap();
    assert!((30.0..300.0).contains(&latency), "{inspect}");
}

/// Keys `from..=to` with value `v`, as upserts.
fn upserts(from: u64, to: u64, v: &str, seq: u64) -> Vec<Vec<Option<String>>> {
    (from..=to)
        .map(|k| row(&[&k.to_string(), v, "1", &format!("{seq:x}")]))
        .collect()
}

/// A table with two data files (keys 1-100 and 1001-1100), then one cycle that deletes 80 of
/// the first file's rows and updates one row of the second: its `HVRLAKE_TIMINGS` stderr.
fn two_files_then_a_cycle(h: &Hvr, t: &Table) -> String {
    h.write("0-f.csv", csv(COLS, &upserts(1, 100, "a", 1)));
    h.ok("refr_write_end", &[t], &["0-f.csv"]);
    h.write("1-f.csv", csv(COLS, &upserts(1001, 1100, "a", 2)));
    h.ok("integ_end", &[t], &["1-f.csv"]);
    let mut rows: Vec<_> = (1..=80)
        .map(|k| row(&[&k.to_string(), "a", "0", "3"]))
        .collect();
    rows.push(row(&["1050", "b", "1", "4"]));
    h.write("2-f.csv", csv(COLS, &rows));
    let out = h.call_with(
        "integ_end",
        &[t],
        &["2-f.csv"],
        Some(&h.full_userarg()),
        &[("HVRLAKE_TIMINGS", "1")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let mut want: Vec<_> = (81..=100)
        .chain(1001..=1100)
        .map(|k| row(&[&k.to_string(), if k == 1050 { "b" } else { "a" }]))
        .collect();
    want.sort();
    assert_eq!(h.rows("f").rows, want);
    out.stderr
}

#[test]
fn per_file_a_merge_marks_the_few_changed_rows_and_rewrites_the_mostly_deleted_file() {
    let t = Table::new("f", &["id"], COLS);
    // By default: the file left with 20 of 100 rows is rewritten, the other marked.
    let h = Hvr::new();
    let stderr = two_files_then_a_cycle(&h, &t);
    assert!(
        stderr.contains("f: files before=2 scanned=2 skipped=0 rewritten=1 marked=1 removed=1"),
        "{stderr}"
    );
    // rewrite_share=1 always marks: both files keep their rows behind vectors.
    let mut h = Hvr::new();
    h.userarg = "rewrite_share=1".into();
    let stderr = two_files_then_a_cycle(&h, &t);
    assert!(
        stderr.contains("f: files before=2 scanned=2 skipped=0 rewritten=0 marked=2 removed=0"),
        "{stderr}"
    );
}

#[test]
fn twenty_tables_on_s3_side_by_side_with_their_requests_counted() {
    let h = Hvr::on(crate::helpers::Backend::S3);
    let ts: Vec<Table> = (0..20)
        .map(|i| Table::new(&format!("s{i:02}"), &["id"], COLS))
        .collect();
    let refs: Vec<&Table> = ts.iter().collect();
    let names: Vec<String> = ts.iter().map(|t| t.name.clone()).collect();
    for step in 0..2 {
        let files: Vec<String> = ts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let f = format!("{step}-{}.csv", t.name);
                let v = format!("v{step}_{i}");
                h.write(&f, csv(COLS, &upserts(1, 5, &v, step + 1)));
                f
            })
            .collect();
        let file_refs: Vec<&str> = files.iter().map(String::as_str).collect();
        let mode = if step == 0 {
            "refr_write_end"
        } else {
            "integ_end"
        };
        let out = h.call_with(
            mode,
            &refs,
            &file_refs,
            Some(&h.full_userarg()),
            &[("HVRLAKE_TIMINGS", "1")],
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(summary_order(&out.stdout), names);
        // Every table puts at least its data file and its commit.
        let requests: u64 = out
            .stderr
            .split_once("object-store requests=")
            .and_then(|(_, r)| r.split(' ').next())
            .unwrap_or_else(|| panic!("no request count: {}", out.stderr))
            .parse()
            .unwrap();
        assert!(requests >= 40, "{requests} requests: {}", out.stderr);
    }
    for (i, t) in names.iter().enumerate() {
        let want: Vec<_> = (1..=5)
            .map(|k| row(&[&k.to_string(), &format!("v1_{i}")]))
            .collect();
        assert_eq!(h.rows(t).rows, want, "{t}");
    }
}
