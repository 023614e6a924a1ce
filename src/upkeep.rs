//! Keeping tables fast after thousands of cycles: compaction of small files (also on its own
//! after a commit, `compact_small_files`), `VACUUM` with Delta's retention rule, and a look at
//! a table (`inspect`). Checkpoints come with every commit on Delta's own interval
//! (`delta.checkpointInterval`, written by delta-rs's post-commit hook).

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use futures::TryStreamExt;

use crate::error::Result;
use crate::table::{self, progress};

/// A data file below this size counts as small.
pub const SMALL_FILE_BYTES: u64 = 32 << 20;
/// The size compaction aims at.
pub const TARGET_FILE_BYTES: u64 = 256 << 20;

/// Files of the table's current version, and how many of them are small.
pub fn file_counts(table: &DeltaTable) -> Result<(usize, usize, u64)> {
    if !table::exists(table) {
        return Ok((0, 0, 0));
    }
    let snapshot = table.snapshot()?;
    let (mut files, mut small, mut bytes) = (0, 0, 0u64);
    for f in snapshot.log_data().iter() {
        files += 1;
        let size = f.size() as u64;
        bytes += size;
        if size < SMALL_FILE_BYTES {
            small += 1;
        }
    }
    Ok((files, small, bytes))
}

/// The share of the table's stored rows that deletion vectors delete (0 without vectors).
pub fn deleted_share(table: &DeltaTable) -> Result<f64> {
    if !table::exists(table) {
        return Ok(0.0);
    }
    let (mut stored, mut deleted) = (0u64, 0u64);
    for f in table.snapshot()?.log_data().iter() {
        stored += f.num_records().unwrap_or(0) as u64;
        deleted += f
            .deletion_vector_descriptor()
            .map_or(0, |d| d.cardinality as u64);
    }
    Ok(if stored == 0 {
        0.0
    } else {
        deleted as f64 / stored as f64
    })
}

/// What a compaction did.
#[derive(Debug)]
pub struct Compacted {
    /// Files removed.
    pub removed: u64,
    /// Files added.
    pub added: u64,
    /// The table's version afterwards.
    pub version: Option<u64>,
}

/// Bin-packs the table's small files into files of about [`TARGET_FILE_BYTES`], or Z-orders
/// the whole table by `zorder` columns; one commit that changes no data.
pub async fn compact(table: DeltaTable, zorder: Option<Vec<String>>) -> Result<Compacted> {
    let columns = table::columns(&table)?;
    let mut op = table
        .optimize()
        .with_target_size(NonZeroU64::new(TARGET_FILE_BYTES).expect("non-zero"));
    if let Some(cols) = columns {
        op = op.with_writer_properties(crate::write::writer_properties(&cols));
    }
    if let Some(z) = zorder {
        op = op.with_type(OptimizeType::ZOrder(z));
    }
    let (table, m) = op.await?;
    Ok(Compacted {
        removed: m.num_files_removed,
        added: m.num_files_added,
        version: table.version(),
    })
}

/// Deletes data files no version within the retention period needs: `retention_hours`, or
/// the table's `delta.deletedFileRetentionDuration` (7 days unless set); delta-rs refuses a
/// shorter period than the table's. Returns the files deleted (or, dry, that would be).
pub async fn vacuum(
    table: DeltaTable,
    retention_hours: Option<u64>,
    dry_run: bool,
) -> Result<Vec<String>> {
    let mut op = table.vacuum().with_dry_run(dry_run);
    if let Some(h) = retention_hours {
        op = op.with_retention_period(chrono::Duration::hours(h as i64));
    }
    let (_, m) = op.await?;
    Ok(m.files_deleted)
}

/// A description of the table: version, files, sizes, small files, partition columns, keys,
/// and the last cycle recorded per application id.
pub async fn inspect(table: &DeltaTable) -> Result<String> {
    if !table::exists(table) {
        return Ok(format!(
            "{}: no Delta table here",
            crate::storage::redact(table.table_url().as_str())
        ));
    }
    let snapshot = table.snapshot()?;
    let (files, small, bytes) = file_counts(table)?;
    let rows = table::row_count(table)?;
    let partitions = snapshot.metadata().partition_columns().join(",");
    let keys = table::recorded_keys(table)?.unwrap_or_default().join(",");
    let mut out = String::new();
    out.push_str(&format!(
        "table       {}\nversion     {}\nrows        {rows}\nfiles       {files} ({:.1} MB, {small} under {} MB)\npartitions  {}\nkeys        {}\ncolumns     {}\n",
        crate::storage::redact(table.table_url().as_str()),
        table.version().unwrap_or(0),
        bytes as f64 / 1e6,
        SMALL_FILE_BYTES >> 20,
        if partitions.is_empty() { "none" } else { &partitions },
        if keys.is_empty() { "-" } else { &keys },
        snapshot
            .snapshot()
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // The newest hvrlake entry per app id among recent commits.
    let infos: Vec<_> = table.history(Some(1000)).try_collect().await?;
    let mut apps: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for info in infos {
        if let Some(e) = info.info.get(progress::INFO_KEY)
            && let Some(app) = e["app_id"].as_str()
        {
            let newer = apps
                .get(app)
                .is_none_or(|old| e["txn"].as_i64() > old["txn"].as_i64());
            if newer {
                let mut e = e.clone();
                // The replication latency: from the capture of the cycle's first row to
                // this commit.
                if let (Some(c), Some(t)) = (e["captured_ms"].as_i64(), info.timestamp) {
                    e["latency"] = serde_json::json!((t - c) as f64 / 1000.0);
                }
                apps.insert(app.to_string(), e);
            }
        }
    }
    for (app, e) in apps {
        out.push_str(&format!(
            "applied     {app}: txn {} {} cycle {} max hvr_integ_seq {} files {} latency {}\n",
            e["txn"],
            e["mode"].as_str().unwrap_or("?"),
            e["cycle"].as_str().unwrap_or("-"),
            e["max_integ_seq"].as_str().unwrap_or("-"),
            e["files"].as_array().map_or(0, Vec::len),
            e["latency"]
                .as_f64()
                .map_or("-".to_string(), |l| format!("{l:.3}s"))
        ));
    }
    Ok(out)
}
