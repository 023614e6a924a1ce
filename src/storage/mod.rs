//! Where things live: the lake root and each table's URL under it, the file location of
//! the cycle's files, the object stores hvrlake can reach, the bytes of a mapped local file
//! ([`mapped`]), and keeping credentials out of everything printed.

use std::path::{Path, PathBuf};

use url::Url;

use crate::bail;
use crate::error::{Error, Result};

#[cfg(feature = "lake")]
pub mod counted;
pub mod mapped;

pub use crate::redact::{redact, register_secrets};

/// Makes `s3://`, `s3a://`, `az://`, `abfs://`, `abfss://`… URLs usable (once per process).
#[cfg(feature = "lake")]
pub fn register_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::azure::register_handlers(None);
        counted::wrap_factories(&["s3", "s3a", "az", "azure", "abfs", "abfss", "adl"]);
    });
}

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
    /// An object-store prefix (ending in `/`) as delta-rs names it (`s3://`, `az://`,
    /// `abfss://`…), with the store options the location's own URL carried.
    Url {
        /// The prefix.
        url: Url,
        /// Options from the URL (credentials, account), for this location only.
        options: Vec<(String, String)>,
    },
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
    let mut options = Vec::new();
    // Percent-decoding of URL user info (a `+` stays a `+`: AWS secrets hold them).
    let decode = |v: &str| {
        let b = v.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(c)) => {
                    out.push(c);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    match u.scheme() {
        // HVR's own spelling of an S3 location: `s3s://[key:secret@]bucket/dir`.
        "s3" | "s3s" | "s3a" => {
            if !u.username().is_empty() {
                let (id, secret) = (decode(u.username()), decode(u.password().unwrap_or("")));
                register_secrets([(&"AWS_SECRET_ACCESS_KEY".to_string(), &secret)]);
                options.push(("aws_access_key_id".to_string(), id));
                options.push(("aws_secret_access_key".to_string(), secret));
            }
            let rest = format!("s3://{}{}", u.host_str().unwrap_or(""), u.path());
            u = Url::parse(&rest)?;
        }
        // Azure Blob as HVR names it: `wasbs://container@account.blob.core.windows.net/dir`.
        "wasb" | "wasbs" => {
            let container = u.username().to_string();
            let host = u.host_str().unwrap_or("").to_string();
            let Some(account) = host.split('.').next().filter(|a| !a.is_empty()) else {
                bail!(
                    "HVR_FILE_LOC {}: expected wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/DIR",
                    redact(loc)
                );
            };
            options.push((
                "azure_storage_account_name".to_string(),
                account.to_string(),
            ));
            u = Url::parse(&format!("az://{container}{}", u.path()))?;
        }
        s if STORE_SCHEMES.contains(&s) => {}
        other => bail!(
            "HVR_FILE_LOC {} has scheme '{other}': hvrlake reads file locations on local disk, s3://, s3s://, az://, abfss:// and wasbs://",
            redact(loc)
        ),
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(FileLoc::Url { url: u, options })
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
            FileLoc::Url { url, options } => {
                assert_eq!(url.as_str(), "s3://bucket/hvr/");
                assert!(options.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match file_loc("s3s://AKIAX:se%2Fc+ret@bucket/hvr").unwrap() {
            FileLoc::Url { url, options } => {
                assert_eq!(url.as_str(), "s3://bucket/hvr/");
                assert_eq!(options[0], ("aws_access_key_id".into(), "AKIAX".into()));
                assert_eq!(
                    options[1],
                    ("aws_secret_access_key".into(), "se/c+ret".into())
                );
                assert_eq!(redact("key se/c+ret"), "key ***");
            }
            other => panic!("{other:?}"),
        }
        match file_loc("wasbs://files@acct.blob.core.windows.net/hvr/dir").unwrap() {
            FileLoc::Url { url, options } => {
                assert_eq!(url.as_str(), "az://files/hvr/dir/");
                assert_eq!(
                    options,
                    vec![("azure_storage_account_name".into(), "acct".into())]
                );
            }
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
