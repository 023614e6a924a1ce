//! Plays HVR for the end-to-end tests: writes files into a temporary file location, calls
//! the built `hvrlake` binary with argv and `HVR_*` environment exactly as HVR does, and
//! reads the resulting Delta tables back. Also a plain model of the expected table state.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

/// A table as HVR describes it.
#[derive(Clone, Debug)]
pub struct Table {
    /// Channel name (file names use it).
    pub name: String,
    /// Base name (may be `schema.table`).
    pub base: String,
    /// Key columns.
    pub keys: Vec<String>,
    /// All columns, extra columns included.
    pub cols: Vec<String>,
}

impl Table {
    /// A table whose base name is its name.
    pub fn new(name: &str, keys: &[&str], cols: &[&str]) -> Self {
        Table {
            name: name.into(),
            base: name.into(),
            keys: keys.iter().map(|s| s.to_string()).collect(),
            cols: cols.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Sets a different base name.
    pub fn base(mut self, base: &str) -> Self {
        self.base = base.into();
        self
    }
}

/// What one call returned.
#[derive(Debug)]
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Where a test's lake and file location are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Both in local temporary directories.
    File,
    /// Both under a fresh prefix of the `delta` bucket on the S3 server `scripts/test` starts.
    S3,
    /// Both under a fresh prefix of the `delta` container on Azurite (`az://`).
    Azure,
}

/// A lake and a file location on object storage.
pub struct Remote {
    /// The lake root URL (no trailing slash).
    pub lake: String,
    /// The file location URL (trailing slash).
    pub loc: String,
    /// A store rooted at the file location, to write and check input files.
    pub store: Arc<dyn object_store::ObjectStore>,
}

/// A file location and a lake, with the channel's settings.
pub struct Hvr {
    /// The file location (HVR_FILE_LOC) when local; with a remote one, still the working
    /// directory and the state directory of the calls.
    pub loc: tempfile::TempDir,
    /// The lake root (target) when local.
    pub lake: tempfile::TempDir,
    /// The lake and file location when they are on object storage.
    pub remote: Option<Remote>,
    /// Extra words for the userarg.
    pub userarg: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The location name HVR passes (argv 3).
    pub location: String,
}

impl Default for Hvr {
    fn default() -> Self {
        Self::new()
    }
}

/// The object-storage variables `scripts/test` exports (endpoints and credentials of the
/// servers it started), to pass to hvrlake.
pub fn store_env() -> Vec<(String, String)> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("AZURE_") || k.starts_with("AZURITE_")
        })
        .collect();
    assert!(
        env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL"),
        "run through scripts/test, which starts moto and Azurite and sets AWS_*/AZURE_*"
    );
    env
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// A store rooted at `url`, credentials from the environment (as `scripts/test` sets them).
pub fn store_at(url: &str) -> Arc<dyn object_store::ObjectStore> {
    deltalake::aws::register_handlers(None);
    deltalake::azure::register_handlers(None);
    let url = url::Url::parse(url).unwrap();
    deltalake::logstore::store_for(&url, std::collections::HashMap::<String, String>::new())
        .unwrap()
}

impl Hvr {
    /// A fresh location and lake.
    pub fn new() -> Self {
        Self::on(Backend::File)
    }

    /// A fresh location and lake on `backend`.
    pub fn on(backend: Backend) -> Self {
        let scheme = match backend {
            Backend::File => None,
            Backend::S3 => Some("s3"),
            Backend::Azure => Some("az"),
        };
        let remote = scheme.map(|scheme| {
            let root = format!("{scheme}://delta/{}", unique("t"));
            let loc = format!("{root}/loc/");
            Remote {
                lake: format!("{root}/lake"),
                store: store_at(&loc),
                loc,
            }
        });
        Hvr {
            loc: tempfile::tempdir().unwrap(),
            lake: tempfile::tempdir().unwrap(),
            env: if remote.is_some() {
                store_env()
            } else {
                Vec::new()
            },
            remote,
            userarg: String::new(),
            location: "trg".into(),
        }
    }

    /// Writes a file into the location (folders created).
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        if let Some(r) = &self.remote {
            let data = bytes::Bytes::copy_from_slice(content.as_ref());
            let path = object_store::path::Path::parse(rel).unwrap();
            runtime()
                .block_on(object_store::ObjectStoreExt::put(
                    &r.store,
                    &path,
                    data.into(),
                ))
                .unwrap();
            return;
        }
        let p = self.loc.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Whether a file is still in the location.
    pub fn has_file(&self, rel: &str) -> bool {
        if let Some(r) = &self.remote {
            let path = object_store::path::Path::parse(rel).unwrap();
            return match runtime().block_on(object_store::ObjectStoreExt::head(&r.store, &path)) {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => panic!("head {rel}: {e}"),
            };
        }
        self.loc.path().join(rel).exists()
    }

    /// The lake root as the `target` setting gives it.
    pub fn target(&self) -> String {
        match &self.remote {
            Some(r) => r.lake.clone(),
            None => self.lake.path().display().to_string(),
        }
    }

    /// The file location as HVR_FILE_LOC gives it.
    pub fn file_loc(&self) -> String {
        match &self.remote {
            Some(r) => r.loc.clone(),
            None => self.loc.path().display().to_string(),
        }
    }

    /// The userarg every call gets: the target, then `self.userarg`.
    pub fn full_userarg(&self) -> String {
        format!("target={} {}", self.target(), self.userarg)
    }

    /// Calls `hvrlake <mode> chn loc <userarg>` with the HVR environment for `tables` and `files`.
    pub fn call(&self, mode: &str, tables: &[&Table], files: &[&str]) -> Output {
        let userarg = self.full_userarg();
        self.call_with(mode, tables, files, Some(&userarg), &[])
    }

    /// Like [`Hvr::call`] with an explicit userarg and extra variables.
    pub fn call_with(
        &self,
        mode: &str,
        tables: &[&Table],
        files: &[&str],
        userarg: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Output {
        let out = self
            .command(mode, tables, files, userarg, extra)
            .output()
            .expect("run hvrlake");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command [`Hvr::call_with`] runs, to spawn (and kill) it.
    pub fn command(
        &self,
        mode: &str,
        tables: &[&Table],
        files: &[&str],
        userarg: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Command {
        let join = |f: &dyn Fn(&Table) -> String| {
            tables.iter().map(|t| f(t)).collect::<Vec<_>>().join(":")
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvrlake"));
        cmd.arg(mode).arg("chn").arg(&self.location);
        if let Some(u) = userarg {
            cmd.arg(u);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HVR_TBL_NAMES", join(&|t| t.name.clone()))
            .env("HVR_BASE_NAMES", join(&|t| t.base.clone()))
            .env("HVR_TBL_KEYS", join(&|t| t.keys.join(",")))
            .env("HVR_TBL_KEYS_BASE", join(&|t| t.keys.join(",")))
            .env("HVR_COL_NAMES", join(&|t| t.cols.join(",")))
            .env("HVR_COL_NAMES_BASE", join(&|t| t.cols.join(",")))
            .env("HVR_FILE_LOC", self.file_loc())
            .env("HVR_LOC_STATEDIR", self.loc.path().join("_hvr_state"))
            .env("HVR_FILE_NAMES", files.join(":"))
            .current_dir(self.loc.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Calls and asserts success.
    pub fn ok(&self, mode: &str, tables: &[&Table], files: &[&str]) -> Output {
        let out = self.call(mode, tables, files);
        assert_eq!(out.code, 0, "{mode} failed: {out:?}");
        out
    }

    /// The directory of a table in a local lake.
    pub fn table_dir(&self, base: &str) -> PathBuf {
        assert!(self.remote.is_none(), "table_dir is for local lakes");
        base.split('.')
            .fold(self.lake.path().to_path_buf(), |p, s| p.join(s))
    }

    /// The URL of a table in the lake.
    pub fn table_url(&self, base: &str) -> url::Url {
        match &self.remote {
            Some(r) => url::Url::parse(&format!("{}/{}/", r.lake, base.replace('.', "/"))).unwrap(),
            None => url::Url::from_directory_path(self.table_dir(base)).unwrap(),
        }
    }

    /// The table's version, or None when there is no table.
    pub fn version(&self, base: &str) -> Option<u64> {
        let url = self.table_url(base);
        runtime().block_on(async {
            match deltalake::open_table(url).await {
                Ok(t) => t.version(),
                Err(_) => None,
            }
        })
    }

    /// The table's columns and their Arrow types, as `name:type`.
    pub fn types(&self, base: &str) -> Vec<String> {
        let url = self.table_url(base);
        runtime().block_on(async {
            let table = deltalake::open_table(url).await.expect("open table");
            let schema = table.snapshot().unwrap().snapshot().arrow_schema();
            schema
                .fields()
                .iter()
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect()
        })
    }

    /// Every row of the table, each cell as text (None = NULL), sorted.
    pub fn rows(&self, base: &str) -> Rows {
        read_rows_at(self.table_url(base))
    }
}

/// Rows as text: a header and sorted rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Column names in table order.
    pub columns: Vec<String>,
    /// Rows, sorted.
    pub rows: Vec<Vec<Option<String>>>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads a Delta table directory with the deltalake crate's own reader.
pub fn read_rows(dir: &Path) -> Rows {
    read_rows_at(url::Url::from_directory_path(dir).unwrap())
}

/// Reads the Delta table at `url` (local, `s3://` or `az://`; credentials from the
/// environment) with the deltalake crate's own reader.
pub fn read_rows_at(url: url::Url) -> Rows {
    deltalake::aws::register_handlers(None);
    deltalake::azure::register_handlers(None);
    runtime().block_on(async {
        let table = deltalake::open_table(url).await.expect("open table");
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        let provider = table.table_provider().await.unwrap();
        let batches = ctx.read_table(provider).unwrap().collect().await.unwrap();
        let schema = table.snapshot().unwrap().snapshot().arrow_schema();
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut rows = Vec::new();
        for b in &batches {
            let text: Vec<Arc<dyn Array>> = (0..b.num_columns())
                .map(|i| cell_text(b.column(i)))
                .collect();
            for r in 0..b.num_rows() {
                rows.push(
                    text.iter()
                        .map(|c| {
                            if c.is_null(r) {
                                None
                            } else {
                                Some(c.as_string::<i32>().value(r).to_string())
                            }
                        })
                        .collect(),
                );
            }
        }
        rows.sort();
        Rows { columns, rows }
    })
}

fn cell_text(a: &Arc<dyn Array>) -> Arc<dyn Array> {
    match a.data_type() {
        DataType::Timestamp(_, _) => {
            // `2026-11-20 09:15:00.5` style, as HVR writes them.
            let micros = arrow::compute::cast(
                a,
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )
            .unwrap();
            let s = arrow::compute::cast(&micros, &DataType::Utf8).unwrap();
            let s = s.as_string::<i32>();
            Arc::new(arrow::array::StringArray::from_iter(
                s.iter().map(|v| v.map(|v| v.replace('T', " "))),
            ))
        }
        _ => arrow::compute::cast(a, &DataType::Utf8).unwrap(),
    }
}

/// Runs a Python `script` (the Python with pyarrow and deltalake that scripts/test prepares,
/// `HVRLAKE_TEST_PYTHON`) with `arg` as `sys.argv[1]`: its stdout (trimmed) and stderr.
pub fn python(script: &str, arg: &Path) -> (String, String) {
    let py = std::env::var("HVRLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("run python (set HVRLAKE_TEST_PYTHON, see scripts/test)");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A cycle's file as HVR writes it: the data columns `header`, then `hvr_op` and
/// `hvr_integ_seq`.
pub fn change_csv(header: &[&str], changes: &[Change]) -> String {
    let mut names = header.to_vec();
    names.extend(["hvr_op", "hvr_integ_seq"]);
    let rows: Vec<Vec<Option<String>>> = changes
        .iter()
        .map(|c| {
            let mut r = c.values.clone();
            r.push(Some(c.op.to_string()));
            r.push(Some(c.seq.clone()));
            r
        })
        .collect();
    csv(&names, &rows)
}

/// A change as a test writes it: op, seq and the data columns (None = NULL).
#[derive(Clone, Debug)]
pub struct Change {
    /// hvr_op.
    pub op: i64,
    /// hvr_integ_seq.
    pub seq: String,
    /// Data values, in the table's data column order.
    pub values: Vec<Option<String>>,
}

/// Writes CSV as HVR does: header, quotes only where needed, doubled inside, empty = NULL.
pub fn csv(header: &[&str], rows: &[Vec<Option<String>>]) -> String {
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                None => String::new(),
                Some(v) if v.is_empty() || v.contains([',', '"', '\n', '\r']) => {
                    format!("\"{}\"", v.replace('"', "\"\""))
                }
                Some(v) => v.clone(),
            })
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

/// Helper to make an `Option<String>` row from string literals; "NULL" → None.
pub fn row(values: &[&str]) -> Vec<Option<String>> {
    values
        .iter()
        .map(|v| {
            if *v == "NULL" {
                None
            } else {
                Some(v.to_string())
            }
        })
        .collect()
}

/// The expected state of a keyed table, computed the plain way: apply every change in
/// hvr_integ_seq order (hex parts compared as numbers), one at a time.
#[derive(Default, Clone, Debug)]
pub struct Model {
    /// Key → full row.
    pub rows: BTreeMap<Vec<Option<String>>, Vec<Option<String>>>,
}

/// Parses `a|b|c` hex parts into numbers for ordering.
pub fn seq_key(seq: &str) -> Vec<u128> {
    seq.split('|')
        .map(|p| u128::from_str_radix(p, 16).unwrap())
        .collect()
}

impl Model {
    /// Loads refresh rows.
    pub fn refresh(&mut self, key_idx: &[usize], rows: &[Vec<Option<String>>]) {
        self.rows.clear();
        for r in rows {
            self.rows
                .insert(key_idx.iter().map(|&i| r[i].clone()).collect(), r.clone());
        }
    }

    /// Applies one cycle's changes in seq order (stable for equal seqs).
    pub fn apply(&mut self, key_idx: &[usize], changes: &[Change]) {
        let mut sorted: Vec<&Change> = changes.iter().collect();
        sorted.sort_by_key(|c| seq_key(&c.seq));
        for c in sorted {
            let key: Vec<Option<String>> = key_idx.iter().map(|&i| c.values[i].clone()).collect();
            match c.op % 10 {
                0 | 3 => {
                    self.rows.remove(&key);
                }
                1 | 2 => {
                    self.rows.insert(key, c.values.clone());
                }
                5 => self.rows.clear(),
                4 => {}
                other => panic!("model has no op {other}"),
            }
        }
    }

    /// The rows, sorted as [`Hvr::rows`] sorts them.
    pub fn sorted(&self) -> Vec<Vec<Option<String>>> {
        let mut v: Vec<_> = self.rows.values().cloned().collect();
        v.sort();
        v
    }
}

/// A small deterministic random generator (xorshift), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    /// Next number.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
