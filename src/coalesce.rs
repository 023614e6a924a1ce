//! The changes of one table → at most one change per key: the last in `hvr_integ_seq` order
//! (file, piece and row order break ties), after a truncate drops what came before it.
//! Planned and run with DataFusion.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::{count, max};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::ExprFunctionExt;
use datafusion::prelude::{Expr, SessionContext, lit};

use crate::change::{self, Op};
use crate::error::Result;

/// The net change per key of one cycle.
pub struct Coalesced {
    /// Data columns plus the op column: `Op::Upsert` rows carry the new row, other rows
    /// (deletes) carry the key to remove.
    pub batches: Vec<RecordBatch>,
    /// Whether a truncate came before these changes: the table is emptied first.
    pub truncated: bool,
}

/// A column by its exact name (no SQL parsing: names may have dots or capitals).
pub fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Keeps the last change per key of `batches` (schema `schema`, keyed by `keys`).
pub async fn coalesce(
    ctx: &SessionContext,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
) -> Result<Coalesced> {
    let partitions = split_partitions(batches, ctx.state().config().target_partitions());
    let table = Arc::new(MemTable::try_new(schema.clone(), partitions)?);
    let changes = ctx.read_table(table)?;
    let op = || column(change::OP);
    let order = || column(change::ORDER);

    // A truncate empties the table at its place: only later changes count.
    let last_truncate = changes
        .clone()
        .filter(op().eq(lit(Op::Truncate as i8)))?
        .aggregate(vec![], vec![max(order()).alias("t")])?
        .collect()
        .await?;
    let cut = last_truncate
        .first()
        .map(|b| b.column(0).as_binary::<i32>())
        .filter(|a| a.is_valid(0))
        .map(|a| a.value(0).to_vec());
    let mut df = changes.filter(
        op().eq(lit(Op::Upsert as i8))
            .or(op().eq(lit(Op::Delete as i8)))
            .or(op().eq(lit(Op::PartialDelete as i8))),
    )?;
    if let Some(cut) = &cut {
        df = df.filter(order().gt(lit(cut.clone())))?;
    }

    // A partial-key delete names fewer keys than the table has; not applied yet.
    let any_null_key = keys.iter().map(|k| column(k).is_null()).reduce(Expr::or);
    if let Some(null_key) = any_null_key {
        let partial = df
            .clone()
            .filter(op().eq(lit(Op::PartialDelete as i8)).and(null_key))?
            .aggregate(vec![], vec![count(lit(1)).alias("n")])?
            .collect()
            .await?;
        let n = partial
            .first()
            .map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0)
            })
            .unwrap_or(0);
        if n > 0 {
            crate::bail!(
                "{n} partial-key deletes (hvr_op 8 with NULL key columns) are not supported yet"
            );
        }
    }

    let rn = row_number()
        .partition_by(keys.iter().map(|k| column(k)).collect())
        .order_by(vec![order().sort(false, false)])
        .build()?
        .alias("__hvr_rn");
    let keep: Vec<Expr> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != change::ORDER)
        .map(|f| column(f.name()))
        .collect();
    let net = df
        .window(vec![rn])?
        .filter(column("__hvr_rn").eq(lit(1u64)))?
        .select(keep)?
        .collect()
        .await?;
    Ok(Coalesced {
        batches: net.into_iter().filter(|b| b.num_rows() > 0).collect(),
        truncated: cut.is_some(),
    })
}

/// Deals batches round-robin into `n` partitions so DataFusion uses every core.
pub fn split_partitions(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        parts.push(Vec::new());
    }
    parts
}
