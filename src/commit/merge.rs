//! An integrate cycle's net changes → one Delta transaction: a MERGE on the key columns
//! (delete, update, insert), a plain write when the table is new, an overwrite after a truncate.

use std::ops::Not;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int8Type, SchemaRef};
use datafusion::common::Column;
use datafusion::prelude::{Expr, SessionContext, lit};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use super::{Outcome, writer_properties};
use crate::change::{self, Op};
use crate::coalesce::Coalesced;
use crate::error::Result;

fn qualified(alias: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(alias), name))
}

/// Applies `net` (data columns + op) to `table`, keyed by `keys`.
pub async fn apply(
    table: DeltaTable,
    net: Coalesced,
    columns: SchemaRef,
    keys: &[String],
) -> Result<(DeltaTable, Outcome)> {
    let upserts = upsert_rows(&net.batches, &columns)?;
    let upsert_count: usize = upserts.iter().map(RecordBatch::num_rows).sum();
    let fresh = !super::exists(&table);
    let table = if fresh {
        super::create(table, &columns, keys).await?
    } else {
        table
    };
    if fresh || net.truncated {
        // Nothing to match against: the rows that remain are simply written.
        let deleted = if net.truncated {
            super::row_count(&table)?
        } else {
            0
        };
        let mode = if net.truncated {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        };
        let batches = if upserts.is_empty() {
            vec![RecordBatch::new_empty(columns.clone())]
        } else {
            upserts
        };
        let table = table
            .write(batches)
            .with_save_mode(mode)
            .with_writer_properties(writer_properties(&columns))
            .await?;
        let version = table.version();
        return Ok((
            table,
            Outcome {
                inserted: upsert_count,
                updated: 0,
                deleted,
                version,
            },
        ));
    }
    if net.batches.is_empty() {
        let version = table.version();
        return Ok((
            table,
            Outcome {
                version,
                ..Outcome::default()
            },
        ));
    }
    let ctx = SessionContext::new();
    let source = ctx.read_batches(net.batches)?;
    let on = keys
        .iter()
        .map(|k| qualified("t", k).eq(qualified("s", k)))
        .reduce(Expr::and)
        .expect("a table with keys");
    let is_upsert = || qualified("s", change::OP).eq(lit(Op::Upsert as i8));
    let names: Vec<String> = columns.fields().iter().map(|f| f.name().clone()).collect();
    let (table, m) = table
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_writer_properties(writer_properties(&columns))
        .when_matched_delete(|d| d.predicate(is_upsert().not()))?
        .when_matched_update(|u| {
            names.iter().fold(u, |u, c| {
                u.update(Column::new(None::<&str>, c.as_str()), qualified("s", c))
            })
        })?
        .when_not_matched_insert(|i| {
            names.iter().fold(i.predicate(is_upsert()), |i, c| {
                i.set(Column::new(None::<&str>, c.as_str()), qualified("s", c))
            })
        })?
        .await?;
    let version = table.version();
    Ok((
        table,
        Outcome {
            inserted: m.num_target_rows_inserted,
            updated: m.num_target_rows_updated,
            deleted: m.num_target_rows_deleted,
            version,
        },
    ))
}

/// The upsert rows of `batches`, without the op column.
fn upsert_rows(batches: &[RecordBatch], columns: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for b in batches {
        let op_idx = b.schema().index_of(change::OP)?;
        let mask = arrow::compute::kernels::cmp::eq(
            b.column(op_idx).as_primitive::<Int8Type>(),
            &arrow::array::Int8Array::new_scalar(Op::Upsert as i8),
        )?;
        let kept = arrow::compute::filter_record_batch(b, &mask)?;
        if kept.num_rows() > 0 {
            let cols = (0..columns.fields().len())
                .map(|i| kept.column(i).clone())
                .collect();
            out.push(RecordBatch::try_new(Arc::clone(columns), cols)?);
        }
    }
    Ok(out)
}
