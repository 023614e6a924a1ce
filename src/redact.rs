//! Credentials kept out of everything hvrlake prints: URL user info and the values of
//! variables named like secrets. A leaf: errors redact their messages with it.

use std::sync::{Mutex, OnceLock};

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers values that must never be printed: variables whose name has a segment such as
/// `KEY`, `SECRET`, `TOKEN` or `PASSWORD` (`AWS_SECRET_ACCESS_KEY`, `HVR_LOC_DB_PWD`), but not
/// key ids or lists of key columns.
pub fn register_secrets<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) {
    const WORDS: &[&str] = &[
        "SECRET",
        "KEY",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PWD",
        "SAS",
        "CREDENTIAL",
        "CREDENTIALS",
        "SIGNATURE",
    ];
    let mut s = secrets().lock().unwrap();
    for (k, v) in env {
        let k = k.to_ascii_uppercase();
        let segments: Vec<&str> = k.split('_').collect();
        let secret = segments.len() > 1
            && segments.iter().any(|w| WORDS.contains(w))
            && !k.ends_with("KEY_ID");
        if secret && v.len() >= 4 {
            s.push(v.clone());
        }
    }
}

/// Hides URL credentials (`scheme://user:pass@`) and every registered secret value.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    for s in secrets().lock().unwrap().iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}
