//! A table of a call read and checked, ready to commit: its files opened, their headers
//! renamed to target names, the table's columns and types resolved (guessed and verified for
//! a new table), the files decoded into change batches, or, for a refresh, streamed into
//! staged data files.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use super::spec::{Kind, TableSpec};
use crate::bail;
use crate::diag::stage_time;
use crate::error::{Context, Result};
use crate::input::{Bytes, InputFile};
use crate::mode::TableMode;
use crate::read::csv::CsvFile;
use crate::read::parquet::ParquetFile;
use crate::read::{FileColumns, TableLayout};
use crate::resolve::TableTypes;
use crate::schema::types::{Check, Inference};
use crate::settings::{Format, PartExpr, Settings};
use crate::table;
use crate::write::files::{FileSink, Staged};

/// A table read and checked, ready to commit.
pub(super) struct Prepared {
    pub(super) spec: TableSpec,
    /// The table as loaded before reading.
    pub(super) table: DeltaTable,
    pub(super) columns: SchemaRef,
    pub(super) keys: Vec<String>,
    pub(super) payload: Payload,
    pub(super) rows_in: usize,
    pub(super) bytes: u64,
    pub(super) started: Instant,
}

/// What a table's commit will apply.
pub(super) enum Payload {
    /// An integrate's change batches.
    Changes {
        /// Emptied once `net` holds their net changes.
        changes: Vec<RecordBatch>,
        schema: SchemaRef,
        /// The net changes of an earlier attempt, when they do not depend on the table
        /// ([`coalesce::reads_target`]).
        net: Option<crate::change::NetChanges>,
    },
    /// A refresh's data files, already written and not yet committed.
    Files(Staged),
}

impl Prepared {
    /// Deletes what was written for this table but not committed.
    pub(super) async fn discard(self) {
        if let Payload::Files(staged) = self.payload {
            staged.discard().await;
        }
    }
}

/// Input files of a table fetched from object storage at once.
const FILES_IN_FLIGHT: usize = 4;

/// Whether the table keeps HVR's extra columns as data: asked for, or an append table.
fn keeps_extras(spec: &TableSpec, settings: &Settings) -> bool {
    settings.keep_hvr_columns || keeper(spec, settings).keeps_extras()
}

/// The mode of a table.
fn keeper(spec: &TableSpec, settings: &Settings) -> &'static dyn TableMode {
    settings.mode_of(&spec.base_name, &spec.name).keeper()
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

pub(super) async fn prepare(
    kind: Kind,
    spec: TableSpec,
    table: DeltaTable,
    settings: &Settings,
    budget: &super::cycle::Budget,
    started: Instant,
) -> Result<Prepared> {
    let (csv_bytes, parquet, bytes_in) = fetch(&spec, settings).await?;
    // Parsed, the input takes a few times its size: other tables wait for their share.
    let _memory = budget.hold(bytes_in).await;
    let opened = Opened::new(kind, &spec, settings, &table, &csv_bytes, parquet)?;
    let sources = table_types(&opened);
    let (columns, guess) = opened.columns(&sources)?;
    let keys = match (kind, spec.keys.is_empty()) {
        (_, false) => spec.keys.clone(),
        _ => table::recorded_keys(&table)?.unwrap_or_default(),
    };
    let read = match kind {
        Kind::Integrate => opened.changes(columns, &keys, &sources)?,
        Kind::Refresh => {
            opened
                .refresh(columns, &keys, guess, &sources, started)
                .await?
        }
    };
    drop(sources);
    drop(opened);
    Ok(Prepared {
        spec,
        table,
        columns: read.columns,
        keys: read.keys,
        payload: read.payload,
        rows_in: read.rows,
        bytes: bytes_in,
        started,
    })
}

/// What reading a table's files gave.
struct Read {
    /// The table's columns (wider than resolved first, when a cycle widened a type).
    columns: SchemaRef,
    /// The key columns as the table names them.
    keys: Vec<String>,
    payload: Payload,
    rows: usize,
}

/// A refresh's types guessed from a sample: the columns' names, the existing table's columns,
/// and what the sample saw.
type Guess = (Vec<String>, Option<SchemaRef>, Vec<Option<Vec<Inference>>>);

/// The bytes of every file of a table, CSV decoded to UTF-8, Parquet opened; and how many.
/// Local files are mapped; objects are fetched, a few files at a time.
async fn fetch(
    spec: &TableSpec,
    settings: &Settings,
) -> Result<(Vec<(usize, Bytes)>, Vec<(usize, ParquetFile)>, u64)> {
    let is_parquet = |name: &str| match settings.format {
        Format::Parquet => true,
        Format::Csv => false,
        Format::Auto => name.to_ascii_lowercase().ends_with(".parquet"),
    };
    let mut csv_bytes: Vec<(usize, Bytes)> = Vec::new();
    let mut parquet: Vec<(usize, ParquetFile)> = Vec::new();
    let mut bytes_in = 0u64;
    let mut read = futures::stream::iter(spec.files.iter())
        .map(|f| f.source.read(&f.name))
        .buffered(FILES_IN_FLIGHT);
    let mut i = 0;
    while let Some(mapped) = read.try_next().await? {
        let f = &spec.files[i];
        bytes_in += mapped.len() as u64;
        if is_parquet(&f.name) {
            let b = bytes::Bytes::from_owner(mapped);
            parquet.push((i, ParquetFile::open(b, &f.name)?));
        } else {
            csv_bytes.push((
                i,
                crate::input::to_utf8(mapped, settings.csv.encoding, &f.name)?,
            ));
        }
        i += 1;
    }
    Ok((csv_bytes, parquet, bytes_in))
}

/// A table of the call with its files opened, their headers as target names, and how it is
/// partitioned: what every step of reading it looks at.
struct Opened<'a> {
    kind: Kind,
    spec: &'a TableSpec,
    settings: &'a Settings,
    table: &'a DeltaTable,
    /// The existing table's columns.
    existing: Option<SchemaRef>,
    /// The files in the order HVR listed them, by their position in that list.
    inputs: Vec<(usize, Input<'a>)>,
    /// Each input's header, as target names.
    headers: Vec<Vec<String>>,
    partitioning: Vec<PartExpr>,
}

impl<'a> Opened<'a> {
    fn new(
        kind: Kind,
        spec: &'a TableSpec,
        settings: &'a Settings,
        table: &'a DeltaTable,
        csv_bytes: &'a [(usize, Bytes)],
        parquet: Vec<(usize, ParquetFile)>,
    ) -> Result<Self> {
        let mut inputs: Vec<(usize, Input)> = Vec::new();
        for (i, b) in csv_bytes {
            let name = &spec.files[*i].name;
            let f = CsvFile::open_mapped(b, name, &settings.csv, settings.chunk_bytes)?;
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
        let existing = table::columns(table).context(&spec.base_name)?;
        // Partitioning: an integrate keeps the table's; a new table, or a refresh, takes the
        // setting's (a refresh the setting does not name keeps the table's).
        let table_partitioning = existing
            .as_ref()
            .map(|e| table::partition::spec_of(e))
            .unwrap_or_default();
        let partitioning: Vec<PartExpr> = match (kind, &existing) {
            (Kind::Integrate, Some(_)) => table_partitioning,
            _ => settings
                .partition_of(&spec.base_name, &spec.name)
                .map(<[PartExpr]>::to_vec)
                .unwrap_or(table_partitioning),
        };
        Ok(Opened {
            kind,
            spec,
            settings,
            table,
            existing,
            inputs,
            headers,
            partitioning,
        })
    }

    fn base(&self) -> &str {
        &self.spec.base_name
    }

    /// Columns in the files that the existing table does not have yet: an integrate adds them.
    fn new_columns(&self, existing: &SchemaRef) -> Vec<String> {
        let (spec, settings) = (self.spec, self.settings);
        let keep = keeps_extras(spec, settings);
        let mut new: Vec<String> = Vec::new();
        for n in self.headers.iter().flatten() {
            let known = existing
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(n))
                || new.iter().any(|m| m.eq_ignore_ascii_case(n));
            // Only columns HVR lists (HVR_COL_NAMES grows with the source table); another
            // name in a header stays an error.
            let listed =
                spec.columns.is_empty() || spec.columns.iter().any(|c| c.eq_ignore_ascii_case(n));
            if !known && listed && (keep || !is_extra(n, settings)) {
                new.push(n.clone());
            }
        }
        new
    }

    /// The table's columns: the existing table's, else declared, Parquet or inferred types.
    /// A refresh that must infer guesses from a sample (returned) and checks the guess while
    /// it reads.
    fn columns(&self, sources: &TableTypes) -> Result<(SchemaRef, Option<Guess>)> {
        let (spec, base) = (self.spec, self.base());
        let none = vec![None; self.inputs.len()];
        if let (Kind::Integrate, Some(existing)) = (self.kind, &self.existing) {
            // An integrate keeps the table's columns, and adds the new ones a cycle brings
            // (their types inferred from the files, or declared).
            let new = self.new_columns(existing);
            if new.is_empty() {
                return Ok((existing.clone(), None));
            }
            let names: Vec<String> = existing
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .chain(new)
                .collect();
            let types = sources.columns(&names, Some(existing));
            let inferred = match types.need_inference() {
                true => infer_all(&self.inputs, base)?,
                false => none,
            };
            return Ok((types.resolve(&inferred)?, None));
        }
        let keep = keeps_extras(spec, self.settings);
        let mut names: Vec<String> = if spec.columns.is_empty() {
            self.headers.first().cloned().unwrap_or_default()
        } else {
            spec.columns.clone()
        };
        names.retain(|n| keep || !is_extra(n, self.settings));
        match (names.is_empty(), &self.existing) {
            (true, Some(existing)) => Ok((existing.clone(), None)),
            (true, None) => bail!(
                "{base}: no columns: HVR_COL_NAMES gives none and there is no file to take them from"
            ),
            (false, existing) => {
                let types = sources.columns(&names, existing.as_ref());
                if !types.need_inference() {
                    Ok((types.resolve(&none)?, None))
                } else if self.kind == Kind::Refresh {
                    let sample = sample(&self.inputs, base)?;
                    let columns = types.resolve(&sample)?;
                    Ok((columns, Some((names, existing.clone(), sample))))
                } else {
                    Ok((types.resolve(&infer_all(&self.inputs, base)?)?, None))
                }
            }
        }
    }

    /// An integrate's change batches, decoded in parallel. A value that does not fit its
    /// column's type widens the column when Delta allows it (the commit then rewrites the
    /// table's files with the new type).
    fn changes(&self, columns: SchemaRef, keys: &[String], sources: &TableTypes) -> Result<Read> {
        let base = self.base();
        let decode = |layout: &TableLayout, plans: &[FileColumns]| {
            self.inputs
                .par_iter()
                .zip(plans.par_iter())
                .map(|((i, inp), plan)| match inp {
                    Input::Csv(c) => c.decode(layout, plan, *i as u32),
                    Input::Parquet(p) => p.decode(layout, plan, *i as u32),
                })
                .collect::<Result<Vec<Vec<RecordBatch>>>>()
                .context(base)
        };
        let (mut layout, mut plans, mut keys) = self.layout(&columns, keys)?;
        let mut columns = columns;
        let decoded = match decode(&layout, &plans) {
            Ok(d) => d,
            Err(e) => {
                let names: Vec<String> =
                    columns.fields().iter().map(|f| f.name().clone()).collect();
                let types = sources.columns(&names, Some(&columns));
                let Some(wider) = types.widened(&infer_all(&self.inputs, base)?) else {
                    return Err(e);
                };
                columns = wider;
                (layout, plans, keys) = self.layout(&columns, &keys)?;
                decode(&layout, &plans)?
            }
        };
        for ((i, _), batches) in self.inputs.iter().zip(&decoded) {
            let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
            check_rows(&self.spec.files[*i], read, self.settings).context(base)?;
        }
        let parts = table::partition::spec_of(&columns);
        let changes: Vec<RecordBatch> = decoded
            .into_iter()
            .flatten()
            .map(|b| table::partition::fill(b, &parts))
            .collect::<Result<_>>()?;
        let rows = changes.iter().map(RecordBatch::num_rows).sum();
        let schema = layout.change_schema();
        Ok(Read {
            columns,
            keys,
            payload: Payload::Changes {
                changes,
                schema,
                net: None,
            },
            rows,
        })
    }

    /// A refresh's rows staged as data files. With types guessed from a sample, the files are
    /// read once while every value is checked against the guess; when the guess does not hold
    /// (or the read fails), they are read again with the types of every value.
    async fn refresh(
        &self,
        columns: SchemaRef,
        keys: &[String],
        guess: Option<Guess>,
        sources: &TableTypes<'_>,
        started: Instant,
    ) -> Result<Read> {
        let base = self.base();
        let (mut layout, mut plans, mut keys) = self.layout(&columns, keys)?;
        let mut columns = columns;
        if let Some((names, existing, sample)) = guess {
            let types = sources.columns(&names, existing.as_ref());
            // Positions whose guess no further value can change need no checking.
            let checks: Vec<Vec<Check>> = self
                .headers
                .iter()
                .map(|h| h.iter().map(|n| types.check(n, &sample)).collect())
                .collect();
            // An error here is a value the guess cannot hold, or bad input: the full pass
            // below tells which.
            if let Ok((staged, rows, mut inferred)) =
                self.stage(&layout, &plans, Some(&checks)).await
            {
                // Settled positions were not re-inferred: what the sample saw is theirs.
                for (all, seen) in inferred.iter_mut().zip(&sample) {
                    if let (Some(all), Some(seen)) = (all.as_mut(), seen) {
                        for (a, b) in all.iter_mut().zip(seen) {
                            a.merge(b);
                        }
                    }
                }
                if types.resolve(&inferred)? == columns {
                    return Ok(Read {
                        columns,
                        keys,
                        payload: Payload::Files(staged),
                        rows,
                    });
                }
                staged.discard().await;
            }
            stage_time(
                base,
                "types guessed from a sample did not hold, read again",
                started,
            );
            columns = types.resolve(&infer_all(&self.inputs, base)?)?;
            (layout, plans, keys) = self.layout(&columns, &keys)?;
        }
        let (staged, rows, _) = self.stage(&layout, &plans, None).await.context(base)?;
        Ok(Read {
            columns,
            keys,
            payload: Payload::Files(staged),
            rows,
        })
    }

    /// The layout of a table's batches and how each file's columns map onto it, with the key
    /// columns as the table names them.
    fn layout(
        &self,
        columns: &SchemaRef,
        keys: &[String],
    ) -> Result<(TableLayout, Vec<FileColumns>, Vec<String>)> {
        let (spec, settings, base) = (self.spec, self.settings, self.base());
        let mut key_idx = Vec::with_capacity(keys.len());
        for k in keys {
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
        if self.kind == Kind::Integrate && keys.is_empty() && keeper(spec, settings).needs_keys() {
            bail!("{base}: no key columns: HVR_TBL_KEYS gives none and the table records none");
        }
        let layout = TableLayout {
            columns: columns.clone(),
            keys: key_idx,
            op_column: settings.op_column.to_ascii_lowercase(),
            delete_column: settings.delete_column.to_ascii_lowercase(),
            seq_column: settings.seq_column.to_ascii_lowercase(),
            keep_extras: keeps_extras(spec, settings),
            refresh: self.kind == Kind::Refresh,
        };
        let plans: Vec<FileColumns> = self
            .inputs
            .iter()
            .zip(&self.headers)
            .map(|((i, _), h)| layout.plan(h, &spec.files[*i].name))
            .collect::<Result<_>>()
            .context(base)?;
        Ok((layout, plans, keys))
    }

    /// Reads every file of a refresh into data files (not committed), one writer per core;
    /// returns them with the rows read and, where `checks` asks for it, the types every value
    /// of each CSV file allows. Files written before a failure are deleted.
    async fn stage(
        &self,
        layout: &TableLayout,
        plans: &[FileColumns],
        checks: Option<&[Vec<Check>]>,
    ) -> Result<(Staged, usize, PerInput)> {
        let (spec, settings) = (self.spec, self.settings);
        let writers = std::thread::available_parallelism().map_or(1, usize::from);
        // A refresh's rows as the table's mode keeps them (not deleted; current from now on).
        let mode = keeper(spec, settings);
        let options = settings.mode_options();
        let now = crate::mode::history::now_micros();
        let parts = table::partition::spec_of(&layout.columns);
        let sink = Mutex::new(FileSink::start(
            self.table.clone(),
            crate::write::encode::with_plain_encodings(&layout.columns, settings.plain_encodings),
            writers,
        )?);
        // The reader blocks on the writers when they fall behind: leave this worker thread to
        // the runtime meanwhile.
        let read = tokio::task::block_in_place(|| {
            self.inputs
                .par_iter()
                .zip(plans.par_iter())
                .enumerate()
                .map(|(k, ((i, inp), plan))| {
                    let mut rows = 0usize;
                    let each = |b: RecordBatch| {
                        rows += b.num_rows();
                        let b = table::partition::fill(b, &parts)?;
                        let b = mode.refresh_rows(b, &layout.columns, &options, now)?;
                        sink.lock().expect("file sink").send(b)
                    };
                    let inferred = match inp {
                        Input::Csv(c) => {
                            let checks = checks.map(|s| s[k].as_slice());
                            c.decode_each(layout, plan, *i as u32, checks, each)?
                        }
                        Input::Parquet(p) => {
                            p.decode_each(layout, plan, *i as u32, each)?;
                            None
                        }
                    };
                    check_rows(&spec.files[*i], rows, settings)?;
                    Ok((rows, inferred))
                })
                .collect::<Result<Vec<_>>>()
        });
        let staged = sink.into_inner().expect("file sink").finish().await;
        match (read, staged) {
            (Ok(per_file), Ok(staged)) => {
                let rows = per_file.iter().map(|(r, _)| r).sum();
                Ok((staged, rows, per_file.into_iter().map(|(_, i)| i).collect()))
            }
            (Err(e), staged) => {
                if let Ok(s) = staged {
                    s.discard().await;
                }
                Err(e)
            }
            (Ok(_), Err(e)) => Err(e),
        }
    }
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

/// What inference found in each input, by file position (`None` where it did not look).
type PerInput = Vec<Option<Vec<Inference>>>;

/// Pieces of CSV a refresh reads up front to guess its types.
const SAMPLE_PIECES: usize = 8;

/// Every CSV value of every file, in parallel.
fn infer_all(inputs: &[(usize, Input)], base: &str) -> Result<PerInput> {
    inputs
        .par_iter()
        .map(|(_, inp)| match inp {
            Input::Csv(c) => c.infer().map(Some),
            Input::Parquet(_) => Ok(None),
        })
        .collect::<Result<_>>()
        .context(base)
}

/// The first pieces of the first CSV files: a guess.
fn sample(inputs: &[(usize, Input)], base: &str) -> Result<PerInput> {
    let mut left = SAMPLE_PIECES;
    let mut out = Vec::with_capacity(inputs.len());
    for (_, inp) in inputs {
        out.push(match inp {
            Input::Csv(c) if left > 0 => {
                let (inf, read) = c.infer_sample(left).context(base)?;
                left = left.saturating_sub(read);
                Some(inf)
            }
            _ => None,
        });
    }
    Ok(out)
}

/// Where a table's types come from besides the files' CSV values: its declarations, the
/// types each Parquet input carries, its mode and partitioning.
fn table_types<'s>(t: &'s Opened) -> TableTypes<'s> {
    let (spec, settings) = (t.spec, t.settings);
    // Declarations by target name win over those by channel name.
    let mut declared = HashMap::new();
    for name in [&spec.name, &spec.base_name] {
        if let Some(d) = settings.types.get(&name.to_ascii_lowercase()) {
            declared.extend(d.iter().map(|(c, ty)| (c.clone(), *ty)));
        }
    }
    let typed = t
        .inputs
        .iter()
        .zip(&t.headers)
        .map(|((_, inp), h)| match inp {
            Input::Parquet(p) => Some((0..h.len()).map(|pos| p.column_type(pos)).collect()),
            Input::Csv(_) => None,
        })
        .collect();
    TableTypes {
        table: &spec.base_name,
        declared,
        seq_column: &settings.seq_column,
        headers: &t.headers,
        typed,
        partitioning: &t.partitioning,
        mode: settings.mode_of(&spec.base_name, &spec.name),
        mode_options: settings.mode_options(),
        deletion_vectors: settings.deletion_vectors_for(&spec.base_name, &spec.name),
    }
}
