//! A refresh's rows → one Delta transaction that replaces the whole table (an overwrite
//! commit, so readers see the old table or the new one, never a mix).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use super::{Outcome, writer_properties};
use crate::error::Result;

/// Replaces `table` with exactly `batches` (possibly none: the table becomes empty).
pub async fn replace(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    columns: SchemaRef,
    keys: &[String],
) -> Result<(DeltaTable, Outcome)> {
    let inserted: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let deleted = super::row_count(&table)?;
    let table = if super::exists(&table) {
        table
    } else {
        super::create(table, &columns, keys).await?
    };
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(columns)]
    } else {
        batches
    };
    let table = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_writer_properties(writer_properties())
        .await?;
    let version = table.version();
    Ok((
        table,
        Outcome {
            inserted,
            updated: 0,
            deleted,
            version,
        },
    ))
}
