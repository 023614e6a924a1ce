//! End-to-end: the binary driven exactly as HVR's AgentPlugin drives it, tables read back
//! and compared with rows computed independently in the test.

use crate::helpers::{Backend, Change, Hvr, Model, Rng, Table, csv, row};

/// The end-to-end tests of the core, once per place the lake and file location can be:
/// local directories, S3 (moto) and ADLS/Blob (Azurite), both started by `scripts/test`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod file {
            $(#[test] fn $name() { super::$name(super::Hvr::on(super::Backend::File)) })*
        }
        mod s3 {
            $(#[test] fn $name() { super::$name(super::Hvr::on(super::Backend::S3)) })*
        }
        mod azure {
            $(#[test] fn $name() { super::$name(super::Hvr::on(super::Backend::Azure)) })*
        }
    };
}

on_every_store!(
    refresh_then_cycles_on_two_tables_match_a_plain_replay,
    key_updates_truncates_absent_deletes_and_piped_seqs,
    soft_delete_flag_alone_deletes_and_in_doubt_ops_apply,
    composite_keys_types_nulls_and_text_survive,
    refresh_of_a_table_with_no_file_empties_it,
    files_in_table_folders_and_long_environment,
    partial_key_deletes_remove_every_matching_row,
);

const ORDER_COLS: &[&str] = &[
    "order_id",
    "customer",
    "amount",
    "status",
    "hvr_op",
    "hvr_integ_seq",
    "is_deleted",
];

fn orders() -> Table {
    Table::new("orders", &["order_id"], ORDER_COLS)
}

fn lines() -> Table {
    Table::new(
        "order_lines",
        &["order_id", "line_no"],
        &[
            "order_id",
            "line_no",
            "qty",
            "note",
            "hvr_op",
            "hvr_integ_seq",
        ],
    )
    .base("sales.order_lines")
}

/// Rows with op, seq and flag appended, as HVR writes them.
fn change_rows(changes: &[Change], flag: bool) -> Vec<Vec<Option<String>>> {
    changes
        .iter()
        .map(|c| {
            let mut r = c.values.clone();
            r.push(Some(c.op.to_string()));
            r.push(Some(c.seq.clone()));
            if flag {
                r.push(Some(if c.op % 10 == 0 { "1" } else { "0" }.to_string()));
            }
            r
        })
        .collect()
}

fn ch(op: i64, seq: &str, values: &[&str]) -> Change {
    Change {
        op,
        seq: seq.to_string(),
        values: row(values),
    }
}

fn refresh_then_cycles_on_two_tables_match_a_plain_replay(h: Hvr) {
    let (o, l) = (orders(), lines());
    let mut mo = Model::default();
    let mut ml = Model::default();
    let refresh_o = vec![
        row(&["1", "Ann", "10.50", "new"]),
        row(&["2", "Bob", "3.00", "NULL"]),
        row(&["3", "Cy", "0.99", "paid"]),
    ];
    let refresh_l = vec![
        row(&["1", "1", "2", "a"]),
        row(&["1", "2", "5", "NULL"]),
        row(&["2", "1", "1", "b"]),
    ];
    let ref_rows = |rows: &[Vec<Option<String>>], flag: bool| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r = r.clone();
                r.push(Some("1".into()));
                r.push(Some(format!("{:x}", i + 1)));
                if flag {
                    r.push(Some("0".into()));
                }
                r
            })
            .collect::<Vec<_>>()
    };
    h.write("0-orders.csv", csv(ORDER_COLS, &ref_rows(&refresh_o, true)));
    h.write(
        "0-order_lines.csv",
        csv(
            &[
                "order_id",
                "line_no",
                "qty",
                "note",
                "hvr_op",
                "hvr_integ_seq",
            ],
            &ref_rows(&refresh_l, false),
        ),
    );
    h.ok("refr_write_begin", &[&o, &l], &[]);
    let out = h.ok(
        "refr_write_end",
        &[&o, &l],
        &["0-orders.csv", "0-order_lines.csv"],
    );
    assert!(
        out.stdout.contains("orders: rows_in=3 inserted=3"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("sales.order_lines: rows_in=3"),
        "{}",
        out.stdout
    );
    mo.refresh(&[0], &refresh_o);
    ml.refresh(&[0, 1], &refresh_l);
    assert_eq!(h.rows("orders").rows, mo.sorted());
    assert_eq!(h.rows("sales.order_lines").rows, ml.sorted());
    assert!(!h.has_file("0-orders.csv"), "processed files are removed");

    let mut rng = Rng(42);
    for cycle in 1..=4u64 {
        let mut co = Vec::new();
        let mut cl = Vec::new();
        for i in 0..30u64 {
            let seq = format!("{:020X}|{:04X}", cycle * 1000 + i, rng.below(3));
            let id = (1 + rng.below(8)).to_string();
            let op = [0, 1, 2, 2, 1][rng.below(5) as usize];
            let amount = format!("{}.{:02}", rng.below(1000), rng.below(100));
            co.push(ch(
                op,
                &seq,
                &[
                    &id,
                    &format!("cust \"{}\", ü{}", i, cycle),
                    &amount,
                    if i % 3 == 0 { "NULL" } else { "open" },
                ],
            ));
            let line = (1 + rng.below(3)).to_string();
            cl.push(ch(
                op,
                &seq,
                &[
                    &id,
                    &line,
                    &rng.below(9).to_string(),
                    if i % 4 == 0 { "line\nbreak" } else { "x" },
                ],
            ));
        }
        // Two files per table, rows shuffled across them: the seq decides, not the order.
        let (a, b) = co.split_at(co.len() / 2);
        let fa = format!("{cycle}a-orders.csv");
        let fb = format!("{cycle}b-orders.csv");
        h.write(&fa, csv(ORDER_COLS, &change_rows(b, true)));
        h.write(&fb, csv(ORDER_COLS, &change_rows(a, true)));
        let fl = format!("{cycle}-order_lines.csv");
        h.write(
            &fl,
            csv(
                &[
                    "order_id",
                    "line_no",
                    "qty",
                    "note",
                    "hvr_op",
                    "hvr_integ_seq",
                ],
                &change_rows(&cl, false),
            ),
        );
        h.ok("integ_begin", &[&o, &l], &[]);
        h.ok("integ_end", &[&o, &l], &[&fa, &fb, &fl]);
        mo.apply(&[0], &co);
        ml.apply(&[0, 1], &cl);
        assert_eq!(
            h.rows("orders").rows,
            mo.sorted(),
            "orders after cycle {cycle}"
        );
        assert_eq!(
            h.rows("sales.order_lines").rows,
            ml.sorted(),
            "lines after cycle {cycle}"
        );
    }
    let cols = h.rows("orders").columns;
    assert_eq!(
        cols,
        vec!["order_id", "customer", "amount", "status"],
        "hvr_* columns are not written"
    );
    assert!(
        h.table_url("sales.order_lines")
            .path()
            .ends_with("/sales/order_lines/")
            && h.version("sales.order_lines").is_some(),
        "sch.T lives at <target>/sch/T"
    );
}

fn key_updates_truncates_absent_deletes_and_piped_seqs(h: Hvr) {
    let o = orders();
    let mut m = Model::default();
    let c1 = vec![
        ch(1, "1|1", &["1", "a", "1.00", "x"]),
        ch(1, "1|2", &["2", "b", "2.00", "x"]),
        ch(0, "1|3", &["99", "NULL", "NULL", "NULL"]), // delete of an absent key
        ch(3, "1|4", &["2", "b", "2.00", "x"]),        // key update: old key...
        ch(2, "1|5", &["20", "b", "2.00", "moved"]),   // ...then the new row
        ch(4, "1|6", &["1", "a", "1.00", "x"]),        // before-image: ignored
        ch(2, "1|7", &["1", "a2", "1.50", "y"]),
    ];
    h.write("1-orders.csv", csv(ORDER_COLS, &change_rows(&c1, true)));
    h.ok("integ_end", &[&o], &["1-orders.csv"]);
    m.apply(&[0], &c1);
    assert_eq!(h.rows("orders").rows, m.sorted());
    assert_eq!(m.rows.len(), 2);

    // Truncate in mid-cycle: what came before it is gone, what follows stays.
    let c2 = vec![
        ch(1, "2|1", &["3", "c", "3.00", "x"]),
        ch(5, "2|2", &["NULL", "NULL", "NULL", "NULL"]),
        ch(1, "2|3", &["4", "d", "4.00", "x"]),
        ch(2, "2|10", &["4", "d2", "4.50", "z"]), // 2|10 > 2|3 as numbers, < as text
        ch(1, "2|4", &["5", "e", "5.00", "x"]),
    ];
    h.write("2-orders.csv", csv(ORDER_COLS, &change_rows(&c2, true)));
    let out = h.ok("integ_end", &[&o], &["2-orders.csv"]);
    m.apply(&[0], &c2);
    assert_eq!(h.rows("orders").rows, m.sorted(), "{}", out.stdout);
    assert_eq!(
        m.sorted(),
        vec![
            row(&["4", "d2", "4.50", "z"]),
            row(&["5", "e", "5.00", "x"])
        ]
    );
}

fn soft_delete_flag_alone_deletes_and_in_doubt_ops_apply(h: Hvr) {
    let t = Table::new("t", &["id"], &["id", "v", "is_deleted"]);
    h.write("1-t.csv", "id,v,is_deleted\n1,a,0\n2,b,0\n3,c,0\n");
    h.ok("integ_end", &[&t], &["1-t.csv"]);
    h.write("2-t.csv", "id,v,is_deleted\n2,b,1\n3,c2,0\n");
    h.ok("integ_end", &[&t], &["2-t.csv"]);
    assert_eq!(h.rows("t").rows, vec![row(&["1", "a"]), row(&["3", "c2"])]);

    let u = Table::new("u", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-u.csv", "id,v,hvr_op\n1,a,11\n2,b,12\n3,c,1\n3,c,10\n");
    h.ok("integ_end", &[&u], &["1-u.csv"]);
    assert_eq!(h.rows("u").rows, vec![row(&["1", "a"]), row(&["2", "b"])]);
}

fn composite_keys_types_nulls_and_text_survive(h: Hvr) {
    let t = Table::new(
        "m",
        &["a", "b"],
        &["a", "b", "ts", "d", "flag", "txt", "hvr_op"],
    );
    let text = "quote \" comma , newline \n tab \t 東京 Müller";
    let rows = vec![
        row(&[
            "1",
            "x",
            "2026-11-20 09:15:00.5",
            "2026-01-31",
            "true",
            text,
            "1",
        ]),
        row(&["1", "y", "NULL", "NULL", "NULL", "", "1"]),
        row(&[
            "2",
            "x",
            "2026-11-20 09:15:00",
            "2000-02-29",
            "false",
            "NULL",
            "1",
        ]),
    ];
    h.write(
        "1-m.csv",
        csv(&["a", "b", "ts", "d", "flag", "txt", "hvr_op"], &rows),
    );
    h.ok("integ_end", &[&t], &["1-m.csv"]);
    let got = h.rows("m");
    assert_eq!(got.columns, vec!["a", "b", "ts", "d", "flag", "txt"]);
    let want: Vec<Vec<Option<String>>> = vec![
        row(&[
            "1",
            "x",
            "2026-11-20 09:15:00.500",
            "2026-01-31",
            "true",
            text,
        ]),
        row(&["1", "y", "NULL", "NULL", "NULL", ""]),
        row(&[
            "2",
            "x",
            "2026-11-20 09:15:00",
            "2000-02-29",
            "false",
            "NULL",
        ]),
    ];
    assert_eq!(got.rows, want);
}

fn refresh_of_a_table_with_no_file_empties_it(h: Hvr) {
    let (o, l) = (orders(), lines());
    h.write(
        "1-orders.csv",
        "order_id,customer,amount,status,hvr_op,hvr_integ_seq,is_deleted\n1,a,1.00,x,1,1,0\n",
    );
    h.write(
        "1-order_lines.csv",
        "order_id,line_no,qty,note,hvr_op,hvr_integ_seq\n1,1,1,n,1,1\n",
    );
    h.ok(
        "refr_write_end",
        &[&o, &l],
        &["1-orders.csv", "1-order_lines.csv"],
    );
    assert_eq!(h.rows("sales.order_lines").rows.len(), 1);
    h.write(
        "2-orders.csv",
        "order_id,customer,amount,status,hvr_op,hvr_integ_seq,is_deleted\n7,g,7.00,x,1,1,0\n",
    );
    let out = h.ok("refr_write_end", &[&o, &l], &["2-orders.csv"]);
    assert_eq!(h.rows("orders").rows, vec![row(&["7", "g", "7.00", "x"])]);
    assert!(
        h.rows("sales.order_lines").rows.is_empty(),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("sales.order_lines: rows_in=0 inserted=0 updated=0 deleted=1"),
        "{}",
        out.stdout
    );
}

fn files_in_table_folders_and_long_environment(mut h: Hvr) {
    h.userarg = "file_pattern={hvr_tbl_name}/{hvr_integ_tstamp}.csv".into();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op"]);
    let names: Vec<String> = (0..40).map(|i| format!("t/2026112215{i:04}.csv")).collect();
    for (i, n) in names.iter().enumerate() {
        h.write(n, format!("id,v,hvr_op\n{i},v{i},1\n"));
    }
    // HVR cuts long values with "..." and gives the full ones in a JSON file.
    let long = h.loc.path().join("long.json");
    std::fs::write(
        &long,
        serde_json::json!({ "HVR_FILE_NAMES": names.join(":") }).to_string(),
    )
    .unwrap();
    let refs: Vec<&str> = names.iter().take(2).map(String::as_str).collect();
    let mut cut = refs.join(":");
    cut.push_str("...");
    let userarg = h.full_userarg();
    let out = h.call_with(
        "integ_end",
        &[&t],
        &[],
        Some(&userarg),
        &[
            ("HVR_FILE_NAMES", &cut),
            ("HVR_LONG_ENVIRONMENT", long.to_str().unwrap()),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(h.rows("t").rows.len(), 40);
    assert!(!h.has_file(&names[39]));
}

#[test]
fn unknown_modes_exit_2_silently() {
    let h = Hvr::new();
    for mode in [
        "cap_begin",
        "cap_end",
        "refr_read_begin",
        "refr_read_end",
        "some_future_mode",
    ] {
        let out = h.call(mode, &[&orders()], &[]);
        assert_eq!(out.code, 2, "{mode}");
        assert_eq!(out.stdout, "", "{mode}");
        assert_eq!(out.stderr, "", "{mode}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_hvrlake"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for word in [
        "refr_write_end",
        "integ_end",
        "target",
        "csv_null",
        "file_pattern",
        "HVRLAKE_",
    ] {
        assert!(text.contains(word), "--help mentions {word}");
    }
}

fn partial_key_deletes_remove_every_matching_row(h: Hvr) {
    let t = Table::new(
        "bseg",
        &["bukrs", "belnr", "buzei"],
        &["bukrs", "belnr", "buzei", "amt", "hvr_op", "hvr_integ_seq"],
    );
    let cols = ["bukrs", "belnr", "buzei", "amt", "hvr_op", "hvr_integ_seq"];
    let refresh: Vec<_> = [
        ("A", "1", "1"),
        ("A", "1", "2"),
        ("A", "2", "1"),
        ("B", "1", "1"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (a, b, c))| row(&[a, b, c, "5", "1", &format!("{:x}", i + 1)]))
    .collect();
    h.write("0-bseg.csv", csv(&cols, &refresh));
    h.ok("refr_write_end", &[&t], &["0-bseg.csv"]);
    // In one cycle: insert A/1/3, then delete everything of document A/1 (buzei absent),
    // then insert A/1/4 after it; B/1/1 is untouched and A/2/1 updated.
    let cycle = vec![
        row(&["A", "1", "3", "7", "1", "10"]),
        row(&["A", "1", "NULL", "NULL", "8", "11"]),
        row(&["A", "1", "4", "8", "1", "12"]),
        row(&["A", "2", "1", "9", "2", "13"]),
    ];
    h.write("1-bseg.csv", csv(&cols, &cycle));
    h.ok("integ_end", &[&t], &["1-bseg.csv"]);
    assert_eq!(
        h.rows("bseg").rows,
        vec![
            row(&["A", "1", "4", "8"]),
            row(&["A", "2", "1", "9"]),
            row(&["B", "1", "1", "5"])
        ]
    );
}

#[test]
fn refresh_checks_the_types_it_guessed_from_a_sample_against_every_value() {
    // Pieces of 64 bytes: the guess comes from the first 8 pieces, and the last rows bring a
    // text value, a larger decimal scale and the only non-NULL value of a column.
    let timings = vec![("HVRLAKE_TIMINGS".to_string(), "1".to_string())];
    let h = Hvr {
        userarg: "chunk_bytes=64".into(),
        env: timings.clone(),
        ..Hvr::new()
    };
    let cols = ["k", "n", "d", "late", "same", "ts", "hvr_op"];
    let t = Table::new("g", &["k"], &cols);
    let mut rows: Vec<Vec<Option<String>>> = (0..300)
        .map(|i| {
            let (k, twice) = (i.to_string(), (i * 2).to_string());
            row(&[&k, &k, "1.5", "NULL", &twice, "2026-01-01 10:00:00", "1"])
        })
        .collect();
    rows.push(row(&[
        "300",
        "x12",
        "2.125",
        "2026-01-31",
        "7",
        "soon",
        "1",
    ]));
    h.write("1-g.csv", csv(&cols, &rows));
    let out = h.ok("refr_write_end", &[&t], &["1-g.csv"]);
    assert!(out.stderr.contains("did not hold"), "{}", out.stderr);
    let want = [
        "k:Int64",
        "n:Utf8",
        "d:Decimal128(38, 3)",
        "late:Date32",
        "same:Int64",
        "ts:Utf8",
    ];
    assert_eq!(h.types("g"), want);
    let got = h.rows("g");
    assert_eq!(got.rows.len(), 301);
    assert!(
        got.rows
            .contains(&row(&["300", "x12", "2.125", "2026-01-31", "7", "soon"]))
    );
    let five = row(&["5", "5", "1.500", "NULL", "10", "2026-01-01 10:00:00"]);
    assert!(got.rows.contains(&five));

    // Where the guess holds, the types are the same as a full read gives.
    let h2 = Hvr {
        userarg: "chunk_bytes=64".into(),
        env: timings,
        ..Hvr::new()
    };
    let rows: Vec<Vec<Option<String>>> = (0..300)
        .map(|i| {
            let k = i.to_string();
            row(&[&k, "t", "1.25", "NULL", &k, "2026-01-01", "1"])
        })
        .collect();
    h2.write("1-g.csv", csv(&cols, &rows));
    let out = h2.ok("refr_write_end", &[&t], &["1-g.csv"]);
    assert!(!out.stderr.contains("did not hold"), "{}", out.stderr);
    let want = [
        "k:Int64",
        "n:Utf8",
        "d:Decimal128(38, 2)",
        "late:Utf8",
        "same:Int64",
        "ts:Date32",
    ];
    assert_eq!(h2.types("g"), want);
    assert_eq!(h2.rows("g").rows.len(), 300);

    // Guessed numbers and booleans are decoded by inference's rules: a late value that the
    // plain parsers take but inference types otherwise (an identifier with a leading zero, a
    // decimal with a trailing zero past the guessed scale, a boolean written as 1) still
    // sends the refresh through the full read.
    let cols3 = ["k", "id", "d", "b", "hvr_op"];
    let t3 = Table::new("s", &["k"], &cols3);
    for (late, want) in [
        (
            ["007", "1.25", "true"],
            ["id:Utf8", "d:Decimal128(38, 2)", "b:Boolean"],
        ),
        (
            ["7", "1.250", "true"],
            ["id:Int64", "d:Decimal128(38, 3)", "b:Boolean"],
        ),
        (
            ["7", "1.25", "1"],
            ["id:Int64", "d:Decimal128(38, 2)", "b:Utf8"],
        ),
    ] {
        // A new table each time: a refresh keeps an existing table's types.
        let h3 = Hvr {
            userarg: "chunk_bytes=64".into(),
            env: vec![("HVRLAKE_TIMINGS".to_string(), "1".to_string())],
            ..Hvr::new()
        };
        let mut rows: Vec<Vec<Option<String>>> = (0..300)
            .map(|i| {
                let k = i.to_string();
                let b = if i % 2 == 0 { "true" } else { "FALSE" };
                row(&[&k, &k, "2.50", b, "1"])
            })
            .collect();
        rows.push(row(&["300", late[0], late[1], late[2], "1"]));
        h3.write("1-s.csv", csv(&cols3, &rows));
        let out = h3.ok("refr_write_end", &[&t3], &["1-s.csv"]);
        assert!(
            out.stderr.contains("did not hold"),
            "{late:?}: {}",
            out.stderr
        );
        let types = h3.types("s");
        assert_eq!(types[1..], want, "{late:?}");
        let got = h3.rows("s");
        assert_eq!(got.rows.len(), 301, "{late:?}");
        assert!(
            got.rows.iter().any(|r| r[1].as_deref() == Some(late[0])),
            "{late:?}: {:?}",
            &got.rows[..3]
        );
    }
}

/// The `add` and `remove` actions of one commit of a table.
fn commit_actions(h: &Hvr, base: &str, version: u64) -> (usize, usize) {
    let log = h
        .table_dir(base)
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |kind: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{{\"{kind}\"")))
            .count()
    };
    (count("add"), count("remove"))
}

#[test]
fn integrate_rewrites_only_the_files_that_hold_a_changed_key() {
    // Copy-on-write: the files that hold a changed key are rewritten.
    let mut h = Hvr::new();
    h.userarg = "deletion_vectors=false".into();
    let cols = ["k", "v", "hvr_op", "hvr_integ_seq"];
    let t = Table::new("f", &["k"], &cols);
    // Two refresh files of keys 1-100 and 1001-1100 → at least two data files? One writer
    // per core: write them as two cycles instead, so each range is its own file.
    let rows = |from: u64| -> Vec<Vec<Option<String>>> {
        (from..from + 100)
            .map(|k| row(&[&k.to_string(), "a", "1", &format!("{k:x}")]))
            .collect()
    };
    h.write("1-f.csv", csv(&cols, &rows(1)));
    h.ok("integ_end", &[&t], &["1-f.csv"]);
    h.write("2-f.csv", csv(&cols, &rows(1001)));
    h.ok("integ_end", &[&t], &["2-f.csv"]);
    let v = h.version("f").unwrap();
    assert_eq!(
        commit_actions(&h, "f", v),
        (1, 0),
        "an insert-only cycle removes nothing"
    );

    // New keys only: no file is rewritten.
    h.write("3-f.csv", csv(&cols, &[row(&["5000", "new", "1", "ff00"])]));
    h.ok("integ_end", &[&t], &["3-f.csv"]);
    let v = h.version("f").unwrap();
    assert_eq!(commit_actions(&h, "f", v), (1, 0));

    // An update of key 7 and a delete of key 1050: exactly the two files holding them.
    h.write(
        "4-f.csv",
        csv(
            &cols,
            &[
                row(&["7", "b", "2", "ff01"]),
                row(&["1050", "a", "0", "ff02"]),
            ],
        ),
    );
    let userarg = h.full_userarg();
    let timed = [("HVRLAKE_TIMINGS", "1")];
    let out = h.call_with("integ_end", &[&t], &["4-f.csv"], Some(&userarg), &timed);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("inserted=0 updated=1 deleted=1"),
        "{}",
        out.stdout
    );
    // The merge's metrics: of the three data files, the one with key 5000 is skipped by its
    // statistics, the other two are read and rewritten.
    assert!(
        out.stderr
            .contains("f: files before=3 scanned=2 skipped=1 rewritten=2 marked=0 removed=2"),
        "{}",
        out.stderr
    );
    let v = h.version("f").unwrap();
    let (adds, removes) = commit_actions(&h, "f", v);
    assert_eq!(removes, 2);
    assert!((1..=3).contains(&adds), "{adds} files added");
    let got = h.rows("f");
    assert_eq!(got.rows.len(), 200);
    assert!(got.rows.contains(&row(&["7", "b"])));
    assert!(!got.rows.iter().any(|r| r[0].as_deref() == Some("1050")));
    assert!(got.rows.contains(&row(&["5000", "new"])));
}

/// Each data page's encoding in column `column` of every data file under a local table.
fn page_encodings(h: &Hvr, base: &str, column: &str) -> Vec<parquet::basic::Encoding> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = Vec::new();
    for entry in std::fs::read_dir(h.table_dir(base)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let c = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == column)
            .unwrap();
        for g in 0..reader.num_row_groups() {
            for page in reader
                .get_row_group(g)
                .unwrap()
                .get_column_page_reader(c)
                .unwrap()
            {
                let page = page.unwrap();
                if page.page_type() == parquet::basic::PageType::DATA_PAGE {
                    out.push(page.encoding());
                }
            }
        }
    }
    out
}

/// Integer and timestamp columns go into data files DELTA_BINARY_PACKED and free text that
/// outgrows the dictionary DELTA_LENGTH_BYTE_ARRAY, by a refresh and by a merge that
/// rewrites a file; `plain_encodings=true` writes PLAIN (and dictionaries) only, for older
/// readers. Both read back the same rows.
#[test]
fn numbers_and_text_are_delta_encoded_unless_plain_encodings_is_set() {
    use parquet::basic::Encoding::{
        DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, PLAIN, RLE_DICTIONARY,
    };
    let cols = ["k", "n", "at", "v", "note", "hvr_op", "hvr_integ_seq"];
    let t = Table::new("t", &["k"], &cols);
    let rows: Vec<_> = (0..500u64)
        .map(|k| {
            let at = format!("2026-03-{:02} 10:{:02}:00", 1 + k % 28, k % 60);
            let n = (k * 7919 % 1000).to_string();
            // 500 distinct notes of 300 bytes outgrow the text dictionary (128 KB).
            let note = format!("{k:0300}");
            row(&[
                &k.to_string(),
                &n,
                &at,
                "x",
                &note,
                "1",
                &format!("{k:04x}"),
            ])
        })
        .collect();
    let update = [row(&[
        "7",
        "-5",
        "2026-04-01 00:00:00",
        "y",
        "",
        "2",
        "ff00",
    ])];
    let mut seen = Vec::new();
    for plain in [false, true] {
        let mut h = Hvr::new();
        if plain {
            h.userarg = "plain_encodings=true".into();
        }
        h.write("1-t.csv", csv(&cols, &rows));
        h.ok("refr_write_end", &[&t], &["1-t.csv"]);
        h.write("2-t.csv", csv(&cols, &update));
        let out = h.ok("integ_end", &[&t], &["2-t.csv"]);
        assert!(out.stdout.contains("updated=1"), "{}", out.stdout);
        let want = if plain { PLAIN } else { DELTA_BINARY_PACKED };
        for c in ["k", "n", "at"] {
            let encodings = page_encodings(&h, "t", c);
            // The refresh's file and the merge's rewrite of it.
            assert!(encodings.len() >= 2, "{c}: {encodings:?}");
            assert!(encodings.iter().all(|e| *e == want), "{c}: {encodings:?}");
        }
        assert_eq!(page_encodings(&h, "t", "v")[0], RLE_DICTIONARY);
        let notes = page_encodings(&h, "t", "note");
        let spilled = if plain {
            PLAIN
        } else {
            DELTA_LENGTH_BYTE_ARRAY
        };
        assert!(notes.contains(&spilled), "{notes:?}");
        let got = h.rows("t");
        assert_eq!(got.rows.len(), 500);
        let updated = row(&["7", "-5", "2026-04-01 00:00:00", "y", ""]);
        assert!(got.rows.contains(&updated), "{:?}", &got.rows[..3]);
        assert!(got.rows.contains(&row(&[
            "8",
            "352",
            "2026-03-09 10:08:00",
            "x",
            &format!("{:0300}", 8)
        ])));
        seen.push(got.rows);
    }
    assert_eq!(seen[0], seen[1]);
}
