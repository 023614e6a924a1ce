//! The `HVR_*` environment of an AgentPlugin call: `HVR_LONG_ENVIRONMENT` first, then the
//! process environment; colon-separated lists, one entry per table, checked for length.

use std::collections::HashMap;

use crate::bail;
use crate::error::{Error, Result};

/// One table of the call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HvrTable {
    /// Channel table name, as used in file names.
    pub name: String,
    /// Target name, `schema.` prefixed with TableProperties /Schema.
    pub base_name: String,
    /// Key columns (base names).
    pub keys: Vec<String>,
    /// All columns (base names), extra columns included; empty when HVR gave none.
    pub columns: Vec<String>,
    /// All columns (channel names), same order as `columns`.
    pub channel_columns: Vec<String>,
    /// When the table's first row of the cycle was captured (`HVR_TBL_CAP_TSTAMP`), in
    /// milliseconds since the epoch; None when HVR gave none or none that reads.
    #[serde(default)]
    pub captured_ms: Option<i64>,
}

/// Everything an AgentPlugin call is given.
#[derive(Clone, Debug)]
pub struct HvrEnv {
    /// Tables of the call, in `HVR_TBL_NAMES` order.
    pub tables: Vec<HvrTable>,
    /// Files of the call, relative to `file_loc`.
    pub files: Vec<String>,
    /// The file location's top: a path or URL (may embed credentials).
    pub file_loc: Option<String>,
    /// The state directory.
    pub state_dir: Option<String>,
    /// Rows per file as HVR counted them (`HVR_FILE_NROWS`), when given.
    pub file_rows: Vec<u64>,
}

/// Looks variables up in the long environment, then in the process environment.
pub struct Lookup<'a> {
    long: HashMap<String, String>,
    env: &'a HashMap<String, String>,
}

impl<'a> Lookup<'a> {
    /// Loads `HVR_LONG_ENVIRONMENT` when set.
    pub fn new(env: &'a HashMap<String, String>) -> Result<Self> {
        let mut long = HashMap::new();
        if let Some(path) = env.get("HVR_LONG_ENVIRONMENT").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::msg(format!("HVR_LONG_ENVIRONMENT file {path}: {e}")))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::msg(format!(
                    "HVR_LONG_ENVIRONMENT file {path}: not a JSON object: {e}"
                ))
            })?;
            let Some(map) = value.as_object() else {
                bail!("HVR_LONG_ENVIRONMENT file {path}: not a JSON object");
            };
            for (k, v) in map {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                long.insert(k.clone(), s);
            }
        }
        Ok(Lookup { long, env })
    }

    /// The full value of a variable; a value cut short with `...` is an error.
    pub fn get(&self, name: &str) -> Result<Option<String>> {
        let v = self.long.get(name).or_else(|| self.env.get(name)).cloned();
        if let Some(v) = &v
            && v.ends_with("...")
        {
            bail!(
                "{name} is cut short ('...') and HVR_LONG_ENVIRONMENT does not give its full value"
            );
        }
        Ok(v)
    }
}

/// Splits a colon list; empty and `-1` (interrupted cycle) mean no entries.
fn list(v: Option<String>) -> Vec<String> {
    match v.as_deref() {
        None | Some("") | Some("-1") => Vec::new(),
        Some(s) => s.split(':').map(str::to_string).collect(),
    }
}

fn split_columns(entry: &str) -> Vec<String> {
    entry
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

impl HvrEnv {
    /// Reads and checks the call's environment.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self> {
        let l = Lookup::new(env)?;
        let names = list(l.get("HVR_TBL_NAMES")?);
        let per_table = |var: &str, fallback: Option<&str>| -> Result<Vec<String>> {
            let mut v = l.get(var)?;
            if v.as_deref().unwrap_or("").is_empty()
                && let Some(fb) = fallback
            {
                v = l.get(fb)?;
            }
            let items = list(v);
            if !items.is_empty() && items.len() != names.len() {
                bail!(
                    "{var} has {} entries but HVR_TBL_NAMES has {} tables",
                    items.len(),
                    names.len()
                );
            }
            Ok(items)
        };
        let bases = per_table("HVR_BASE_NAMES", None)?;
        let keys = per_table("HVR_TBL_KEYS_BASE", Some("HVR_TBL_KEYS"))?;
        let cols = per_table("HVR_COL_NAMES_BASE", Some("HVR_COL_NAMES"))?;
        let chan_cols = per_table("HVR_COL_NAMES", Some("HVR_COL_NAMES_BASE"))?;
        let captured = capture_stamps(l.get("HVR_TBL_CAP_TSTAMP")?.as_deref(), names.len());
        let mut tables = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                bail!("HVR_TBL_NAMES entry {} is empty", i + 1);
            }
            let columns = cols.get(i).map(|c| split_columns(c)).unwrap_or_default();
            let mut channel_columns = chan_cols
                .get(i)
                .map(|c| split_columns(c))
                .unwrap_or_default();
            if channel_columns.len() != columns.len() {
                channel_columns = columns.clone();
            }
            tables.push(HvrTable {
                name: name.clone(),
                base_name: bases
                    .get(i)
                    .filter(|b| !b.is_empty())
                    .unwrap_or(name)
                    .clone(),
                keys: keys.get(i).map(|k| split_columns(k)).unwrap_or_default(),
                columns,
                channel_columns,
                captured_ms: captured.get(i).copied().flatten(),
            });
        }
        let files: Vec<String> = list(l.get("HVR_FILE_NAMES")?)
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect();
        let file_rows: Vec<u64> = list(l.get("HVR_FILE_NROWS")?)
            .iter()
            .map(|n| {
                n.trim()
                    .parse::<u64>()
                    .map_err(|_| Error::msg(format!("HVR_FILE_NROWS entry '{n}' is not a number")))
            })
            .collect::<Result<_>>()?;
        if !file_rows.is_empty() && file_rows.len() != files.len() {
            bail!(
                "HVR_FILE_NROWS has {} entries but HVR_FILE_NAMES has {} files",
                file_rows.len(),
                files.len()
            );
        }
        Ok(HvrEnv {
            tables,
            files,
            file_loc: l.get("HVR_FILE_LOC")?.filter(|s| !s.is_empty()),
            state_dir: l.get("HVR_LOC_STATEDIR")?.filter(|s| !s.is_empty()),
            file_rows,
        })
    }
}

/// The capture times of `HVR_TBL_CAP_TSTAMP`, one per table, in milliseconds since the epoch.
/// HVR does not document the format: epoch seconds (what a public connector compares it with)
/// and `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) are read; the colons inside the latter do not split
/// the list. A list that does not read, or has another count than `tables`, gives no figures
/// and one warning: the latency is informational and never fails a call.
fn capture_stamps(value: Option<&str>, tables: usize) -> Vec<Option<i64>> {
    let Some(value) = value.filter(|v| !v.is_empty() && *v != "-1") else {
        return Vec::new();
    };
    let parts: Vec<&str> = value.split(':').collect();
    let mut stamps = Vec::with_capacity(tables);
    let mut i = 0;
    while i < parts.len() {
        // `2026-12-03 17:08` + `40.5`: a date-time spans three colon-separated parts.
        let p = parts[i];
        let (text, used) = if p.len() >= 13 && p.as_bytes()[4] == b'-' && i + 2 < parts.len() {
            (format!("{p}:{}:{}", parts[i + 1], parts[i + 2]), 3)
        } else {
            (p.to_string(), 1)
        };
        stamps.push(epoch_ms(text.trim()));
        i += used;
    }
    if stamps.len() != tables {
        eprintln!(
            "W_JX0E02: HVR_TBL_CAP_TSTAMP has {} entries but HVR_TBL_NAMES has {tables} tables: no replication latency is reported",
            stamps.len()
        );
        return Vec::new();
    }
    if let Some(bad) = stamps.iter().position(Option::is_none) {
        eprintln!(
            "W_JX0E02: HVR_TBL_CAP_TSTAMP entry {} is neither epoch seconds nor YYYY-MM-DD HH:MM:SS: no replication latency for that table",
            bad + 1
        );
    }
    stamps
}

/// Epoch seconds (a fraction allowed) or a UTC `YYYY-MM-DD HH:MM:SS[.fff]`, as milliseconds.
fn epoch_ms(text: &str) -> Option<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0).then_some((secs * 1000.0).round() as i64);
    }
    let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()?;
    Some(t.and_utc().timestamp_millis())
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
    fn lists_and_base_names() {
        let e = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "orders:lines"),
            ("HVR_BASE_NAMES", "orders:sales.lines"),
            ("HVR_TBL_KEYS", "id:order_id,line_no"),
            ("HVR_COL_NAMES", "id,v,hvr_op:order_id,line_no,q"),
            ("HVR_FILE_NAMES", "1-orders.csv:2-lines.csv"),
        ]))
        .unwrap();
        assert_eq!(e.tables[1].base_name, "sales.lines");
        assert_eq!(e.tables[1].keys, vec!["order_id", "line_no"]);
        assert_eq!(e.tables[0].columns, vec!["id", "v", "hvr_op"]);
        assert_eq!(e.files.len(), 2);
        assert_eq!(e.tables[0].captured_ms, None);
    }

    #[test]
    fn capture_stamps_as_epoch_seconds_or_date_times() {
        let e = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "a:b:c"),
            (
                "HVR_TBL_CAP_TSTAMP",
                "1764781720:2026-12-03 17:08:40.250:2026-12-03 17:08:40",
            ),
        ]))
        .unwrap();
        let got: Vec<_> = e.tables.iter().map(|t| t.captured_ms).collect();
        assert_eq!(
            got,
            vec![
                Some(1_764_781_720_000),
                Some(1_796_317_720_250),
                Some(1_796_317_720_000)
            ]
        );
        // Unreadable or miscounted: no figure, never an error.
        let e = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "a:b"),
            ("HVR_TBL_CAP_TSTAMP", "yesterday:1764781720"),
        ]))
        .unwrap();
        assert_eq!(e.tables[0].captured_ms, None);
        assert_eq!(e.tables[1].captured_ms, Some(1_764_781_720_000));
        let e = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "a:b"),
            ("HVR_TBL_CAP_TSTAMP", "1764781720"),
        ]))
        .unwrap();
        assert!(e.tables.iter().all(|t| t.captured_ms.is_none()));
    }

    #[test]
    fn long_environment_wins_and_cut_values_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("long.json");
        std::fs::write(&p, r#"{"HVR_FILE_NAMES": "a-t.csv:b-t.csv:c-t.csv"}"#).unwrap();
        let ps = p.to_str().unwrap();
        let e = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "t"),
            ("HVR_FILE_NAMES", "a-t.csv:b-..."),
            ("HVR_LONG_ENVIRONMENT", ps),
        ]))
        .unwrap();
        assert_eq!(e.files.len(), 3);
        let err = HvrEnv::from_env(&env(&[
            ("HVR_TBL_NAMES", "t"),
            ("HVR_FILE_NAMES", "a-t.csv:b-..."),
        ]))
        .unwrap_err();
        assert!(
            err.message().contains("HVR_FILE_NAMES is cut short"),
            "{err}"
        );
        let err =
            HvrEnv::from_env(&env(&[("HVR_TBL_NAMES", "a:b"), ("HVR_TBL_KEYS", "k")])).unwrap_err();
        assert!(err.message().contains("HVR_TBL_KEYS"), "{err}");
        let e = HvrEnv::from_env(&env(&[("HVR_TBL_NAMES", "-1"), ("HVR_FILE_NAMES", "")])).unwrap();
        assert!(e.tables.is_empty() && e.files.is_empty());
    }
}
