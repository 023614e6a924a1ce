//! Table modes: `append` keeps every change as a row (the change log), exactly once.

use crate::helpers::{Hvr, Table, row};

const COLS: &[&str] = &["id", "v", "hvr_op", "hvr_integ_seq"];

#[test]
fn an_append_table_is_the_change_log_and_a_call_made_again_adds_nothing() {
    let mut h = Hvr::new();
    h.userarg = "mode.log=append".into();
    let log = Table::new("log", &["id"], COLS);
    let cur = Table::new("cur", &["id"], COLS);
    let head = "id,v,hvr_op,hvr_integ_seq\n";
    h.write("1-log.csv", format!("{head}1,a,1,10\n2,b,1,11\n"));
    h.write("1-cur.csv", format!("{head}1,a,1,10\n2,b,1,11\n"));
    h.ok("refr_write_end", &[&log, &cur], &["1-log.csv", "1-cur.csv"]);
    // Repeated keys, a delete, a re-insert; seqs all digits (still text).
    let cycle = format!("{head}1,a2,2,20\n1,a3,2,21\n2,b,0,22\n2,b2,1,23\n");
    h.write("2-log.csv", &cycle);
    h.write("2-cur.csv", &cycle);
    let files = ["2-log.csv", "2-cur.csv"];
    let out = h.call_with(
        "integ_end",
        &[&log, &cur],
        &files,
        Some(&h.full_userarg()),
        &[("HVRLAKE_FAILPOINT", "before_remove")],
    );
    assert_ne!(out.code, 0, "{out:?}");
    let out = h.ok("integ_end", &[&log, &cur], &files);
    assert!(out.stdout.contains("log: skipped"), "{}", out.stdout);
    let got = h.rows("log");
    assert_eq!(got.columns, COLS);
    assert_eq!(
        got.rows,
        vec![
            row(&["1", "a", "1", "10"]),
            row(&["1", "a2", "2", "20"]),
            row(&["1", "a3", "2", "21"]),
            row(&["2", "b", "0", "22"]),
            row(&["2", "b", "1", "11"]),
            row(&["2", "b2", "1", "23"]),
        ]
    );
    assert!(
        h.types("log").contains(&"hvr_integ_seq:Utf8".to_string()),
        "{:?}",
        h.types("log")
    );
    // The same changes in the default mode keep the current rows only.
    assert_eq!(
        h.rows("cur").rows,
        vec![row(&["1", "a3"]), row(&["2", "b2"])]
    );
    // An unknown mode is a clear error.
    let bad = format!("{} mode=history2", h.full_userarg());
    let out = h.call_with("integ_end", &[&cur], &[], Some(&bad), &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("setting 'mode'"), "{out:?}");
}

#[test]
fn an_append_table_killed_anywhere_and_called_again_holds_every_change_once() {
    let mut h = Hvr::new();
    h.userarg = "mode=append".into();
    let log = Table::new("log", &["id"], COLS);
    let mut rng = crate::helpers::Rng(21);
    let mut expected: Vec<Vec<Option<String>>> = Vec::new();
    let mut killed = 0;
    for round in 0..30u64 {
        let mut text = String::from("id,v,hvr_op,hvr_integ_seq\n");
        for j in 0..30 {
            let (id, op, seq) = (
                rng.below(20),
                [1, 2, 0][rng.below(3) as usize],
                round * 100 + j,
            );
            text.push_str(&format!("{id},r{round},{op},{seq:x}\n"));
            expected.push(row(&[
                &id.to_string(),
                &format!("r{round}"),
                &op.to_string(),
                &format!("{seq:x}"),
            ]));
        }
        let name = format!("{round}-log.csv");
        h.write(&name, &text);
        let mut child = h
            .command("integ_end", &[&log], &[&name], Some(&h.full_userarg()), &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(120)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        h.ok("integ_end", &[&log], &[&name]);
        expected.sort();
        assert_eq!(h.rows("log").rows, expected, "round {round}");
    }
    assert!(killed >= 10, "kills that landed while running: {killed}");
}

#[test]
fn a_soft_delete_table_keeps_deleted_rows_flagged_and_an_insert_revives_them() {
    let mut h = Hvr::new();
    h.userarg = "mode=soft_delete".into();
    let t = Table::new("acct", &["id"], COLS);
    let head = "id,v,hvr_op,hvr_integ_seq\n";
    h.write("1-acct.csv", format!("{head}1,a,1,1\n2,b,1,2\n3,c,1,3\n"));
    h.ok("refr_write_end", &[&t], &["1-acct.csv"]);
    let got = h.rows("acct");
    assert_eq!(got.columns, vec!["id", "v", "is_deleted", "deleted_at"]);
    assert_eq!(
        got.rows,
        vec![
            row(&["1", "a", "false", "NULL"]),
            row(&["2", "b", "false", "NULL"]),
            row(&["3", "c", "false", "NULL"]),
        ]
    );
    let year = chrono::Utc::now().format("%Y").to_string();
    h.write("2-acct.csv", format!("{head}2,b,0,10\n1,a2,2,11\n"));
    h.ok("integ_end", &[&t], &["2-acct.csv"]);
    let got = h.rows("acct").rows;
    assert_eq!(got[0], row(&["1", "a2", "false", "NULL"]));
    assert_eq!(got[2], row(&["3", "c", "false", "NULL"]));
    assert_eq!(&got[1][..3], &row(&["2", "b", "true"])[..]);
    let at = got[1][3].clone().expect("a deletion time");
    assert!(at.starts_with(&year), "deleted_at {at}");
    // A later insert of the key revives it.
    h.write("3-acct.csv", format!("{head}2,b2,1,20\n"));
    h.ok("integ_end", &[&t], &["3-acct.csv"]);
    assert_eq!(h.rows("acct").rows[1], row(&["2", "b2", "false", "NULL"]));
}

#[test]
fn a_table_with_the_change_data_feed_on_streams_its_changes() {
    let mut h = Hvr::new();
    h.userarg = "change_data_feed=feed".into();
    let feed = Table::new("feed", &["id"], COLS);
    let plain = Table::new("plain", &["id"], COLS);
    let head = "id,v,hvr_op,hvr_integ_seq\n";
    for t in ["feed", "plain"] {
        h.write(
            &format!("1-{t}.csv"),
            format!("{head}1,a,1,1\n2,b,1,2\n3,c,1,3\n"),
        );
        h.write(
            &format!("2-{t}.csv"),
            format!("{head}1,a2,2,10\n2,b,0,11\n4,d,1,12\n"),
        );
    }
    h.ok(
        "refr_write_end",
        &[&feed, &plain],
        &["1-feed.csv", "1-plain.csv"],
    );
    h.ok(
        "integ_end",
        &[&feed, &plain],
        &["2-feed.csv", "2-plain.csv"],
    );
    assert_eq!(
        h.rows("feed").rows,
        vec![row(&["1", "a2"]), row(&["3", "c"]), row(&["4", "d"])]
    );
    // Read the feed with the Python deltalake package, from the cycle's version on.
    let script = "import sys\nfrom deltalake import DeltaTable\n\
        t = DeltaTable(sys.argv[1])\n\
        print(t.metadata().configuration.get('delta.enableChangeDataFeed'))\n\
        v = t.version()\n\
        import pyarrow as pa\n\
        rows = pa.table(t.load_cdf(starting_version=v).read_all()).to_pylist()\n\
        print(sorted((r['id'], r['v'], r['_change_type']) for r in rows))\n";
    let py = std::env::var("HVRLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let run = |table: &str| {
        let out = std::process::Command::new(&py)
            .arg("-c")
            .arg(script)
            .arg(h.lake.path().join(table))
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = run("feed");
    assert!(
        out.starts_with("true\n")
            && out.contains("(1, 'a', 'update_preimage'), (1, 'a2', 'update_postimage'), (2, 'b', 'delete'), (4, 'd', 'insert')"),
        "{out}"
    );
    assert!(
        run("plain").starts_with("None\n"),
        "only the table named has the feed"
    );
}

#[test]
fn a_column_that_appears_in_cycle_3_is_added_and_older_rows_read_null() {
    let h = Hvr::new();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    let head = "id,v,hvr_op,hvr_integ_seq\n";
    h.write("1-t.csv", format!("{head}1,a,1,1\n2,b,1,2\n3,c,1,3\n"));
    h.ok("refr_write_end", &[&t], &["1-t.csv"]);
    h.write("2-t.csv", format!("{head}1,a2,2,10\n"));
    h.ok("integ_end", &[&t], &["2-t.csv"]);
    // Cycle 3: the source table got a column `qty` (HVR_COL_NAMES grows).
    let t3 = Table::new("t", &["id"], &["id", "v", "qty", "hvr_op", "hvr_integ_seq"]);
    h.write(
        "3-t.csv",
        "id,v,qty,hvr_op,hvr_integ_seq\n2,b2,7,2,20\n4,d,9,1,21\n",
    );
    let out = h.ok("integ_end", &[&t3], &["3-t.csv"]);
    assert!(
        out.stdout.contains("inserted=1 updated=1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        h.types("t"),
        vec!["id:Int64", "v:Utf8", "qty:Int64"],
        "the new column, typed from its values"
    );
    assert_eq!(
        h.rows("t").rows,
        vec![
            row(&["1", "a2", "NULL"]),
            row(&["2", "b2", "7"]),
            row(&["3", "c", "NULL"]),
            row(&["4", "d", "9"]),
        ]
    );
    // Another reader (the Python deltalake package) sees the same.
    let script = "import sys, pyarrow as pa\nfrom deltalake import DeltaTable, QueryBuilder\n\
        t = pa.table(QueryBuilder().register('t', DeltaTable(sys.argv[1])).execute('select * from t').read_all())\n\
        print(sorted((r['id'], r['qty']) for r in t.to_pylist()))\n";
    let (out, err) = crate::helpers::python(script, &h.lake.path().join("t"));
    assert_eq!(out, "[(1, None), (2, 7), (3, None), (4, 9)]", "{err}");
    // Cycle 4: a file without `v` (a dropped column): the column stays, NULL from then on.
    h.write("4-t.csv", "id,qty,hvr_op,hvr_integ_seq\n3,5,2,30\n");
    h.ok("integ_end", &[&t3], &["4-t.csv"]);
    assert_eq!(h.rows("t").rows[2], row(&["3", "NULL", "5"]));
    assert_eq!(h.types("t").len(), 3);
}

/// History rows without their times: (id, v, is_current, op, integ_seq without padding).
fn versions(rows: &[Vec<Option<String>>]) -> Vec<Vec<Option<String>>> {
    let mut v: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| {
            let seq = r[6].as_ref().map(|s| {
                s.split('|')
                    .map(|p| p.trim_start_matches('0'))
                    .collect::<Vec<_>>()
                    .join("|")
            });
            vec![r[0].clone(), r[1].clone(), r[4].clone(), r[5].clone(), seq]
        })
        .collect();
    v.sort();
    v
}

/// Checks the history invariants on rows (id, v, valid_from, valid_to, is_current, op,
/// integ_seq): exactly one current row per key, and each key's versions, in the order of
/// valid_from then integ_seq, contiguous (each valid_to is the next valid_from, the last is
/// NULL and the current one).
fn check_history(rows: &[Vec<Option<String>>]) {
    let mut by_key: std::collections::BTreeMap<String, Vec<&Vec<Option<String>>>> =
        Default::default();
    for r in rows {
        by_key.entry(r[0].clone().unwrap()).or_default().push(r);
    }
    for (key, mut vs) in by_key {
        vs.sort_by(|a, b| (&a[2], &a[6]).cmp(&(&b[2], &b[6])));
        let current: Vec<_> = vs
            .iter()
            .filter(|r| r[4].as_deref() == Some("true"))
            .collect();
        assert_eq!(current.len(), 1, "key {key}: current rows {current:?}");
        for w in vs.windows(2) {
            assert_eq!(w[0][4].as_deref(), Some("false"), "key {key}: {w:?}");
            assert_eq!(w[0][3], w[1][2], "key {key}: a gap or overlap: {w:?}");
            assert!(w[0][2] <= w[0][3], "key {key}: interval backwards: {w:?}");
        }
        let last = vs.last().unwrap();
        assert_eq!(last[3], None, "key {key}: the last version is open");
        assert_eq!(
            last[4].as_deref(),
            Some("true"),
            "key {key}: the last version is current"
        );
    }
}

#[test]
fn a_history_table_keeps_every_version_with_contiguous_intervals() {
    let mut h = Hvr::new();
    h.userarg = "mode.acct=history".into();
    let t = Table::new("acct", &["id"], COLS);
    let head = "id,v,hvr_op,hvr_integ_seq\n";
    h.write("1-acct.csv", format!("{head}1,a,1,1\n2,b,1,2\n3,c,1,3\n"));
    h.ok("refr_write_end", &[&t], &["1-acct.csv"]);
    let got = h.rows("acct");
    assert_eq!(
        got.columns,
        vec![
            "id",
            "v",
            "valid_from",
            "valid_to",
            "is_current",
            "op",
            "integ_seq"
        ]
    );
    let refreshed = got.rows[0][2].clone().expect("valid_from");
    assert!(got.rows.iter().all(|r| r[2].as_ref() == Some(&refreshed)));
    // Cycle 2: key 2 deleted, key 1 updated twice, key 4 inserted, key 9 (unknown) deleted.
    h.write(
        "2-acct.csv",
        format!("{head}2,b,0,10\n1,a2,2,11\n4,d,1,12\n1,a3,2,13\n9,z,0,14\n"),
    );
    let out = h.ok("integ_end", &[&t], &["2-acct.csv"]);
    assert!(
        out.stdout.contains("inserted=1 updated=2 deleted=1"),
        "{}",
        out.stdout
    );
    // Cycle 3: key 2 comes back, key 4 is deleted and comes back in the same cycle; made
    // twice (HVR runs a failed job again), it adds nothing.
    h.write(
        "3-acct.csv",
        format!("{head}2,b2,1,20\n4,d,0,21\n4,d2,1,22\n"),
    );
    let files = ["3-acct.csv"];
    let out = h.call_with(
        "integ_end",
        &[&t],
        &files,
        Some(&h.full_userarg()),
        &[("HVRLAKE_FAILPOINT", "before_remove")],
    );
    assert_ne!(out.code, 0, "{out:?}");
    let out = h.ok("integ_end", &[&t], &files);
    assert!(out.stdout.contains("acct: skipped"), "{}", out.stdout);
    let got = h.rows("acct").rows;
    let s = |x: &str| Some(x.to_string());
    let n = None::<String>;
    assert_eq!(
        versions(&got),
        vec![
            vec![s("1"), s("a"), s("false"), s("refresh"), n.clone()],
            vec![s("1"), s("a2"), s("false"), s("update"), s("11")],
            vec![s("1"), s("a3"), s("true"), s("update"), s("13")],
            vec![s("2"), s("b"), s("false"), s("delete"), s("10")],
            vec![s("2"), s("b"), s("false"), s("refresh"), n.clone()],
            vec![s("2"), s("b2"), s("true"), s("insert"), s("20")],
            vec![s("3"), s("c"), s("true"), s("refresh"), n.clone()],
            vec![s("4"), s("d"), s("false"), s("delete"), s("21")],
            vec![s("4"), s("d"), s("false"), s("insert"), s("12")],
            vec![s("4"), s("d2"), s("true"), s("insert"), s("22")],
        ]
    );
    check_history(&got);
    // The padded sequence sorts as text.
    assert!(
        got.iter()
            .any(|r| r[6].as_deref().is_some_and(|s| s.len() == 45))
    );
    // A truncate closes every live key with a tombstone; a key inserted after it is current.
    h.write("4-acct.csv", format!("{head}5,e,1,30\n,,5,31\n3,c2,1,32\n"));
    h.ok("integ_end", &[&t], &["4-acct.csv"]);
    let got = h.rows("acct").rows;
    check_history(&got);
    let current: Vec<_> = versions(&got)
        .into_iter()
        .filter(|r| r[2].as_deref() == Some("true"))
        .map(|r| (r[0].clone().unwrap(), r[3].clone().unwrap()))
        .collect();
    assert_eq!(
        current,
        vec![
            ("1".to_string(), "delete".to_string()),
            ("2".to_string(), "delete".to_string()),
            ("3".to_string(), "insert".to_string()),
            ("4".to_string(), "delete".to_string()),
            ("5".to_string(), "delete".to_string()),
        ]
    );
}

#[test]
fn a_history_table_over_random_cycles_matches_a_model_of_every_version() {
    let mut h = Hvr::new();
    h.userarg = "mode=history".into();
    let t = Table::new("hist", &["id"], COLS);
    let mut rng = crate::helpers::Rng(77);
    // Model: key → live; expected versions (id, v, op, seq).
    let mut live: std::collections::BTreeMap<u64, bool> = Default::default();
    let mut expected: Vec<(String, String, String, String)> = Vec::new();
    let mut current: std::collections::BTreeMap<u64, usize> = Default::default();
    let mut seq = 0u64;
    for cycle in 0..8 {
        let mut text = String::from("id,v,hvr_op,hvr_integ_seq\n");
        for j in 0..30 {
            let id = rng.below(12);
            let op = [1, 2, 0][rng.below(3) as usize];
            seq += 1;
            let v = format!("c{cycle}r{j}");
            text.push_str(&format!("{id},{v},{op},{seq:08X}\n"));
            let is_live = live.get(&id).copied().unwrap_or(false);
            let made = match (op, is_live) {
                (0, false) => None,
                (0, true) => Some("delete"),
                (_, true) => Some("update"),
                (_, false) => Some("insert"),
            };
            if let Some(made) = made {
                expected.push((id.to_string(), v, made.into(), format!("{seq:x}")));
                current.insert(id, expected.len() - 1);
                live.insert(id, made != "delete");
            }
        }
        let name = format!("{cycle}-hist.csv");
        h.write(&name, &text);
        h.ok("integ_end", &[&t], &[&name]);
    }
    let got = h.rows("hist").rows;
    check_history(&got);
    let mut want: Vec<Vec<Option<String>>> = expected
        .iter()
        .enumerate()
        .map(|(i, (id, v, op, seq))| {
            let is_current = current.values().any(|&c| c == i);
            [
                id.as_str(),
                v,
                if is_current { "true" } else { "false" },
                op,
                seq,
            ]
            .iter()
            .map(|x| Some(x.to_string()))
            .collect()
        })
        .collect();
    want.sort();
    assert_eq!(versions(&got), want);
    // Versions of a key written by one cycle share its time; a later cycle's are later.
    let froms: std::collections::BTreeSet<_> = got.iter().map(|r| r[2].clone()).collect();
    assert_eq!(froms.len(), 8, "one valid_from per cycle: {froms:?}");
}

#[test]
fn a_value_that_needs_a_wider_type_widens_the_column_as_delta_allows() {
    let h = Hvr::new();
    let cols = ["id", "v", "amount", "hvr_op", "hvr_integ_seq"];
    let t = Table::new("t", &["id"], &cols);
    let head = "id,v,amount,hvr_op,hvr_integ_seq\n";
    h.write("1-t.csv", format!("{head}1,a,5,1,1\n2,b,7,1,2\n"));
    h.ok("refr_write_end", &[&t], &["1-t.csv"]);
    h.write("2-t.csv", format!("{head}1,a2,6,2,10\n"));
    h.ok("integ_end", &[&t], &["2-t.csv"]);
    assert_eq!(h.types("t"), vec!["id:Int64", "v:Utf8", "amount:Int64"]);
    // Cycle 3: amounts with cents (a long widens to a decimal with 20 integer digits), and a
    // new column `qty` in the same cycle.
    let t3 = Table::new(
        "t",
        &["id"],
        &["id", "v", "amount", "qty", "hvr_op", "hvr_integ_seq"],
    );
    h.write(
        "3-t.csv",
        "id,v,amount,qty,hvr_op,hvr_integ_seq\n2,b2,12.50,3,2,20\n3,c,1.25,,1,21\n",
    );
    let out = h.ok("integ_end", &[&t3], &["3-t.csv"]);
    assert!(
        out.stdout.contains("amount Int64 -> Decimal128(22, 2)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        h.types("t"),
        vec![
            "id:Int64",
            "v:Utf8",
            "amount:Decimal128(22, 2)",
            "qty:Int64"
        ]
    );
    let want = vec![
        row(&["1", "a2", "6.00", "NULL"]),
        row(&["2", "b2", "12.50", "3"]),
        row(&["3", "c", "1.25", "NULL"]),
    ];
    assert_eq!(h.rows("t").rows, want);
    // The table still records its keys, and another reader sees the same values.
    let script = "import sys, pyarrow as pa\nfrom deltalake import DeltaTable, QueryBuilder\n\
        d = DeltaTable(sys.argv[1])\n\
        print(d.metadata().configuration.get('hvrlake.keys'))\n\
        t = pa.table(QueryBuilder().register('t', d).execute('select * from t').read_all())\n\
        print(sorted((r['id'], str(r['amount']), r['qty']) for r in t.to_pylist()))\n";
    let (out, err) = crate::helpers::python(script, &h.lake.path().join("t"));
    assert_eq!(
        out, "id\n[(1, '6.00', None), (2, '12.50', 3), (3, '1.25', None)]",
        "{err}"
    );
    // Text in a number column: no type Delta allows holds it. One line naming the file, line
    // and column; the table stays at its version, the file stays.
    let version = h.version("t");
    h.write(
        "4-t.csv",
        "id,v,amount,qty,hvr_op,hvr_integ_seq\n1,a3,7.5,1,2,30\n3,c,lots,1,2,31\n",
    );
    let out = h.call("integ_end", &[&t3], &["4-t.csv"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("4-t.csv:3:"), "{}", out.stderr);
    assert!(out.stderr.contains("amount"), "{}", out.stderr);
    assert_eq!(h.version("t"), version);
    assert!(h.has_file("4-t.csv"));
    assert_eq!(h.rows("t").rows, want);
}

#[test]
fn a_soft_delete_table_over_random_cycles_with_repeated_keys_matches_a_model() {
    let mut h = Hvr::new();
    h.userarg = "mode=soft_delete".into();
    let t = Table::new("acct", &["id"], COLS);
    let mut rng = crate::helpers::Rng(31);
    // Model: key → (v, deleted). A delete keeps the row as the delete carries it, flagged;
    // the last change of a key in a cycle decides.
    let mut model: std::collections::BTreeMap<u64, (String, bool)> = Default::default();
    let mut text = String::from("id,v,hvr_op,hvr_integ_seq\n");
    for id in 0..10u64 {
        text.push_str(&format!("{id},r{id},1,{id:x}\n"));
        model.insert(id, (format!("r{id}"), false));
    }
    h.write("0-acct.csv", &text);
    h.ok("refr_write_end", &[&t], &["0-acct.csv"]);
    let mut seq = 100u64;
    for cycle in 1..=8 {
        let mut text = String::from("id,v,hvr_op,hvr_integ_seq\n");
        for j in 0..20 {
            // 14 keys: some never refreshed; a key often changes more than once a cycle.
            let id = rng.below(14);
            let op = [1, 2, 0][rng.below(3) as usize];
            seq += 1;
            let v = format!("c{cycle}r{j}");
            text.push_str(&format!("{id},{v},{op},{seq:x}\n"));
            model.insert(id, (v, op == 0));
        }
        let name = format!("{cycle}-acct.csv");
        h.write(&name, &text);
        h.ok("integ_end", &[&t], &[&name]);
        let got = h.rows("acct").rows;
        let want: Vec<Vec<Option<String>>> = model
            .iter()
            .map(|(id, (v, d))| row(&[&id.to_string(), v, &d.to_string()]))
            .collect();
        let mut seen: Vec<Vec<Option<String>>> = got.iter().map(|r| r[..3].to_vec()).collect();
        seen.sort_by_key(|r| r[0].as_ref().map(|k| k.parse::<u64>().unwrap()));
        assert_eq!(seen, want, "cycle {cycle}");
        for r in &got {
            let deleted = r[2].as_deref() == Some("true");
            assert_eq!(
                r[3].is_some(),
                deleted,
                "deleted_at set exactly on deleted rows: {r:?}"
            );
        }
    }
}
