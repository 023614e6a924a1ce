//! The same refresh and integrate cycle against a lake on S3 (moto) and on ADLS/Blob
//! (Azurite), both started on loopback by `scripts/test`, read back with the deltalake crate.

use crate::helpers::{Hvr, Table, read_rows_at, row, store_env, unique};

fn refresh_then_cycle(lake: &str) {
    let h = Hvr {
        env: store_env(),
        ..Hvr::new()
    };
    let userarg = format!("target={lake}");
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    h.write(
        "1-o.csv",
        "id,v,hvr_op,hvr_integ_seq\n1,a,1,1\n2,b,1,2\n3,c,1,3\n",
    );
    let out = h.call_with("refr_write_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    h.write(
        "2-o.csv",
        "id,v,hvr_op,hvr_integ_seq\n2,B,2,10\n3,c,0,11\n4,d,1,12\n2,BB,2,13\n",
    );
    let out = h.call_with("integ_end", &[&t], &["2-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("inserted=1 updated=1 deleted=1"),
        "{}",
        out.stdout
    );
    assert!(!h.has_file("2-o.csv"), "processed files are removed");
    let url = url::Url::parse(&format!("{lake}/o/")).unwrap();
    let got = read_rows_at(url);
    assert_eq!(got.columns, vec!["id", "v"]);
    assert_eq!(
        got.rows,
        vec![row(&["1", "a"]), row(&["2", "BB"]), row(&["4", "d"])]
    );
}

#[test]
fn s3_lake_takes_a_refresh_and_a_cycle() {
    refresh_then_cycle(&format!("s3://delta/{}", unique("lake")));
}

#[test]
fn azure_lake_takes_a_refresh_and_a_cycle() {
    refresh_then_cycle(&format!("az://delta/{}", unique("lake")));
}

#[test]
fn abfss_lake_takes_a_refresh_and_a_cycle() {
    let account = std::env::var("AZURE_STORAGE_ACCOUNT_NAME").unwrap_or_default();
    refresh_then_cycle(&format!(
        "abfss://delta@{account}.dfs.core.windows.net/{}",
        unique("lake")
    ));
}

#[test]
fn secrets_stay_out_of_every_output_even_when_the_store_fails() {
    // A bucket that does not exist: the call fails talking to S3, with the secret key set.
    let secret = "hvrlakeTestSecret0123456789abcdefXYZ";
    let mut env = store_env();
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), secret.into()));
    let h = Hvr { env, ..Hvr::new() };
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-o.csv", "id,v,hvr_op\n1,a,1\n");
    for target in [
        format!("s3://no-such-bucket-{}/lake", std::process::id()),
        format!("s3://delta/{}", unique("lake")),
    ] {
        let userarg = format!("target={target}");
        let out = h.call_with("refr_write_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{out:?}"
        );
        if target.contains("no-such-bucket") {
            assert_eq!(out.code, 1, "{out:?}");
            assert!(out.stderr.starts_with("F_JX0D03: "), "{}", out.stderr);
            assert!(h.has_file("1-o.csv"), "input kept after a failure");
        }
    }
}

#[test]
fn s3_credentials_and_endpoint_can_be_settings() {
    // No AWS_* variable reaches hvrlake: the endpoint and credentials come from the userarg,
    // under the names object_store gives them.
    let env = store_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let h = Hvr {
        env: vec![("AWS_EC2_METADATA_DISABLED".into(), "true".into())],
        ..Hvr::new()
    };
    let lake = format!("s3://delta/{}", unique("lake"));
    let userarg = format!(
        "target={lake} aws_endpoint_url={} aws_access_key_id={} aws_secret_access_key={} aws_region={} aws_allow_http=true",
        get("AWS_ENDPOINT_URL"),
        get("AWS_ACCESS_KEY_ID"),
        get("AWS_SECRET_ACCESS_KEY"),
        get("AWS_REGION"),
    );
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-o.csv", "id,v,hvr_op\n1,a,1\n2,b,1\n");
    let out = h.call_with("refr_write_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    h.write("2-o.csv", "id,v,hvr_op\n2,c,2\n");
    let out = h.call_with("integ_end", &[&t], &["2-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let got = read_rows_at(url::Url::parse(&format!("{lake}/o/")).unwrap());
    assert_eq!(got.rows, vec![row(&["1", "a"]), row(&["2", "c"])]);

    // Without them the same call cannot reach the bucket: the settings were what worked.
    let out = h.call_with(
        "integ_end",
        &[&t],
        &["2-o.csv"],
        Some(&format!("target={lake}")),
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn a_store_that_ignores_conditional_writes_is_refused_unless_single_writer() {
    let env = store_env();
    let endpoint = env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .unwrap()
        .1
        .clone();
    let proxy = crate::helpers::proxy::start(
        &endpoint,
        crate::helpers::proxy::Behaviour {
            strip_conditional: true,
            fault_percent: 0,
            faults: Vec::new(),
            seed: 0,
        },
    )
    .url;
    let h = Hvr {
        env: env.clone(),
        ..Hvr::new()
    };
    let lake = format!("s3://delta/{}", unique("lake"));
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op"]);
    h.write("1-o.csv", "id,v,hvr_op\n1,a,1\n");
    let userarg = format!("target={lake} aws_endpoint_url={proxy}");
    let out = h.call_with("refr_write_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("F_JX0D03: ")
            && out.stderr.contains("If-None-Match")
            && out.stderr.contains("single_writer=true"),
        "{}",
        out.stderr
    );
    assert!(h.has_file("1-o.csv"));

    // Through moto itself the check passes; through the proxy, single_writer accepts it.
    let userarg = format!("target={lake} aws_endpoint_url={proxy} single_writer=true");
    let out = h.call_with("refr_write_end", &[&t], &["1-o.csv"], Some(&userarg), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let got = read_rows_at(url::Url::parse(&format!("{lake}/o/")).unwrap());
    assert_eq!(got.rows, vec![row(&["1", "a"])]);
}

#[test]
fn a_missing_input_object_is_named_and_nothing_changes() {
    let h = Hvr::on(crate::helpers::Backend::S3);
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op", "hvr_integ_seq"]);
    h.write("1-o.csv", "id,v,hvr_op,hvr_integ_seq\n1,a,1,1\n");
    h.ok("refr_write_end", &[&t], &["1-o.csv"]);
    h.write("2-o.csv", "id,v,hvr_op,hvr_integ_seq\n1,b,2,2\n");
    let out = h.call("integ_end", &[&t], &["2-o.csv", "3-o.csv"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "F_JX0D03: 3-o.csv: file does not exist",
        "{out:?}"
    );
    assert!(h.has_file("2-o.csv"), "no file is removed after a failure");
    // The refresh created the table with its rows in one commit (version 0).
    assert_eq!(h.version("o"), Some(0), "the table stays at its version");
    assert_eq!(h.rows("o").rows, vec![row(&["1", "a"])]);
}

/// Compares table rows with the expected ones, printing only the first differences.
fn assert_same_rows(got: &[Vec<Option<String>>], want: &[Vec<Option<String>>]) {
    if got != want {
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
        panic!(
            "{} rows, expected {}; first unexpected: {extra:?}; first missing: {missing:?}",
            got.len(),
            want.len()
        );
    }
}

fn endpoint() -> String {
    store_env()
        .into_iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .unwrap()
        .1
}

/// A keyed table with text and decimal columns, as HVR writes it.
fn accounts() -> Table {
    Table::new(
        "acct",
        &["id"],
        &["id", "name", "balance", "hvr_op", "hvr_integ_seq"],
    )
}

const ACCT_HEADER: &[&str] = &["id", "name", "balance", "hvr_op", "hvr_integ_seq"];

/// `n` seeded changes on the keys `keys` picks from (`i` → key), applied to `model` too;
/// with `key_space` 0, the `n` rows of a refresh. Returns the file's CSV.
fn random_cycle(
    rng: &mut crate::helpers::Rng,
    model: &mut crate::helpers::Model,
    keys: impl Fn(u64) -> u64,
    key_space: u64,
    n: usize,
    seq_base: u64,
) -> String {
    let mut changes = Vec::new();
    let mut rows = Vec::new();
    for j in 0..n {
        // key_space 0: a refresh, every key once, all inserts.
        let (id, op) = if key_space == 0 {
            (keys(j as u64), 1)
        } else {
            let op = match rng.below(10) {
                0..=5 => 2,
                6..=7 => 1,
                _ => 0,
            };
            (keys(rng.below(key_space)), op)
        };
        let id = id.to_string();
        let name = format!("n{}, \"q\"", rng.below(1000));
        let balance = format!("{}.{:02}", rng.below(100_000), rng.below(100));
        let seq = format!("{:x}", seq_base + j as u64);
        let values = row(&[&id, &name, &balance]);
        changes.push(crate::helpers::Change {
            op,
            seq: seq.clone(),
            values: values.clone(),
        });
        let mut r = values;
        r.push(Some(op.to_string()));
        r.push(Some(seq));
        rows.push(r);
    }
    model.apply(&[0], &changes);
    crate::helpers::csv(ACCT_HEADER, &rows)
}

/// Calls as HVR does: a failed integrate job is run again with the same environment, up to
/// `tries` times. Returns the outputs of the failed calls.
fn call_until_done(h: &Hvr, mode: &str, t: &Table, files: &[&str], tries: usize) -> Vec<String> {
    let mut failed = Vec::new();
    for _ in 0..tries {
        let out = h.call(mode, &[t], files);
        if out.code == 0 {
            return failed;
        }
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.starts_with("F_JX0D03: ") && out.stderr.trim_end().lines().count() == 1,
            "one line, HVR's format: {out:?}"
        );
        failed.push(out.stderr);
    }
    panic!("{mode} still failing after {tries} calls: {failed:#?}");
}

#[test]
fn faults_between_hvrlake_and_s3_are_retried_and_the_table_comes_out_exact() {
    use crate::helpers::proxy::{Behaviour, Fault};
    let proxy = crate::helpers::proxy::start(
        &endpoint(),
        Behaviour {
            strip_conditional: false,
            fault_percent: 20,
            faults: vec![
                Fault::Unavailable,
                Fault::DropRequest,
                Fault::DropResponse,
                Fault::Delay,
            ],
            seed: 20261123,
        },
    );
    let mut h = Hvr::on(crate::helpers::Backend::S3);
    h.userarg = format!("aws_endpoint_url={} store_retries=6", proxy.url);
    let t = accounts();
    let mut rng = crate::helpers::Rng(99);
    let mut model = crate::helpers::Model::default();
    let refresh = random_cycle(&mut rng, &mut model, |i| i, 0, 300, 1);
    h.write("0-acct.csv", refresh);
    let mut failed = call_until_done(&h, "refr_write_end", &t, &["0-acct.csv"], 5);
    for cycle in 1..=5u64 {
        let name = format!("{cycle}-acct.csv");
        let text = random_cycle(&mut rng, &mut model, |i| i, 400, 80, cycle * 1000);
        h.write(&name, text);
        failed.extend(call_until_done(&h, "integ_end", &t, &[&name], 5));
        assert!(!h.has_file(&name), "cycle {cycle}: file removed");
    }
    let injected = proxy.injected.load(std::sync::atomic::Ordering::Relaxed);
    let seen = proxy.requests.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "faults injected: {injected} of {seen} requests; calls that failed and were made again: {}",
        failed.len()
    );
    assert!(
        injected >= 5,
        "the proxy injected faults ({injected} of {seen})"
    );
    assert_same_rows(&h.rows("acct").rows, &model.sorted());
    // Most faults are absorbed inside a call (retried requests and commits).
    assert!(failed.len() <= 2, "{failed:#?}");
}

#[test]
fn when_every_request_fails_the_call_exits_1_and_nothing_changes() {
    use crate::helpers::proxy::{Behaviour, Fault};
    let mut h = Hvr::on(crate::helpers::Backend::S3);
    let t = accounts();
    let mut rng = crate::helpers::Rng(5);
    let mut model = crate::helpers::Model::default();
    let refresh = random_cycle(&mut rng, &mut model, |i| i, 0, 50, 1);
    h.write("0-acct.csv", refresh);
    h.ok("refr_write_end", &[&t], &["0-acct.csv"]);
    let before = (h.version("acct"), h.rows("acct"));
    let mut after_cycle = model.clone();
    h.write(
        "1-acct.csv",
        random_cycle(&mut rng, &mut after_cycle, |i| i, 80, 30, 100),
    );
    let proxy = crate::helpers::proxy::start(
        &endpoint(),
        Behaviour {
            strip_conditional: false,
            fault_percent: 100,
            faults: vec![Fault::Unavailable, Fault::DropRequest, Fault::DropResponse],
            seed: 1,
        },
    );
    h.userarg = format!(
        "aws_endpoint_url={} store_retries=2 store_retry_timeout=20",
        proxy.url
    );
    let started = std::time::Instant::now();
    let out = h.call("integ_end", &[&t], &["1-acct.csv"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("F_JX0D03: ") && out.stderr.trim_end().lines().count() == 1,
        "{out:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "retries are bounded: {:?}",
        started.elapsed()
    );
    assert_eq!((h.version("acct"), h.rows("acct")), before);
    assert!(h.has_file("1-acct.csv"), "the input file stays");

    // The same call once the store answers again applies the cycle.
    h.userarg.clear();
    h.ok("integ_end", &[&t], &["1-acct.csv"]);
    assert_same_rows(&h.rows("acct").rows, &after_cycle.sorted());
}

#[test]
fn two_writers_commit_to_one_table_at_once_and_every_change_lands_once() {
    let mut a = Hvr::on(crate::helpers::Backend::S3);
    let mut b = Hvr::on(crate::helpers::Backend::S3);
    b.remote.as_mut().unwrap().lake = a.remote.as_ref().unwrap().lake.clone();
    // Two integrate locations of HVR (each its own progress in the table).
    b.location = "trg2".into();
    // No compaction commits: each call's one commit is counted below.
    a.userarg = "compact_deleted_share=0".into();
    b.userarg = a.userarg.clone();
    let t = accounts();
    let mut rng = crate::helpers::Rng(42);
    let mut model = crate::helpers::Model::default();
    let refresh = random_cycle(&mut rng, &mut model, |i| i, 0, 400, 1);
    a.write("0-acct.csv", refresh);
    a.ok("refr_write_end", &[&t], &["0-acct.csv"]);
    // Writer a changes even keys, writer b odd ones: the end state does not depend on
    // which commit wins, only on every change landing exactly once.
    const CYCLES: u64 = 6;
    let mut files: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for cycle in 1..=CYCLES {
        for (w, h) in [&a, &b].into_iter().enumerate() {
            let text = random_cycle(
                &mut rng,
                &mut model,
                move |i| i * 2 + w as u64,
                260,
                40,
                cycle * 1000,
            );
            let name = format!("{cycle}-acct.csv");
            h.write(&name, text);
            files[w].push(name);
        }
    }
    let run = |h: &Hvr, names: &[String]| {
        let mut retried = 0;
        for name in names {
            let out = h.call("integ_end", &[&t], &[name]);
            assert_eq!(out.code, 0, "{out:?}");
            retried += out.stderr.matches("W_JX0E01").count();
        }
        retried
    };
    let retries: Vec<usize> = std::thread::scope(|s| {
        let ta = s.spawn(|| run(&a, &files[0]));
        let tb = s.spawn(|| run(&b, &files[1]));
        vec![ta.join().unwrap(), tb.join().unwrap()]
    });
    eprintln!("commits redone after losing to the other writer: {retries:?}");
    assert_same_rows(&a.rows("acct").rows, &model.sorted());
    // Every call made exactly one commit of its own: the refresh (version 0) + 2×6.
    assert_eq!(a.version("acct"), Some(2 * CYCLES));
}

#[test]
fn an_hvr_s3s_file_location_with_credentials_in_the_url_is_read() {
    // HVR names an S3 location `s3s://KEY:SECRET@bucket/dir`; no AWS key in the environment.
    let mut h = Hvr::new();
    h.env = store_env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY")
        .collect();
    let prefix = unique("s3s");
    let store = crate::helpers::store_at(&format!("s3://delta/{prefix}/"));
    let put = |name: &str, text: &str| {
        let path = object_store::path::Path::parse(name).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(object_store::ObjectStoreExt::put(
            &store,
            &path,
            bytes::Bytes::from(text.to_string()).into(),
        ))
        .unwrap();
    };
    put("1-o.csv", "id,v,hvr_op\n1,a,1\n2,b,1\n");
    let t = Table::new("o", &["id"], &["id", "v", "hvr_op"]);
    let userarg = h.full_userarg();
    let loc = format!("s3s://test:test@delta/{prefix}");
    let out = h.call_with(
        "integ_end",
        &[&t],
        &["1-o.csv"],
        Some(&userarg),
        &[("HVR_FILE_LOC", &loc)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(h.rows("o").rows, vec![row(&["1", "a"]), row(&["2", "b"])]);
}
