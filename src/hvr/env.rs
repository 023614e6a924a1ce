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
