//! One validated [`Settings`] built from three sources, highest precedence first: the
//! AgentPlugin userarg (`name=value ...`), `HVRLAKE_<NAME>` environment variables (set with
//! HVR's Environment action), and an optional TOML file (`config=path`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

mod defs;

use defs::Value;
pub use defs::{Def, SETTINGS};

use crate::bail;
use crate::error::{Error, Result};
pub use crate::mode::{Mode, ModeOptions};
pub use crate::read::csv::{CsvDialect, Encoding};
pub use crate::schema::partition::{PartExpr, parse_list};
use crate::schema::types::DeclaredType;

/// Input file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// By file extension.
    Auto,
    /// HVR CSV.
    Csv,
    /// HVR Parquet.
    Parquet,
}

/// Everything hvrlake is told to do, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lake root, as given (may carry credentials: print only through `storage::redact`).
    pub target: String,
    /// Name of the op column.
    pub op_column: String,
    /// Name of the soft-delete flag column.
    pub delete_column: String,
    /// Name of the sequence column.
    pub seq_column: String,
    /// Whether extra columns are written to the tables.
    pub keep_hvr_columns: bool,
    /// Whether processed files stay in place.
    pub keep_files: bool,
    /// The table mode, unless `modes` names the table.
    pub mode: Mode,
    /// Table modes per lower-cased table name (`mode.TABLE=MODE`).
    pub modes: HashMap<String, Mode>,
    /// Deletion vectors per lower-cased table name (`deletion_vectors.TABLE=BOOL`).
    pub deletion_vectors_per_table: HashMap<String, bool>,
    /// Soft-delete tables: the deletion time column.
    pub deleted_at_column: String,
    /// File name pattern mapping a file to its table.
    pub file_pattern: String,
    /// Input format.
    pub format: Format,
    /// CSV dialect.
    pub csv: CsvDialect,
    /// Declared types per lower-cased table, then lower-cased column.
    pub types: HashMap<String, HashMap<String, DeclaredType>>,
    /// Parallel parse piece size in bytes.
    pub chunk_bytes: usize,
    /// Whether file row counts are checked against HVR_FILE_NROWS.
    pub check_row_counts: bool,
    /// Whether an object store without conditional writes is accepted (one writer only).
    pub single_writer: bool,
    /// Times a table's commit is redone on a fresh snapshot after a conflict.
    pub commit_retries: usize,
    /// Tables of a call worked on side by side (`parallel_tables`); 0 for the default.
    pub parallel_tables: usize,
    /// Seconds to wait for the file location's lock.
    pub lock_wait: u64,
    /// Tables that get `delta.enableChangeDataFeed`: None no table, an empty list every
    /// table, else those (lower case).
    pub change_data_feed: Option<Vec<String>>,
    /// Small-file count at which a table is compacted after a commit (0: never).
    pub compact_small_files: usize,
    /// Compact after every N-th cycle (0: never).
    pub compact_every: usize,
    /// Whether compaction Z-orders by the key columns.
    pub compact_zorder: bool,
    /// Partition expressions per lower-cased table name (`partition_by`).
    pub partition_by: HashMap<String, Vec<PartExpr>>,
    /// Whether rows never move between partitions (`partition_stable`).
    pub partition_stable: bool,
    /// Whether new tables get deletion vectors (`deletion_vectors`).
    pub deletion_vectors: bool,
    /// Whether data files get only PLAIN and dictionary pages (`plain_encodings`).
    pub plain_encodings: bool,
    /// Compact once deletion vectors delete this share of the stored rows.
    pub compact_deleted_share: f64,
    /// Deletion-vector merges: the deleted share at which a file is rewritten instead.
    pub rewrite_share: f64,
    /// Object-store options (`aws_*`, `azure_*`, and the retry options `max_retries` and
    /// `retry_timeout`), as object_store / delta-rs name them.
    pub storage: HashMap<String, String>,
}

/// Whether a setting name is an object-store option passed through as it is.
fn is_storage_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("aws_") || n.starts_with("azure_")
}

/// Where a raw setting came from, for error messages.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    Userarg,
    Env(String),
    File(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Userarg => f.write_str("the userarg"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::File(p) => write!(f, "config file {p}"),
        }
    }
}

type Raw = BTreeMap<String, (String, Origin)>;

impl Settings {
    /// Whether a table (by its target or channel name) keeps a change data feed.
    pub fn change_data_feed_for(&self, base: &str, channel: &str) -> bool {
        self.change_data_feed.as_ref().is_some_and(|l| {
            l.is_empty()
                || l.iter()
                    .any(|t| t.eq_ignore_ascii_case(base) || t.eq_ignore_ascii_case(channel))
        })
    }

    /// The mode of a table, by its target or channel name.
    /// The partition expressions `partition_by` gives a table (by target or channel name).
    pub fn partition_of(&self, base: &str, channel: &str) -> Option<&[PartExpr]> {
        [base, channel]
            .iter()
            .find_map(|t| self.partition_by.get(&t.to_ascii_lowercase()))
            .map(Vec::as_slice)
    }

    /// How many tables of a call are worked on side by side on the lake at `lake`.
    pub fn tables_in_flight(&self, lake: &url::Url) -> usize {
        match self.parallel_tables {
            0 if lake.scheme() == "file" => 4,
            0 => 16,
            n => n,
        }
    }

    /// Whether a table hvrlake creates gets deletion vectors (by target or channel name).
    pub fn deletion_vectors_for(&self, base: &str, channel: &str) -> bool {
        [base, channel]
            .iter()
            .find_map(|t| {
                self.deletion_vectors_per_table
                    .get(&t.to_ascii_lowercase())
                    .copied()
            })
            .unwrap_or(self.deletion_vectors)
    }

    /// The mode of a table (by target or channel name).
    pub fn mode_of(&self, base: &str, channel: &str) -> Mode {
        [base, channel]
            .iter()
            .find_map(|t| self.modes.get(&t.to_ascii_lowercase()).copied())
            .unwrap_or(self.mode)
    }

    /// What the table modes take from the settings.
    pub fn mode_options(&self) -> ModeOptions {
        ModeOptions {
            delete_column: self.delete_column.clone(),
            deleted_at_column: self.deleted_at_column.clone(),
            partition_stable: self.partition_stable,
            plain_encodings: self.plain_encodings,
            rewrite_share: self.rewrite_share,
        }
    }

    /// Builds settings from a userarg string and the process environment.
    pub fn from_sources(userarg: Option<&str>, env: &HashMap<String, String>) -> Result<Self> {
        let mut raw: Raw = BTreeMap::new();
        let mut types_entries: Vec<(String, Origin)> = Vec::new();
        let mut modes: HashMap<String, Mode> = HashMap::new();
        let mut vectors: HashMap<String, bool> = HashMap::new();
        // Lowest precedence first; later inserts win.
        let mut from_user = Raw::new();
        if let Some(arg) = userarg {
            for token in split_userarg(arg)? {
                let Some((name, value)) = token.split_once('=') else {
                    bail!("setting '{token}' in the userarg is not name=value");
                };
                from_user.insert(
                    name.trim().to_string(),
                    (value.to_string(), Origin::Userarg),
                );
            }
        }
        let mut from_env = Raw::new();
        for s in SETTINGS {
            let var = format!("HVRLAKE_{}", s.name.to_ascii_uppercase());
            if let Some(v) = env.get(&var) {
                from_env.insert(s.name.to_string(), (v.clone(), Origin::Env(var)));
            }
        }
        let config = from_user
            .get("config")
            .or_else(|| from_env.get("config"))
            .cloned();
        if let Some((path, origin)) = config {
            let file = load_toml(Path::new(&path), &origin, &mut types_entries)?;
            raw.extend(file);
        }
        raw.extend(from_env);
        for (name, value) in from_user {
            if let Some(rest) = name.strip_prefix("type.") {
                types_entries.push((format!("{rest}={}", value.0), value.1));
            } else if let Some(table) = name.strip_prefix("mode.") {
                let Some(m) = Mode::parse(&value.0) else {
                    bail!(
                        "setting '{name}' (from {}) is '{}', expected merge, soft_delete, history or append",
                        value.1,
                        value.0
                    );
                };
                modes.insert(table.to_ascii_lowercase(), m);
            } else if let Some(table) = name.strip_prefix("deletion_vectors.") {
                let on = match value.0.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => bail!(
                        "setting '{name}' (from {}) is '{}', expected true or false",
                        value.1,
                        value.0
                    ),
                };
                vectors.insert(table.to_ascii_lowercase(), on);
            } else {
                raw.insert(name, value);
            }
        }
        // Object-store options pass through to object_store/delta-rs under their own names.
        let storage: HashMap<String, String> = raw
            .iter()
            .filter(|(name, _)| is_storage_option(name))
            .map(|(name, (v, _))| (name.to_ascii_lowercase(), v.clone()))
            .collect();
        raw.retain(|name, _| !is_storage_option(name));
        crate::storage::register_secrets(storage.iter());
        for (name, (_, origin)) in &raw {
            if !SETTINGS.iter().any(|s| s.name == name) {
                bail!(
                    "setting '{name}' (from {origin}) is unknown; `hvrlake --help` lists the settings"
                );
            }
        }
        let mut settings = Self::validate(raw, types_entries)?;
        settings.modes = modes;
        settings.deletion_vectors_per_table = vectors;
        let retries = std::mem::take(&mut settings.storage);
        settings.storage = storage;
        settings.storage.extend(retries);
        Ok(settings)
    }

    fn validate(raw: Raw, types_entries: Vec<(String, Origin)>) -> Result<Self> {
        if raw.get("target").is_none_or(|(v, _)| v.trim().is_empty()) {
            bail!(
                "setting 'target' is missing: give target=URL in the AgentPlugin /UserArgument or set HVRLAKE_TARGET"
            );
        }
        let mut settings = Settings::blank();
        // Declarations in the file and as type.TABLE.COL first: the `types` setting's win.
        add_types(&mut settings.types, types_entries)?;
        for def in SETTINGS {
            let value = match raw.get(def.name) {
                Some((text, origin)) => Value {
                    name: def.name,
                    text,
                    origin: Some(origin),
                },
                None => Value {
                    name: def.name,
                    text: def.default,
                    origin: None,
                },
            };
            (def.set)(&mut settings, &value)?;
        }
        Ok(settings)
    }

    /// Settings before any setting is applied (every field is set from [`SETTINGS`]).
    fn blank() -> Self {
        Settings {
            target: String::new(),
            op_column: String::new(),
            delete_column: String::new(),
            seq_column: String::new(),
            keep_hvr_columns: false,
            keep_files: false,
            mode: Mode::Merge,
            modes: HashMap::new(),
            deletion_vectors_per_table: HashMap::new(),
            deleted_at_column: String::new(),
            file_pattern: String::new(),
            format: Format::Auto,
            csv: CsvDialect {
                separator: b',',
                quote: b'"',
                null: None,
                encoding: Encoding::Utf8,
            },
            types: HashMap::new(),
            chunk_bytes: 1,
            check_row_counts: true,
            single_writer: false,
            commit_retries: 0,
            parallel_tables: 0,
            lock_wait: 0,
            change_data_feed: None,
            compact_small_files: 0,
            compact_every: 0,
            compact_zorder: false,
            partition_by: HashMap::new(),
            partition_stable: false,
            deletion_vectors: true,
            plain_encodings: false,
            compact_deleted_share: 0.0,
            rewrite_share: 0.0,
            storage: HashMap::new(),
        }
    }
}

/// Adds type declarations (`TABLE.COLUMN=TYPE`, each with where it came from) to `types`;
/// a later declaration of the same column wins.
fn add_types(
    types: &mut HashMap<String, HashMap<String, DeclaredType>>,
    entries: impl IntoIterator<Item = (String, Origin)>,
) -> Result<()> {
    for (entry, origin) in entries {
        let parsed = entry.split_once('=').and_then(|(tc, ty)| {
            let (t, c) = tc.rsplit_once('.')?;
            Some((t.to_ascii_lowercase(), c.to_ascii_lowercase(), ty))
        });
        let Some((t, c, ty)) = parsed else {
            bail!("type declaration '{entry}' (from {origin}) is not TABLE.COLUMN=TYPE");
        };
        let ty = DeclaredType::parse(ty)
            .map_err(|e| Error::msg(format!("type declaration '{entry}' (from {origin}): {e}")))?;
        types.entry(t).or_default().insert(c, ty);
    }
    Ok(())
}

/// Splits a userarg on whitespace; single or double quotes group a value with spaces.
fn split_userarg(arg: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in arg.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quote.is_some() {
        bail!("the userarg has an unclosed quote");
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

fn load_toml(path: &Path, origin: &Origin, types: &mut Vec<(String, Origin)>) -> Result<Raw> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::msg(format!(
            "setting 'config' (from {origin}): cannot read {shown}: {e}"
        ))
    })?;
    let value: toml::Table = text
        .parse()
        .map_err(|e| Error::msg(format!("config file {shown}: {e}")))?;
    let file_origin = Origin::File(shown.clone());
    let mut raw = Raw::new();
    for (k, v) in value {
        if k == "types" {
            let Some(tables) = v.as_table() else {
                bail!("config file {shown}: [types] must be a table of tables");
            };
            for (t, cols) in tables {
                let Some(cols) = cols.as_table() else {
                    bail!("config file {shown}: [types.{t}] must map columns to type strings");
                };
                for (c, ty) in cols {
                    let Some(ty) = ty.as_str() else {
                        bail!(
                            "config file {shown}: types.{t}.{c} must be a string such as \"decimal(10,2)\""
                        );
                    };
                    types.push((format!("{t}.{c}={ty}"), file_origin.clone()));
                }
            }
            continue;
        }
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("config file {shown}: '{k}' has an unsupported value {other}"),
        };
        raw.insert(k, (s, file_origin.clone()));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn userarg_beats_environment_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(
            &file,
            "target = \"/from/file\"\nop_column = \"file_op\"\nseq_column = \"file_seq\"\n",
        )
        .unwrap();
        let e = env(&[
            ("HVRLAKE_OP_COLUMN", "env_op"),
            ("HVRLAKE_TARGET", "/from/env"),
        ]);
        let arg = format!("config={} target=/from/arg", file.display());
        let s = Settings::from_sources(Some(&arg), &e).unwrap();
        assert_eq!(s.target, "/from/arg");
        assert_eq!(s.op_column, "env_op");
        assert_eq!(s.seq_column, "file_seq");
    }

    #[test]
    fn missing_target_and_unknown_setting_are_named() {
        let err = Settings::from_sources(None, &env(&[])).unwrap_err();
        assert!(err.message().contains("'target' is missing"), "{err}");
        let err = Settings::from_sources(Some("target=/x bogus=1"), &env(&[])).unwrap_err();
        assert!(err.message().contains("'bogus'"), "{err}");
        let err =
            Settings::from_sources(Some("target=/x keep_files=maybe"), &env(&[])).unwrap_err();
        assert!(
            err.message().contains("keep_files") && err.message().contains("userarg"),
            "{err}"
        );
    }

    /// docs/settings.md has one row per setting, `| `name` | default | meaning |`, with the
    /// default as SETTINGS has it (in backticks; an empty default is shown in words or not).
    #[test]
    fn the_settings_doc_lists_every_setting_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let rows: BTreeMap<String, String> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `")?.splitn(3, '|');
                let name = cells.next()?.trim().strip_suffix('`')?;
                // Rows of settings only: not the diagnostic variables (`HVRLAKE_TIMINGS=1`).
                if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return None;
                }
                Some((name.to_string(), cells.next()?.trim().to_string()))
            })
            .collect();
        let mut drift = Vec::new();
        for d in SETTINGS {
            match rows.get(d.name) {
                None => drift.push(format!("{} is not in docs/settings.md", d.name)),
                Some(shown) if !d.default.is_empty() && *shown != format!("`{}`", d.default) => {
                    drift.push(format!(
                        "{}: the doc says {shown}, the code {:?}",
                        d.name, d.default
                    ))
                }
                Some(shown) if d.default.is_empty() && shown.starts_with('`') => {
                    drift.push(format!(
                        "{}: the doc gives a default ({shown}), the code none",
                        d.name
                    ))
                }
                _ => {}
            }
        }
        for name in rows.keys() {
            if !SETTINGS.iter().any(|d| d.name == name) {
                drift.push(format!(
                    "docs/settings.md lists '{name}', which is no setting"
                ));
            }
        }
        assert!(drift.is_empty(), "{}", drift.join("\n"));
        assert!(rows.len() >= SETTINGS.len());
    }

    #[test]
    fn every_setting_has_a_help_line_and_parses_its_default() {
        let help = crate::cli::help();
        for d in SETTINGS {
            assert!(help.contains(d.name), "--help does not list {}", d.name);
        }
        // The defaults (with a target) give valid settings.
        let s = Settings::from_sources(Some("target=/x"), &env(&[])).unwrap();
        assert_eq!(s.compact_small_files, 64);
        assert_eq!(s.storage["retry_timeout"], "180s");
        assert_eq!(s.csv.quote, b'"');
    }

    #[test]
    fn quoted_values_and_types() {
        let s = Settings::from_sources(
            Some("target='/a b' csv_null=\\N types='orders.amount=decimal(10,2);orders.ts=timestamp' type.x.y=int64"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(s.target, "/a b");
        assert_eq!(s.csv.null.as_deref(), Some("\\N"));
        assert_eq!(s.types["orders"]["amount"], DeclaredType::Decimal(10, 2));
        assert_eq!(s.types["orders"]["ts"], DeclaredType::Timestamp);
        assert_eq!(s.types["x"]["y"], DeclaredType::Int64);
    }
}
