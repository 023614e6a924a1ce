//! Every setting, defined once: its name, default, one-line meaning and how its value is
//! parsed into [`Settings`]. Validation, `hvrlake --help` and the check of docs/settings.md
//! (a test) all come from [`SETTINGS`].

use super::{Format, Mode, Origin, Settings, add_types, parse_list};
use crate::bail;
use crate::error::{Error, Result};
use crate::read::csv::Encoding;

/// One setting.
pub struct Def {
    /// The name used in the userarg and the TOML file; the variable is `HVRLAKE_<NAME>`.
    pub name: &'static str,
    /// The default, or "" for none.
    pub default: &'static str,
    /// What the setting does.
    pub doc: &'static str,
    /// Parses the value into the settings; the error names the setting and its source.
    pub(super) set: fn(&mut Settings, &Value) -> Result<()>,
}

/// A setting's value as given (or its default), and where it came from.
pub struct Value<'a> {
    pub(super) name: &'static str,
    pub(super) text: &'a str,
    /// None for the default.
    pub(super) origin: Option<&'a Origin>,
}

impl Value<'_> {
    /// `setting 'NAME' (from ORIGIN)`, for messages.
    pub(super) fn place(&self) -> String {
        match self.origin {
            Some(o) => format!("setting '{}' (from {o})", self.name),
            None => format!("setting '{}'", self.name),
        }
    }

    /// The error of a value that is not what `expected` says.
    fn bad(&self, expected: &str) -> Error {
        Error::msg(format!("{} is '{}', {expected}", self.place(), self.text))
    }

    fn boolean(&self) -> Result<bool> {
        match self.text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(self.bad("expected true or false")),
        }
    }

    fn one_byte(&self) -> Result<u8> {
        let v = match self.text {
            "\\t" | "tab" => "\t",
            v => v,
        };
        if v.len() != 1 {
            bail!(
                "{} is '{v}', expected exactly one ASCII character",
                self.place()
            );
        }
        Ok(v.as_bytes()[0])
    }

    fn non_empty(&self) -> Result<String> {
        if self.text.is_empty() {
            bail!("{} is empty", self.place());
        }
        Ok(self.text.to_string())
    }

    fn count(&self, min: u64) -> Result<u64> {
        match self.text.trim().parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(self.bad(&format!("expected a whole number of at least {min}"))),
        }
    }

    fn share(&self) -> Result<f64> {
        match self.text.trim().parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(self.bad("expected a share between 0 and 1")),
        }
    }
}

/// Every setting hvrlake knows, in the order `--help` lists them.
pub const SETTINGS: &[Def] = &[
    Def {
        name: "target",
        default: "",
        doc: "lake root: a path, file://, s3:// or abfss:// URL; table T lives at <target>/T and sch.T at <target>/sch/T (required)",
        set: |s, v| {
            s.target = v.text.to_string();
            Ok(())
        },
    },
    Def {
        name: "config",
        default: "",
        doc: "TOML file with more settings (lowest precedence)",
        set: |_, _| Ok(()),
    },
    Def {
        name: "op_column",
        default: "hvr_op",
        doc: "extra column holding {hvr_op}",
        set: |s, v| {
            s.op_column = v.non_empty()?;
            Ok(())
        },
    },
    Def {
        name: "delete_column",
        default: "is_deleted",
        doc: "extra /SoftDelete flag column; a row whose flag is 1 is a delete",
        set: |s, v| {
            s.delete_column = v.non_empty()?;
            Ok(())
        },
    },
    Def {
        name: "seq_column",
        default: "hvr_integ_seq",
        doc: "extra column holding {hvr_integ_seq}; orders the changes of a table",
        set: |s, v| {
            s.seq_column = v.non_empty()?;
            Ok(())
        },
    },
    Def {
        name: "keep_hvr_columns",
        default: "false",
        doc: "write the hvr_* extra columns (and the flag column) to the tables too",
        set: |s, v| {
            s.keep_hvr_columns = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "mode",
        default: "merge",
        doc: "what a table keeps: merge (the current rows; deletes remove them), soft_delete (deleted rows stay, flagged in delete_column with the time in deleted_at_column), history (every version of a row with valid_from, valid_to, is_current, op, integ_seq) or append (every change as a row with its hvr_* columns); per table as mode.TABLE=MODE",
        set: |s, v| {
            s.mode = Mode::parse(v.text)
                .ok_or_else(|| v.bad("expected merge, soft_delete, history or append"))?;
            Ok(())
        },
    },
    Def {
        name: "deleted_at_column",
        default: "deleted_at",
        doc: "soft_delete tables: the column holding when a row was deleted (UTC, the time of the commit)",
        set: |s, v| {
            s.deleted_at_column = v.non_empty()?;
            Ok(())
        },
    },
    Def {
        name: "keep_files",
        default: "false",
        doc: "leave the processed files in the file location after a successful commit",
        set: |s, v| {
            s.keep_files = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "file_pattern",
        default: "{hvr_integ_tstamp}-{hvr_tbl_name}.*",
        doc: "how a file name maps to its table: {hvr_tbl_name} is the table, other {..} and * match any text within one path segment",
        set: |s, v| {
            if !v.text.contains("{hvr_tbl_name}") {
                bail!(
                    "{} is '{}': it must contain {{hvr_tbl_name}}",
                    v.place(),
                    v.text
                );
            }
            s.file_pattern = v.text.to_string();
            Ok(())
        },
    },
    Def {
        name: "format",
        default: "auto",
        doc: "input format: auto (by extension: .parquet is Parquet, anything else CSV), csv or parquet",
        set: |s, v| {
            s.format = match v.text.to_ascii_lowercase().as_str() {
                "auto" | "" => Format::Auto,
                "csv" => Format::Csv,
                "parquet" => Format::Parquet,
                _ => return Err(v.bad("expected auto, csv or parquet")),
            };
            Ok(())
        },
    },
    Def {
        name: "csv_separator",
        default: ",",
        doc: "CSV field separator (one character; \\t for tab)",
        set: |s, v| {
            s.csv.separator = v.one_byte()?;
            Ok(())
        },
    },
    Def {
        name: "csv_quote",
        default: "\"",
        doc: "CSV quote character; a quote inside a quoted field is doubled",
        set: |s, v| {
            s.csv.quote = v.one_byte()?;
            Ok(())
        },
    },
    Def {
        name: "csv_null",
        default: "",
        doc: "CSV NULL token such as \\N; when unset an empty unquoted field is NULL",
        set: |s, v| {
            s.csv.null = (!v.text.is_empty()).then(|| v.text.to_string());
            Ok(())
        },
    },
    Def {
        name: "csv_encoding",
        default: "utf-8",
        doc: "CSV encoding: utf-8, iso-8859-1, windows-1252, utf-16le or utf-16be",
        set: |s, v| {
            s.csv.encoding = match v.text.to_ascii_lowercase().replace('_', "-").as_str() {
                "utf-8" | "utf8" => Encoding::Utf8,
                "iso-8859-1" | "latin1" | "latin-1" | "us-ascii" | "ascii" => Encoding::Latin1,
                "windows-1252" | "cp1252" => Encoding::Windows1252,
                "utf-16le" | "utf-16" => Encoding::Utf16Le,
                "utf-16be" => Encoding::Utf16Be,
                _ => {
                    return Err(
                        v.bad("expected utf-8, iso-8859-1, windows-1252, utf-16le or utf-16be")
                    );
                }
            };
            Ok(())
        },
    },
    Def {
        name: "types",
        default: "",
        doc: "declared types for new tables: TABLE.COL=TYPE entries separated by spaces or ;, TYPE one of int64, int32, float64, decimal(P,S), string, boolean, date, timestamp, binary (also type.TABLE.COL=TYPE)",
        set: |s, v| {
            let Some(origin) = v.origin else {
                return Ok(());
            };
            let entries = v
                .text
                .split(|c: char| c == ';' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(|e| (e.to_string(), origin.clone()));
            add_types(&mut s.types, entries)
        },
    },
    Def {
        name: "check_row_counts",
        default: "true",
        doc: "compare each file's rows with HVR_FILE_NROWS and stop on a difference (a cut-short file)",
        set: |s, v| {
            s.check_row_counts = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "single_writer",
        default: "false",
        doc: "true: only one hvrlake ever writes this lake, so an object store without conditional writes is accepted",
        set: |s, v| {
            s.single_writer = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "store_retries",
        default: "10",
        doc: "times one object-store request is retried after a 5xx, throttling, a dropped connection or a timeout (backoff from 0.1 s, doubling up to 15 s)",
        set: |s, v| {
            // Passed to object_store's retry layer under the name delta-rs parses.
            let n = v.count(0)?;
            s.storage.insert("max_retries".into(), n.to_string());
            Ok(())
        },
    },
    Def {
        name: "store_retry_timeout",
        default: "180",
        doc: "seconds after which a failing object-store request is not retried any more",
        set: |s, v| {
            let n = v.count(1)?;
            s.storage.insert("retry_timeout".into(), format!("{n}s"));
            Ok(())
        },
    },
    Def {
        name: "commit_retries",
        default: "5",
        doc: "times a table's commit is redone on a fresh version of the table when another writer committed first or the commit's outcome is unknown",
        set: |s, v| {
            s.commit_retries = v.count(0)? as usize;
            Ok(())
        },
    },
    Def {
        name: "parallel_tables",
        default: "auto",
        doc: "tables of a call read, staged and committed side by side (1: one after the other); auto is 4 on a local lake and 16 on an object store, where a table's work is mostly waiting on requests. Tables larger than the memory budget's share wait for each other",
        set: |s, v| {
            s.parallel_tables = match v.text.trim() {
                "auto" | "" => 0,
                _ => v.count(1)? as usize,
            };
            Ok(())
        },
    },
    Def {
        name: "lock_wait",
        default: "300",
        doc: "seconds a call waits for another hvrlake working on the same file location before it fails",
        set: |s, v| {
            s.lock_wait = v.count(0)?;
            Ok(())
        },
    },
    Def {
        name: "change_data_feed",
        default: "false",
        doc: "true (every table) or a comma list of tables that keep a Delta change data feed (delta.enableChangeDataFeed), for readers that stream the changes",
        set: |s, v| {
            s.change_data_feed = match v.text.trim().to_ascii_lowercase().as_str() {
                "false" | "0" | "no" | "off" | "" => None,
                "true" | "1" | "yes" | "on" => Some(Vec::new()),
                list => Some(list.split(',').map(|t| t.trim().to_string()).collect()),
            };
            Ok(())
        },
    },
    Def {
        name: "compact_small_files",
        default: "64",
        doc: "after an integrate commit, compact the table when it has at least this many files under 32 MB (0: never); one more commit, no data change",
        set: |s, v| {
            s.compact_small_files = v.count(0)? as usize;
            Ok(())
        },
    },
    Def {
        name: "compact_deleted_share",
        default: "0.03",
        doc: "tables with deletion vectors: also compact after an integrate commit once the vectors delete this share of the stored rows (0: never)",
        set: |s, v| {
            s.compact_deleted_share = v.share()?;
            Ok(())
        },
    },
    Def {
        name: "compact_every",
        default: "0",
        doc: "also compact a table after every N-th cycle applied to it (0: never)",
        set: |s, v| {
            s.compact_every = v.count(0)? as usize;
            Ok(())
        },
    },
    Def {
        name: "compact_zorder",
        default: "false",
        doc: "true: compaction Z-orders the table by its key columns (clusters keys, so merges touch fewer files)",
        set: |s, v| {
            s.compact_zorder = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "deletion_vectors",
        default: "true",
        doc: "tables hvrlake creates have Delta deletion vectors on (delta.enableDeletionVectors), and a merge marks changed rows deleted instead of rewriting their files (a cycle costs what its changes cost, not what the table holds); false for copy-on-write tables, per table as deletion_vectors.TABLE=false. Needs readers that apply deletion vectors (README, \"Reading the tables\"). An existing table keeps what it has",
        set: |s, v| {
            s.deletion_vectors = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "rewrite_share",
        default: "0.1",
        doc: "tables with deletion vectors: a file a merge touches is rewritten without its deleted rows instead of marked when at least this share of its rows is deleted after the cycle (1: always mark)",
        set: |s, v| {
            s.rewrite_share = v.share()?;
            Ok(())
        },
    },
    Def {
        name: "plain_encodings",
        default: "false",
        doc: "true: data files get only PLAIN and dictionary pages: integer, date, timestamp and short-decimal columns not DELTA_BINARY_PACKED, text the dictionary does not take not DELTA_LENGTH_BYTE_ARRAY (both smaller and cheaper to write and read), for readers without those encodings (Spark's vectorized Parquet reader before 3.3)",
        set: |s, v| {
            s.plain_encodings = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "partition_by",
        default: "",
        doc: "partitioned tables: TABLE:EXPR[,EXPR..][;TABLE:..], EXPR a column or year(col), month(col), day(col) of a date or timestamp column (added as col_year, col_month, col_day); applies when a table is created or refreshed",
        set: |s, v| {
            for entry in v.text.split(';').filter(|e| !e.trim().is_empty()) {
                let Some((table, list)) = entry.split_once(':') else {
                    bail!("{}: '{entry}' is not TABLE:EXPR[,EXPR..]", v.place());
                };
                let spec = parse_list(list).map_err(|bad| {
                    Error::msg(format!(
                        "{}: '{bad}' is not a column, year(col), month(col) or day(col)",
                        v.place()
                    ))
                })?;
                s.partition_by
                    .insert(table.trim().to_ascii_lowercase(), spec);
            }
            Ok(())
        },
    },
    Def {
        name: "partition_stable",
        default: "false",
        doc: "true: a row never moves to another partition (its partition columns do not change), so a merge reads only the partitions its changes name; without it, only partitions by key columns are pruned",
        set: |s, v| {
            s.partition_stable = v.boolean()?;
            Ok(())
        },
    },
    Def {
        name: "chunk_bytes",
        default: "2097152",
        doc: "size of the pieces a file is cut into for parallel parsing",
        set: |s, v| {
            s.chunk_bytes = match v.text.parse() {
                Ok(n) if n >= 1 => n,
                _ => return Err(v.bad("expected a positive number of bytes")),
            };
            Ok(())
        },
    },
];
