//! Where things live: the lake root and each table's URL under it, the file location of
//! the cycle's files, and keeping credentials out of everything printed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use url::Url;

use crate::bail;
use crate::error::{Error, Result};

#[cfg(feature = "lake")]
mod object;
#[cfg(feature = "lake")]
pub use object::{FileRef, Location, store_at};

/// The lake root as a URL; a plain path becomes an absolute `file://` URL.
pub fn lake_url(target: &str) -> Result<Url> {
    let t = target.trim();
    if t.contains("://") {
        let mut u = Url::parse(t).map_err(|e| {
            Error::msg(format!(
                "setting 'target' is not a valid URL ({e}): {}",
                redact(t)
            ))
        })?;
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        return Ok(u);
    }
    let p = Path::new(t);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Url::from_directory_path(&abs)
        .map_err(|_| Error::msg(format!("setting 'target' is not a usable path: {t}")))
}

/// The URL of the table for a base name: `sch.T` lives at `<lake>/sch/T`.
pub fn table_url(lake: &Url, base_name: &str) -> Result<Url> {
    let segments: Vec<&str> = base_name.split('.').collect();
    for s in &segments {
        let bad = s.is_empty()
            || *s == ".."
            || s.contains(['/', '\\', '\0', ':', '?', '#', '%'])
            || s.chars().any(char::is_control);
        if bad || segments.len() > 2 {
            bail!(
                "table name '{base_name}' cannot be a path under the target (expected TABLE or SCHEMA.TABLE of plain names)"
            );
        }
    }
    let mut u = lake.clone();
    let path = format!("{}{}/", lake.path(), segments.join("/"));
    u.set_path(&path);
    Ok(u)
}

/// A file location (HVR_FILE_LOC): a local directory, or an object-store prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileLoc {
    /// A directory on a local or mounted file system (a path or `file://` URL).
    Local(PathBuf),
    /// An `s3://`, `s3a://`, `az://`, `abfs://`, `abfss://` or `adl://` prefix, ending in `/`.
    Url(Url),
}

/// Schemes a file location may have on object storage (those delta-rs has stores for).
const STORE_SCHEMES: &[&str] = &["s3", "s3a", "az", "azure", "abfs", "abfss", "adl"];

/// Parses HVR_FILE_LOC.
pub fn file_loc(loc: &str) -> Result<FileLoc> {
    if let Some(rest) = loc.strip_prefix("file://") {
        return Ok(FileLoc::Local(PathBuf::from(rest)));
    }
    if !loc.contains("://") {
        return Ok(FileLoc::Local(PathBuf::from(loc)));
    }
    let mut u = Url::parse(loc).map_err(|e| {
        Error::msg(format!(
            "HVR_FILE_LOC {} is not a valid URL ({e})",
            redact(loc)
        ))
    })?;
    if !STORE_SCHEMES.contains(&u.scheme()) {
        bail!(
            "HVR_FILE_LOC {} has scheme '{}': hvrlake reads file locations on local disk, s3://, az:// and abfss://",
            redact(loc),
            u.scheme()
        );
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(FileLoc::Url(u))
}

/// The path of a listed file under the file location; it may not leave the location.
pub fn file_path(loc: &Path, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!(
            "file name '{name}' in HVR_FILE_NAMES must be a plain relative path inside HVR_FILE_LOC"
        );
    }
    Ok(loc.join(rel))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_urls_stay_under_the_lake() {
        let lake = lake_url("/tmp/lake").unwrap();
        assert_eq!(
            table_url(&lake, "sales.lines").unwrap().as_str(),
            "file:///tmp/lake/sales/lines/"
        );
        assert_eq!(
            table_url(&lake, "orders").unwrap().as_str(),
            "file:///tmp/lake/orders/"
        );
        for bad in ["../x", "a/b", "..", "a..b", "a.b.c", ""] {
            assert!(table_url(&lake, bad).is_err(), "{bad}");
        }
        let s3 = lake_url("s3://bucket/lake").unwrap();
        assert_eq!(table_url(&s3, "t").unwrap().as_str(), "s3://bucket/lake/t/");
    }

    #[test]
    fn credentials_are_hidden() {
        assert_eq!(
            redact("s3s://AKIA:secret@bucket/dir failed"),
            "s3s://***@bucket/dir failed"
        );
        assert_eq!(redact("at /local/path"), "at /local/path");
        register_secrets([(
            &"AWS_SECRET_ACCESS_KEY".to_string(),
            &"hunter22".to_string(),
        )]);
        assert_eq!(redact("key hunter22 leaked"), "key *** leaked");
        let pwd = ("PWD".to_string(), "/tmp/work".to_string());
        let keys = ("HVR_TBL_KEYS".to_string(), "order_id".to_string());
        let id = ("AWS_ACCESS_KEY_ID".to_string(), "AKIAEXAMPLE".to_string());
        register_secrets([(&pwd.0, &pwd.1), (&keys.0, &keys.1), (&id.0, &id.1)]);
        assert_eq!(
            redact("/tmp/work order_id AKIAEXAMPLE"),
            "/tmp/work order_id AKIAEXAMPLE"
        );
    }

    #[test]
    fn file_locations_are_paths_or_store_urls() {
        assert_eq!(
            file_loc("/hvr/loc").unwrap(),
            FileLoc::Local(PathBuf::from("/hvr/loc"))
        );
        assert_eq!(
            file_loc("file:///hvr/loc").unwrap(),
            FileLoc::Local(PathBuf::from("/hvr/loc"))
        );
        match file_loc("s3://bucket/hvr").unwrap() {
            FileLoc::Url(u) => assert_eq!(u.as_str(), "s3://bucket/hvr/"),
            other => panic!("{other:?}"),
        }
        let e = file_loc("ftp://host/dir").unwrap_err();
        assert!(e.message().contains("scheme 'ftp'"), "{}", e.message());
    }

    #[test]
    fn listed_files_stay_in_the_location() {
        assert!(file_path(Path::new("/loc"), "../etc/passwd").is_err());
        assert!(file_path(Path::new("/loc"), "/etc/passwd").is_err());
        assert_eq!(
            file_path(Path::new("/loc"), "orders/1.csv").unwrap(),
            Path::new("/loc/orders/1.csv")
        );
    }
}
