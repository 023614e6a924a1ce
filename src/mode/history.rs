//! History tables (`mode=history`, SCD type 2): every version of a row is kept, with the
//! interval in which it was the current one. An integrate cycle's changes (not coalesced: every
//! change is a version) → one Delta transaction that closes the current version of each
//! changed key and appends the new versions.
//!
//! Each key has exactly one current row (`is_current`, `valid_to` NULL). A delete adds a
//! version with `op = 'delete'` (the tombstone, current until the key comes back), so the
//! current rows of a table that are not deletes are the source's rows. The versions of a key,
//! ordered by `valid_from` then `integ_seq`, are contiguous: each one's `valid_to` is the next
//! one's `valid_from`.

use std::collections::HashMap;
use std::ops::Not;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int8Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, new_null_array,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::cast;
use datafusion::prelude::{Expr, SessionContext, lit};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use crate::change::column;
use crate::change::{self, Op};
use crate::error::Result;
use crate::table::Outcome;
use crate::table::progress::{self, Mark};
use crate::write::writer_properties;
use futures::future::BoxFuture;

use super::{Apply, Changes, ModeOptions, TableMode};

/// When the version became the current one (UTC): the time of the commit that wrote it.
pub const VALID_FROM: &str = "valid_from";
/// When the next version replaced it; NULL while it is the current one.
pub const VALID_TO: &str = "valid_to";
/// Whether it is the key's current version.
pub const IS_CURRENT: &str = "is_current";
/// What made the version: `insert`, `update`, `delete` (a tombstone) or `refresh`.
pub const OP: &str = "op";
/// The change's `hvr_integ_seq`, each part zero-padded to 45 hex digits so that it sorts as
/// text: orders the versions one cycle writes.
pub const INTEG_SEQ: &str = "integ_seq";

/// Marks the rows of a MERGE source that close a current version (not inserted).
const CLOSE: &str = "__hvr_close";

/// The columns a history table has after its data columns.
pub fn fields() -> Vec<Field> {
    vec![
        Field::new(VALID_FROM, crate::schema::types::utc_micros(), true),
        Field::new(VALID_TO, crate::schema::types::utc_micros(), true),
        Field::new(IS_CURRENT, DataType::Boolean, true),
        Field::new(OP, DataType::Utf8, true),
        Field::new(INTEG_SEQ, DataType::Utf8, true),
    ]
}

/// The history mode.
pub struct History;

impl TableMode for History {
    fn stage(&self) -> &'static str {
        "history"
    }

    fn coalesces(&self) -> bool {
        false
    }

    fn added_columns(
        &self,
        table: &str,
        data: &[Field],
        existing: Option<&SchemaRef>,
        _options: &ModeOptions,
    ) -> Result<Vec<Field>> {
        // The validity columns, after the data columns (kept where they are).
        let mut added = Vec::new();
        for f in fields() {
            if let Some(d) = data
                .iter()
                .find(|d| d.name().eq_ignore_ascii_case(f.name()))
            {
                let kept = existing.is_some_and(|e| {
                    e.fields()
                        .iter()
                        .any(|x| x.name().eq_ignore_ascii_case(d.name()))
                });
                if !kept {
                    crate::bail!(
                        "{table}: column '{}' has the name of a column hvrlake adds in mode=history ({}); rename it on the way (ColumnProperties /BaseName) or use another mode",
                        d.name(),
                        fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                continue;
            }
            added.push(f);
        }
        Ok(added)
    }

    fn refresh_rows(
        &self,
        batch: RecordBatch,
        _columns: &SchemaRef,
        _options: &ModeOptions,
        now: i64,
    ) -> Result<RecordBatch> {
        // Refresh rows are the current versions from now on.
        refresh_rows(&batch, now)
    }

    fn apply<'a>(&'a self, job: Apply<'a>) -> BoxFuture<'a, Result<(DeltaTable, Outcome)>> {
        Box::pin(async move {
            let Changes::All { batches, schema } = job.changes else {
                crate::bail!("a history table applies every change of a cycle");
            };
            apply(job.table, batches, schema, job.columns, job.keys, job.mark).await
        })
    }
}

/// Whether `name` is one of the columns hvrlake adds to a history table.
pub fn is_history_column(name: &str) -> bool {
    [VALID_FROM, VALID_TO, IS_CURRENT, OP, INTEG_SEQ]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A refresh row of a history table: current from `now`, `op = 'refresh'`.
pub fn refresh_rows(batch: &RecordBatch, now: i64) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let schema = batch.schema();
    let mut cols = batch.columns().to_vec();
    cols[schema.index_of(VALID_FROM)?] = times(&schema, VALID_FROM, vec![Some(now); n])?;
    cols[schema.index_of(IS_CURRENT)?] = Arc::new(BooleanArray::from(vec![true; n]));
    cols[schema.index_of(OP)?] = Arc::new(StringArray::from(vec!["refresh"; n]));
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// A timestamp column typed as `schema`'s column `name`.
fn times(schema: &Schema, name: &str, values: Vec<Option<i64>>) -> Result<ArrayRef> {
    let tz = match schema.field_with_name(name)?.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    Ok(Arc::new(
        TimestampMicrosecondArray::from(values).with_timezone_opt(tz),
    ))
}

/// A new version: its row among the changes, its op, and whether it is its key's last.
type Version = (u32, &'static str, bool);

/// What the table holds of each key before the cycle, by row-encoded key.
type KeyState = HashMap<Box<[u8]>, Current>;

/// What the table holds for one key before the cycle.
#[derive(Clone, Copy)]
struct Current {
    /// Its current version is a row, not a tombstone.
    live: bool,
}

/// Applies an integrate cycle's `changes` (schema `schema`: the table's `columns`, then op and
/// order) to the history table `table`, keyed by `keys`, with the cycle's progress `mark`.
pub async fn apply(
    table: DeltaTable,
    changes: &[RecordBatch],
    schema: &SchemaRef,
    columns: &SchemaRef,
    keys: &[String],
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let table = if crate::table::exists(&table) {
        table
    } else {
        crate::table::create(table, columns, keys).await?
    };
    let all = arrow::compute::concat_batches(schema, changes)?;
    let op_idx = schema.index_of(change::OP)?;
    let order_idx = schema.index_of(change::ORDER)?;
    let (key_idx, key_types) = change::key_columns(schema, keys)?;

    // Only changes that make versions (before-images do not); a partial-key delete that names
    // every key is a delete, one that does not cannot be applied to versions.
    let ops = all.column(op_idx).as_primitive::<Int8Type>().clone();
    for r in 0..all.num_rows() {
        if ops.value(r) == Op::PartialDelete as i8
            && key_idx.iter().any(|&k| all.column(k).is_null(r))
        {
            crate::bail!(
                "mode=history cannot apply a partial-key delete (hvr_op 8 with key columns NULL); use mode=merge or soft_delete for this table"
            );
        }
    }
    let keep = BooleanArray::from(
        ops.iter()
            .map(|o| {
                Some(matches!(
                    o,
                    Some(x) if x == Op::Upsert as i8 || x == Op::Delete as i8 || x == Op::PartialDelete as i8
                ))
            })
            .collect::<Vec<_>>(),
    );
    let truncates: Vec<Vec<u8>> = {
        let orders = all.column(order_idx).as_binary::<i32>();
        (0..all.num_rows())
            .filter(|&r| ops.value(r) == Op::Truncate as i8)
            .map(|r| orders.value(r).to_vec())
            .collect()
    };
    let mut all = arrow::compute::filter_record_batch(&all, &keep)?;

    let ctx = SessionContext::new();
    // The current version of every changed key (of every key, when a truncate empties the
    // table: each live key gets a tombstone at the truncate's place).
    let touched = (truncates.is_empty())
        .then(|| all.project(&key_idx))
        .transpose()?;
    let current = current_rows(&ctx, &table, keys, &key_types, touched).await?;
    let converter = RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())?;
    let (state, latest_from, current_keys) = key_state(
        &current,
        keys,
        &key_types,
        &converter,
        !truncates.is_empty(),
    )?;
    if !truncates.is_empty() {
        // A delete at each truncate's place for every key the table or the cycle has.
        let cycle_keys = all.project(&key_idx)?;
        let mut deletes = vec![all.clone()];
        for t in &truncates {
            for k in current_keys.iter().chain(std::iter::once(&cycle_keys)) {
                deletes.push(deletes_at(schema, &key_idx, k, t)?);
            }
        }
        all = arrow::compute::concat_batches(schema, &deletes)?;
    }

    // The changes of each key in their order.
    let mut sort_cols: Vec<arrow::compute::SortColumn> = key_idx
        .iter()
        .map(|&i| arrow::compute::SortColumn {
            values: all.column(i).clone(),
            options: None,
        })
        .collect();
    sort_cols.push(arrow::compute::SortColumn {
        values: all.column(order_idx).clone(),
        options: None,
    });
    let sorted = arrow::compute::lexsort_to_indices(&sort_cols, None)?;
    let key_cols: Vec<ArrayRef> = key_idx.iter().map(|&i| all.column(i).clone()).collect();
    let rows = converter.convert_columns(&key_cols)?;
    let ops = all.column(op_idx).as_primitive::<Int8Type>().clone();

    let (versions, closes, mut outcome) = plan_versions(&rows, &sorted, &ops, &state);
    if versions.is_empty() {
        return super::merge::progress_only(table, mark).await;
    }

    // One time for the cycle; never before the versions it closes, so intervals stay ordered.
    let at = now_micros().max(latest_from);
    let new_rows = version_rows(&all, columns, &versions, order_idx, at)?;

    if closes.is_empty() {
        // Only keys the table does not have: a plain append.
        let table = table
            .write(vec![new_rows])
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .with_writer_properties(writer_properties(columns))
            .with_commit_properties(mark.map(Mark::properties).unwrap_or_default())
            .await?;
        outcome.version = table.version();
        return Ok((table, outcome));
    }

    let closing = Closing {
        new_rows,
        closes,
        all: &all,
        key_idx: &key_idx,
        at,
    };
    let table = close_and_insert(&ctx, table, closing, columns, keys, mark).await?;
    outcome.version = table.version();
    Ok((table, outcome))
}

/// Each key's versions as `(row, op, last of its key)` in `all`'s rows, given the changes
/// `sorted` by key then order, their keys `rows` and ops `ops`, and what the table holds of
/// each key (`state`); the first row of every key the table has (its current version is
/// closed); the counts.
fn plan_versions(
    rows: &arrow::row::Rows,
    sorted: &UInt32Array,
    ops: &Int8Array,
    state: &KeyState,
) -> (Vec<Version>, Vec<u32>, Outcome) {
    let mut versions: Vec<Version> = Vec::new();
    let mut closes: Vec<u32> = Vec::new();
    let mut outcome = Outcome::default();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted.value(i) as usize;
        let mut j = i;
        while j < sorted.len() && rows.row(sorted.value(j) as usize) == rows.row(first) {
            j += 1;
        }
        let before = state.get(rows.row(first).as_ref()).copied();
        let mut live = before.is_some_and(|c| c.live);
        let start = versions.len();
        for k in i..j {
            let r = sorted.value(k);
            if ops.value(r as usize) == Op::Upsert as i8 {
                let op = if live { "update" } else { "insert" };
                match op {
                    "update" => outcome.updated += 1,
                    _ => outcome.inserted += 1,
                }
                versions.push((r, op, false));
                live = true;
            } else if live {
                // A delete of a key that is not there changes nothing.
                outcome.deleted += 1;
                versions.push((r, "delete", false));
                live = false;
            }
        }
        if versions.len() > start {
            versions.last_mut().expect("a version").2 = true;
            if before.is_some() {
                closes.push(first as u32);
            }
        }
        i = j;
    }
    (versions, closes, outcome)
}

/// What the table holds of each key in its `current` rows (keys, op, valid_from): whether
/// the key is live, by row-encoded key; the latest `valid_from`; and, `with_keys`, the keys.
fn key_state(
    current: &[RecordBatch],
    keys: &[String],
    key_types: &[DataType],
    converter: &RowConverter,
    with_keys: bool,
) -> Result<(KeyState, i64, Vec<RecordBatch>)> {
    let mut state: KeyState = HashMap::new();
    let mut latest_from = i64::MIN;
    let mut current_keys: Vec<RecordBatch> = Vec::new();
    for b in current {
        let cols: Vec<ArrayRef> = (0..keys.len()).map(|i| b.column(i).clone()).collect();
        let rows = converter.convert_columns(&cols)?;
        let op = b.column(keys.len()).as_string::<i32>();
        let from = b
            .column(keys.len() + 1)
            .as_primitive::<TimestampMicrosecondType>();
        for r in 0..b.num_rows() {
            let live = op.is_null(r) || op.value(r) != "delete";
            state.insert(rows.row(r).as_ref().into(), Current { live });
            if from.is_valid(r) {
                latest_from = latest_from.max(from.value(r));
            }
        }
        if with_keys {
            current_keys.push(RecordBatch::try_new(
                Arc::new(Schema::new(
                    keys.iter()
                        .zip(key_types)
                        .map(|(k, t)| Field::new(k, t.clone(), true))
                        .collect::<Vec<_>>(),
                )),
                cols,
            )?);
        }
    }
    Ok((state, latest_from, current_keys))
}

/// The rows of the new `versions` (of the changes `all`, whose order column is `order_idx`),
/// with their validity from `at`.
fn version_rows(
    all: &RecordBatch,
    columns: &SchemaRef,
    versions: &[Version],
    order_idx: usize,
    at: i64,
) -> Result<RecordBatch> {
    let take = |idx: &UInt32Array| -> Result<Vec<ArrayRef>> {
        (0..columns.fields().len())
            .map(|c| Ok(arrow::compute::take(all.column(c), idx, None)?))
            .collect()
    };
    let idx = UInt32Array::from(versions.iter().map(|v| v.0).collect::<Vec<_>>());
    let mut cols = take(&idx)?;
    let orders = all.column(order_idx).as_binary::<i32>();
    cols[columns.index_of(VALID_FROM)?] = times(columns, VALID_FROM, vec![Some(at); idx.len()])?;
    cols[columns.index_of(VALID_TO)?] = times(
        columns,
        VALID_TO,
        versions.iter().map(|v| (!v.2).then_some(at)).collect(),
    )?;
    cols[columns.index_of(IS_CURRENT)?] = Arc::new(BooleanArray::from(
        versions.iter().map(|v| v.2).collect::<Vec<_>>(),
    ));
    cols[columns.index_of(OP)?] = Arc::new(StringArray::from(
        versions.iter().map(|v| v.1).collect::<Vec<_>>(),
    ));
    cols[columns.index_of(INTEG_SEQ)?] = Arc::new(StringArray::from(
        versions
            .iter()
            .map(|v| sortable_seq(orders.value(v.0 as usize)))
            .collect::<Vec<_>>(),
    ));
    Ok(RecordBatch::try_new(
        crate::table::plain_schema(columns),
        cols,
    )?)
}

/// The rows a history commit closes and inserts.
struct Closing<'a> {
    /// The new versions.
    new_rows: RecordBatch,
    /// The first change of each key the table has, in `all`.
    closes: Vec<u32>,
    /// The cycle's changes.
    all: &'a RecordBatch,
    key_idx: &'a [usize],
    /// The cycle's time.
    at: i64,
}

/// One MERGE that closes the current version of each key in `closing.closes` at
/// `closing.at` and inserts the new versions, with the cycle's progress `mark`.
async fn close_and_insert(
    ctx: &SessionContext,
    table: DeltaTable,
    closing: Closing<'_>,
    columns: &SchemaRef,
    keys: &[String],
    mark: Option<&Mark>,
) -> Result<DeltaTable> {
    let Closing {
        new_rows,
        closes,
        all,
        key_idx,
        at,
    } = closing;
    // The MERGE source: the new versions (never matched), then one row per changed key that
    // the table has, closing its current version at `at`.
    let mut fields: Vec<Field> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(CLOSE, DataType::Boolean, false));
    let source_schema = Arc::new(Schema::new(fields));
    let mut with_flag = new_rows.columns().to_vec();
    with_flag.push(Arc::new(BooleanArray::from(vec![
        false;
        new_rows.num_rows()
    ])));
    let inserts = RecordBatch::try_new(source_schema.clone(), with_flag)?;
    let close_idx = UInt32Array::from(closes);
    let n = close_idx.len();
    let mut close_cols: Vec<ArrayRef> = Vec::with_capacity(columns.fields().len() + 1);
    for (c, f) in columns.fields().iter().enumerate() {
        close_cols.push(if key_idx.contains(&c) {
            arrow::compute::take(all.column(c), &close_idx, None)?
        } else if f.name() == VALID_TO {
            times(columns, VALID_TO, vec![Some(at); n])?
        } else {
            new_null_array(f.data_type(), n)
        });
    }
    close_cols.push(Arc::new(BooleanArray::from(vec![true; n])));
    let close_rows = RecordBatch::try_new(source_schema, close_cols)?;

    let source = ctx.read_batches(vec![inserts, close_rows])?;
    let q = |alias: &str, name: &str| Expr::Column(Column::new(Some(alias), name));
    let on = keys
        .iter()
        .map(|k| q("t", k).eq(q("s", k)))
        .chain([
            q("t", IS_CURRENT).eq(lit(true)),
            q("s", CLOSE).eq(lit(true)),
        ])
        .reduce(Expr::and)
        .expect("a table with keys");
    let names: Vec<String> = columns.fields().iter().map(|f| f.name().clone()).collect();
    let (table, _) = table
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_merge_schema(true)
        .with_writer_properties(writer_properties(columns))
        .when_matched_update(|u| {
            u.update(Column::new(None::<&str>, VALID_TO), q("s", VALID_TO))
                .update(Column::new(None::<&str>, IS_CURRENT), lit(false))
        })?
        .when_not_matched_insert(|i| {
            names.iter().fold(i.predicate(q("s", CLOSE).not()), |i, c| {
                i.set(Column::new(None::<&str>, c.as_str()), q("s", c))
            })
        })?
        .with_commit_properties(mark.map(Mark::properties).unwrap_or_default())
        .await?;
    Ok(table)
}

/// Widest part of an `hvr_integ_seq`, in hex digits (docs: hvr-contract).
const SEQ_DIGITS: usize = 45;

/// The `hvr_integ_seq` of an order value, each `|`-separated part zero-padded to
/// [`SEQ_DIGITS`], so that the text sorts as the sequence does.
fn sortable_seq(order: &[u8]) -> Option<String> {
    let text = progress::seq_text(order)?;
    Some(
        text.split('|')
            .map(|p| format!("{p:0>SEQ_DIGITS$}"))
            .collect::<Vec<_>>()
            .join("|"),
    )
}

/// Deletes at the place `order` for each key of `keys` (key columns only), in `schema`.
fn deletes_at(
    schema: &SchemaRef,
    key_idx: &[usize],
    keys: &RecordBatch,
    order: &[u8],
) -> Result<RecordBatch> {
    let n = keys.num_rows();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| -> Result<ArrayRef> {
            Ok(if let Some(k) = key_idx.iter().position(|&i| i == c) {
                arrow::compute::cast(keys.column(k), f.data_type())?
            } else if f.name() == change::OP {
                Arc::new(Int8Array::from(vec![Op::Delete as i8; n]))
            } else if f.name() == change::ORDER {
                Arc::new(BinaryArray::from(vec![order; n]))
            } else {
                new_null_array(f.data_type(), n)
            })
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The table's current versions (key columns typed `key_types`, then `op`, then `valid_from`):
/// of the keys in `touched`, or all of them.
async fn current_rows(
    ctx: &SessionContext,
    table: &DeltaTable,
    keys: &[String],
    key_types: &[DataType],
    touched: Option<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    if crate::table::row_count(table)? == 0 {
        return Ok(Vec::new());
    }
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    // The provider may read strings as views: cast to the change types.
    let mut select: Vec<Expr> = keys
        .iter()
        .zip(key_types)
        .map(|(k, t)| cast(column(k), t.clone()).alias(k))
        .collect();
    select.push(cast(column(OP), DataType::Utf8).alias(OP));
    select.push(cast(column(VALID_FROM), crate::schema::types::utc_micros()).alias(VALID_FROM));
    let mut df = ctx
        .read_table(provider)?
        .filter(column(IS_CURRENT).eq(lit(true)))?
        .select(select)?;
    if let Some(touched) = touched {
        let renamed: Vec<String> = keys.iter().map(|k| format!("__t_{k}")).collect();
        let fields: Vec<Field> = touched
            .schema()
            .fields()
            .iter()
            .zip(&renamed)
            .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
            .collect();
        let touched =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), touched.columns().to_vec())?;
        let touched = ctx.read_batches(vec![touched])?.distinct()?;
        let left: Vec<&str> = keys.iter().map(String::as_str).collect();
        let right: Vec<&str> = renamed.iter().map(String::as_str).collect();
        df = df.join(touched, JoinType::LeftSemi, &left, &right, None)?;
    }
    Ok(df.collect().await?)
}
