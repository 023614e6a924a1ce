//! One call's work, per table: read every file → coalesce → commit, then remove the files.
//! All tables are read and checked before any table is written, so bad input changes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use rayon::prelude::*;

use crate::bail;
use crate::commit::refresh::{FileSink, Staged};
use crate::commit::{self, Outcome};
use crate::error::{Context, Result};
use crate::read::csv::CsvFile;
use crate::read::parquet::ParquetFile;
use crate::read::source::{self, Bytes};
use crate::read::types::{DeclaredType, Inference};
use crate::read::{FileColumns, TableLayout};
use crate::settings::{Format, Settings};
use crate::{coalesce, storage};

/// What a call does to each table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Apply changes (integrate).
    Integrate,
    /// Replace the table (refresh).
    Refresh,
}

/// One input file of a table.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// The name as listed (relative to the file location), for messages and removal.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Rows HVR says it wrote (`HVR_FILE_NROWS`), checked when known.
    pub expected_rows: Option<u64>,
}

/// One table of a call and its files.
#[derive(Clone, Debug)]
pub struct TableSpec {
    /// Channel name (used in file names).
    pub name: String,
    /// Target name; `sch.T` lives at `<target>/sch/T`.
    pub base_name: String,
    /// Key columns (target names); empty to use the ones the table records.
    pub keys: Vec<String>,
    /// All columns (target names), extra columns included; empty to take them from the files.
    pub columns: Vec<String>,
    /// The same columns by channel name, for headers that use those.
    pub channel_columns: Vec<String>,
    /// Files in the order HVR wrote them.
    pub files: Vec<InputFile>,
}

/// What happened to one table, printed as its summary line.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Target table name.
    pub table: String,
    /// Rows read from the files.
    pub rows_in: usize,
    /// The commit's counts and version.
    pub outcome: Outcome,
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Seconds spent on this table.
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = self
            .outcome
            .version
            .map_or("none".to_string(), |v| v.to_string());
        write!(
            f,
            "{}: rows_in={} inserted={} updated={} deleted={} files={} bytes={} version={} seconds={:.3}",
            self.table,
            self.rows_in,
            self.outcome.inserted,
            self.outcome.updated,
            self.outcome.deleted,
            self.files,
            self.bytes,
            version,
            self.seconds
        )
    }
}

/// A table read and checked, ready to commit.
struct Prepared {
    spec: TableSpec,
    columns: SchemaRef,
    keys: Vec<String>,
    payload: Payload,
    rows_in: usize,
    bytes: u64,
    started: Instant,
}

/// What a table's commit will apply.
enum Payload {
    /// An integrate's change batches, with the table they apply to.
    Changes {
        table: DeltaTable,
        changes: Vec<RecordBatch>,
        schema: SchemaRef,
    },
    /// A refresh's data files, already written and not yet committed.
    Files(Staged),
}

impl Prepared {
    /// Deletes what was written for this table but not committed.
    async fn discard(self) {
        if let Payload::Files(staged) = self.payload {
            staged.discard().await;
        }
    }
}

/// Runs one call over `tables`: reads all, then commits each, then removes the files.
/// `report` receives each table's summary as soon as its commit is done.
pub async fn run(
    kind: Kind,
    tables: Vec<TableSpec>,
    settings: &Settings,
    mut report: impl FnMut(&Summary),
) -> Result<Vec<Summary>> {
    let lake = storage::lake_url(&settings.target)?;
    let storage_options = HashMap::new();
    let mut prepared: Vec<Prepared> = Vec::with_capacity(tables.len());
    for spec in tables {
        let started = Instant::now();
        let step = async {
            let url = storage::table_url(&lake, &spec.base_name)?;
            let table = commit::open(&url, &storage_options)
                .await
                .context(&spec.base_name)?;
            prepare(kind, spec, table, settings, started).await
        };
        match step.await {
            Ok(p) => prepared.push(p),
            Err(e) => {
                // Bad input anywhere changes nothing: drop the files staged for other tables.
                for p in prepared {
                    p.discard().await;
                }
                return Err(e);
            }
        }
    }
    let ctx = SessionContext::new();
    let mut summaries = Vec::with_capacity(prepared.len());
    for p in prepared {
        let name = p.spec.base_name.clone();
        let (_, outcome) = match p.payload {
            Payload::Files(staged) => staged.commit(&p.columns, &p.keys, p.rows_in).await,
            Payload::Changes {
                table,
                changes,
                schema,
            } => {
                let net = coalesce::coalesce(&ctx, schema, changes, &p.keys, Some(&table))
                    .await
                    .context(&name)?;
                commit::merge::apply(table, net, p.columns.clone(), &p.keys).await
            }
        }
        .context(&name)?;
        let s = Summary {
            table: name,
            rows_in: p.rows_in,
            outcome,
            files: p.spec.files.len(),
            bytes: p.bytes,
            seconds: p.started.elapsed().as_secs_f64(),
        };
        report(&s);
        summaries.push(s);
    }
    Ok(summaries)
}

/// Whether a column name is one of HVR's extra columns rather than table data.
fn is_extra(name: &str, settings: &Settings) -> bool {
    let l = name.to_ascii_lowercase();
    l.starts_with("hvr_")
        || l == settings.op_column.to_ascii_lowercase()
        || l == settings.seq_column.to_ascii_lowercase()
        || l == settings.delete_column.to_ascii_lowercase()
}

enum Input<'a> {
    Csv(CsvFile<'a>),
    Parquet(ParquetFile),
}

impl Input<'_> {
    fn names(&self) -> Vec<String> {
        match self {
            Input::Csv(c) => c.header.clone(),
            Input::Parquet(p) => p.names(),
        }
    }
}

async fn prepare(
    kind: Kind,
    spec: TableSpec,
    table: DeltaTable,
    settings: &Settings,
    started: Instant,
) -> Result<Prepared> {
    let base = spec.base_name.clone();
    // Map every file (CSV is decoded to UTF-8 first).
    let is_parquet = |name: &str| match settings.format {
        Format::Parquet => true,
        Format::Csv => false,
        Format::Auto => name.to_ascii_lowercase().ends_with(".parquet"),
    };
    let mut csv_bytes: Vec<(usize, Bytes)> = Vec::new();
    let mut parquet: Vec<(usize, ParquetFile)> = Vec::new();
    let mut bytes_in = 0u64;
    for (i, f) in spec.files.iter().enumerate() {
        let mapped = source::map_file(&f.path, &f.name)?;
        bytes_in += mapped.len() as u64;
        if is_parquet(&f.name) {
            let b = bytes::Bytes::from_owner(mapped);
            parquet.push((i, ParquetFile::open(b, &f.name)?));
        } else {
            csv_bytes.push((i, source::to_utf8(mapped, settings.csv.encoding, &f.name)?));
        }
    }
    let mut inputs: Vec<(usize, Input)> = Vec::new();
    for (i, b) in &csv_bytes {
        let f = CsvFile::open(b, &spec.files[*i].name, &settings.csv, settings.chunk_bytes)?
            .releasing(b);
        inputs.push((*i, Input::Csv(f)));
    }
    inputs.extend(parquet.into_iter().map(|(i, p)| (i, Input::Parquet(p))));
    inputs.sort_by_key(|(i, _)| *i);

    // Header names may be channel or target names: everything becomes target names.
    let rename: HashMap<String, String> = spec
        .channel_columns
        .iter()
        .zip(&spec.columns)
        .flat_map(|(c, b)| {
            [
                (c.to_ascii_lowercase(), b.clone()),
                (b.to_ascii_lowercase(), b.clone()),
            ]
        })
        .collect();
    let target_name = |n: &str| {
        rename
            .get(&n.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| n.to_string())
    };
    let headers: Vec<Vec<String>> = inputs
        .iter()
        .map(|(_, inp)| inp.names().iter().map(|n| target_name(n)).collect())
        .collect();

    // The table's columns: the existing table's, else declared, Parquet or inferred types.
    let keep = settings.keep_hvr_columns;
    let existing = commit::columns(&table).context(&base)?;
    let columns = match (kind, existing) {
        // An integrate keeps the table's columns; a refresh may bring new ones.
        (Kind::Integrate, Some(existing)) => existing,
        (_, existing) => {
            let mut names: Vec<String> = if spec.columns.is_empty() {
                headers.first().cloned().unwrap_or_default()
            } else {
                spec.columns.clone()
            };
            names.retain(|n| keep || !is_extra(n, settings));
            match (names.is_empty(), existing) {
                (true, Some(existing)) => existing,
                (true, None) => bail!(
                    "{base}: no columns: HVR_COL_NAMES gives none and there is no file to take them from"
                ),
                (false, existing) => resolve_columns(
                    &names,
                    existing.as_ref(),
                    &base,
                    &spec.name,
                    settings,
                    &inputs,
                    &headers,
                )?,
            }
        }
    };
    let keys = match (kind, spec.keys.is_empty()) {
        (_, false) => spec.keys.clone(),
        _ => commit::recorded_keys(&table)?.unwrap_or_default(),
    };
    let mut key_idx = Vec::with_capacity(keys.len());
    for k in &keys {
        match columns
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(k))
        {
            Some(i) => key_idx.push(i),
            None => bail!("{base}: key column '{k}' is not a column of the table"),
        }
    }
    let keys: Vec<String> = key_idx
        .iter()
        .map(|&i| columns.field(i).name().clone())
        .collect();
    if kind == Kind::Integrate && keys.is_empty() {
        bail!("{base}: no key columns: HVR_TBL_KEYS gives none and the table records none");
    }
    let layout = TableLayout {
        columns: columns.clone(),
        keys: key_idx,
        op_column: settings.op_column.to_ascii_lowercase(),
        delete_column: settings.delete_column.to_ascii_lowercase(),
        seq_column: settings.seq_column.to_ascii_lowercase(),
        keep_extras: keep,
        refresh: kind == Kind::Refresh,
    };
    let plans: Vec<FileColumns> = inputs
        .iter()
        .zip(&headers)
        .map(|((i, _), h)| layout.plan(h, &spec.files[*i].name))
        .collect::<Result<_>>()
        .context(&base)?;
    let (payload, rows_in) = match kind {
        Kind::Integrate => {
            let decoded: Vec<Vec<RecordBatch>> = inputs
                .par_iter()
                .zip(plans.par_iter())
                .map(|((i, inp), plan)| match inp {
                    Input::Csv(c) => c.decode(&layout, plan, *i as u32),
                    Input::Parquet(p) => p.decode(&layout, plan, *i as u32),
                })
                .collect::<Result<_>>()
                .context(&base)?;
            for ((i, _), batches) in inputs.iter().zip(&decoded) {
                let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
                check_rows(&spec.files[*i], read, settings).context(&base)?;
            }
            let changes: Vec<RecordBatch> = decoded.into_iter().flatten().collect();
            let rows = changes.iter().map(RecordBatch::num_rows).sum();
            let schema = layout.change_schema();
            (
                Payload::Changes {
                    table,
                    changes,
                    schema,
                },
                rows,
            )
        }
        Kind::Refresh => {
            let writers = std::thread::available_parallelism().map_or(1, usize::from);
            let sink = Mutex::new(FileSink::start(table, columns.clone(), writers)?);
            // The reader blocks on the writers when they fall behind: leave this worker
            // thread to the runtime meanwhile.
            let read = tokio::task::block_in_place(|| {
                inputs
                    .par_iter()
                    .zip(plans.par_iter())
                    .map(|((i, inp), plan)| {
                        let mut rows = 0usize;
                        let each = |b: RecordBatch| {
                            rows += b.num_rows();
                            sink.lock().expect("file sink").send(b)
                        };
                        match inp {
                            Input::Csv(c) => c.decode_each(&layout, plan, *i as u32, each)?,
                            Input::Parquet(p) => p.decode_each(&layout, plan, *i as u32, each)?,
                        }
                        check_rows(&spec.files[*i], rows, settings)?;
                        Ok(rows)
                    })
                    .collect::<Result<Vec<usize>>>()
            });
            let staged = sink.into_inner().expect("file sink").finish().await;
            match (read, staged) {
                (Ok(rows), Ok(staged)) => (Payload::Files(staged), rows.iter().sum()),
                (Err(e), staged) => {
                    if let Ok(s) = staged {
                        s.discard().await;
                    }
                    return Err(e.context(&base));
                }
                (Ok(_), Err(e)) => return Err(e.context(&base)),
            }
        }
    };
    Ok(Prepared {
        spec,
        columns,
        keys,
        payload,
        rows_in,
        bytes: bytes_in,
        started,
    })
}

/// A file's rows against the count HVR gives in `HVR_FILE_NROWS`.
fn check_rows(f: &InputFile, read: usize, settings: &Settings) -> Result<()> {
    if settings.check_row_counts
        && let Some(n) = f.expected_rows.filter(|&n| n != read as u64)
    {
        bail!(
            "{}: HVR_FILE_NROWS says {n} rows but the file has {read} (cut short?); check_row_counts=false skips this check",
            f.name
        );
    }
    Ok(())
}

/// Column types: the existing table's, else declared, else from Parquet, else inferred from
/// every CSV value.
fn resolve_columns(
    names: &[String],
    existing: Option<&SchemaRef>,
    base: &str,
    channel: &str,
    settings: &Settings,
    inputs: &[(usize, Input)],
    headers: &[Vec<String>],
) -> Result<SchemaRef> {
    let declared = |col: &str| -> Option<DeclaredType> {
        [base, channel].iter().find_map(|t| {
            settings
                .types
                .get(&t.to_ascii_lowercase())?
                .get(&col.to_ascii_lowercase())
                .copied()
        })
    };
    let existing_field = |n: &str| {
        existing.and_then(|e| {
            e.fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(n))
                .cloned()
        })
    };
    let need_inference = names
        .iter()
        .any(|n| declared(n).is_none() && existing_field(n).is_none());
    let inferred: Vec<Option<Vec<Inference>>> = if need_inference {
        inputs
            .par_iter()
            .map(|(_, inp)| match inp {
                Input::Csv(c) => c.infer().map(Some),
                Input::Parquet(_) => Ok(None),
            })
            .collect::<Result<_>>()
            .context(base)?
    } else {
        inputs.iter().map(|_| None).collect()
    };
    let mut fields = Vec::with_capacity(names.len());
    for n in names {
        if let Some(f) = existing_field(n) {
            fields.push(f.as_ref().clone());
            continue;
        }
        let ty: DataType = match declared(n) {
            Some(t) => t.arrow(),
            None => {
                let mut parquet_type = None;
                let mut inf = Inference::default();
                for (k, (_, inp)) in inputs.iter().enumerate() {
                    let Some(pos) = headers[k].iter().position(|h| h.eq_ignore_ascii_case(n))
                    else {
                        continue;
                    };
                    match (inp, &inferred[k]) {
                        (Input::Parquet(p), _) => {
                            parquet_type = parquet_type.or(Some(p.column_type(pos)))
                        }
                        (Input::Csv(_), Some(per_pos)) => inf.merge(&per_pos[pos]),
                        _ => {}
                    }
                }
                parquet_type.unwrap_or_else(|| inf.result().arrow())
            }
        };
        fields.push(Field::new(n, ty, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}
