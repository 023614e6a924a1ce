//! Upkeep: small files compacted on their own after commits, `optimize`, `vacuum`, `inspect`.

use std::process::Command;

use crate::helpers::{Change, Hvr, Model, Rng, Table, row};

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hvrlake"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn data_files(h: &Hvr, base: &str) -> usize {
    let out = cli(&["inspect", "--target", &h.target(), base]).1;
    let line = out
        .lines()
        .find(|l| l.starts_with("files "))
        .unwrap()
        .to_string();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn small_files_are_compacted_after_commits_and_the_rows_stay_exact() {
    let mut h = Hvr::new();
    h.userarg = "compact_small_files=8".into();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    let mut model = Model::default();
    let mut rng = Rng(9);
    let mut compactions = 0;
    let mut most = 0;
    for c in 0..20u64 {
        let mut changes = Vec::new();
        // New keys (each cycle adds a file), and now and then a change to an older key.
        for j in 0..15 {
            let (op, id) = match rng.below(10) {
                0 => (2, rng.below(c * 100 + 1)),
                1 => (0, rng.below(c * 100 + 1)),
                _ => (1, c * 100 + j),
            };
            changes.push(Change {
                op,
                seq: format!("{:x}", c * 100 + j),
                values: row(&[&id.to_string(), &format!("v{c}")]),
            });
        }
        model.apply(&[0], &changes);
        let name = format!("{c}-t.csv");
        h.write(&name, crate::helpers::change_csv(&["id", "v"], &changes));
        let out = h.ok("integ_end", &[&t], &[&name]);
        compactions += out.stdout.matches("hvrlake: compacted: t:").count();
        most = most.max(data_files(&h, "t"));
    }
    assert_eq!(h.rows("t").rows, model.sorted());
    assert!(compactions >= 1, "compacted at least once");
    assert!(most <= 9, "the file count stays bounded: at most {most}");
}

#[test]
fn optimize_vacuum_and_inspect_from_the_command_line() {
    let h = Hvr::new();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    for c in 0..4 {
        let name = format!("{c}-t.csv");
        h.write(
            &name,
            format!("id,v,hvr_op,hvr_integ_seq\n{c},v{c},1,{c}\n"),
        );
        h.ok("integ_end", &[&t], &[&name]);
    }
    let target = h.target();
    let (code, out) = cli(&["inspect", "--target", &target, "t"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("rows        4") && out.contains("keys        id"),
        "{out}"
    );
    assert!(
        out.contains("applied     hvrlake/chn/trg/t: txn 4 integrate"),
        "{out}"
    );
    let before = data_files(&h, "t");
    let (code, out) = cli(&["optimize", "--target", &target, "t", "--zorder"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("hvrlake: optimize: t: files removed="),
        "{out}"
    );
    assert!(data_files(&h, "t") < before, "{before} files before");
    let rows = h.rows("t").rows;
    assert_eq!(rows.len(), 4);
    // Files removed by the optimize are within the retention period: nothing to delete yet.
    let (code, out) = cli(&["vacuum", "--target", &target, "t", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would delete 0 file(s)"), "{out}");
    // A shorter retention than the table's is refused, with one line.
    let (code, out) = cli(&["vacuum", "--target", &target, "t", "--retention-hours", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("F_JX0D03: ") && out.trim_end().lines().count() == 1,
        "{out}"
    );
    let (code, out) = cli(&["inspect", "--target", &target, "nope"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no Delta table here"), "{out}");
}

#[test]
fn checkpoints_are_written_on_the_delta_interval() {
    // Delta's default interval is 100 commits: without checkpoints every load replays the
    // whole log and each cycle gets slower.
    let h = Hvr::new();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    for c in 0..101 {
        let name = format!("{c}-t.csv");
        h.write(
            &name,
            format!("id,v,hvr_op,hvr_integ_seq\n{},v,1,{c:x}\n", c % 7),
        );
        h.ok("integ_end", &[&t], &[&name]);
    }
    let log = h.table_dir("t").join("_delta_log");
    let checkpoints: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".checkpoint"))
        .collect();
    assert!(
        checkpoints
            .iter()
            .any(|n| n.starts_with("00000000000000000099.checkpoint")),
        "{checkpoints:?}"
    );
    assert_eq!(h.rows("t").rows.len(), 7);
}

#[test]
fn compaction_every_n_cycles_z_ordered_by_the_keys() {
    let mut h = Hvr::new();
    h.userarg = "compact_small_files=0 compact_every=3 compact_zorder=true".into();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    let mut compacted_at = Vec::new();
    for c in 1..=7u64 {
        let name = format!("{c}-t.csv");
        let rows: String = (0..5)
            .map(|j| format!("{},v{c},1,{:x}\n", c * 10 + j, c * 10 + j))
            .collect();
        h.write(&name, format!("id,v,hvr_op,hvr_integ_seq\n{rows}"));
        let out = h.ok("integ_end", &[&t], &[&name]);
        if out.stdout.contains("hvrlake: compacted: t:") {
            compacted_at.push(c);
        }
    }
    assert_eq!(compacted_at, vec![3, 6]);
    assert_eq!(h.rows("t").rows.len(), 35);
    assert!(data_files(&h, "t") <= 2, "{}", data_files(&h, "t"));
}
