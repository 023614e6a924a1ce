//! Partitioned tables (`partition_by`): rows land in their partitions, merges read and
//! rewrite only the partitions their changes name, and the rows stay exact.

use std::collections::BTreeSet;

use crate::helpers::{Change, Hvr, Model, Rng, Table, csv, row};

const COLS: &[&str] = &["id", "region", "created_at", "v", "hvr_op", "hvr_integ_seq"];

/// The actions of one commit of a local table's log.
fn commit_actions(h: &Hvr, base: &str, version: u64) -> Vec<serde_json::Value> {
    let path = h
        .table_dir(base)
        .join(format!("_delta_log/{version:020}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Paths of the files a commit removes and adds.
fn removed_and_added(h: &Hvr, base: &str, version: u64) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for a in commit_actions(h, base, version) {
        if let Some(r) = a.get("remove") {
            removed.push(r["path"].as_str().unwrap().to_string());
        }
        if let Some(r) = a.get("add") {
            added.push(r["path"].as_str().unwrap().to_string());
        }
    }
    (removed, added)
}

/// An integrate of `file` with `HVRLAKE_TIMINGS` on: its stderr (it must succeed).
fn integrate_timed(h: &Hvr, t: &Table, file: &str) -> String {
    let out = h.call_with(
        "integ_end",
        &[t],
        &[file],
        Some(&h.full_userarg()),
        &[("HVRLAKE_TIMINGS", "1")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    out.stderr
}

/// A row: id, region, created_at (year `year`), v.
fn data(id: u64, region: &str, year: u64, v: &str) -> Vec<Option<String>> {
    row(&[
        &id.to_string(),
        region,
        &format!("{year}-0{}-1{} 10:00:00", 1 + id % 9, id % 10),
        v,
    ])
}

/// Region and year of a key never change (the rows are stable in their partitions).
fn home(id: u64) -> (&'static str, u64) {
    (["eu", "us", "apac"][(id % 3) as usize], 2024 + (id / 3) % 3)
}

#[test]
fn a_partitioned_table_gets_its_rows_and_a_merge_rewrites_only_touched_partitions() {
    let mut h = Hvr::new();
    // With deletion vectors: files read for their keys get vectors, with their partition
    // values put back (the files do not store them).
    h.userarg =
        "partition_by=sales:year(created_at),region partition_stable=true deletion_vectors=true rewrite_share=1"
            .into();
    let t = Table::new("sales", &["id"], COLS);
    let head = ["id", "region", "created_at", "v"];
    let mut model = Model::default();
    let refresh: Vec<_> = (0..90)
        .map(|id| {
            let (r, y) = home(id);
            data(id, r, y, "r")
        })
        .collect();
    model.refresh(&[0], &refresh);
    h.write("0-sales.csv", csv(&head, &refresh));
    h.ok("refr_write_end", &[&t], &["0-sales.csv"]);
    let types = h.types("sales");
    assert!(
        types.contains(&"created_at_year:Int32".to_string()),
        "{types:?}"
    );
    // A new table is one commit: its metadata and its partitioned files together.
    assert_eq!(h.version("sales"), Some(0));
    let first = commit_actions(&h, "sales", 0);
    assert_eq!(first.iter().filter(|a| a.get("add").is_some()).count(), 9);
    // Delta partition columns, and files in partition directories.
    let meta = first
        .into_iter()
        .find_map(|a| a.get("metaData").cloned())
        .unwrap();
    assert_eq!(
        meta["partitionColumns"],
        serde_json::json!(["created_at_year", "region"])
    );
    assert!(
        h.table_dir("sales")
            .join("created_at_year=2025/region=us")
            .is_dir(),
        "partition directories"
    );
    assert_eq!(h.rows("sales").rows.len(), 90);

    // Random cycles over every partition: exact rows.
    let mut rng = Rng(5);
    let mut seq = 0u64;
    for c in 1..=6u64 {
        let mut changes = Vec::new();
        for _ in 0..25 {
            let id = rng.below(120);
            let (r, y) = home(id);
            seq += 1;
            changes.push(Change {
                op: [1, 2, 2, 0][rng.below(4) as usize],
                seq: format!("{seq:x}"),
                values: data(id, r, y, &format!("c{c}")),
            });
        }
        model.apply(&[0], &changes);
        let name = format!("{c}-sales.csv");
        h.write(&name, crate::helpers::change_csv(&head, &changes));
        h.ok("integ_end", &[&t], &[&name]);
        let mut got = h.rows("sales").rows;
        for r in &mut got {
            r.truncate(4);
        }
        assert_eq!(got, model.sorted(), "cycle {c}");
    }

    // One change in one partition: the merge removes and adds files of that partition only.
    let before: BTreeSet<String> = live_files(&h, "sales");
    let (r, y) = home(4);
    let dir = format!("created_at_year={y}/region={r}/");
    seq += 1;
    let one = vec![Change {
        op: 2,
        seq: format!("{seq:x}"),
        values: data(4, r, y, "one"),
    }];
    h.write("7-sales.csv", crate::helpers::change_csv(&head, &one));
    let timings = integrate_timed(&h, &t, "7-sales.csv");
    // Only files of that partition are read (at most all of them: the key statistics may
    // rule out some more). tests/partitions.rs's key-partition test shows the pruning alone.
    let partition_files = before.iter().filter(|f| f.starts_with(&dir)).count();
    let reads = timings
        .split("merge reads ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a merge timing line");
    assert!(
        timings.contains(&format!("of {} data files", before.len())),
        "{timings}"
    );
    assert!(
        (1..=partition_files).contains(&reads),
        "{reads} read, {partition_files} in the partition: {timings}"
    );
    assert!(partition_files < before.len() / 3, "{before:?}");
    let version = h.version("sales").unwrap();
    let (removed, added) = removed_and_added(&h, "sales", version);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed.iter().chain(&added).all(|p| p.starts_with(&dir)),
        "{removed:?} {added:?}"
    );
    let after = live_files(&h, "sales");
    let untouched: Vec<_> = before.iter().filter(|f| !f.starts_with(&dir)).collect();
    assert!(
        untouched.iter().all(|f| after.contains(*f)),
        "other partitions keep their files"
    );
    model.apply(&[0], &one);
    let mut got = h.rows("sales").rows;
    for r in &mut got {
        r.truncate(4);
    }
    assert_eq!(got, model.sorted());

    // The Python deltalake reader sees the same rows and partitions.
    let script = "import sys\nfrom deltalake import DeltaTable\n\
        d = DeltaTable(sys.argv[1])\n\
        print(d.metadata().partition_columns)\n\
        import pyarrow as pa\n\
        from deltalake import QueryBuilder\n\
        q = \"select * from t where region = 'eu'\"\n\
        rows = pa.table(QueryBuilder().register('t', d).execute(q).read_all()).to_pylist()\n\
        print(len(rows), all(r['created_at'].year == r['created_at_year'] for r in rows))\n";
    let (out, err) = crate::helpers::python(script, &h.table_dir("sales"));
    let eu = model
        .sorted()
        .iter()
        .filter(|r| r[1].as_deref() == Some("eu"))
        .count();
    assert_eq!(
        out,
        format!("['created_at_year', 'region']\n{eu} True"),
        "{err}"
    );
}

/// The data files of the table's current version (from `inspect`-independent log replay:
/// every add not removed later).
fn live_files(h: &Hvr, base: &str) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for v in 0..=h.version(base).unwrap() {
        let (removed, added) = removed_and_added(h, base, v);
        for r in removed {
            live.remove(&r);
        }
        live.extend(added);
    }
    live
}

#[test]
fn partitions_by_a_key_column_are_pruned_without_the_stable_setting() {
    let mut h = Hvr::new();
    h.userarg = "partition_by=acct:region".into();
    let t = Table::new(
        "acct",
        &["region", "id"],
        &["region", "id", "v", "hvr_op", "hvr_integ_seq"],
    );
    let head = "region,id,v,hvr_op,hvr_integ_seq\n";
    h.write(
        "0-acct.csv",
        format!("{head}eu,1,a,1,1\neu,2,b,1,2\nus,1,c,1,3\nus,2,d,1,4\n"),
    );
    h.ok("refr_write_end", &[&t], &["0-acct.csv"]);
    h.write("1-acct.csv", format!("{head}us,2,d2,2,10\nus,3,e,1,11\n"));
    let timings = integrate_timed(&h, &t, "1-acct.csv");
    assert!(
        timings.contains("merge reads 1 of 2 data files"),
        "{timings}"
    );
    let (removed, added) = removed_and_added(&h, "acct", h.version("acct").unwrap());
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed
            .iter()
            .chain(&added)
            .all(|p| p.starts_with("region=us/")),
        "{removed:?} {added:?}"
    );
    assert_eq!(
        h.rows("acct").rows,
        vec![
            row(&["eu", "1", "a"]),
            row(&["eu", "2", "b"]),
            row(&["us", "1", "c"]),
            row(&["us", "2", "d2"]),
            row(&["us", "3", "e"]),
        ]
    );
}

#[test]
fn without_the_stable_setting_a_row_that_moves_partition_is_still_found() {
    // Not a key column, no partition_stable: the merge may not trust the new values.
    let mut h = Hvr::new();
    h.userarg = "partition_by=acct:region".into();
    let t = Table::new(
        "acct",
        &["id"],
        &["id", "region", "v", "hvr_op", "hvr_integ_seq"],
    );
    let head = "id,region,v,hvr_op,hvr_integ_seq\n";
    h.write("0-acct.csv", format!("{head}1,eu,a,1,1\n2,us,b,1,2\n"));
    h.ok("refr_write_end", &[&t], &["0-acct.csv"]);
    // Key 1 moves from eu to us; key 2 is deleted with only its key known.
    h.write("1-acct.csv", format!("{head}1,us,a2,2,10\n2,,,0,11\n"));
    let timings = integrate_timed(&h, &t, "1-acct.csv");
    assert!(
        timings.contains("merge reads 2 of 2 data files"),
        "{timings}"
    );
    assert_eq!(h.rows("acct").rows, vec![row(&["1", "us", "a2"])]);
}

#[test]
fn a_refresh_repartitions_and_bad_partition_settings_are_named() {
    let mut h = Hvr::new();
    let t = Table::new("t", &["id"], &["id", "d", "hvr_op", "hvr_integ_seq"]);
    let head = "id,d,hvr_op,hvr_integ_seq\n";
    h.write(
        "0-t.csv",
        format!("{head}1,2026-03-04,1,1\n2,2025-12-31,1,2\n"),
    );
    h.ok("refr_write_end", &[&t], &["0-t.csv"]);
    assert_eq!(h.types("t"), vec!["id:Int64", "d:Date32"]);
    // The next refresh with partition_by: month of the date.
    h.userarg = "partition_by=t:month(d)".into();
    h.write(
        "1-t.csv",
        format!("{head}1,2026-03-04,1,1\n2,2025-12-31,1,2\n3,2026-03-09,1,3\n"),
    );
    h.ok("refr_write_end", &[&t], &["1-t.csv"]);
    assert_eq!(h.types("t"), vec!["id:Int64", "d:Date32", "d_month:Utf8"]);
    assert!(h.table_dir("t").join("d_month=2026-03").is_dir());
    assert_eq!(
        h.rows("t").rows,
        vec![
            row(&["1", "2026-03-04", "2026-03"]),
            row(&["2", "2025-12-31", "2025-12"]),
            row(&["3", "2026-03-09", "2026-03"]),
        ]
    );
    // An integrate fills the derived column of new rows.
    h.write(
        "2-t.csv",
        format!("{head}4,2024-07-01,1,10\n1,2026-03-04,0,11\n"),
    );
    h.ok("integ_end", &[&t], &["2-t.csv"]);
    assert_eq!(
        h.rows("t").rows,
        vec![
            row(&["2", "2025-12-31", "2025-12"]),
            row(&["3", "2026-03-09", "2026-03"]),
            row(&["4", "2024-07-01", "2024-07"]),
        ]
    );
    // Bad settings: one line naming the setting, nothing changes.
    let version = h.version("t");
    for (arg, says) in [
        ("partition_by=t:week(d)", "'week(d)' is not a column"),
        (
            "partition_by=t:year(id)",
            "takes a date or timestamp column",
        ),
        ("partition_by=t:nope", "has no column 'nope'"),
        ("partition_by=t", "is not TABLE:EXPR"),
    ] {
        h.userarg = arg.into();
        h.write("3-t.csv", format!("{head}5,2024-07-01,1,20\n"));
        let out = h.call("refr_write_end", &[&t], &["3-t.csv"]);
        assert_eq!(out.code, 1, "{arg}: {out:?}");
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{arg}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("partition_by"), "{arg}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{arg}: {}", out.stderr);
        assert_eq!(h.version("t"), version);
    }
}
