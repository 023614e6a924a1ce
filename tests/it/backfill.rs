//! `hvrlake backfill` over file sets as HVR leaves them: a refresh and many cycles of two
//! tables, checked against a plain replay of the same changes; killed and run again; CSV
//! mixed with Parquet; sources and lake on S3.

use std::path::Path;
use std::process::Command;

use crate::helpers::{Change, Model, Rng, csv, read_rows, read_rows_at, store_env, unique};

const ORDERS: &[&str] = &["id", "who", "amount", "hvr_op", "hvr_integ_seq"];
const LINES: &[&str] = &["id", "n", "qty", "hvr_op", "hvr_integ_seq"];

/// A file set: a refresh and `cycles` cycles of both tables, written under `dir` as HVR
/// names them; returns the models of the end state.
fn file_set(dir: &Path, cycles: u64, seed: u64) -> (Model, Model) {
    let mut rng = Rng(seed);
    let (mut mo, mut ml) = (Model::default(), Model::default());
    std::fs::create_dir_all(dir.join("refresh")).unwrap();
    std::fs::create_dir_all(dir.join("cycles")).unwrap();
    for c in 0..=cycles {
        let stamp = 20260101000000000u64 + c * 100_000;
        for (table, header, model, keys) in [
            ("orders", ORDERS, &mut mo, 1usize),
            ("lines", LINES, &mut ml, 2),
        ] {
            let (mut changes, mut rows) = (Vec::new(), Vec::new());
            let n = if c == 0 { 60 } else { 25 };
            for j in 0..n {
                let op = if c == 0 {
                    1
                } else {
                    [1, 2, 2, 0][rng.below(4) as usize]
                };
                let mut v: Vec<Option<String>> = (0..keys)
                    .map(|_| {
                        Some(if c == 0 {
                            j.to_string()
                        } else {
                            rng.below(80).to_string()
                        })
                    })
                    .collect();
                v.push(Some(format!("w{}", rng.below(1000))));
                if keys == 1 {
                    v.push(Some(format!("{}.{:02}", rng.below(500), rng.below(100))));
                }
                let seq = format!("{:x}", c * 1000 + j);
                changes.push(Change {
                    op,
                    seq: seq.clone(),
                    values: v.clone(),
                });
                v.push(Some(op.to_string()));
                v.push(Some(seq));
                rows.push(v);
            }
            let idx: Vec<usize> = (0..keys).collect();
            if c == 0 {
                model.refresh(
                    &idx,
                    &changes.iter().map(|c| c.values.clone()).collect::<Vec<_>>(),
                );
            } else {
                model.apply(&idx, &changes);
            }
            let sub = if c == 0 { "refresh" } else { "cycles" };
            std::fs::write(
                dir.join(sub).join(format!("{stamp}-{table}.csv")),
                csv(header, &rows),
            )
            .unwrap();
        }
    }
    (mo, ml)
}

fn backfill(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvrlake"));
    cmd.arg("backfill")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(lake: &Path, mo: &Model, ml: &Model) {
    assert_eq!(read_rows(&lake.join("orders")).rows, mo.sorted(), "orders");
    assert_eq!(
        read_rows(&lake.join("sales").join("lines")).rows,
        ml.sorted(),
        "sales.lines"
    );
}

fn args<'a>(lake: &'a str, src: &'a str, refresh: &'a str, budget: &'a str) -> Vec<&'a str> {
    vec![
        "--target",
        lake,
        "--keys",
        "orders=id",
        "--keys",
        "lines=id,n",
        "--base",
        "lines=sales.lines",
        "--max-memory",
        budget,
        "--refresh",
        refresh,
        src,
    ]
}

#[test]
fn a_refresh_and_many_cycles_in_batches_equal_a_plain_replay_and_a_rerun_adds_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (mo, ml) = file_set(work.path(), 40, 1);
    let lake = work.path().join("lake");
    let (l, s, r) = (
        lake.to_str().unwrap(),
        work.path().join("cycles"),
        work.path().join("refresh"),
    );
    let a = args(l, s.to_str().unwrap(), r.to_str().unwrap(), "4K");
    let dry = backfill(&[&a[..], &["--dry-run"]].concat(), &[]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("dry run: orders -> orders: refresh files 1, cycles 40"),
        "{}",
        text(&dry)
    );
    assert!(!lake.join("orders").exists(), "a dry run writes nothing");
    let out = backfill(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("40 cycle(s) to apply in"), "{t}");
    assert!(
        t.contains("all tables") && t.contains("step 2/"),
        "several batches under a 4K budget, progress per table: {t}"
    );
    assert!(
        t.contains("hvrlake: backfill: table ") && t.contains("done: 2 table(s)"),
        "the summary table: {t}"
    );
    check(&lake, &mo, &ml);
    assert!(
        s.join("20260101004000000-orders.csv").exists(),
        "sources stay"
    );
    // Run again: everything is applied already.
    let out = backfill(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 refresh(es), 0 cycle(s) to apply in 0 batch(es)"),
        "{}",
        text(&out)
    );
    check(&lake, &mo, &ml);
}

#[test]
fn a_backfill_killed_anywhere_and_started_again_ends_exact() {
    let work = tempfile::tempdir().unwrap();
    let (mo, ml) = file_set(work.path(), 30, 2);
    let lake = work.path().join("lake");
    let (l, s, r) = (
        lake.to_str().unwrap(),
        work.path().join("cycles"),
        work.path().join("refresh"),
    );
    let a = args(l, s.to_str().unwrap(), r.to_str().unwrap(), "3K");
    // Killed right after batches 2 and 5 (deterministic), then at seeded random moments.
    for batch in ["backfill_batch:2", "backfill_batch:5"] {
        let env = [("HVRLAKE_FAILPOINT".to_string(), batch.to_string())];
        let out = backfill(&a, &env);
        assert!(!out.status.success(), "{}", text(&out));
    }
    let out = backfill(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    check(&lake, &mo, &ml);

    // SIGKILL at seeded random moments of a whole run, each into a fresh lake, then the
    // same command again.
    let started = std::time::Instant::now();
    let fresh = work.path().join("timed");
    let f = fresh.to_str().unwrap();
    let out = backfill(
        &args(f, s.to_str().unwrap(), r.to_str().unwrap(), "3K"),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let whole = started.elapsed();
    let mut rng = Rng(7);
    let mut killed = 0;
    for i in 0..8 {
        let lake = work.path().join(format!("lake-{i}"));
        let a = args(
            lake.to_str().unwrap(),
            s.to_str().unwrap(),
            r.to_str().unwrap(),
            "3K",
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_hvrlake"))
            .arg("backfill")
            .args(&a)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole.mul_f64(rng.below(1000) as f64 / 1000.0));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let out = backfill(&a, &[]);
        assert!(out.status.success(), "{}", text(&out));
        check(&lake, &mo, &ml);
    }
    assert!(
        killed >= 4,
        "kills landed while running: {killed} of 8 ({whole:?} a run)"
    );
}

#[test]
fn csv_and_parquet_files_mix_in_one_backfill() {
    let work = tempfile::tempdir().unwrap();
    let (mo, ml) = file_set(work.path(), 6, 3);
    // Cycles 2 and 4 of orders as Parquet, written by pyarrow from the same CSV.
    let dir = work.path().join("cycles");
    for c in [2u64, 4] {
        let name = format!("{}-orders", 20260101000000000u64 + c * 100_000);
        let script = "import sys, pyarrow as pa, pyarrow.csv as pc, pyarrow.parquet as pq\n\
            t = pc.read_csv(sys.argv[1], convert_options=pc.ConvertOptions(column_types={'id': pa.int64(), 'who': pa.string(), 'amount': pa.string(), 'hvr_op': pa.int32(), 'hvr_integ_seq': pa.string()}, strings_can_be_null=True))\n\
            pq.write_table(t, sys.argv[2])\n";
        let py = std::env::var("HVRLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(dir.join(format!("{name}.csv")))
            .arg(dir.join(format!("{name}.parquet")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        std::fs::remove_file(dir.join(format!("{name}.csv"))).unwrap();
    }
    let lake = work.path().join("lake");
    let (l, r) = (lake.to_str().unwrap(), work.path().join("refresh"));
    let a = args(l, dir.to_str().unwrap(), r.to_str().unwrap(), "1G");
    let out = backfill(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    check(&lake, &mo, &ml);
}

#[test]
fn a_backfill_from_s3_into_an_s3_lake() {
    let work = tempfile::tempdir().unwrap();
    let (mo, _) = file_set(work.path(), 5, 4);
    let prefix = unique("bf");
    let store = crate::helpers::store_at(&format!("s3://delta/{prefix}/"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    for sub in ["refresh", "cycles"] {
        for e in std::fs::read_dir(work.path().join(sub)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with("-orders.csv") {
                continue;
            }
            let path = object_store::path::Path::from(format!("{sub}/{name}"));
            let data = bytes::Bytes::from(std::fs::read(&p).unwrap());
            rt.block_on(object_store::ObjectStoreExt::put(
                &store,
                &path,
                data.into(),
            ))
            .unwrap();
        }
    }
    let lake = format!("s3://delta/{prefix}/lake");
    let (src, refresh) = (
        format!("s3://delta/{prefix}/cycles"),
        format!("s3://delta/{prefix}/refresh"),
    );
    let out = backfill(
        &[
            "--target",
            &lake,
            "--keys",
            "orders=id",
            "--refresh",
            &refresh,
            &src,
        ],
        &store_env(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = read_rows_at(url::Url::parse(&format!("{lake}/orders/")).unwrap());
    assert_eq!(got.rows, mo.sorted());
}

#[test]
fn a_bad_file_stops_the_backfill_with_its_place_and_a_rerun_after_the_fix_ends_exact() {
    let work = tempfile::tempdir().unwrap();
    let (mo, ml) = file_set(work.path(), 8, 5);
    let bad = work
        .path()
        .join("cycles")
        .join("20260101000500000-orders.csv");
    let good = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, format!("{good}7,x\n")).unwrap();
    let lake = work.path().join("lake");
    let (l, s, r) = (
        lake.to_str().unwrap(),
        work.path().join("cycles"),
        work.path().join("refresh"),
    );
    let a = args(l, s.to_str().unwrap(), r.to_str().unwrap(), "2K");
    let out = backfill(&a, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = good.lines().count() + 1;
    assert!(
        err.trim_end().lines().count() == 1
            && err.starts_with("F_JX0D03: ")
            && err.contains(&format!("20260101000500000-orders.csv:{line}:")),
        "{err}"
    );
    assert!(bad.exists(), "sources stay");
    // Fixed, the same command continues and ends exact.
    std::fs::write(&bad, good).unwrap();
    let out = backfill(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    check(&lake, &mo, &ml);
}

#[test]
fn remove_files_stray_files_and_the_agent_live_on_another_table() {
    let work = tempfile::tempdir().unwrap();
    let (mo, ml) = file_set(work.path(), 12, 6);
    let s = work.path().join("cycles");
    std::fs::write(s.join("README.txt"), "not an HVR file").unwrap();
    // The agent integrates another table of the same lake while the backfill runs.
    let lake = work.path().join("lake");
    let agent = crate::helpers::Hvr::new();
    let t = crate::helpers::Table::new("other", &["id"], &["id", "v", "hvr_op"]);
    let mut expected = Vec::new();
    for i in 0..6 {
        agent.write(
            &format!("{i}-other.csv"),
            format!("id,v,hvr_op\n{i},v{i},1\n"),
        );
        expected.push(crate::helpers::row(&[&i.to_string(), &format!("v{i}")]));
    }
    expected.sort();
    let (l, r) = (lake.to_str().unwrap(), work.path().join("refresh"));
    let mut a = args(l, s.to_str().unwrap(), r.to_str().unwrap(), "2K");
    a.push("--remove-files");
    std::thread::scope(|scope| {
        let bf = scope.spawn(|| backfill(&a, &[]));
        for i in 0..6 {
            let userarg = format!("target={l}");
            let name = format!("{i}-other.csv");
            let out = agent.call_with("integ_end", &[&t], &[&name], Some(&userarg), &[]);
            assert_eq!(out.code, 0, "{out:?}");
        }
        let out = bf.join().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.matches("README.txt: skipped, its name does not match")
                .count(),
            1,
            "{err}"
        );
    });
    check(&lake, &mo, &ml);
    assert_eq!(read_rows(&lake.join("other")).rows, expected);
    let left: Vec<_> = std::fs::read_dir(&s)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        vec!["README.txt"],
        "applied files removed, others stay"
    );
}
