//! The changes of one table → at most one change per key: the last in `hvr_integ_seq` order
//! (file, piece and row order break ties), after a truncate drops what came before it.
//! Truncates and partial-key deletes are planned and run with DataFusion; the last change
//! per key is a parallel hash reduction ([`last_per_key`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Not;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Int8Type, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, cast};
use datafusion::prelude::{DataFrame, Expr, SessionContext, lit};
use deltalake::DeltaTable;
use rayon::prelude::*;

use crate::change::{self, NetChanges, Op, column};
use crate::error::Result;

/// Keeps the last change per key of `batches` (schema `schema`, keyed by `keys`).
/// `target` is the table the changes apply to, read only to expand partial-key deletes.
pub async fn coalesce(
    ctx: &SessionContext,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
    target: Option<&DeltaTable>,
) -> Result<NetChanges> {
    let plan = match std::env::var("HVRLAKE_COALESCE").as_deref() {
        Ok("window") => Plan::Window,
        _ => Plan::Hash,
    };
    coalesce_with(ctx, schema, batches, keys, target, plan).await
}

/// How the last change per key is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// [`last_per_key`]: row-encoded keys, hash partitions reduced on all cores.
    Hash,
    /// DataFusion's `ROW_NUMBER() OVER (PARTITION BY key ORDER BY order DESC) = 1`.
    Window,
}

/// [`coalesce`] with the last-change-per-key step done by `plan`.
pub async fn coalesce_with(
    ctx: &SessionContext,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
    target: Option<&DeltaTable>,
    plan: Plan,
) -> Result<NetChanges> {
    // The usual cycle holds only upserts and deletes: no truncate to cut at, no partial key
    // to expand, nothing to leave out, so the changes go straight to the hash reduction
    // (no DataFusion plan copying them through filters first).
    if plan == Plan::Hash && only_upserts_and_deletes(&batches)? {
        return Ok(NetChanges {
            batches: last_per_key(&batches, keys)?,
            truncated: false,
        });
    }
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

    // A partial-key delete (op 8 with some key columns NULL) removes every key that matches
    // the columns it names: expand it into one delete per such key, at its own place.
    if let Some(null_key) = keys.iter().map(|k| column(k).is_null()).reduce(Expr::or) {
        let is_partial = op().eq(lit(Op::PartialDelete as i8)).and(null_key);
        let partial = df.clone().filter(is_partial.clone())?.collect().await?;
        if partial.iter().any(|b| b.num_rows() > 0) {
            let target = if cut.is_some() { None } else { target };
            let expanded = expand_partial_deletes(ctx, &schema, &df, partial, target, keys).await?;
            df = df.filter(is_partial.not())?;
            for e in expanded {
                df = df.union(e)?;
            }
        }
    }

    if plan == Plan::Hash {
        let changes = df.collect().await?;
        let net = last_per_key(&changes, keys)?;
        return Ok(NetChanges {
            batches: net,
            truncated: cut.is_some(),
        });
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
    Ok(NetChanges {
        batches: net.into_iter().filter(|b| b.num_rows() > 0).collect(),
        truncated: cut.is_some(),
    })
}

/// One delete per full key matching each partial-key delete: keys of the target table and
/// keys changed in the cycle, matched on the key columns the delete names (grouped by which
/// columns those are), each carrying the partial delete's order.
async fn expand_partial_deletes(
    ctx: &SessionContext,
    schema: &SchemaRef,
    changes: &DataFrame,
    partial: Vec<RecordBatch>,
    target: Option<&DeltaTable>,
    keys: &[String],
) -> Result<Vec<DataFrame>> {
    let key_cols = || keys.iter().map(|k| column(k)).collect::<Vec<_>>();
    let all_keys_present = keys
        .iter()
        .map(|k| column(k).is_not_null())
        .reduce(Expr::and)
        .expect("keys");
    let mut candidates = changes
        .clone()
        .filter(all_keys_present)?
        .select(key_cols())?;
    if let Some(t) = target.filter(|t| crate::table::exists(t)) {
        t.update_datafusion_session(&ctx.state())?;
        let provider = t.table_provider().await?;
        // The table may read strings as views: cast its keys to the change types.
        let typed: Vec<Expr> = keys
            .iter()
            .map(|k| Ok(cast(column(k), schema.field_with_name(k)?.data_type().clone()).alias(k)))
            .collect::<Result<_>>()?;
        candidates = candidates.union(ctx.read_table(provider)?.select(typed)?)?;
    }
    let candidates = candidates.distinct()?;
    // Which key columns each partial delete names.
    let mut patterns: Vec<Vec<bool>> = Vec::new();
    for b in &partial {
        for r in 0..b.num_rows() {
            let present: Vec<bool> = keys
                .iter()
                .map(|k| b.column_by_name(k).is_some_and(|c| c.is_valid(r)))
                .collect();
            if !patterns.contains(&present) {
                patterns.push(present);
            }
        }
    }
    let partial = ctx.read_batches(partial)?;
    let mut out = Vec::new();
    for present in patterns {
        let named: Vec<&String> = keys
            .iter()
            .zip(&present)
            .filter(|(_, p)| **p)
            .map(|(k, _)| k)
            .collect();
        if named.is_empty() {
            crate::bail!(
                "a partial-key delete (hvr_op 8) names none of the key columns ({})",
                keys.join(",")
            );
        }
        let mut rows = partial.clone();
        for (k, p) in keys.iter().zip(&present) {
            rows = rows.filter(if *p {
                column(k).is_not_null()
            } else {
                column(k).is_null()
            })?;
        }
        let mut side: Vec<Expr> = named
            .iter()
            .map(|k| column(k).alias(format!("__p_{k}")))
            .collect();
        side.push(column(change::ORDER));
        let rows = rows.select(side)?;
        let left: Vec<String> = named.iter().map(|k| k.to_string()).collect();
        let right: Vec<String> = named.iter().map(|k| format!("__p_{k}")).collect();
        let left: Vec<&str> = left.iter().map(String::as_str).collect();
        let right: Vec<&str> = right.iter().map(String::as_str).collect();
        let joined = candidates
            .clone()
            .join(rows, JoinType::Inner, &left, &right, None)?;
        // Back to the change schema: full key, NULL data, a delete at the partial delete's place.
        let projection: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| -> Result<Expr> {
                Ok(if keys.contains(f.name()) || f.name() == change::ORDER {
                    column(f.name())
                } else if f.name() == change::OP {
                    lit(Op::Delete as i8).alias(change::OP)
                } else {
                    Expr::Literal(ScalarValue::try_from(f.data_type())?, None).alias(f.name())
                })
            })
            .collect::<Result<_>>()?;
        out.push(joined.select(projection)?);
    }
    Ok(out)
}

/// The op column of each of `batches`.
fn op_columns(batches: &[RecordBatch]) -> Result<Vec<&arrow::array::Int8Array>> {
    batches
        .iter()
        .map(|b| {
            Ok(b.column(b.schema().index_of(change::OP)?)
                .as_primitive::<Int8Type>())
        })
        .collect()
}

/// Whether [`coalesce`]'s result can depend on the target table: only a partial-key delete
/// reads it. Otherwise the net changes are the same on any version of the table, so a
/// retried commit can reuse them instead of the cycle's changes.
pub fn reads_target(batches: &[RecordBatch]) -> Result<bool> {
    let partial = Op::PartialDelete as i8;
    Ok(op_columns(batches)?
        .iter()
        .any(|op| op.values().contains(&partial)))
}

/// Whether every change of `batches` is an upsert or a delete.
fn only_upserts_and_deletes(batches: &[RecordBatch]) -> Result<bool> {
    let plain = |v: &i8| *v == Op::Upsert as i8 || *v == Op::Delete as i8;
    Ok(op_columns(batches)?
        .iter()
        .all(|op| op.null_count() == 0 && op.values().iter().all(plain)))
}

/// The last change per key of `batches` (highest order), without the order column: keys
/// encoded with arrow's row format, hashed into partitions that are reduced in parallel.
/// Measured against DataFusion's window plan (`HVRLAKE_COALESCE=window`, and the criterion
/// bench `coalesce`), this is several times faster; see docs/benchmarks.md.
pub fn last_per_key(batches: &[RecordBatch], keys: &[String]) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let key_idx: Vec<usize> = keys
        .iter()
        .map(|k| schema.index_of(k))
        .collect::<std::result::Result<_, _>>()?;
    let order_idx = schema.index_of(change::ORDER)?;
    let op_idx = schema.index_of(change::OP).ok();
    let converter = RowConverter::new(
        key_idx
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let state = foldhash::fast::RandomState::default();
    let parts = (rayon::current_num_threads() * 4) as u32;
    // Keys and the partition of each (its hash scaled to 0..parts: a multiply, where a
    // remainder would cost a division per key and partition), per batch, in parallel.
    let encoded: Vec<(Rows, Vec<u32>)> = batches
        .par_iter()
        .map(|b| {
            let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| b.column(i).clone()).collect();
            let rows = converter.convert_columns(&cols)?;
            let part = |r: arrow::row::Row<'_>| {
                ((u128::from(state.hash_one(r.as_ref())) * u128::from(parts)) >> 64) as u32
            };
            let owners = rows.iter().map(part).collect();
            Ok((rows, owners))
        })
        .collect::<Result<_>>()?;
    // Each partition keeps, per key, the row with the highest order.
    let winners: Vec<Vec<(u32, u32)>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut best: HashMap<&[u8], (u32, u32), _> =
                HashMap::with_hasher(foldhash::fast::RandomState::default());
            for (bi, (rows, owners)) in encoded.iter().enumerate() {
                let order = batches[bi].column(order_idx).as_binary::<i32>();
                for (ri, &owner) in owners.iter().enumerate() {
                    if owner != p {
                        continue;
                    }
                    let here = (bi as u32, ri as u32);
                    best.entry(rows.row(ri).data())
                        .and_modify(|w| {
                            let theirs = batches[w.0 as usize]
                                .column(order_idx)
                                .as_binary::<i32>()
                                .value(w.1 as usize);
                            if order.value(ri) > theirs {
                                *w = here;
                            }
                        })
                        .or_insert(here);
                }
            }
            best.into_values().collect()
        })
        .collect();
    let mut per_batch: Vec<Vec<u32>> = vec![Vec::new(); batches.len()];
    for (b, r) in winners.into_iter().flatten() {
        per_batch[b as usize].push(r);
    }
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| i != order_idx)
        .collect();
    let out_schema = Arc::new(schema.project(&keep)?);
    per_batch
        .into_par_iter()
        .zip(batches.par_iter())
        .filter(|(rows, _)| !rows.is_empty())
        .map(|(mut rows, b)| {
            // Upserts first, then the rest, each in file order: a merge takes the upserts
            // as a slice instead of copying them out.
            match op_idx.and_then(|o| b.column(o).as_primitive_opt::<Int8Type>()) {
                Some(ops) => {
                    let ops = ops.values();
                    rows.sort_unstable_by_key(|&r| (ops[r as usize] != Op::Upsert as i8, r));
                }
                None => rows.sort_unstable(),
            }
            let idx = UInt32Array::from(rows);
            let cols = keep
                .iter()
                .map(|&i| arrow::compute::take(b.column(i), &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(out_schema.clone(), cols)?)
        })
        .collect()
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
