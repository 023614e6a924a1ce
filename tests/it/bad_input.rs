//! Bad input: exit 1 with one `F_JX0D03:` line naming the place, the table stays at its
//! last good version, and every input file stays where it was.

use crate::helpers::{Hvr, Table};

const HEADER: &str = "id,amount,note,hvr_op";

fn table() -> Table {
    Table::new("t", &["id"], &["id", "amount", "note", "hvr_op"])
}

/// A lake whose table `t` exists with typed columns, and a location.
fn setup() -> Hvr {
    let mut h = Hvr::new();
    h.userarg = "types=t.amount=decimal(10,2)".into();
    h.write("0-t.csv", format!("{HEADER}\n1,1.50,a,1\n2,2.50,b,1\n"));
    h.ok("refr_write_end", &[&table()], &["0-t.csv"]);
    assert!(h.version("t").is_some());
    h
}

/// Writes `files`, runs integ_end over them (plus a good file for a second table), and checks
/// the failure: exit 1, one line containing every `expect` part, nothing changed or removed.
fn fails(h: &Hvr, files: &[(&str, &[u8])], expect: &[&str]) {
    let good = Table::new("g", &["id"], &["id", "hvr_op"]);
    h.write("9-g.csv", "id,hvr_op\n1,1\n");
    for (name, content) in files {
        h.write(name, content);
    }
    let mut names: Vec<&str> = vec!["9-g.csv"];
    names.extend(files.iter().map(|(n, _)| *n));
    let before = h.rows("t");
    let version = h.version("t");
    let out = h.call("integ_end", &[&good, &table()], &names);
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
    assert!(lines[0].starts_with("F_JX0D03: "), "{}", lines[0]);
    for part in expect {
        assert!(
            lines[0].contains(part),
            "{:?} should contain {part:?}",
            lines[0]
        );
    }
    assert_eq!(h.version("t"), version, "table t unchanged");
    assert_eq!(h.rows("t"), before);
    assert_eq!(
        h.version("g"),
        None,
        "no table is written when any input is bad"
    );
    for n in names {
        assert!(h.has_file(n), "{n} still there");
    }
}

#[test]
fn unclosed_quote() {
    fails(
        &setup(),
        &[(
            "1-t.csv",
            b"id,amount,note,hvr_op\n3,1.00,ok,1\n4,1.00,\"never closed,1\n5,1.00,x,1\n",
        )],
        &["1-t.csv:3:8:", "quoted field is never closed"],
    );
}

#[test]
fn wrong_column_count() {
    fails(
        &setup(),
        &[("1-t.csv", b"id,amount,note,hvr_op\n3,1.00,ok,1\n4,1.00,1\n")],
        &["1-t.csv:3:1:", "expected 4 fields"],
    );
}

#[test]
fn value_that_does_not_fit_the_type() {
    fails(
        &setup(),
        &[(
            "1-t.csv",
            b"id,amount,note,hvr_op\n3,1.00,ok,1\n4,12.345,x,1\n",
        )],
        &[
            "1-t.csv:3:3:",
            "column 'amount'",
            "\"12.345\"",
            "decimal(10,2)",
        ],
    );
    fails(
        &setup(),
        &[("1-t.csv", b"id,amount,note,hvr_op\nseven,1.00,ok,1\n")],
        &["1-t.csv:2:1:", "column 'id'", "int64"],
    );
}

#[test]
fn invalid_utf8() {
    fails(
        &setup(),
        &[(
            "1-t.csv",
            b"id,amount,note,hvr_op\n3,1.00,ok,1\n4,1.00,b\xffd,1\n",
        )],
        &["1-t.csv:3:9:", "invalid UTF-8"],
    );
}

#[test]
fn unknown_op() {
    fails(
        &setup(),
        &[(
            "1-t.csv",
            b"id,amount,note,hvr_op\n3,1.00,ok,1\n4,1.00,x,22\n",
        )],
        &["1-t.csv:3:10:", "hvr_op 22"],
    );
}

#[test]
fn missing_key_column() {
    fails(
        &setup(),
        &[("1-t.csv", b"amount,note,hvr_op\n1.00,ok,1\n")],
        &["1-t.csv", "key column 'id' is missing"],
    );
}

#[test]
fn null_key() {
    fails(
        &setup(),
        &[(
            "1-t.csv",
            b"id,amount,note,hvr_op\n3,1.00,ok,1\n,1.00,x,1\n",
        )],
        &["1-t.csv:3:1:", "key column 'id' is NULL"],
    );
}

#[test]
fn missing_and_empty_files() {
    let h = setup();
    let good = Table::new("g", &["id"], &["id", "hvr_op"]);
    h.write("9-g.csv", "id,hvr_op\n1,1\n");
    let out = h.call("integ_end", &[&good, &table()], &["9-g.csv", "1-t.csv"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("1-t.csv: file does not exist"),
        "{}",
        out.stderr
    );
    assert!(h.has_file("9-g.csv"));
    assert_eq!(h.version("g"), None);
    fails(&h, &[("2-t.csv", b"")], &["2-t.csv: file is empty"]);
}

#[test]
fn missing_target() {
    let h = setup();
    h.write("1-t.csv", "id,amount,note,hvr_op\n3,1.00,ok,1\n");
    let out = h.call_with("integ_end", &[&table()], &["1-t.csv"], None, &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("F_JX0D03: setting 'target' is missing"),
        "{}",
        out.stderr
    );
    assert!(h.has_file("1-t.csv"));
    let out = h.call_with("integ_end", &[&table()], &["1-t.csv"], Some("target="), &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("'target'"), "{}", out.stderr);
}

#[test]
fn base_name_that_leaves_the_target() {
    let h = setup();
    let evil = Table::new("t", &["id"], &["id", "amount", "note", "hvr_op"]).base("../x");
    h.write("1-t.csv", "id,amount,note,hvr_op\n3,1.00,ok,1\n");
    let out = h.call("integ_end", &[&evil], &["1-t.csv"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("table name '../x'"), "{}", out.stderr);
    assert!(h.has_file("1-t.csv"));
    assert!(!h.lake.path().parent().unwrap().join("x").exists());
}

#[test]
fn credentials_in_the_file_location_are_never_printed() {
    let h = setup();
    let out = h.call_with(
        "integ_end",
        &[&table()],
        &["1-t.csv"],
        Some(&h.full_userarg()),
        &[("HVR_FILE_LOC", "s3s://AKIAXX:sup3rs3cret@bucket/dir")],
    );
    assert_eq!(out.code, 1);
    assert!(
        !out.stderr.contains("sup3rs3cret") && !out.stdout.contains("sup3rs3cret"),
        "{}",
        out.stderr
    );
}

#[test]
fn file_cut_short_against_hvr_file_nrows() {
    let h = setup();
    let version = h.version("t").unwrap();
    h.write("1-t.csv", "id,amount,note,hvr_op\n3,1.00,ok,1\n");
    let out = h.call_with(
        "integ_end",
        &[&table()],
        &["1-t.csv"],
        Some(&h.full_userarg()),
        &[("HVR_FILE_NROWS", "2")],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("1-t.csv: HVR_FILE_NROWS says 2 rows but the file has 1"),
        "{}",
        out.stderr
    );
    assert!(h.has_file("1-t.csv"));
    assert_eq!(h.version("t"), Some(version));
    let out = h.call_with(
        "integ_end",
        &[&table()],
        &["1-t.csv"],
        Some(&h.full_userarg()),
        &[("HVR_FILE_NROWS", "1")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(h.version("t"), Some(version + 1));
}

/// Every file (not directory) under `dir`, recursively, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn refresh_with_a_bad_file_leaves_every_table_and_no_data_file_behind() {
    // A refresh streams data files while it reads: a bad file in the second table must
    // leave the first table's directory exactly as it was, and create no new table.
    let h = setup();
    let before_files = files_under(&h.table_dir("t"));
    let before_rows = h.rows("t");
    let version = h.version("t");
    let big: String = (0..5000)
        .map(|i| format!("{i},{i}.25,row {i},1\n"))
        .collect();
    h.write("1-t.csv", format!("{HEADER}\n{big}"));
    let u = Table::new("u", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-u.csv", "id,v,hvr_op\n1,a,1\n2,\"never closed,1\n");
    let out = h.call("refr_write_end", &[&table(), &u], &["1-t.csv", "1-u.csv"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("F_JX0D03: ") && out.stderr.contains("1-u.csv:3:3"),
        "{}",
        out.stderr
    );
    assert_eq!(h.version("t"), version);
    assert_eq!(h.rows("t"), before_rows);
    assert_eq!(
        files_under(&h.table_dir("t")),
        before_files,
        "no data file left behind"
    );
    assert!(
        !h.table_dir("u").exists(),
        "no directory for the table never created"
    );
    assert!(h.has_file("1-t.csv") && h.has_file("1-u.csv"));
}
