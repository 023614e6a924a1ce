//! Deletion vectors (`deletion_vectors=true`): merges mark changed rows deleted instead of
//! rewriting files; every reader that applies deletion vectors sees exactly the model's rows.

use crate::helpers::{Change, Hvr, Model, Rng, Table, csv, row};

fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hvrlake"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The rows as the Python deltalake package reads them (its DataFusion reader, which applies
/// deletion vectors): `id|v` lines, sorted.
fn python_rows(h: &Hvr, base: &str) -> String {
    let script = "import sys\nimport pyarrow as pa\nfrom deltalake import DeltaTable, QueryBuilder\n\
        d = DeltaTable(sys.argv[1])\n\
        t = pa.table(QueryBuilder().register('t', d).execute('select id, v from t').read_all())\n\
        print('\\n'.join(sorted(f\"{r['id']}|{r['v']}\" for r in t.to_pylist())))\n";
    let (out, err) = crate::helpers::python(script, &h.table_dir(base));
    assert!(err.trim().is_empty() || !err.contains("Error"), "{err}");
    out
}

fn model_rows(model: &Model) -> String {
    let mut v: Vec<String> = model
        .sorted()
        .iter()
        .map(|r| format!("{}|{}", r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    v.sort();
    v.join("\n")
}

#[test]
fn merges_write_deletion_vectors_and_every_reader_sees_the_model() {
    let mut h = Hvr::new();
    h.userarg =
        "deletion_vectors=true rewrite_share=1 compact_small_files=0 compact_deleted_share=0"
            .into();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    let mut model = Model::default();
    let refresh: Vec<_> = (0..300u64)
        .map(|id| row(&[&id.to_string(), &format!("r{id}")]))
        .collect();
    model.refresh(&[0], &refresh);
    h.write("0-t.csv", csv(&["id", "v"], &refresh));
    h.ok("refr_write_end", &[&t], &["0-t.csv"]);
    let mut rng = Rng(17);
    let mut seq = 1000u64;
    for c in 1..=10u64 {
        let mut changes = Vec::new();
        for j in 0..40 {
            // Repeated keys, deletes, re-inserts, and keys never seen.
            let id = rng.below(360);
            seq += 1;
            changes.push(Change {
                op: [1, 2, 2, 0][rng.below(4) as usize],
                seq: format!("{seq:x}"),
                values: row(&[&id.to_string(), &format!("c{c}j{j}")]),
            });
        }
        model.apply(&[0], &changes);
        let name = format!("{c}-t.csv");
        h.write(&name, crate::helpers::change_csv(&["id", "v"], &changes));
        h.ok("integ_end", &[&t], &[&name]);
        assert_eq!(h.rows("t").rows, model.sorted(), "cycle {c}");
    }
    // The refresh file was never rewritten: it is still in the table, with a vector.
    let files: Vec<String> = std::fs::read_dir(h.table_dir("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let vectors = files
        .iter()
        .filter(|f| f.starts_with("deletion_vector_"))
        .count();
    assert!(
        vectors >= 9,
        "one vector file per merge that changed rows: {files:?}"
    );
    let inspect = cli(&["inspect", "--target", &h.target(), "t"]);
    assert!(
        inspect.contains(&format!("rows        {}", model.rows.len())),
        "{inspect}"
    );
    // An independent reader: the Python deltalake package.
    assert_eq!(python_rows(&h, "t"), model_rows(&model));
    // Compaction reads through the vectors: the rows stay.
    cli(&["optimize", "--target", &h.target(), "t"]);
    assert_eq!(h.rows("t").rows, model.sorted());
    assert_eq!(python_rows(&h, "t"), model_rows(&model));
    // A table created with the setting off has none, and merges as before.
    let mut plain = Hvr::new();
    plain.userarg = "deletion_vectors=false".into();
    plain.write("0-t.csv", csv(&["id", "v"], &refresh[..5]));
    plain.ok("refr_write_end", &[&t], &["0-t.csv"]);
    plain.write("1-t.csv", "id,v,hvr_op,hvr_integ_seq\n1,x,2,10\n");
    plain.ok("integ_end", &[&t], &["1-t.csv"]);
    assert!(!std::fs::read_dir(plain.table_dir("t")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("deletion_vector_")
    }));
}

#[test]
fn a_table_whose_vectors_delete_a_set_share_is_compacted_and_stays_exact() {
    let mut h = Hvr::new();
    h.userarg =
        "deletion_vectors=true rewrite_share=1 compact_small_files=0 compact_deleted_share=0.2"
            .into();
    let t = Table::new("t", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    let mut model = Model::default();
    let refresh: Vec<_> = (0..100u64).map(|id| row(&[&id.to_string(), "r"])).collect();
    model.refresh(&[0], &refresh);
    h.write("0-t.csv", csv(&["id", "v"], &refresh));
    h.ok("refr_write_end", &[&t], &["0-t.csv"]);
    let mut compacted_at = Vec::new();
    for c in 1..=6u64 {
        // 10 refreshed keys updated a cycle: 10% more of the stored rows deleted each time.
        let changes: Vec<Change> = (0..10u64)
            .map(|j| Change {
                op: 2,
                seq: format!("{:x}", c * 100 + j),
                values: row(&[&((c - 1) * 10 + j).to_string(), &format!("c{c}")]),
            })
            .collect();
        model.apply(&[0], &changes);
        let name = format!("{c}-t.csv");
        h.write(&name, crate::helpers::change_csv(&["id", "v"], &changes));
        let out = h.ok("integ_end", &[&t], &[&name]);
        if out.stdout.contains("hvrlake: compacted: t:") {
            compacted_at.push(c);
        }
        assert_eq!(h.rows("t").rows, model.sorted(), "cycle {c}");
    }
    // Deleted share of the stored rows after each cycle: 10/110, 20/120, 30/130 (at least
    // 0.2: compacted to 100 rows, no vectors), then 10/110, 20/120, 30/130 again.
    assert_eq!(compacted_at, vec![3, 6]);
    assert_eq!(python_rows(&h, "t"), model_rows(&model));
}
