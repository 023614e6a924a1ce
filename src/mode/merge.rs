//! An integrate cycle's net changes → one Delta transaction: a MERGE on the key columns
//! (delete, update, insert), a plain write when the table is new, an overwrite after a truncate.

use std::ops::Not;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int8Type, SchemaRef};
use datafusion::common::Column;
use datafusion::prelude::{Expr, SessionContext, lit};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, BooleanBufferBuilder};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::DeltaOperation;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;

use roaring::RoaringTreemap;

use super::{Apply, Changes, ModeOptions, TableMode};
use crate::change::NetChanges;
use crate::change::{self, Op};
use crate::error::{Error, Result};
use crate::table::deletion_vectors;
use crate::table::partition;
use crate::table::progress::Mark;
use crate::table::{self, FileMetrics, Outcome};
use crate::write::files::FileSink;
use crate::write::writer_properties;
use futures::future::BoxFuture;

fn qualified(alias: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(alias), name))
}

/// The merge mode: the current rows; upserts replace, deletes remove.
pub struct Merge;

impl TableMode for Merge {
    fn stage(&self) -> &'static str {
        "merge"
    }

    fn apply<'a>(&'a self, job: Apply<'a>) -> BoxFuture<'a, Result<(DeltaTable, Outcome)>> {
        Box::pin(async move {
            let Changes::Net(net) = job.changes else {
                crate::bail!("a merge applies a cycle's net changes");
            };
            let o = job.options;
            let columns =
                crate::write::encode::with_plain_encodings(job.columns, o.plain_encodings);
            apply(job.table, net, columns, job.keys, o, job.mark).await
        })
    }
}

/// Applies `net` (data columns + op) to `table`, keyed by `keys`.
pub async fn apply(
    table: DeltaTable,
    net: NetChanges,
    columns: SchemaRef,
    keys: &[String],
    options: &ModeOptions,
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let upserts = upsert_rows(&net.batches, &columns)?;
    let upsert_count: usize = upserts.iter().map(RecordBatch::num_rows).sum();
    if !table::exists(&table) {
        // Nothing to match against: the table is created with the rows that remain.
        return super::table_mode::create_with_rows(table, upserts, &columns, keys, mark).await;
    }
    if net.truncated {
        // The cycle truncated the table: the rows that remain after it replace it.
        let deleted = table::row_count(&table)?;
        let batches = if upserts.is_empty() {
            vec![RecordBatch::new_empty(table::plain_schema(&columns))]
        } else {
            upserts
        };
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .with_commit_properties(mark.map(Mark::properties).unwrap_or_default())
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
                files: FileMetrics::default(),
            },
        ));
    }
    if net.batches.is_empty() {
        // Nothing to change, but the cycle's progress is still committed.
        return progress_only(table, mark).await;
    }
    if std::env::var_os("HVRLAKE_DATAFUSION_MERGE").is_none() && plain_files(&table)? {
        return rewrite(table, net, columns, upserts, keys, options, mark).await;
    }
    let before = table.version();
    let files_before = table.snapshot()?.log_data().num_files();
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
        .with_merge_schema(true)
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
        .with_commit_properties(mark.map(Mark::properties).unwrap_or_default())
        .await?;
    if table.version() == before {
        // delta-rs makes no commit for a MERGE that changes nothing: record the progress.
        return progress_only(table, mark).await;
    }
    let version = table.version();
    Ok((
        table,
        Outcome {
            inserted: m.num_target_rows_inserted,
            updated: m.num_target_rows_updated,
            deleted: m.num_target_rows_deleted,
            version,
            files: FileMetrics {
                before: files_before,
                scanned: m.num_target_files_scanned,
                skipped: m.num_target_files_skipped_during_scan,
                rewritten: m.num_target_files_removed,
                removed: m.num_target_files_removed,
                added: m.num_target_files_added,
                ..FileMetrics::default()
            },
        },
    ))
}

/// A commit of the cycle's progress alone (no data change); none without a mark.
pub(super) async fn progress_only(
    table: DeltaTable,
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let (table, version) = match mark {
        Some(m) => {
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            };
            let (table, v) = table::commit_actions(table, Vec::new(), operation, Some(m)).await?;
            (table, Some(v))
        }
        None => {
            let v = table.version();
            (table, v)
        }
    };
    Ok((
        table,
        Outcome {
            version,
            ..Outcome::default()
        },
    ))
}

/// The upsert rows of `batches`, without the op column.
fn upsert_rows(batches: &[RecordBatch], columns: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for b in batches {
        let op_idx = b.schema().index_of(change::OP)?;
        let ops = b.column(op_idx).as_primitive::<Int8Type>();
        let upsert = |o: &i8| *o == Op::Upsert as i8;
        // Coalescing puts each batch's upserts first: then they are a slice of it.
        let lead = ops.values().iter().take_while(|o| upsert(o)).count();
        let kept = if !ops.values()[lead..].iter().any(upsert) {
            b.slice(0, lead)
        } else {
            let mask = arrow::compute::kernels::cmp::eq(
                ops,
                &arrow::array::Int8Array::new_scalar(Op::Upsert as i8),
            )?;
            arrow::compute::filter_record_batch(b, &mask)?
        };
        if kept.num_rows() > 0 {
            let cols = (0..columns.fields().len())
                .map(|i| kept.column(i).clone())
                .collect();
            out.push(RecordBatch::try_new(table::plain_schema(columns), cols)?);
        }
    }
    Ok(out)
}

/// Whether the table's rows are exactly its Parquet files' rows under their own column
/// names (no deletion vectors, which another engine may have written, and no column mapping),
/// and no change data feed to write.
/// Only then can hvrlake rewrite files itself; otherwise delta-rs's MERGE does the work.
fn plain_files(table: &DeltaTable) -> Result<bool> {
    let snapshot = table.snapshot()?;
    let mapped = snapshot
        .metadata()
        .configuration()
        .get("delta.columnMapping.mode")
        .is_some_and(|m| !m.eq_ignore_ascii_case("none"));
    let vectors = snapshot
        .log_data()
        .iter()
        .any(|f| f.deletion_vector_descriptor().is_some());
    // With the change data feed on, delta-rs's MERGE writes the change files readers need.
    // Deletion vectors are read when hvrlake writes them too.
    let vectors_ok = !vectors || deletion_vectors::enabled(table);
    Ok(!mapped && vectors_ok && !table::change_data_feed(table))
}

/// The changes' keys, and whether each is an upsert.
struct KeySet {
    lookup: Lookup,
    /// The first key column's values when it is an integer: to skip files by statistics.
    first_ints: Option<Vec<i64>>,
}

type Hasher = foldhash::fast::RandomState;

/// How a data file's keys are looked up among the changes'.
enum Lookup {
    /// A single integer key, as itself (the common case of an HVR table).
    Int(HashMap<i64, bool, Hasher>),
    /// Any other key, row-encoded in the changes' key types.
    Rows {
        converter: RowConverter,
        key_types: Vec<DataType>,
        ops: HashMap<Box<[u8]>, bool, Hasher>,
    },
}

/// Whether `t` is an integer type a key column is compared as `i64` in.
fn integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8
    )
}

/// `c` as `i64` values.
fn as_i64(c: &ArrayRef) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(c, &DataType::Int64)?)
}

impl KeySet {
    fn new(batches: &[RecordBatch], keys: &[String]) -> Result<Self> {
        let schema = batches[0].schema();
        let (key_idx, key_types) = change::key_columns(&schema, keys)?;
        let op_idx = schema.index_of(change::OP)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut lookup = if key_types.len() == 1 && integer(&key_types[0]) {
            Lookup::Int(HashMap::with_capacity_and_hasher(rows, Hasher::default()))
        } else {
            let fields = key_types.iter().map(|t| SortField::new(t.clone()));
            Lookup::Rows {
                converter: RowConverter::new(fields.collect())?,
                key_types: key_types.clone(),
                ops: HashMap::with_hasher(Hasher::default()),
            }
        };
        let mut first_ints = integer(&key_types[0]).then(|| Vec::with_capacity(rows));
        for b in batches {
            let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| b.column(i).clone()).collect();
            let upsert = b.column(op_idx).as_primitive::<Int8Type>();
            let upsert = upsert.values().iter().map(|o| *o == Op::Upsert as i8);
            if let Some(v) = first_ints.as_mut() {
                v.extend(
                    as_i64(&cols[0])?
                        .as_primitive::<Int64Type>()
                        .iter()
                        .flatten(),
                );
            }
            match &mut lookup {
                Lookup::Int(m) => {
                    // Key columns hold no NULLs (coalescing refuses them).
                    let k = as_i64(&cols[0])?;
                    m.extend(
                        k.as_primitive::<Int64Type>()
                            .values()
                            .iter()
                            .copied()
                            .zip(upsert),
                    );
                }
                Lookup::Rows { converter, ops, .. } => {
                    let rows = converter.convert_columns(&cols)?;
                    ops.extend(rows.iter().map(|r| r.as_ref().into()).zip(upsert));
                }
            }
        }
        if let Some(v) = first_ints.as_mut() {
            v.sort_unstable();
        }
        Ok(KeySet { lookup, first_ints })
    }

    /// Whether a file whose statistics give `stats` may hold a changed key.
    fn may_touch(&self, stats: Option<&str>, first_key: &str) -> bool {
        let (Some(ints), Some(stats)) = (&self.first_ints, stats) else {
            return true;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(stats) else {
            return true;
        };
        let bound = |which: &str| v.get(which)?.get(first_key)?.as_i64();
        let (Some(lo), Some(hi)) = (bound("minValues"), bound("maxValues")) else {
            return true;
        };
        let i = ints.partition_point(|&k| k < lo);
        i < ints.len() && ints[i] <= hi
    }
}

/// Which of the `n` rows starting at the file's row `first` keep their key: those not in
/// `marks` (the rows the cycle changes, in order; the ones before `first + n` are taken).
fn unchanged_rows(
    marks: &mut std::iter::Peekable<impl Iterator<Item = u64>>,
    first: u64,
    n: usize,
) -> BooleanArray {
    let mut keep = BooleanBufferBuilder::new(n);
    keep.append_n(n, true);
    while let Some(r) = marks.next_if(|&r| r < first + n as u64) {
        keep.set_bit((r - first) as usize, false);
    }
    BooleanArray::new(keep.finish(), None)
}

/// The rows of `b` whose key the cycle changes (row, whether by an upsert), leaving out the
/// rows `gone` says are deleted already (a deletion vector; `b` starts at its row `first`).
fn changed(
    b: &RecordBatch,
    set: &KeySet,
    keys: &[String],
    gone: Option<(&RoaringTreemap, u64)>,
) -> Result<Vec<(usize, bool)>> {
    let column = |k: &String| {
        b.column_by_name(k)
            .ok_or_else(|| Error::msg(format!("key column '{k}' is missing from a data file")))
    };
    let live = |r: usize| gone.is_none_or(|(g, first)| !g.contains(first + r as u64));
    let hits: Vec<Option<bool>> = match &set.lookup {
        Lookup::Int(m) => {
            let c = as_i64(column(&keys[0])?)?;
            let c = c.as_primitive::<Int64Type>();
            c.iter()
                .map(|k| k.and_then(|k| m.get(&k).copied()))
                .collect()
        }
        Lookup::Rows {
            converter,
            key_types,
            ops,
        } => {
            let cols: Vec<ArrayRef> = keys
                .iter()
                .zip(key_types)
                .map(|(k, t)| Ok(arrow::compute::cast(column(k)?, t)?))
                .collect::<Result<_>>()?;
            let rows = converter.convert_columns(&cols)?;
            rows.iter().map(|r| ops.get(r.as_ref()).copied()).collect()
        }
    };
    Ok(hits
        .into_iter()
        .enumerate()
        .filter_map(|(r, h)| h.filter(|_| live(r)).map(|u| (r, u)))
        .collect())
}

/// What checking one data file's keys found: the file's new deletion vector (the rows it
/// deleted already and the rows the cycle changes), how many rows the cycle updates and
/// deletes, and how many rows the file has.
struct Marked {
    marks: RoaringTreemap,
    updated: usize,
    deleted: usize,
    rows: u64,
}

impl Marked {
    fn new(gone: RoaringTreemap) -> Self {
        Marked {
            marks: gone,
            updated: 0,
            deleted: 0,
            rows: 0,
        }
    }

    /// Checks the next batch of the file's key columns (partition values put back first).
    fn add(
        &mut self,
        b: RecordBatch,
        set: &KeySet,
        keys: &[String],
        columns: &SchemaRef,
        values: &partition::Values,
    ) -> Result<()> {
        let b = partition::with_values(b, columns, values)?;
        let first = self.rows;
        for (r, upsert) in changed(&b, set, keys, Some((&self.marks, first)))? {
            self.marks.insert(first + r as u64);
            if upsert {
                self.updated += 1;
            } else {
                self.deleted += 1;
            }
        }
        self.rows += b.num_rows() as u64;
        Ok(())
    }
}

/// [`Marked`] for one data file already in memory.
fn mark_changed(
    bytes: &bytes::Bytes,
    name: &str,
    set: &KeySet,
    keys: &[String],
    columns: &SchemaRef,
    values: &partition::Values,
) -> Result<Marked> {
    let mut m = Marked::new(RoaringTreemap::new());
    for b in read_file(bytes.clone(), name, Some(keys))? {
        let b = b.map_err(|e| Error::msg(format!("{name}: {e}")))?;
        m.add(b, set, keys, columns, values)?;
    }
    Ok(m)
}

/// [`Marked`] for one data file in the store, starting from the rows its deletion vector
/// deletes (`gone`): only its key columns are fetched (ranged reads).
#[allow(clippy::too_many_arguments)]
async fn mark_changed_in_store(
    store: Arc<dyn object_store::ObjectStore>,
    path: deltalake::Path,
    size: u64,
    set: &KeySet,
    keys: &[String],
    columns: &SchemaRef,
    values: &partition::Values,
    gone: RoaringTreemap,
) -> Result<Marked> {
    use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
    let name = path.to_string();
    let at = |e: parquet::errors::ParquetError| Error::from(e).context(&name);
    let reader = crate::table::data_file::DataFileReader::new(store, path, size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(at)?;
    let mask = columns_named(builder.schema(), builder.parquet_schema(), keys);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(65536)
        .build()
        .map_err(at)?;
    let mut m = Marked::new(gone);
    while let Some(b) = stream.try_next().await.map_err(at)? {
        m.add(b, set, keys, columns, values)?;
    }
    Ok(m)
}

/// The projection of a data file onto its top-level columns named in `names`.
fn columns_named(
    schema: &arrow::datatypes::Schema,
    parquet: &parquet::schema::types::SchemaDescriptor,
    names: &[String],
) -> ProjectionMask {
    let roots = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(f.name()))
        .map(|(i, _)| i);
    ProjectionMask::roots(parquet, roots)
}

/// Reads a data file: only `only` columns (by name) when given.
fn read_file(
    bytes: bytes::Bytes,
    name: &str,
    only: Option<&[String]>,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let at = |e: parquet::errors::ParquetError| Error::msg(format!("{name}: {e}"));
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(at)?;
    if let Some(only) = only {
        let mask = columns_named(builder.schema(), builder.parquet_schema(), only);
        builder = builder.with_projection(mask);
    }
    // A page's worth of rows (crate::write::encode::PAGE_ROWS): a batch, its filtered copy and
    // its pages stay in cache (against 65,536: 15 pairs, CPU 0.968, peak 343 -> 310 MiB).
    builder
        .with_batch_size(crate::write::encode::PAGE_ROWS)
        .build()
        .map_err(at)
}

/// The bytes of a data file of a table on a local file system, memory-mapped
/// ([`crate::storage::mapped::map_file`]; a Delta data file is written once and never changed in
/// place): read from the page cache as they are decoded instead of copied into fresh memory.
fn map_data_file(
    fs: &object_store::local::LocalFileSystem,
    path: &deltalake::Path,
) -> Result<bytes::Bytes> {
    let file = fs
        .path_to_filesystem(path)
        .map_err(|e| Error::msg(format!("{path}: {e}")))?;
    Ok(
        match crate::storage::mapped::map_file(&file, path.as_ref())? {
            crate::storage::mapped::Bytes::Mapped(m) => bytes::Bytes::from_owner(m),
            crate::storage::mapped::Bytes::Owned(v) => v.into(),
        },
    )
}

/// Streams the rows of one data file that `marks` (its changed rows, found by
/// [`mark_changed`]) leaves in to `sink`, a batch at a time.
fn copy_unchanged(
    bytes: bytes::Bytes,
    name: &str,
    marks: &RoaringTreemap,
    columns: &SchemaRef,
    values: &partition::Values,
    sink: &Mutex<FileSink>,
) -> Result<()> {
    let (mut first, mut marks) = (0u64, marks.iter().peekable());
    for b in read_file(bytes, name, None)? {
        let b = b.map_err(|e| Error::msg(format!("{name}: {e}")))?;
        let n = b.num_rows();
        let keep = unchanged_rows(&mut marks, first, n);
        first += n as u64;
        let b = conform(&partition::with_values(b, columns, values)?, columns)?;
        let kept = arrow::compute::filter_record_batch(&b, &keep)?;
        if kept.num_rows() > 0 {
            sink.lock().expect("file sink").send(kept)?;
        }
    }
    Ok(())
}

/// A batch read from a data file, in the table's column order and types.
fn conform(b: &RecordBatch, columns: &SchemaRef) -> Result<RecordBatch> {
    let cols = columns
        .fields()
        .iter()
        .map(|f| {
            let c = match b.schema().index_of(f.name()) {
                Ok(i) => b.column(i).clone(),
                Err(_) => arrow::array::new_null_array(f.data_type(), b.num_rows()),
            };
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                arrow::compute::cast(&c, f.data_type()).map_err(Into::into)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(columns.clone(), cols)?)
}

/// A data file a merge may touch: where it is, its remove action, and its add action (to
/// commit it again with a new deletion vector).
type Candidate = (deltalake::Path, Remove, Add);

/// A file in which a changed key was found: its remove; with deletion vectors, its add, the
/// rows its vector now marks and the rows it has; the rows updated and deleted.
type Touched = (Remove, Option<(Add, RoaringTreemap, u64)>, usize, usize);

/// What checking a merge's candidate files needs.
struct Scan<'a> {
    /// The changed keys.
    set: &'a KeySet,
    keys: &'a [String],
    columns: &'a SchemaRef,
    /// The partition columns.
    parts: &'a [String],
    /// Files checked at once.
    writers: usize,
}

/// Applies net changes by rewriting only the data files that hold a changed key (files
/// whose key statistics rule them out are not even read), writing the upserts as new files,
/// and committing the removes and adds as one MERGE transaction.
async fn rewrite(
    table: DeltaTable,
    net: NetChanges,
    columns: SchemaRef,
    upserts: Vec<RecordBatch>,
    keys: &[String],
    options: &ModeOptions,
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let stable = options.partition_stable;
    let upsert_count: usize = upserts.iter().map(RecordBatch::num_rows).sum();
    let set = KeySet::new(&net.batches, keys)?;
    // Partitions the changes can touch (None: any); files of other partitions are not read.
    let touched = partition::touched(&net.batches, &columns, keys, stable)?;
    let parts = partition::names(&columns);
    drop(net);
    let total = table.snapshot()?.log_data().num_files();
    let candidates = candidates(&table, &set, keys, &parts, touched.as_ref())?;
    crate::diag::note(format_args!(
        "merge reads {} of {total} data files",
        candidates.len()
    ));
    // Deletion vectors: changed rows are marked deleted instead of their files rewritten.
    let dv = deletion_vectors::enabled(&table);
    let store = table.object_store();
    let writers = std::thread::available_parallelism().map_or(1, usize::from);
    let sink = Arc::new(Mutex::new(FileSink::start(
        table.clone(),
        columns.clone(),
        writers,
    )?));
    // The upserts go to the writers while the files are checked (they do not depend on it).
    let sending = {
        let sink = sink.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for b in upserts {
                sink.lock().expect("file sink").send(b)?;
            }
            Ok(())
        })
    };
    let scan = Scan {
        set: &set,
        keys,
        columns: &columns,
        parts: &parts,
        writers: writers.max(1),
    };
    let t_files = std::time::Instant::now();
    let filtered = if dv {
        match marked_in_store(&scan, &store, &candidates).await {
            Ok(marked) => {
                let share = options.rewrite_share;
                rewritten_when_mostly_deleted(&scan, &table, &store, marked, share, &sink).await
            }
            Err(e) => Err(e),
        }
    } else {
        copied_without_changes(&scan, &table, &store, &candidates, &sink).await
    };
    crate::diag::timing("merge: files fetched and checked", t_files);
    let t_scan = std::time::Instant::now();
    let sent = match sending.await {
        Ok(sent) => sent,
        Err(e) => Err(Error::msg(format!(
            "sending the upserts to the writers: {e}"
        ))),
    };
    let filtered = filtered.and_then(|removes| sent.map(|()| removes));
    let sink = Arc::into_inner(sink).expect("the only handle left");
    let staged = sink.into_inner().expect("file sink").finish().await;
    crate::diag::timing("merge: upserts written", t_scan);
    let t_commit = std::time::Instant::now();
    let (removes, staged) = match (filtered, staged) {
        (Ok(r), Ok(s)) => (r, s),
        (Err(e), Ok(s)) => {
            s.discard().await;
            return Err(e);
        }
        (_, Err(e)) => return Err(e),
    };
    let files = FileMetrics {
        before: total,
        scanned: candidates.len(),
        skipped: total - candidates.len(),
        ..FileMetrics::default()
    };
    let done = Checked {
        removes,
        staged,
        store,
        upserts: upsert_count,
        files,
    };
    let outcome = commit_checked(done, &columns, keys, mark).await;
    crate::diag::timing("merge: vectors and commit", t_commit);
    outcome
}

/// The files a merge must read: those whose key statistics may hold a changed key, in the
/// partitions the changes can touch (`touched`; None: any).
fn candidates(
    table: &DeltaTable,
    set: &KeySet,
    keys: &[String],
    parts: &[String],
    touched: Option<&std::collections::HashSet<Vec<Option<String>>>>,
) -> Result<Vec<Candidate>> {
    Ok(table
        .snapshot()?
        .log_data()
        .iter()
        .filter(|f| set.may_touch(f.stats().as_deref(), &keys[0]))
        .map(|f| {
            // The file's add, to commit it again with a new deletion vector.
            #[allow(deprecated)]
            let add = f.add_action();
            (f.object_store_path(), f.remove_action(true), add)
        })
        .filter(|(_, r, _)| {
            touched.is_none_or(|t| {
                let values = partition::file_values(parts, r.partition_values.as_ref());
                t.contains(&partition::file_key(&values))
            })
        })
        .collect())
}

/// Deletion vectors: only the key columns of each candidate are fetched and checked, the
/// changed rows added to what its vector marks.
async fn marked_in_store(
    scan: &Scan<'_>,
    store: &Arc<dyn object_store::ObjectStore>,
    candidates: &[Candidate],
) -> Result<Vec<Option<Touched>>> {
    let Scan {
        set,
        keys,
        columns,
        parts,
        writers,
    } = *scan;
    futures::stream::iter(candidates.iter().cloned().map(|(path, remove, add)| {
        let store = store.clone();
        async move {
            let gone = match &add.deletion_vector {
                Some(d) => deletion_vectors::read(store.as_ref(), d).await?,
                None => RoaringTreemap::new(),
            };
            let values = partition::file_values(parts, remove.partition_values.as_ref());
            let size = add.size as u64;
            let m =
                mark_changed_in_store(store, path, size, set, keys, columns, &values, gone).await?;
            if m.updated + m.deleted == 0 {
                return Ok(None);
            }
            let (u, d) = (m.updated, m.deleted);
            Ok::<_, Error>(Some((remove, Some((add, m.marks, m.rows)), u, d)))
        }
    }))
    .buffer_unordered(writers * 2)
    .try_collect::<Vec<_>>()
    .await
}

/// Copy-on-write: the candidates are fetched whole (mapped on a local file system), a few at
/// a time, checked by their key columns, and those in which a key changed are copied to
/// `sink` without the changed rows, a batch at a time.
async fn copied_without_changes(
    scan: &Scan<'_>,
    table: &DeltaTable,
    store: &Arc<dyn object_store::ObjectStore>,
    candidates: &[Candidate],
    sink: &Mutex<FileSink>,
) -> Result<Vec<Option<Touched>>> {
    let Scan {
        set,
        keys,
        columns,
        parts,
        writers,
    } = *scan;
    // A table on a local file system: its data files are mapped, not read into memory.
    let local = table::local_dir(table.table_url())
        .and_then(|root| object_store::local::LocalFileSystem::new_with_prefix(root).ok());
    let mut all = Vec::new();
    for wave in candidates.chunks(writers) {
        let fetched: Vec<(bytes::Bytes, Remove)> =
            futures::stream::iter(wave.iter().cloned().map(|(path, remove, _)| {
                let (store, local) = (store.clone(), &local);
                async move {
                    let bytes = match local {
                        Some(fs) => map_data_file(fs, &path)?,
                        None => store.get(&path).await?.bytes().await?,
                    };
                    Ok::<_, Error>((bytes, remove))
                }
            }))
            .buffered(writers)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let some = tokio::task::block_in_place(|| {
            fetched
                .into_par_iter()
                .map(|(bytes, remove)| {
                    let values = partition::file_values(parts, remove.partition_values.as_ref());
                    let m = mark_changed(&bytes, &remove.path, set, keys, columns, &values)?;
                    let (u, d) = (m.updated, m.deleted);
                    if u + d == 0 {
                        return Ok(None);
                    }
                    copy_unchanged(bytes, &remove.path, &m.marks, columns, &values, sink)?;
                    Ok(Some((remove, None, u, d)))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        all.extend(some);
    }
    Ok(all)
}

/// Whether a file with deletion vectors is rewritten rather than marked: when at least `share`
/// of its rows are deleted after the cycle (and some are left). Marking costs a few bytes
/// whatever the file; rewriting costs the rows left, and leaves readers nothing to skip.
fn rewrite_instead(marked: u64, rows: u64, share: f64) -> bool {
    marked < rows && marked as f64 >= share * rows as f64
}

/// Deletion vectors, per file: the files checked by [`marked_in_store`] in which the cycle
/// leaves at most `1 - share` of the rows are copied to `sink` without the marked rows (the
/// changed ones and those their vector deleted before), instead of getting a vector.
async fn rewritten_when_mostly_deleted(
    scan: &Scan<'_>,
    table: &DeltaTable,
    store: &Arc<dyn object_store::ObjectStore>,
    marked: Vec<Option<Touched>>,
    share: f64,
    sink: &Mutex<FileSink>,
) -> Result<Vec<Option<Touched>>> {
    let local = table::local_dir(table.table_url())
        .and_then(|root| object_store::local::LocalFileSystem::new_with_prefix(root).ok());
    let mut out = Vec::with_capacity(marked.len());
    for touched in marked {
        let Some((remove, Some((add, marks, rows)), u, d)) = touched else {
            out.push(touched);
            continue;
        };
        if !rewrite_instead(marks.len(), rows, share) {
            out.push(Some((remove, Some((add, marks, rows)), u, d)));
            continue;
        }
        let path = deltalake::Path::parse(&remove.path)
            .unwrap_or_else(|_| deltalake::Path::from(remove.path.as_str()));
        let bytes = match &local {
            Some(fs) => map_data_file(fs, &path)?,
            None => store.get(&path).await?.bytes().await?,
        };
        let values = partition::file_values(scan.parts, remove.partition_values.as_ref());
        tokio::task::block_in_place(|| {
            copy_unchanged(bytes, &remove.path, &marks, scan.columns, &values, sink)
        })?;
        out.push(Some((remove, None, u, d)));
    }
    Ok(out)
}

/// A merge's files checked and its new files staged, ready to commit.
struct Checked {
    removes: Vec<Option<Touched>>,
    staged: crate::write::files::Staged,
    store: Arc<dyn object_store::ObjectStore>,
    /// Upsert rows of the cycle.
    upserts: usize,
    /// The file metrics so far (before, scanned, skipped).
    files: FileMetrics,
}

/// Commits a checked merge: the touched files removed (those that keep rows, with deletion
/// vectors, added again with their new vectors, all in one vector file), the staged files
/// added, as one MERGE transaction with the cycle's progress `mark`.
async fn commit_checked(
    done: Checked,
    columns: &SchemaRef,
    keys: &[String],
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let Checked {
        removes,
        staged,
        store,
        upserts,
        mut files,
    } = done;
    let (mut updated, mut deleted, mut touched, mut rewritten) = (0, 0, 0, 0);
    let mut actions = Vec::new();
    let mut marked: Vec<(Add, RoaringTreemap)> = Vec::new();
    for (remove, vector, u, d) in removes.into_iter().flatten() {
        updated += u;
        deleted += d;
        touched += 1;
        rewritten += usize::from(vector.is_none());
        actions.push(Action::Remove(remove));
        if let Some((add, marks, rows)) = vector
            && marks.len() < rows
        {
            marked.push((add, marks));
        }
    }
    let vectors: Vec<RoaringTreemap> = marked.iter().map(|(_, m)| m.clone()).collect();
    let written = match deletion_vectors::write(store.as_ref(), &vectors).await {
        Ok(w) => w,
        Err(e) => {
            staged.discard().await;
            return Err(e);
        }
    };
    // Copy-on-write rewrites every file a changed key is in; deletion vectors mark those that
    // keep a row (or rewrite those that keep few, see `rewrite_instead`), and remove the others.
    files.rewritten = rewritten;
    files.marked = marked.len();
    files.removed = touched - marked.len();
    for ((mut add, _), descriptor) in marked.into_iter().zip(written) {
        add.deletion_vector = Some(descriptor);
        add.data_change = true;
        add.modification_time = chrono::Utc::now().timestamp_millis();
        actions.push(Action::Add(add));
    }
    let (table, adds) = staged.into_parts();
    files.added = adds.len();
    files.bytes_added = adds.iter().map(|a| a.size as u64).sum();
    // New columns a cycle brought: files written before lack them and read as NULL.
    actions.extend(table::schema_change(&table, columns)?);
    actions.extend(adds.into_iter().map(Action::Add));
    let on = keys
        .iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(on),
        matched_predicates: vec![],
        not_matched_predicates: vec![],
        not_matched_by_source_predicates: vec![],
    };
    let (table, version) = table::commit_actions(table, actions, operation, mark).await?;
    Ok((
        table,
        Outcome {
            inserted: upserts - updated,
            updated,
            deleted,
            version: Some(version),
            files,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int8Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn only_files_whose_key_range_holds_a_changed_key_are_read() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(change::OP, DataType::Int8, false),
        ]));
        let changes = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7, 1050, 20])),
                Arc::new(Int8Array::from(vec![
                    Op::Upsert as i8,
                    Op::Delete as i8,
                    Op::Upsert as i8,
                ])),
            ],
        )
        .unwrap();
        let set = KeySet::new(&[changes], &["id".into()]).unwrap();
        let stats = |lo: i64, hi: i64| {
            format!(r#"{{"numRecords":10,"minValues":{{"id":{lo}}},"maxValues":{{"id":{hi}}}}}"#)
        };
        assert!(set.may_touch(Some(&stats(1, 10)), "id"));
        assert!(set.may_touch(Some(&stats(1000, 1100)), "id"));
        assert!(!set.may_touch(Some(&stats(21, 999)), "id"));
        assert!(!set.may_touch(Some(&stats(5000, 5000)), "id"));
        // No statistics, or none for the key: the file must be read.
        assert!(set.may_touch(None, "id"));
        assert!(set.may_touch(Some(r#"{"numRecords":10}"#), "id"));
    }
}
