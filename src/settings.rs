//! One validated [`Settings`] built from three sources, highest precedence first: the
//! AgentPlugin userarg (`name=value ...`), `HVRLAKE_<NAME>` environment variables (set with
//! HVR's Environment action), and an optional TOML file (`config=path`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::bail;
use crate::error::{Error, Result};
pub use crate::input::Encoding;
pub use crate::mode::{Mode, ModeOptions};
pub use crate::read::csv::CsvDialect;
pub use crate::schema::partition::{PartExpr, parse_list};
use crate::schema::types::DeclaredType;

/// A setting's name, default and one-line meaning; drives parsing, `--help` and docs.
pub struct SettingDoc {
    /// The name used in the userarg and the TOML file; the variable is `HVRLAKE_<NAME>`.
    pub name: &'static str,
    /// The default, or "" for none.
    pub default: &'static str,
    /// What the setting does.
    pub doc: &'static str,
}

/// Every setting hvrlake knows.
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        name: "target",
        default: "",
        doc: "lake root: a path, file://, s3:// or abfss:// URL; table T lives at <target>/T and sch.T at <target>/sch/T (required)",
    },
    SettingDoc {
        name: "config",
        default: "",
        doc: "TOML file with more settings (lowest precedence)",
    },
    SettingDoc {
        name: "op_column",
        default: "hvr_op",
        doc: "extra column holding {hvr_op}",
    },
    SettingDoc {
        name: "delete_column",
        default: "is_deleted",
        doc: "extra /SoftDelete flag column; a row whose flag is 1 is a delete",
    },
    SettingDoc {
        name: "seq_column",
        default: "hvr_integ_seq",
        doc: "extra column holding {hvr_integ_seq}; orders the changes of a table",
    },
    SettingDoc {
        name: "keep_hvr_columns",
        default: "false",
        doc: "write the hvr_* extra columns (and the flag column) to the tables too",
    },
    SettingDoc {
        name: "mode",
        default: "merge",
        doc: "what a table keeps: merge (the current rows; deletes remove them), soft_delete (deleted rows stay, flagged in delete_column with the time in deleted_at_column), history (every version of a row with valid_from, valid_to, is_current, op, integ_seq) or append (every change as a row with its hvr_* columns); per table as mode.TABLE=MODE",
    },
    SettingDoc {
        name: "deleted_at_column",
        default: "deleted_at",
        doc: "soft_delete tables: the column holding when a row was deleted (UTC, the time of the commit)",
    },
    SettingDoc {
        name: "keep_files",
        default: "false",
        doc: "leave the processed files in the file location after a successful commit",
    },
    SettingDoc {
        name: "file_pattern",
        default: "{hvr_integ_tstamp}-{hvr_tbl_name}.*",
        doc: "how a file name maps to its table: {hvr_tbl_name} is the table, other {..} and * match any text within one path segment",
    },
    SettingDoc {
        name: "format",
        default: "auto",
        doc: "input format: auto (by extension: .parquet is Parquet, anything else CSV), csv or parquet",
    },
    SettingDoc {
        name: "csv_separator",
        default: ",",
        doc: "CSV field separator (one character; \\t for tab)",
    },
    SettingDoc {
        name: "csv_quote",
        default: "\"",
        doc: "CSV quote character; a quote inside a quoted field is doubled",
    },
    SettingDoc {
        name: "csv_null",
        default: "",
        doc: "CSV NULL token such as \\N; when unset an empty unquoted field is NULL",
    },
    SettingDoc {
        name: "csv_encoding",
        default: "utf-8",
        doc: "CSV encoding: utf-8, iso-8859-1, windows-1252, utf-16le or utf-16be",
    },
    SettingDoc {
        name: "types",
        default: "",
        doc: "declared types for new tables: TABLE.COL=TYPE entries separated by spaces or ;, TYPE one of int64, int32, float64, decimal(P,S), string, boolean, date, timestamp, binary (also type.TABLE.COL=TYPE)",
    },
    SettingDoc {
        name: "check_row_counts",
        default: "true",
        doc: "compare each file's rows with HVR_FILE_NROWS and stop on a difference (a cut-short file)",
    },
    SettingDoc {
        name: "single_writer",
        default: "false",
        doc: "true: only one hvrlake ever writes this lake, so an object store without conditional writes is accepted",
    },
    SettingDoc {
        name: "store_retries",
        default: "10",
        doc: "times one object-store request is retried after a 5xx, throttling, a dropped connection or a timeout (backoff from 0.1 s, doubling up to 15 s)",
    },
    SettingDoc {
        name: "store_retry_timeout",
        default: "180",
        doc: "seconds after which a failing object-store request is not retried any more",
    },
    SettingDoc {
        name: "commit_retries",
        default: "5",
        doc: "times a table's commit is redone on a fresh version of the table when another writer committed first or the commit's outcome is unknown",
    },
    SettingDoc {
        name: "lock_wait",
        default: "300",
        doc: "seconds a call waits for another hvrlake working on the same file location before it fails",
    },
    SettingDoc {
        name: "change_data_feed",
        default: "false",
        doc: "true (every table) or a comma list of tables that keep a Delta change data feed (delta.enableChangeDataFeed), for readers that stream the changes",
    },
    SettingDoc {
        name: "compact_small_files",
        default: "64",
        doc: "after an integrate commit, compact the table when it has at least this many files under 32 MB (0: never); one more commit, no data change",
    },
    SettingDoc {
        name: "compact_deleted_share",
        default: "0.03",
        doc: "tables with deletion vectors: also compact after an integrate commit once the vectors delete this share of the stored rows (0: never)",
    },
    SettingDoc {
        name: "compact_every",
        default: "0",
        doc: "also compact a table after every N-th cycle applied to it (0: never)",
    },
    SettingDoc {
        name: "compact_zorder",
        default: "false",
        doc: "true: compaction Z-orders the table by its key columns (clusters keys, so merges touch fewer files)",
    },
    SettingDoc {
        name: "deletion_vectors",
        default: "false",
        doc: "true: tables hvrlake creates have Delta deletion vectors on (delta.enableDeletionVectors), and a merge marks changed rows deleted instead of rewriting their files (much faster on large tables); needs readers that apply deletion vectors. An existing table keeps what it has",
    },
    SettingDoc {
        name: "plain_encodings",
        default: "false",
        doc: "true: data files get only PLAIN and dictionary pages: integer, date, timestamp and short-decimal columns not DELTA_BINARY_PACKED, text the dictionary does not take not DELTA_LENGTH_BYTE_ARRAY (both smaller and cheaper to write and read), for readers without those encodings (Spark's vectorized Parquet reader before 3.3)",
    },
    SettingDoc {
        name: "partition_by",
        default: "",
        doc: "partitioned tables: TABLE:EXPR[,EXPR..][;TABLE:..], EXPR a column or year(col), month(col), day(col) of a date or timestamp column (added as col_year, col_month, col_day); applies when a table is created or refreshed",
    },
    SettingDoc {
        name: "partition_stable",
        default: "false",
        doc: "true: a row never moves to another partition (its partition columns do not change), so a merge reads only the partitions its changes name; without it, only partitions by key columns are pruned",
    },
    SettingDoc {
        name: "chunk_bytes",
        default: "2097152",
        doc: "size of the pieces a file is cut into for parallel parsing",
    },
];

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
enum Origin {
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
        }
    }

    /// Builds settings from a userarg string and the process environment.
    pub fn from_sources(userarg: Option<&str>, env: &HashMap<String, String>) -> Result<Self> {
        let mut raw: Raw = BTreeMap::new();
        let mut types_entries: Vec<(String, Origin)> = Vec::new();
        let mut modes: HashMap<String, Mode> = HashMap::new();
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
        let retries = std::mem::take(&mut settings.storage);
        settings.storage = storage;
        settings.storage.extend(retries);
        Ok(settings)
    }

    fn validate(raw: Raw, mut types_entries: Vec<(String, Origin)>) -> Result<Self> {
        let get = |name: &str| -> (String, Option<Origin>) {
            match raw.get(name) {
                Some((v, o)) => (v.clone(), Some(o.clone())),
                None => (
                    SETTINGS
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| s.default)
                        .unwrap_or("")
                        .to_string(),
                    None,
                ),
            }
        };
        let where_ = |name: &str, o: &Option<Origin>| match o {
            Some(o) => format!("setting '{name}' (from {o})"),
            None => format!("setting '{name}'"),
        };
        let (target, _) = get("target");
        if target.trim().is_empty() {
            bail!(
                "setting 'target' is missing: give target=URL in the AgentPlugin /UserArgument or set HVRLAKE_TARGET"
            );
        }
        let boolean = |name: &str| -> Result<bool> {
            let (v, o) = get(name);
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => bail!("{} is '{v}', expected true or false", where_(name, &o)),
            }
        };
        let one_byte = |name: &str| -> Result<u8> {
            let (v, o) = get(name);
            let v = match v.as_str() {
                "\\t" | "tab" => "\t".to_string(),
                _ => v,
            };
            if v.len() != 1 {
                bail!(
                    "{} is '{v}', expected exactly one ASCII character",
                    where_(name, &o)
                );
            }
            Ok(v.as_bytes()[0])
        };
        let non_empty = |name: &str| -> Result<String> {
            let (v, o) = get(name);
            if v.is_empty() {
                bail!("{} is empty", where_(name, &o));
            }
            Ok(v)
        };
        let (enc, enc_o) = get("csv_encoding");
        let encoding = match enc.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Encoding::Utf8,
            "iso-8859-1" | "latin1" | "latin-1" | "us-ascii" | "ascii" => Encoding::Latin1,
            "windows-1252" | "cp1252" => Encoding::Windows1252,
            "utf-16le" | "utf-16" => Encoding::Utf16Le,
            "utf-16be" => Encoding::Utf16Be,
            _ => bail!(
                "{} is '{enc}', expected utf-8, iso-8859-1, windows-1252, utf-16le or utf-16be",
                where_("csv_encoding", &enc_o)
            ),
        };
        let (fmt, fmt_o) = get("format");
        let format = match fmt.to_ascii_lowercase().as_str() {
            "auto" | "" => Format::Auto,
            "csv" => Format::Csv,
            "parquet" => Format::Parquet,
            _ => bail!(
                "{} is '{fmt}', expected auto, csv or parquet",
                where_("format", &fmt_o)
            ),
        };
        let (null, _) = get("csv_null");
        let (chunk, chunk_o) = get("chunk_bytes");
        let chunk_bytes: usize = match chunk.parse() {
            Ok(n) if n >= 1 => n,
            _ => bail!(
                "{} is '{chunk}', expected a positive number of bytes",
                where_("chunk_bytes", &chunk_o)
            ),
        };
        let count = |name: &str, min: u64| -> Result<u64> {
            let (v, o) = get(name);
            match v.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => bail!(
                    "{} is '{v}', expected a whole number of at least {min}",
                    where_(name, &o)
                ),
            }
        };
        let share = |name: &str| -> Result<f64> {
            let (v, o) = get(name);
            match v.trim().parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                _ => bail!(
                    "{} is '{v}', expected a share between 0 and 1",
                    where_(name, &o)
                ),
            }
        };
        let compact_deleted_share = share("compact_deleted_share")?;
        // Passed to object_store's retry layer under the names delta-rs parses.
        let retries = HashMap::from([
            (
                "max_retries".to_string(),
                count("store_retries", 0)?.to_string(),
            ),
            (
                "retry_timeout".to_string(),
                format!("{}s", count("store_retry_timeout", 1)?),
            ),
        ]);
        let commit_retries = count("commit_retries", 0)? as usize;
        let lock_wait = count("lock_wait", 0)?;
        let compact_small_files = count("compact_small_files", 0)? as usize;
        let compact_every = count("compact_every", 0)? as usize;
        let (mode_text, mode_o) = get("mode");
        let Some(mode) = Mode::parse(&mode_text) else {
            bail!(
                "{} is '{mode_text}', expected merge, soft_delete, history or append",
                where_("mode", &mode_o)
            );
        };
        let (pattern, pattern_o) = get("file_pattern");
        if !pattern.contains("{hvr_tbl_name}") {
            bail!(
                "{} is '{pattern}': it must contain {{hvr_tbl_name}}",
                where_("file_pattern", &pattern_o)
            );
        }
        if let Some((v, o)) = raw.get("types") {
            for entry in v
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|e| !e.is_empty())
            {
                types_entries.push((entry.to_string(), o.clone()));
            }
        }
        let mut types: HashMap<String, HashMap<String, DeclaredType>> = HashMap::new();
        for (entry, origin) in types_entries {
            let parsed = entry.split_once('=').and_then(|(tc, ty)| {
                let (t, c) = tc.rsplit_once('.')?;
                Some((t.to_ascii_lowercase(), c.to_ascii_lowercase(), ty))
            });
            let Some((t, c, ty)) = parsed else {
                bail!("type declaration '{entry}' (from {origin}) is not TABLE.COLUMN=TYPE");
            };
            let ty = DeclaredType::parse(ty).map_err(|e| {
                Error::msg(format!("type declaration '{entry}' (from {origin}): {e}"))
            })?;
            types.entry(t).or_default().insert(c, ty);
        }
        let (partition_text, partition_o) = get("partition_by");
        let mut partition_by: HashMap<String, Vec<PartExpr>> = HashMap::new();
        for entry in partition_text.split(';').filter(|e| !e.trim().is_empty()) {
            let Some((table, list)) = entry.split_once(':') else {
                bail!(
                    "{}: '{entry}' is not TABLE:EXPR[,EXPR..]",
                    where_("partition_by", &partition_o)
                );
            };
            let spec = parse_list(list).map_err(|bad| {
                Error::msg(format!(
                    "{}: '{bad}' is not a column, year(col), month(col) or day(col)",
                    where_("partition_by", &partition_o)
                ))
            })?;
            partition_by.insert(table.trim().to_ascii_lowercase(), spec);
        }
        Ok(Settings {
            partition_by,
            partition_stable: boolean("partition_stable")?,
            deletion_vectors: boolean("deletion_vectors")?,
            plain_encodings: boolean("plain_encodings")?,
            compact_deleted_share,
            storage: retries,
            commit_retries,
            lock_wait,
            compact_small_files,
            compact_every,
            compact_zorder: boolean("compact_zorder")?,
            change_data_feed: match get("change_data_feed")
                .0
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "false" | "0" | "no" | "off" | "" => None,
                "true" | "1" | "yes" | "on" => Some(Vec::new()),
                list => Some(list.split(',').map(|t| t.trim().to_string()).collect()),
            },
            target,
            op_column: non_empty("op_column")?,
            delete_column: non_empty("delete_column")?,
            seq_column: non_empty("seq_column")?,
            keep_hvr_columns: boolean("keep_hvr_columns")?,
            keep_files: boolean("keep_files")?,
            mode,
            modes: HashMap::new(),
            deleted_at_column: non_empty("deleted_at_column")?,
            file_pattern: pattern,
            format,
            csv: CsvDialect {
                separator: one_byte("csv_separator")?,
                quote: one_byte("csv_quote")?,
                null: if null.is_empty() { None } else { Some(null) },
                encoding,
            },
            types,
            chunk_bytes,
            check_row_counts: boolean("check_row_counts")?,
            single_writer: boolean("single_writer")?,
        })
    }
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
