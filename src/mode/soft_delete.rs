//! mode=soft_delete: the current rows, as merge keeps them, but a delete keeps its row,
//! flagged in `delete_column` with the time of the commit in `deleted_at_column`.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, SchemaRef};
use deltalake::DeltaTable;
use futures::future::BoxFuture;

use super::{Apply, Changes, ModeOptions, TableMode};
use crate::change::{OP, Op};
use crate::error::Result;
use crate::schema::types::DeclaredType;
use crate::table::Outcome;

/// The soft-delete mode.
pub struct SoftDelete;

impl TableMode for SoftDelete {
    fn stage(&self) -> &'static str {
        "merge"
    }

    fn added_columns(
        &self,
        _table: &str,
        data: &[Field],
        existing: Option<&SchemaRef>,
        options: &ModeOptions,
    ) -> Result<Vec<Field>> {
        // The deletion flag and time, after the data columns (kept where they are).
        let mut added: Vec<Field> = Vec::new();
        for (name, ty) in [
            (&options.delete_column, DataType::Boolean),
            (&options.deleted_at_column, DeclaredType::Timestamp.arrow()),
        ] {
            let present = data
                .iter()
                .chain(&added)
                .any(|f| f.name().eq_ignore_ascii_case(name));
            if !present {
                let kept = existing.and_then(|e| {
                    e.fields()
                        .iter()
                        .find(|f| f.name().eq_ignore_ascii_case(name))
                        .cloned()
                });
                added.push(match kept {
                    Some(f) => f.as_ref().clone(),
                    None => Field::new(name, ty, true),
                });
            }
        }
        Ok(added)
    }

    fn refresh_rows(
        &self,
        batch: RecordBatch,
        columns: &SchemaRef,
        options: &ModeOptions,
        _now: i64,
    ) -> Result<RecordBatch> {
        // Refresh rows are not deleted.
        Ok(match columns.index_of(&options.delete_column) {
            Ok(flag) => with_flag(&batch, flag, false)?,
            Err(_) => batch,
        })
    }

    fn apply<'a>(&'a self, mut job: Apply<'a>) -> BoxFuture<'a, Result<(DeltaTable, Outcome)>> {
        Box::pin(async move {
            if let Changes::Net(net) = &mut job.changes {
                let flag = job.columns.index_of(&job.options.delete_column)?;
                let at = job.columns.index_of(&job.options.deleted_at_column)?;
                let now = super::history::now_micros();
                for b in &mut net.batches {
                    *b = soften_deletes(b, flag, at, now)?;
                }
            }
            super::merge::Merge.apply(job).await
        })
    }
}

/// `batch` with column `idx` set to `value` on every row (a boolean column).
pub fn with_flag(
    batch: &arrow::array::RecordBatch,
    idx: usize,
    value: bool,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    let mut cols = batch.columns().to_vec();
    cols[idx] = std::sync::Arc::new(arrow::array::BooleanArray::from(vec![
        value;
        batch.num_rows()
    ]));
    arrow::array::RecordBatch::try_new(batch.schema(), cols)
}

/// Soft deletes: in coalesced changes (data columns, then [`OP`]), every delete becomes an
/// upsert of its row with the flag column `flag` true and `at` set to `now` (microseconds,
/// UTC); every other row gets the flag false and no time.
pub fn soften_deletes(
    batch: &arrow::array::RecordBatch,
    flag: usize,
    at: usize,
    now: i64,
) -> Result<arrow::array::RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray, BooleanArray, Int8Array, TimestampMicrosecondArray};
    let op_idx = batch.schema().index_of(OP)?;
    let ops = batch
        .column(op_idx)
        .as_primitive::<arrow::datatypes::Int8Type>();
    let deleted: Vec<bool> = (0..ops.len())
        .map(|i| ops.is_valid(i) && ops.value(i) == Op::Delete as i8)
        .collect();
    let mut cols = batch.columns().to_vec();
    cols[flag] = std::sync::Arc::new(BooleanArray::from(deleted.clone()));
    let tz = match batch.schema().field(at).data_type() {
        arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    cols[at] = std::sync::Arc::new(
        TimestampMicrosecondArray::from(
            deleted
                .iter()
                .map(|&d| d.then_some(now))
                .collect::<Vec<_>>(),
        )
        .with_timezone_opt(tz),
    );
    cols[op_idx] = std::sync::Arc::new(Int8Array::from(vec![Op::Upsert as i8; ops.len()]));
    arrow::array::RecordBatch::try_new(batch.schema(), cols)
}
