//! Exactly once: every commit hvrlake makes for a cycle carries, in the same Delta
//! transaction as the data, a `txn` action for the table's application id (one per channel,
//! location and table; its version one more than the last one recorded) and, in the commit
//! info, which cycle it applied: the mode, the file names and the highest `hvr_integ_seq`
//! (which, at up to 45 hex digits, does not fit the txn's i64 version). So the table itself
//! answers "was this cycle applied?", also after a crash or a lost answer from the store.

use std::collections::HashMap;

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::error::Result;

/// Key of hvrlake's entry in a commit's info.
pub const INFO_KEY: &str = "hvrlake";

/// Commits looked at (newest first) to find the one that carries an app id's last version.
const HISTORY: usize = 200;

/// One cycle of one table: what its commit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The Delta application id.
    pub app_id: String,
    /// `refresh` or `integrate`.
    pub mode: String,
    /// The cycle's file names as HVR listed them.
    pub files: Vec<String>,
    /// The highest `hvr_integ_seq` of its changes, when they have one.
    pub max_seq: Option<String>,
    /// The cycle's stamp (`{hvr_integ_tstamp}` of its file names), when they carry one.
    pub stamp: Option<String>,
    /// When the cycle's first row was captured (ms since the epoch), when HVR said.
    pub captured_ms: Option<i64>,
}

/// What a commit adds to record a cycle: the txn action and the commit-info entry.
#[derive(Clone, Debug)]
pub struct Mark {
    /// The `txn` action.
    pub txn: Transaction,
    /// Entries for the commit info.
    pub info: HashMap<String, Value>,
}

/// The application id of a table loaded by a channel into a location.
pub fn app_id(channel: &str, location: &str, table: &str) -> String {
    format!("hvrlake/{channel}/{location}/{table}")
}

/// The last txn version recorded for `app_id`, if any.
pub async fn last_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    if !super::exists(table) {
        return Ok(None);
    }
    Ok(table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await?)
}

/// The commit-info entry of the last cycle applied for `app_id`: the one whose txn version
/// is the app id's latest.
pub async fn last_entry(table: &DeltaTable, app_id: &str) -> Result<Option<Value>> {
    let Some(last) = last_version(table, app_id).await? else {
        return Ok(None);
    };
    // Almost always one of the last few commits: read a few, then more.
    let mut seen = 0;
    for limit in [4, 32, HISTORY] {
        let infos: Vec<_> = table.history(Some(limit)).try_collect().await?;
        let found = infos.iter().find_map(|info| {
            let entry = info.info.get(INFO_KEY)?;
            (entry["app_id"] == app_id && entry["txn"] == last).then(|| entry.clone())
        });
        if found.is_some() || infos.len() <= seen || infos.len() < limit {
            return Ok(found);
        }
        seen = infos.len();
    }
    Ok(None)
}

/// Whether `cycle` is the last cycle applied for its app id: the commit that carries the
/// app id's latest txn version recorded the same mode and the same files.
pub async fn applied(table: &DeltaTable, cycle: &Cycle) -> Result<bool> {
    Ok(last_entry(table, &cycle.app_id)
        .await?
        .is_some_and(|e| e["mode"] == cycle.mode.as_str() && e["files"] == json!(cycle.files)))
}

/// The mark for the next commit of `cycle` on `table` as loaded now.
pub async fn mark(table: &DeltaTable, cycle: &Cycle) -> Result<Mark> {
    let version = last_version(table, &cycle.app_id).await?.unwrap_or(0) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let entry = json!({
        "app_id": cycle.app_id,
        "txn": version,
        "mode": cycle.mode,
        "files": cycle.files,
        "max_integ_seq": cycle.max_seq,
        "cycle": cycle.stamp,
        "captured_ms": cycle.captured_ms,
    });
    Ok(Mark {
        txn: Transaction::new_with_last_update(cycle.app_id.clone(), version, Some(now)),
        info: HashMap::from([(INFO_KEY.to_string(), entry)]),
    })
}

impl Mark {
    /// Commit properties carrying the mark, for delta-rs's own operations.
    pub fn properties(&self) -> deltalake::kernel::transaction::CommitProperties {
        deltalake::kernel::transaction::CommitProperties::default()
            .with_application_transaction(self.txn.clone())
            .with_metadata(self.info.clone())
    }
}

/// The text of the highest `hvr_integ_seq` encoded in an order value ([`crate::change`]):
/// its `|`-separated hex parts, or None when the order does not start with a sequence.
pub fn seq_text(order: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut i = 0;
    while order.get(i) == Some(&1) {
        let n = *order.get(i + 1)? as usize;
        let digits = order.get(i + 2..i + 2 + n)?;
        parts.push(if n == 0 {
            "0".to_string()
        } else {
            String::from_utf8(digits.to_vec()).ok()?
        });
        i += 2 + n;
    }
    (order.get(i) == Some(&0) && !parts.is_empty()).then(|| parts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_read_back_from_their_order_encoding() {
        for (text, back) in [("00A|1", "a|1"), ("0", "0"), ("1f2e", "1f2e")] {
            let mut v = Vec::new();
            assert!(crate::change::encode_seq(text.as_bytes(), &mut v));
            v.extend([7, 7, 7]); // file and row positions follow
            assert_eq!(seq_text(&v).as_deref(), Some(back));
        }
        assert_eq!(seq_text(&[0, 0, 0, 1]), None);
    }
}
