//! mode=append: the change log. Every change of a cycle is a new row, its `hvr_*` columns
//! included; nothing is coalesced or replaced.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use futures::future::BoxFuture;

use super::{Apply, Changes, TableMode};
use crate::error::Result;
use crate::table::{self, Outcome, progress};
use crate::write::writer_properties;

/// The append mode.
pub struct Append;

impl TableMode for Append {
    fn stage(&self) -> &'static str {
        "append"
    }

    fn coalesces(&self) -> bool {
        false
    }

    fn keeps_extras(&self) -> bool {
        true
    }

    fn needs_keys(&self) -> bool {
        false
    }

    fn apply<'a>(&'a self, job: Apply<'a>) -> BoxFuture<'a, Result<(DeltaTable, Outcome)>> {
        Box::pin(async move {
            let Changes::All { batches, .. } = job.changes else {
                crate::bail!("an append applies every change of a cycle");
            };
            append(job.table, batches, job.columns, job.keys, job.mark).await
        })
    }
}

/// Appends an append-mode table's change rows as they are (their data columns, `hvr_*`
/// columns included), with the cycle's progress `mark`: the table is the change log.
pub async fn append(
    table: DeltaTable,
    changes: &[RecordBatch],
    columns: &SchemaRef,
    keys: &[String],
    mark: Option<&progress::Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let mut batches = Vec::with_capacity(changes.len());
    for b in changes {
        let cols = (0..columns.fields().len())
            .map(|i| b.column(i).clone())
            .collect();
        batches.push(RecordBatch::try_new(table::plain_schema(columns), cols)?);
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if !table::exists(&table) {
        return super::table_mode::create_with_rows(table, batches, columns, keys, mark).await;
    }
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(table::plain_schema(columns)));
    }
    let table = table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
        .with_writer_properties(writer_properties(columns))
        .with_commit_properties(mark.map(progress::Mark::properties).unwrap_or_default())
        .await?;
    let version = table.version();
    Ok((
        table,
        Outcome {
            inserted: rows,
            version,
            ..Outcome::default()
        },
    ))
}
