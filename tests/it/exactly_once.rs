//! Exactly once: calls HVR makes again after a failure, a kill or a crash between the commits
//! of two tables end with every change applied once; one hvrlake at a time per location.

use std::time::{Duration, Instant};

use crate::helpers::{Change, Hvr, Model, Rng, Table, csv, row};

fn orders() -> Table {
    Table::new(
        "orders",
        &["id"],
        &["id", "who", "amount", "hvr_op", "hvr_integ_seq"],
    )
}

fn lines() -> Table {
    Table::new(
        "lines",
        &["id", "n"],
        &["id", "n", "qty", "hvr_op", "hvr_integ_seq"],
    )
    .base("sales.lines")
}

/// Seeded changes for both tables (keys picked from `space`; 0: refresh rows), applied to the
/// models too; returns the two files' CSV.
fn cycle(
    rng: &mut Rng,
    mo: &mut Model,
    ml: &mut Model,
    space: u64,
    n: usize,
    seq: u64,
) -> (String, String) {
    let mut out = Vec::new();
    for (t, m, key_cols) in [(orders(), &mut *mo, 1usize), (lines(), &mut *ml, 2)] {
        let mut changes = Vec::new();
        let mut rows = Vec::new();
        for j in 0..n {
            // space 0: a refresh, every key once, all inserts.
            let op = if space == 0 {
                1
            } else {
                [1, 2, 2, 2, 0][rng.below(5) as usize]
            };
            let mut values: Vec<Option<String>> = (0..key_cols)
                .map(|_| match space {
                    0 => Some((seq + j as u64).to_string()),
                    _ => Some(rng.below(space).to_string()),
                })
                .collect();
            values.push(Some(format!("v{}", rng.below(10_000))));
            if key_cols == 1 {
                values.push(Some(format!("{}.{:02}", rng.below(1000), rng.below(100))));
            }
            let s = format!("{:x}", seq + j as u64);
            changes.push(Change {
                op,
                seq: s.clone(),
                values: values.clone(),
            });
            values.push(Some(op.to_string()));
            values.push(Some(s));
            rows.push(values);
        }
        let keys: Vec<usize> = (0..key_cols).collect();
        m.apply(&keys, &changes);
        let header: Vec<&str> = t.cols.iter().map(String::as_str).collect();
        out.push(csv(&header, &rows));
    }
    (out.remove(0), out.remove(0))
}

fn assert_tables(h: &Hvr, mo: &Model, ml: &Model, what: &str) {
    assert_eq!(h.rows("orders").rows, mo.sorted(), "orders {what}");
    assert_eq!(
        h.rows("sales.lines").rows,
        ml.sorted(),
        "sales.lines {what}"
    );
}

fn start(h: &Hvr, seed: u64) -> (Rng, Model, Model) {
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = (Rng(seed), Model::default(), Model::default());
    let (a, b) = cycle(&mut rng, &mut mo, &mut ml, 40, 60, 1);
    h.write("0-orders.csv", a);
    h.write("0-lines.csv", b);
    h.ok("integ_end", &[&o, &l], &["0-orders.csv", "0-lines.csv"]);
    assert_tables(h, &mo, &ml, "after the first cycle");
    (rng, mo, ml)
}

/// Writes a second cycle (`1-*.csv`) and calls `integ_end` on it with a failpoint that kills
/// the process at `failpoint`.
fn killed_at(
    h: &Hvr,
    rng: &mut Rng,
    mo: &mut Model,
    ml: &mut Model,
    failpoint: &str,
) -> crate::helpers::Output {
    let (a, b) = cycle(rng, mo, ml, 40, 50, 1000);
    h.write("1-orders.csv", a);
    h.write("1-lines.csv", b);
    h.call_with(
        "integ_end",
        &[&orders(), &lines()],
        &["1-orders.csv", "1-lines.csv"],
        Some(&h.full_userarg()),
        &[("HVRLAKE_FAILPOINT", failpoint)],
    )
}

#[test]
fn a_call_made_again_after_its_commits_is_skipped_and_removes_the_files() {
    let h = Hvr::new();
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = start(&h, 3);
    // Killed after both commits, before removing the files.
    let files = ["1-orders.csv", "1-lines.csv"];
    let out = killed_at(&h, &mut rng, &mut mo, &mut ml, "before_remove");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(h.has_file("1-orders.csv") && h.has_file("1-lines.csv"));
    let versions = (h.version("orders"), h.version("sales.lines"));
    assert_tables(&h, &mo, &ml, "after the killed call");
    // One file was already removed before the kill: not an error for a committed table.
    std::fs::remove_file(h.loc.path().join("1-orders.csv")).unwrap();
    // HVR calls again with the same environment.
    let out = h.ok("integ_end", &[&o, &l], &files);
    assert!(
        out.stdout
            .contains("orders: skipped: this cycle was committed by an earlier call")
            && out
                .stdout
                .contains("sales.lines: skipped: this cycle was committed by an earlier call"),
        "{}",
        out.stdout
    );
    assert_eq!((h.version("orders"), h.version("sales.lines")), versions);
    assert!(!h.has_file("1-orders.csv") && !h.has_file("1-lines.csv"));
    assert_tables(&h, &mo, &ml, "after the call made again");
}

#[test]
fn a_crash_between_two_tables_is_finished_by_the_next_call() {
    // One table after the other, so that the crash falls between the two commits.
    let mut h = Hvr::new();
    h.userarg = "parallel_tables=1".into();
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = start(&h, 4);
    let before_lines = h.rows("sales.lines").rows;
    let files = ["1-orders.csv", "1-lines.csv"];
    let out = killed_at(&h, &mut rng, &mut mo, &mut ml, "after_commit:orders");
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(h.rows("orders").rows, mo.sorted(), "table 1 committed");
    assert_eq!(h.rows("sales.lines").rows, before_lines, "table 2 not yet");
    let orders_version = h.version("orders");
    let out = h.ok("integ_end", &[&o, &l], &files);
    assert!(out.stdout.contains("orders: skipped"), "{}", out.stdout);
    assert!(
        out.stdout.contains("sales.lines: rows_in=50"),
        "{}",
        out.stdout
    );
    assert_eq!(h.version("orders"), orders_version);
    assert_tables(&h, &mo, &ml, "after the call made again");

    // A cycle that changes nothing (deletes of absent keys) still records its progress:
    // made again, it is skipped rather than applied twice.
    let text = "id,who,amount,hvr_op,hvr_integ_seq\n999,x,1,0,ffff\n";
    h.write("2-orders.csv", text);
    let v = h.version("orders").unwrap();
    h.ok("integ_end", &[&o], &["2-orders.csv"]);
    assert_eq!(h.version("orders"), Some(v + 1), "a progress-only commit");
    h.write("2-orders.csv", text);
    let out = h.ok("integ_end", &[&o], &["2-orders.csv"]);
    assert!(out.stdout.contains("orders: skipped"), "{}", out.stdout);
}

/// Kills `integ_end` (or `refr_write_end`) at seeded random moments spread over a whole call
/// (uniform over 1.3 times the median call), `kills` times, each time calling again as HVR
/// does; the tables must be exact after every pair.
fn kill_and_call_again(mode: &str, kills: usize, seed: u64, userarg: &str) {
    let mut h = Hvr::new();
    h.userarg = userarg.to_string();
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = start(&h, seed);
    // How long an uninterrupted call of this size takes here.
    let mut typical = Duration::ZERO;
    let (mut killed, mut finished_first) = (0, 0);
    // Kills by how far the call got: no table committed, one of two, both.
    let mut reached = [0; 3];
    let mut calls: Vec<Duration> = Vec::new();
    let mut round = 0u64;
    while killed < kills {
        round += 1;
        assert!(
            round < 4 * kills as u64,
            "too few kills landed: {killed} in {round} rounds"
        );
        let names = [format!("{round}-orders.csv"), format!("{round}-lines.csv")];
        let (a, b) = if mode == "refr_write_end" {
            // A refresh: the rows of this round replace the tables.
            mo = Model::default();
            ml = Model::default();
            cycle(&mut rng, &mut mo, &mut ml, 0, 80, round * 1000)
        } else {
            cycle(&mut rng, &mut mo, &mut ml, 60, 80, round * 1000)
        };
        h.write(&names[0], a);
        h.write(&names[1], b);
        let files = [names[0].as_str(), names[1].as_str()];
        if round == 1 {
            let t = Instant::now();
            h.ok(mode, &[&o, &l], &files);
            typical = t.elapsed();
        } else {
            let before = [h.version("orders"), h.version("sales.lines")];
            let mut child = h
                .command(mode, &[&o, &l], &files, Some(&h.full_userarg()), &[])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let at = typical.mul_f64(rng.below(1300) as f64 / 1000.0);
            std::thread::sleep(at);
            match child.try_wait().unwrap() {
                Some(_) => finished_first += 1,
                None => {
                    child.kill().unwrap(); // SIGKILL
                    killed += 1;
                    child.wait().unwrap();
                    let after = [h.version("orders"), h.version("sales.lines")];
                    reached[before.iter().zip(&after).filter(|(b, a)| b != a).count()] += 1;
                }
            }
            child.wait().unwrap();
            // HVR runs the job again with the same environment.
            let t = Instant::now();
            let out = h.call(mode, &[&o, &l], &files);
            // The kill window follows the median whole call.
            if !out.stdout.contains("skipped") {
                calls.push(t.elapsed());
                calls.sort();
                typical = calls[calls.len() / 2];
            }
            assert_eq!(out.code, 0, "round {round}, killed after {at:?}: {out:?}");
        }
        assert_tables(&h, &mo, &ml, &format!("after round {round}"));
        assert!(!h.has_file(&names[0]) && !h.has_file(&names[1]));
    }
    eprintln!(
        "{mode}: {killed} calls killed while running (with 0/1/2 tables committed: {reached:?}), {finished_first} finished before the kill; a call takes about {typical:?}"
    );
    assert!(
        reached[0] > 0 && reached[1] + reached[2] > 0,
        "kills before and after commits: {reached:?}"
    );
    if userarg.contains("deletion_vectors=true") {
        let vectors = std::fs::read_dir(h.table_dir("orders"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("deletion_vector_")
            })
            .count();
        assert!(vectors > 0, "the merges wrote deletion vectors");
    }
}

#[test]
fn integ_end_killed_anywhere_then_called_again_applies_every_change_once() {
    kill_and_call_again("integ_end", 55, 11, "deletion_vectors=false");
}

#[test]
fn integ_end_with_deletion_vectors_killed_anywhere_then_called_again_applies_every_change_once() {
    // The vector file is written before the commit: a kill between leaves an unused file,
    // and the call made again writes its own.
    // Always marked, never rewritten: the vectors are what is killed mid-write.
    kill_and_call_again("integ_end", 25, 13, "deletion_vectors=true rewrite_share=1");
}

#[test]
fn refr_write_end_killed_anywhere_then_called_again_leaves_exactly_the_new_rows() {
    kill_and_call_again("refr_write_end", 55, 12, "");
}

#[test]
fn a_second_call_on_the_same_location_waits_for_the_first() {
    let h = Hvr::new();
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-o.csv", "id,v,hvr_op\n1,a,1\n");
    // Another hvrlake holds the location (the test takes the same lock file).
    let dir = h.loc.path().join("_hvr_state");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("hvrlake.lock"))
        .unwrap();
    lock.lock().unwrap();
    let userarg = format!("{} lock_wait=1", h.full_userarg());
    let out = h.call_with("integ_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("another hvrlake is working on this file location")
            && out.stderr.contains("hvrlake.lock"),
        "{out:?}"
    );
    assert!(h.has_file("1-o.csv") && h.version("o").is_none());

    // With time to wait, it goes on once the other one is done.
    let userarg = format!("{} lock_wait=60", h.full_userarg());
    let child = h
        .command("integ_end", &[&t], &["1-o.csv"], Some(&userarg), &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(h.has_file("1-o.csv"), "still waiting");
    lock.unlock().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("W_JX0E02"));
    assert_eq!(h.rows("o").rows, vec![row(&["1", "a"])]);
}

#[test]
fn the_call_after_an_interrupted_cycle_applies_the_leftover_cycles_in_order() {
    let h = Hvr::new();
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = start(&h, 5);
    // Cycle A: orders committed, then the job dies before sales.lines.
    let (a1, a2) = cycle(&mut rng, &mut mo, &mut ml, 40, 50, 1000);
    let cycle_a = [
        "20261123100000000-orders.csv",
        "20261123100000000-lines.csv",
    ];
    h.write(cycle_a[0], a1);
    h.write(cycle_a[1], a2);
    let out = h.call_with(
        "integ_end",
        &[&o, &l],
        &cycle_a,
        Some(&h.full_userarg()),
        &[("HVRLAKE_FAILPOINT", "after_commit:orders")],
    );
    assert_ne!(out.code, 0, "{out:?}");
    let orders_version = h.version("orders");
    // Cycle B's files were written too, but HVR was interrupted before calling.
    let (b1, b2) = cycle(&mut rng, &mut mo, &mut ml, 40, 50, 2000);
    let cycle_b = [
        "20261123100500000-orders.csv",
        "20261123100500000-lines.csv",
    ];
    h.write(cycle_b[0], b1);
    h.write(cycle_b[1], b2);
    h.write("notes.txt", "not an HVR file");
    // HVR's call after the interrupted job: no tables, no files.
    let out = h.ok("integ_end", &[], &[]);
    assert!(
        out.stdout.contains("recovering 2 cycle(s)")
            && out
                .stdout
                .contains("orders: skipped: cycle 20261123100000000 was committed"),
        "{}",
        out.stdout
    );
    assert_eq!(
        h.version("orders"),
        orders_version.map(|v| v + 1),
        "orders: cycle B only"
    );
    assert_tables(&h, &mo, &ml, "after the recovery call");
    for f in cycle_a.iter().chain(&cycle_b) {
        assert!(!h.has_file(f), "{f} removed");
    }
    assert!(h.has_file("notes.txt"), "other files stay");
    // Nothing left: the same call again does nothing.
    let out = h.ok("integ_end", &[], &[]);
    assert!(out.stdout.contains("no files left"), "{}", out.stdout);
    assert_tables(&h, &mo, &ml, "after a second recovery call");
}

#[test]
fn a_refresh_killed_half_way_then_a_new_refresh_leaves_exactly_the_new_rows() {
    let h = Hvr::new();
    let (o, l) = (orders(), lines());
    let (mut rng, mut mo, mut ml) = start(&h, 6);
    // A refresh dies after its first table.
    let (a, b) = cycle(&mut rng, &mut mo, &mut ml, 0, 30, 5000);
    h.write("1-orders.csv", a);
    h.write("1-lines.csv", b);
    let out = h.call_with(
        "refr_write_end",
        &[&o, &l],
        &["1-orders.csv", "1-lines.csv"],
        Some(&h.full_userarg()),
        &[("HVRLAKE_FAILPOINT", "after_commit:orders")],
    );
    assert_ne!(out.code, 0, "{out:?}");
    // A new refresh (other rows, other files) replaces both tables.
    let (mut mo, mut ml) = (Model::default(), Model::default());
    let (a, b) = cycle(&mut rng, &mut mo, &mut ml, 0, 40, 9000);
    h.write("2-orders.csv", a);
    h.write("2-lines.csv", b);
    h.ok(
        "refr_write_end",
        &[&o, &l],
        &["2-orders.csv", "2-lines.csv"],
    );
    assert_tables(&h, &mo, &ml, "after the new refresh");
}
