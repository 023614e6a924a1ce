//! The same refresh and integrate cycle against a lake on S3 (moto) and on ADLS/Blob
//! (Azurite), both started on loopback by `scripts/test`, read back with the deltalake crate.

mod helpers;

use helpers::{Hvr, Table, read_rows_at, row, store_env, unique};

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

/// Starts, on loopback, an HTTP proxy in front of `upstream` that drops `If-None-Match` from
/// every request: an S3 endpoint that ignores conditional writes. Returns its URL.
fn start_proxy_without_conditional_writes(upstream: &str) -> String {
    use std::net::TcpListener;
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || relay_one_request(conn, &upstream));
        }
    });
    format!("http://{addr}")
}

fn relay_one_request(mut client: std::net::TcpStream, upstream: &str) {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut length = 0usize;
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("if-none-match:") || lower.starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(mut server) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(out.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    let _ = std::io::copy(&mut server, &mut client);
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
    let proxy = start_proxy_without_conditional_writes(&endpoint);
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
    let h = Hvr::on(helpers::Backend::S3);
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
    assert_eq!(h.version("o"), Some(1), "the table stays at its version");
    assert_eq!(h.rows("o").rows, vec![row(&["1", "a"])]);
}
