//! The compaction policy after an integrate's commit: when a table's small files, its cycle
//! count or its deleted share call for it (settings `compact_*`).

use deltalake::DeltaTable;

use crate::settings::Settings;
use crate::storage;
use crate::table::{self, progress};

/// Compacts a table whose small files reached `compact_small_files`, or every
/// `compact_every` cycles (Z-ordered by its keys with `compact_zorder`). Its data is committed
/// already: a failure here is a warning, and the next cycle tries again.
pub(super) async fn compact_if_needed(
    table: DeltaTable,
    name: &str,
    app_id: Option<&str>,
    settings: &Settings,
) {
    let run = async {
        let (_, small, _) = crate::upkeep::file_counts(&table)?;
        let by_count = settings.compact_small_files > 0 && small >= settings.compact_small_files;
        // Deletion vectors: rows marked deleted still cost every reader, and each cycle's
        // upserts are a new small file; compact once the vectors delete a set share.
        let by_vectors = settings.compact_deleted_share > 0.0
            && crate::upkeep::deleted_share(&table)? >= settings.compact_deleted_share;
        // Every N cycles: the app id's txn version counts the cycles applied.
        let by_cycle = match (settings.compact_every, app_id) {
            (0, _) | (_, None) => false,
            (n, Some(app)) => progress::last_version(&table, app)
                .await?
                .is_some_and(|v| v > 0 && (v as u64).is_multiple_of(n as u64)),
        };
        if !by_count && !by_cycle && !by_vectors {
            return Ok(None);
        }
        let zorder = match settings.compact_zorder {
            true => table::recorded_keys(&table)?,
            false => None,
        };
        crate::upkeep::compact(table, zorder).await.map(Some)
    };
    match run.await {
        Ok(Some(c)) => println!(
            "hvrlake: compacted: {name}: files removed={} added={} version={}",
            c.removed,
            c.added,
            c.version.map_or("none".into(), |v| v.to_string())
        ),
        Ok(None) => {}
        Err(e) => eprintln!(
            "W_JX0E03: {name}: committed, but compacting its small files failed: {}",
            storage::redact(e.message())
        ),
    }
}
