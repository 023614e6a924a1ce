//! A refresh's rows → data files written while the files are still being read
//! ([`crate::write::files`]), then one Delta transaction that replaces the whole table (an overwrite
//! commit: readers see the old table or the new one, never a mix). Nothing is committed until
//! every table of the call has been read and written.

use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, SaveMode};

use crate::error::Result;
use crate::table::{self, Outcome};
use crate::write::files::Staged;

impl Staged {
    /// Commits the staged files as the table's whole content: one overwrite commit that
    /// removes every current file (and records new columns when they changed). A table that
    /// does not exist yet is created by the same commit (its version 0), with `keys` recorded.
    ///
    /// `table` is the table as last loaded: after a failed attempt, the caller loads it again
    /// and calls this again with the same staged files. If they are in the table already,
    /// the earlier attempt did land (only its answer was lost), and nothing more is committed.
    pub async fn commit(
        &self,
        table: DeltaTable,
        columns: &SchemaRef,
        keys: &[String],
        rows: usize,
        mark: Option<&table::progress::Mark>,
    ) -> Result<(DeltaTable, Outcome)> {
        if let (Some(version), Some(first)) = (table.version(), self.adds().first())
            && table
                .snapshot()?
                .log_data()
                .iter()
                .any(|f| f.path() == first.path)
        {
            let outcome = Outcome {
                inserted: rows,
                updated: 0,
                deleted: 0,
                version: Some(version),
                files: table::FileMetrics::default(),
            };
            return Ok((table, outcome));
        }
        if !table::exists(&table) {
            // A new table: created with its rows, in one commit.
            let adds = self.adds().to_vec();
            return table::create_with(table, columns, keys, adds, rows, mark).await;
        }
        let deleted = table::row_count(&table)?;
        let snapshot = table.snapshot()?;
        let before = snapshot.log_data().num_files();
        let files = table::FileMetrics {
            before,
            removed: before,
            added: self.adds().len(),
            bytes_added: self.adds().iter().map(|a| a.size as u64).sum(),
            ..table::FileMetrics::default()
        };
        let mut actions = Vec::with_capacity(self.adds().len() + 1);
        actions.extend(table::schema_change(&table, columns)?);
        actions.extend(
            snapshot
                .log_data()
                .iter()
                .map(|f| Action::Remove(f.remove_action(true))),
        );
        actions.extend(self.adds().iter().cloned().map(Action::Add));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: None,
        };
        let (table, version) = table::commit_actions(table, actions, operation, mark).await?;
        Ok((
            table,
            Outcome {
                inserted: rows,
                updated: 0,
                deleted,
                version: Some(version),
                files,
            },
        ))
    }
}
