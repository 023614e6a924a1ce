//! One call's work, per table: read every file → coalesce → commit, then remove the files.
//! All tables are read and checked before any table is written, so bad input changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use crate::bail;
use crate::commit::files::{FileSink, Staged};
use crate::commit::{self, Outcome, progress};
use crate::error::{Context, Result};
use crate::read::csv::CsvFile;
use crate::read::parquet::ParquetFile;
use crate::read::source::{self, Bytes};
use crate::read::types::{Check, DeclaredType, Inference};
use crate::read::{FileColumns, TableLayout};
use crate::settings::{Format, Mode, PartExpr, Settings};
use crate::{coalesce, storage};

/// Input files of a table fetched from object storage at once.
const FILES_IN_FLIGHT: usize = 4;

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
    /// Where it is: a local path, or an object under the file location's prefix.
    pub source: storage::FileRef,
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
    /// The Delta application id under which the table's progress is recorded
    /// ([`commit::progress`]); None records none.
    pub app_id: Option<String>,
    /// The cycle's stamp (the `{hvr_integ_tstamp}` of its files), recorded with the progress.
    pub cycle: Option<String>,
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
    /// Whether the table already had this cycle (an earlier call committed it).
    pub skipped: bool,
}

impl Summary {
    /// The summary of a table whose cycle an earlier call committed.
    fn skipped(spec: &TableSpec, table: &DeltaTable, started: Instant) -> Self {
        Summary {
            table: spec.base_name.clone(),
            rows_in: 0,
            outcome: Outcome {
                version: table.version(),
                ..Outcome::default()
            },
            files: spec.files.len(),
            bytes: 0,
            seconds: started.elapsed().as_secs_f64(),
            skipped: true,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = self
            .outcome
            .version
            .map_or("none".to_string(), |v| v.to_string());
        if self.skipped {
            return write!(
                f,
                "{}: skipped: this cycle was committed by an earlier call files={} version={} seconds={:.3}",
                self.table, self.files, version, self.seconds
            );
        }
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
    /// The table as loaded before reading.
    table: DeltaTable,
    columns: SchemaRef,
    keys: Vec<String>,
    payload: Payload,
    rows_in: usize,
    bytes: u64,
    started: Instant,
}

/// What a table's commit will apply.
enum Payload {
    /// An integrate's change batches.
    Changes {
        /// Emptied once `net` holds their net changes.
        changes: Vec<RecordBatch>,
        schema: SchemaRef,
        /// The net changes of an earlier attempt, when they do not depend on the table
        /// ([`coalesce::reads_target`]).
        net: Option<coalesce::Coalesced>,
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
    commit::register_stores();
    let lake = storage::lake_url(&settings.target)?;
    let storage_options = settings.storage.clone();
    let mut steps: Vec<Step> = Vec::with_capacity(tables.len());
    let mut store_checked = settings.single_writer;
    for spec in tables {
        let started = Instant::now();
        let step = async {
            let url = storage::table_url(&lake, &spec.base_name)?;
            let table = commit::open(&url, &storage_options)
                .await
                .context(&spec.base_name)?;
            stage_time(&spec.base_name, "open", started);
            if !store_checked {
                // Once per call: every table of a lake is on the same store.
                commit::check_conditional_writes(&table)
                    .await
                    .context(&spec.base_name)?;
                store_checked = true;
            }
            if let Some(cycle) = cycle_of(kind, &spec, None)
                && progress::applied(&table, &cycle)
                    .await
                    .context(&spec.base_name)?
            {
                // Committed by an earlier call (HVR runs a failed job again): its files may
                // be gone already, and nothing is read or written.
                return Ok(Step::Skip(Summary::skipped(&spec, &table, started)));
            }
            let t = Instant::now();
            let name = spec.base_name.clone();
            let p = prepare(kind, spec, table, settings, started).await;
            stage_time(&name, "read", t);
            p.map(|p| Step::Apply(Box::new(p)))
        };
        match step.await {
            Ok(p) => steps.push(p),
            Err(e) => {
                // Bad input anywhere changes nothing: drop the files staged for other tables.
                for step in steps {
                    if let Step::Apply(p) = step {
                        p.discard().await;
                    }
                }
                return Err(e);
            }
        }
    }
    let ctx = SessionContext::new();
    let mut summaries = Vec::with_capacity(steps.len());
    for step in steps {
        let mut p = match step {
            Step::Skip(s) => {
                report(&s);
                summaries.push(s);
                continue;
            }
            Step::Apply(p) => p,
        };
        let name = p.spec.base_name.clone();
        let cycle = cycle_of(kind, &p.spec, max_seq(&p.payload));
        let mut table = p.table.clone();
        let mut attempt = 0;
        let outcome = loop {
            match commit_table(&ctx, &mut p, settings, table, cycle.as_ref(), attempt > 0).await {
                Ok(outcome) => break outcome,
                Err(e) if e.is_transient() && attempt < settings.commit_retries => {
                    // Another writer committed first, or the store failed through its own
                    // retries: do the commit again on the table's latest version.
                    attempt += 1;
                    eprintln!(
                        "W_JX0E01: {name}: commit attempt {attempt} did not land ({}); trying again on the latest version",
                        e.message()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(6)))
                        .await;
                    let url = storage::table_url(&lake, &name)?;
                    table = commit::open(&url, &storage_options).await.context(&name)?;
                }
                Err(e) => return Err(e.context(&name)),
            }
        };
        // `skipped`: an earlier attempt of this call landed although its answer was lost.
        let (outcome, skipped, table) = outcome;
        let s = Summary {
            table: name,
            rows_in: if skipped { 0 } else { p.rows_in },
            outcome,
            files: p.spec.files.len(),
            bytes: p.bytes,
            seconds: p.started.elapsed().as_secs_f64(),
            skipped,
        };
        report(&s);
        crate::failpoint(&format!("after_commit:{}", s.table));
        if kind == Kind::Integrate
            && !skipped
            && (settings.compact_small_files > 0
                || settings.compact_every > 0
                || settings.compact_deleted_share > 0.0)
        {
            let app = cycle.as_ref().map(|c| c.app_id.as_str());
            compact_if_needed(table, &s.table, app, settings).await;
        }
        summaries.push(s);
    }
    Ok(summaries)
}

/// Compacts a table whose small files reached `compact_small_files`, or every
/// `compact_every` cycles (Z-ordered by its keys with `compact_zorder`). Its data is committed
/// already: a failure here is a warning, and the next cycle tries again.
async fn compact_if_needed(
    table: DeltaTable,
    name: &str,
    app_id: Option<&str>,
    settings: &Settings,
) {
    let run = async {
        let (_, small, _) = crate::upkeep::file_counts(&table)?;
        let by_count = settings.compact_small_files > 0 && small >= settings.compact_small_files;
        // Deletion vectors: rows marked deleted still cost every reader, and each cycle's
        // upserts are a new small file; compact once the vectors delete a set share.
        let by_vectors = settings.compact_deleted_share > 0.0
            && crate::upkeep::deleted_share(&table)? >= settings.compact_deleted_share;
        // Every N cycles: the app id's txn version counts the cycles applied.
        let by_cycle = match (settings.compact_every, app_id) {
            (0, _) | (_, None) => false,
            (n, Some(app)) => progress::last_version(&table, app)
                .await?
                .is_some_and(|v| v > 0 && (v as u64).is_multiple_of(n as u64)),
        };
        if !by_count && !by_cycle && !by_vectors {
            return Ok(None);
        }
        let zorder = match settings.compact_zorder {
            true => commit::recorded_keys(&table)?,
            false => None,
        };
        crate::upkeep::compact(table, zorder).await.map(Some)
    };
    match run.await {
        Ok(Some(c)) => println!(
            "hvrlake: compacted: {name}: files removed={} added={} version={}",
            c.removed,
            c.added,
            c.version.map_or("none".into(), |v| v.to_string())
        ),
        Ok(None) => {}
        Err(e) => eprintln!(
            "W_JX0E03: {name}: committed, but compacting its small files failed: {}",
            storage::redact(e.message())
        ),
    }
}

/// A table of the call: to apply, or already applied by an earlier call.
enum Step {
    Apply(Box<Prepared>),
    Skip(Summary),
}

/// The cycle a call applies to a table, when the call records progress.
fn cycle_of(kind: Kind, spec: &TableSpec, max_seq: Option<String>) -> Option<progress::Cycle> {
    Some(progress::Cycle {
        app_id: spec.app_id.clone()?,
        mode: match kind {
            Kind::Refresh => "refresh",
            Kind::Integrate => "integrate",
        }
        .to_string(),
        files: spec.files.iter().map(|f| f.name.clone()).collect(),
        max_seq,
        stamp: spec.cycle.clone(),
    })
}

/// The highest `hvr_integ_seq` among an integrate's changes.
fn max_seq(payload: &Payload) -> Option<String> {
    let Payload::Changes { changes, .. } = payload else {
        return None;
    };
    changes
        .iter()
        .filter_map(|b| {
            let col = b.column_by_name(crate::change::ORDER)?;
            arrow::compute::max_binary(arrow::array::AsArray::as_binary_opt::<i32>(col)?)
                .map(<[u8]>::to_vec)
        })
        .max()
        .and_then(|order| progress::seq_text(&order))
}

/// One attempt at a table's commit, on `table` as last loaded. `again`: an earlier attempt
/// failed, and may have landed; then the table is asked first, and `true` says it had.
/// Returns the table as committed.
async fn commit_table(
    ctx: &SessionContext,
    p: &mut Prepared,
    settings: &Settings,
    table: DeltaTable,
    cycle: Option<&progress::Cycle>,
    again: bool,
) -> Result<(Outcome, bool, DeltaTable)> {
    let name = &p.spec.base_name;
    let mode = settings.mode_of(name, &p.spec.name);
    let table = if settings.change_data_feed_for(name, &p.spec.name) {
        commit::enable_change_data_feed(table, &p.columns, &p.keys).await?
    } else {
        table
    };
    let mark = match cycle {
        Some(c) => {
            if again && progress::applied(&table, c).await? {
                let outcome = Outcome {
                    version: table.version(),
                    ..Outcome::default()
                };
                return Ok((outcome, true, table));
            }
            Some(progress::mark(&table, c).await?)
        }
        None => None,
    };
    let mark = mark.as_ref();
    let table = match &p.payload {
        // A column the cycle's values widened: the table's files get the wider type first.
        Payload::Changes { .. } => commit::widen_types(table, &p.columns).await?,
        Payload::Files(_) => table,
    };
    let done = match &mut p.payload {
        Payload::Files(staged) => {
            let t = Instant::now();
            let done = staged
                .commit(table, &p.columns, &p.keys, p.rows_in, mark)
                .await;
            stage_time(name, "commit", t);
            done
        }
        Payload::Changes { changes, .. } if mode == Mode::Append => {
            let t = Instant::now();
            let done = commit::append(table, changes, &p.columns, &p.keys, mark).await;
            stage_time(name, "append", t);
            done
        }
        Payload::Changes {
            changes, schema, ..
        } if mode == Mode::History => {
            let t = Instant::now();
            let done =
                commit::history::apply(table, changes, schema, &p.columns, &p.keys, mark).await;
            stage_time(name, "history", t);
            done
        }
        Payload::Changes {
            changes,
            schema,
            net: kept,
        } => {
            let t = Instant::now();
            let mut net = match kept {
                Some(net) => net.clone(),
                None => {
                    let net = coalesce::coalesce(
                        ctx,
                        schema.clone(),
                        changes.clone(),
                        &p.keys,
                        Some(&table),
                    )
                    .await?;
                    if !coalesce::reads_target(changes)? {
                        // The net changes hold for any version of the table: a retry reuses
                        // them, and the cycle's changes are freed now, so the merge's
                        // buffers take their memory instead of fresh pages.
                        changes.clear();
                        changes.shrink_to_fit();
                        *kept = Some(net.clone());
                    }
                    net
                }
            };
            if mode == Mode::SoftDelete {
                let flag = p.columns.index_of(&settings.delete_column)?;
                let at = p.columns.index_of(&settings.deleted_at_column)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64);
                for b in &mut net.batches {
                    *b = crate::change::soften_deletes(b, flag, at, now)?;
                }
            }
            stage_time(name, "coalesce", t);
            let t = Instant::now();
            let stable = settings.partition_stable;
            let columns =
                commit::encode::with_plain_encodings(&p.columns, settings.plain_encodings);
            let done = commit::merge::apply(table, net, columns, &p.keys, stable, mark).await;
            stage_time(name, "merge", t);
            done
        }
    };
    done.map(|(table, outcome)| (outcome, false, table))
}

/// With `HVRLAKE_TIMINGS` set, prints how long a stage of a table took (on stderr).
fn stage_time(table: &str, stage: &str, since: Instant) {
    timing(format_args!("{table}: {stage}"), since);
}

/// With `HVRLAKE_TIMINGS` set, prints how long `what` took and the process's CPU time so
/// far (on stderr).
pub fn timing(what: impl std::fmt::Display, since: Instant) {
    if std::env::var_os("HVRLAKE_TIMINGS").is_some() {
        eprintln!(
            "hvrlake: timing: {what} {:.3}s (process CPU so far {}, memory {})",
            since.elapsed().as_secs_f64(),
            cpu_so_far(),
            memory_so_far()
        );
    }
}

/// The CPU time (user + system, all threads) the process has used so far, for
/// `HVRLAKE_TIMINGS` ("?" where `/proc` does not say).
fn cpu_so_far() -> String {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The fields after the command's closing parenthesis: utime is the 12th,
            // stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    // Linux counts them in USER_HZ, which is 100 on every architecture it runs on here.
    ticks.map_or("?".into(), |t| format!("{:.2}s", t as f64 / 100.0))
}

/// The process's resident memory now and at its peak so far, for `HVRLAKE_TIMINGS`
/// ("?" where `/proc` does not say): which stage an integrate's memory grows in.
fn memory_so_far() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    // Anonymous memory is what the process had to have zeroed; the resident total also
    // counts the mapped input and data files.
    match (kb("RssAnon:"), kb("VmRSS:"), kb("VmHWM:")) {
        (Some(anon), Some(now), Some(peak)) => format!(
            "{} MiB anonymous, {} MiB resident, peak {} MiB",
            anon / 1024,
            now / 1024,
            peak / 1024
        ),
        _ => "?".into(),
    }
}

/// Whether the table keeps HVR's extra columns as data: asked for, or an append table.
fn keeps_extras(spec: &TableSpec, settings: &Settings) -> bool {
    settings.keep_hvr_columns || settings.mode_of(&spec.base_name, &spec.name) == Mode::Append
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
    // Local files are mapped; objects are fetched, a few files at a time.
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
            csv_bytes.push((i, source::to_utf8(mapped, settings.csv.encoding, &f.name)?));
        }
        i += 1;
    }
    drop(read);
    let mut inputs: Vec<(usize, Input)> = Vec::new();
    for (i, b) in &csv_bytes {
        let f = CsvFile::open_mapped(b, &spec.files[*i].name, &settings.csv, settings.chunk_bytes)?;
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
    // A refresh that must infer guesses from a sample and checks the guess while it reads.
    let keep = keeps_extras(&spec, settings);
    let existing = commit::columns(&table).context(&base)?;
    // Partitioning: an integrate keeps the table's; a new table, or a refresh, takes the
    // setting's (a refresh the setting does not name keeps the table's).
    let table_partitioning = existing
        .as_ref()
        .map(|e| commit::partition::spec_of(e))
        .unwrap_or_default();
    let partitioning: Vec<PartExpr> = match (kind, &existing) {
        (Kind::Integrate, Some(_)) => table_partitioning,
        _ => settings
            .partition_of(&base, &spec.name)
            .map(<[PartExpr]>::to_vec)
            .unwrap_or(table_partitioning),
    };
    let mut guess: Option<(Vec<String>, Option<SchemaRef>, PerInput)> = None;
    // Columns in the files that the table does not have yet: an integrate adds them.
    let new_columns = |existing: &SchemaRef| -> Vec<String> {
        let mut new: Vec<String> = Vec::new();
        for n in headers.iter().flatten() {
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
    };
    let mut columns = match (kind, existing) {
        // An integrate keeps the table's columns, and adds the new ones a cycle brings
        // (their types inferred from the files, or declared).
        (Kind::Integrate, Some(existing)) => {
            let new = new_columns(&existing);
            if new.is_empty() {
                existing
            } else {
                let names: Vec<String> = existing
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .chain(new)
                    .collect();
                let types = TypeSources::new(
                    &names,
                    Some(&existing),
                    &spec,
                    settings,
                    &inputs,
                    &headers,
                    &partitioning,
                );
                let inferred = if types.need_inference() {
                    types.infer_all()?
                } else {
                    vec![None; inputs.len()]
                };
                types.resolve(&inferred)?
            }
        }
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
                (false, existing) => {
                    let types = TypeSources::new(
                        &names,
                        existing.as_ref(),
                        &spec,
                        settings,
                        &inputs,
                        &headers,
                        &partitioning,
                    );
                    if !types.need_inference() {
                        types.resolve(&vec![None; inputs.len()])?
                    } else if kind == Kind::Refresh {
                        let sample = types.sample()?;
                        let columns = types.resolve(&sample)?;
                        guess = Some((names.clone(), existing.clone(), sample));
                        columns
                    } else {
                        types.resolve(&types.infer_all()?)?
                    }
                }
            }
        }
    };
    let keys = match (kind, spec.keys.is_empty()) {
        (_, false) => spec.keys.clone(),
        _ => commit::recorded_keys(&table)?.unwrap_or_default(),
    };
    let (mut layout, mut plans, mut keys) =
        layout_for(kind, &columns, &keys, &inputs, &headers, &spec, settings)?;
    let (payload, rows_in) = match kind {
        Kind::Integrate => {
            let decode = |layout: &TableLayout, plans: &[FileColumns]| {
                inputs
                    .par_iter()
                    .zip(plans.par_iter())
                    .map(|((i, inp), plan)| match inp {
                        Input::Csv(c) => c.decode(layout, plan, *i as u32),
                        Input::Parquet(p) => p.decode(layout, plan, *i as u32),
                    })
                    .collect::<Result<Vec<Vec<RecordBatch>>>>()
                    .context(&base)
            };
            let decoded = match decode(&layout, &plans) {
                Ok(d) => d,
                Err(e) => {
                    // A value that does not fit its column's type: widen the column when Delta
                    // allows it (the commit then rewrites the table's files with the new type).
                    let names: Vec<String> =
                        columns.fields().iter().map(|f| f.name().clone()).collect();
                    let types = TypeSources::new(
                        &names,
                        Some(&columns),
                        &spec,
                        settings,
                        &inputs,
                        &headers,
                        &partitioning,
                    );
                    let Some(wider) = types.widened()? else {
                        return Err(e);
                    };
                    columns = wider;
                    (layout, plans, keys) =
                        layout_for(kind, &columns, &keys, &inputs, &headers, &spec, settings)?;
                    decode(&layout, &plans)?
                }
            };
            for ((i, _), batches) in inputs.iter().zip(&decoded) {
                let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
                check_rows(&spec.files[*i], read, settings).context(&base)?;
            }
            let parts = commit::partition::spec_of(&columns);
            let changes: Vec<RecordBatch> = decoded
                .into_iter()
                .flatten()
                .map(|b| commit::partition::fill(b, &parts))
                .collect::<Result<_>>()?;
            let rows = changes.iter().map(RecordBatch::num_rows).sum();
            let schema = layout.change_schema();
            (
                Payload::Changes {
                    changes,
                    schema,
                    net: None,
                },
                rows,
            )
        }
        Kind::Refresh => {
            // Either the guessed types hold (one read), or the files are read (again) below.
            let mut checked = None;
            if let Some((names, existing, sample)) = guess {
                let types = TypeSources::new(
                    &names,
                    existing.as_ref(),
                    &spec,
                    settings,
                    &inputs,
                    &headers,
                    &partitioning,
                );
                // Positions whose guess no further value can change need no checking.
                let checks: Vec<Vec<Check>> = headers
                    .iter()
                    .map(|h| h.iter().map(|n| types.check(n, &sample)).collect())
                    .collect();
                let first = stage_refresh(
                    &table,
                    &layout,
                    &plans,
                    &inputs,
                    &spec,
                    settings,
                    Some(&checks),
                )
                .await;
                // An error here is a value the guess cannot hold, or bad input: the full
                // pass below tells which.
                if let Ok((staged, rows, mut inferred)) = first {
                    // Settled positions were not re-inferred: what the sample saw is theirs.
                    for (all, seen) in inferred.iter_mut().zip(&sample) {
                        if let (Some(all), Some(seen)) = (all.as_mut(), seen) {
                            for (a, b) in all.iter_mut().zip(seen) {
                                a.merge(b);
                            }
                        }
                    }
                    if types.resolve(&inferred)? == columns {
                        checked = Some((staged, rows));
                    } else {
                        staged.discard().await;
                    }
                }
                if checked.is_none() {
                    stage_time(
                        &base,
                        "types guessed from a sample did not hold, read again",
                        started,
                    );
                    columns = types.resolve(&types.infer_all()?)?;
                    let redone =
                        layout_for(kind, &columns, &keys, &inputs, &headers, &spec, settings)?;
                    (layout, plans, keys) = redone;
                }
            }
            match checked {
                Some((staged, rows)) => (Payload::Files(staged), rows),
                None => {
                    let (staged, rows, _) =
                        stage_refresh(&table, &layout, &plans, &inputs, &spec, settings, None)
                            .await
                            .context(&base)?;
                    (Payload::Files(staged), rows)
                }
            }
        }
    };
    Ok(Prepared {
        spec,
        table,
        columns,
        keys,
        payload,
        rows_in,
        bytes: bytes_in,
        started,
    })
}

/// The layout of a table's batches and how each file's columns map onto it, with the key
/// columns as the table names them.
fn layout_for(
    kind: Kind,
    columns: &SchemaRef,
    keys: &[String],
    inputs: &[(usize, Input)],
    headers: &[Vec<String>],
    spec: &TableSpec,
    settings: &Settings,
) -> Result<(TableLayout, Vec<FileColumns>, Vec<String>)> {
    let base = &spec.base_name;
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
    let append = settings.mode_of(&spec.base_name, &spec.name) == Mode::Append;
    if kind == Kind::Integrate && keys.is_empty() && !append {
        bail!("{base}: no key columns: HVR_TBL_KEYS gives none and the table records none");
    }
    let layout = TableLayout {
        columns: columns.clone(),
        keys: key_idx,
        op_column: settings.op_column.to_ascii_lowercase(),
        delete_column: settings.delete_column.to_ascii_lowercase(),
        seq_column: settings.seq_column.to_ascii_lowercase(),
        keep_extras: keeps_extras(spec, settings),
        refresh: kind == Kind::Refresh,
    };
    let plans: Vec<FileColumns> = inputs
        .iter()
        .zip(headers)
        .map(|((i, _), h)| layout.plan(h, &spec.files[*i].name))
        .collect::<Result<_>>()
        .context(base)?;
    Ok((layout, plans, keys))
}

/// Reads every file of a refresh into data files (not committed), one writer per core;
/// returns them with the rows read and, where `checks` asks for it, the types every value
/// of each CSV file allows. Files written before a failure are deleted.
async fn stage_refresh(
    table: &DeltaTable,
    layout: &TableLayout,
    plans: &[FileColumns],
    inputs: &[(usize, Input<'_>)],
    spec: &TableSpec,
    settings: &Settings,
    checks: Option<&[Vec<Check>]>,
) -> Result<(Staged, usize, PerInput)> {
    let writers = std::thread::available_parallelism().map_or(1, usize::from);
    // Soft-delete tables: refresh rows are not deleted. History tables: refresh rows are the
    // current versions from now on.
    let mode = settings.mode_of(&spec.base_name, &spec.name);
    let soft_delete = match mode {
        Mode::SoftDelete => layout.columns.index_of(&settings.delete_column).ok(),
        _ => None,
    };
    let now = commit::history::now_micros();
    let parts = commit::partition::spec_of(&layout.columns);
    let sink = Mutex::new(FileSink::start(
        table.clone(),
        commit::encode::with_plain_encodings(&layout.columns, settings.plain_encodings),
        writers,
    )?);
    // The reader blocks on the writers when they fall behind: leave this worker thread to
    // the runtime meanwhile.
    let read = tokio::task::block_in_place(|| {
        inputs
            .par_iter()
            .zip(plans.par_iter())
            .enumerate()
            .map(|(k, ((i, inp), plan))| {
                let mut rows = 0usize;
                let each = |b: RecordBatch| {
                    rows += b.num_rows();
                    let b = commit::partition::fill(b, &parts)?;
                    let b = match soft_delete {
                        Some(flag) => crate::change::with_flag(&b, flag, false)?,
                        None if mode == Mode::History => commit::history::refresh_rows(&b, now)?,
                        None => b,
                    };
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

/// Where a new table's column types come from: the existing table's, else declared, else
/// from Parquet, else inferred from every CSV value.
struct TypeSources<'s, 'i> {
    names: &'s [String],
    existing: Option<&'s SchemaRef>,
    base: &'s str,
    channel: &'s str,
    settings: &'s Settings,
    inputs: &'s [(usize, Input<'i>)],
    headers: &'s [Vec<String>],
    /// How the table is partitioned (commit::partition).
    partitioning: &'s [PartExpr],
}

/// What inference found in each input, by file position (`None` where it did not look).
type PerInput = Vec<Option<Vec<Inference>>>;

/// Pieces of CSV a refresh reads up front to guess its types.
const SAMPLE_PIECES: usize = 8;

impl<'s, 'i> TypeSources<'s, 'i> {
    fn new(
        names: &'s [String],
        existing: Option<&'s SchemaRef>,
        spec: &'s TableSpec,
        settings: &'s Settings,
        inputs: &'s [(usize, Input<'i>)],
        headers: &'s [Vec<String>],
        partitioning: &'s [PartExpr],
    ) -> Self {
        TypeSources {
            names,
            existing,
            base: &spec.base_name,
            channel: &spec.name,
            settings,
            inputs,
            headers,
            partitioning,
        }
    }

    fn declared(&self, col: &str) -> Option<DeclaredType> {
        if col.eq_ignore_ascii_case(&self.settings.seq_column) {
            // hvr_integ_seq is hex text, even when a file's values are all digits.
            return Some(DeclaredType::String);
        }
        [self.base, self.channel].iter().find_map(|t| {
            self.settings
                .types
                .get(&t.to_ascii_lowercase())?
                .get(&col.to_ascii_lowercase())
                .copied()
        })
    }

    fn existing_field(&self, n: &str) -> Option<Arc<Field>> {
        self.existing.and_then(|e| {
            e.fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(n))
                .cloned()
        })
    }

    /// Whether some column's type can only come from CSV values.
    fn need_inference(&self) -> bool {
        self.names
            .iter()
            .any(|n| self.declared(n).is_none() && self.existing_field(n).is_none())
    }

    /// How the read makes sure no value after `sample` changes column `n`'s type unnoticed.
    /// Settled: it does not come from CSV values, or the sample saw text in it (inference only
    /// ever widens, and text is the widest), or a date or a timestamp (decoding parses every
    /// value with the very parser inference uses, so a value that decodes keeps the guess, and
    /// one that does not fails the read and the full pass takes over). Strict: an integer,
    /// decimal or boolean, decoded by inference's rules to the same effect. Otherwise every
    /// value is inferred as it is decoded.
    fn check(&self, n: &str, sample: &[Option<Vec<Inference>>]) -> Check {
        if self.declared(n).is_some() || self.existing_field(n).is_some() {
            return Check::Settled;
        }
        if !self.names.iter().any(|c| c.eq_ignore_ascii_case(n)) {
            return Check::Settled;
        }
        let inf = self.merged(n, sample);
        if inf.seen() == 0 {
            return Check::Infer;
        }
        let guess = inf.result();
        if matches!(
            guess,
            DeclaredType::String | DeclaredType::Date | DeclaredType::Timestamp
        ) {
            Check::Settled
        } else if crate::read::types::strict_checkable(&guess.arrow()) {
            Check::Strict
        } else {
            Check::Infer
        }
    }

    /// What every input's inference says of column `n`, together.
    fn merged(&self, n: &str, inferred: &[Option<Vec<Inference>>]) -> Inference {
        let mut inf = Inference::default();
        for (k, per_pos) in inferred.iter().enumerate() {
            if let (Some(per_pos), Some(pos)) = (
                per_pos,
                self.headers[k]
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(n)),
            ) {
                inf.merge(&per_pos[pos]);
            }
        }
        inf
    }

    /// Every CSV value of every file, in parallel.
    fn infer_all(&self) -> Result<PerInput> {
        self.inputs
            .par_iter()
            .map(|(_, inp)| match inp {
                Input::Csv(c) => c.infer().map(Some),
                Input::Parquet(_) => Ok(None),
            })
            .collect::<Result<_>>()
            .context(self.base)
    }

    /// The existing columns with the types their CSV values need, where Delta's type widening
    /// allows it ([`Inference::widening`]); None when no column widens.
    fn widened(&self) -> Result<Option<SchemaRef>> {
        let Some(existing) = self.existing else {
            return Ok(None);
        };
        let inferred = self.infer_all()?;
        let mut changed = false;
        let fields: Vec<Field> = existing
            .fields()
            .iter()
            .map(
                |f| match self.merged(f.name(), &inferred).widening(f.data_type()) {
                    Some(t) if self.declared(f.name()).is_none() => {
                        changed = true;
                        f.as_ref().clone().with_data_type(t)
                    }
                    _ => f.as_ref().clone(),
                },
            )
            .collect();
        Ok(changed.then(|| Arc::new(Schema::new(fields))))
    }

    /// The first pieces of the first CSV files: a guess.
    fn sample(&self) -> Result<PerInput> {
        let mut left = SAMPLE_PIECES;
        let mut out = Vec::with_capacity(self.inputs.len());
        for (_, inp) in self.inputs {
            out.push(match inp {
                Input::Csv(c) if left > 0 => {
                    let (inf, read) = c.infer_sample(left).context(self.base)?;
                    left = left.saturating_sub(read);
                    Some(inf)
                }
                _ => None,
            });
        }
        Ok(out)
    }

    /// The columns, given what inference found in each input (`None` where it did not look).
    fn resolve(&self, inferred: &[Option<Vec<Inference>>]) -> Result<SchemaRef> {
        let mut fields = Vec::with_capacity(self.names.len());
        for n in self.names {
            if let Some(f) = self.existing_field(n) {
                fields.push(f.as_ref().clone());
                continue;
            }
            let ty: DataType = match self.declared(n) {
                Some(t) => t.arrow(),
                None => {
                    let parquet_type = self.inputs.iter().enumerate().find_map(|(k, (_, inp))| {
                        let pos = self.headers[k]
                            .iter()
                            .position(|h| h.eq_ignore_ascii_case(n))?;
                        match inp {
                            Input::Parquet(p) => Some(p.column_type(pos)),
                            Input::Csv(_) => None,
                        }
                    });
                    parquet_type.unwrap_or_else(|| self.merged(n, inferred).result().arrow())
                }
            };
            fields.push(Field::new(n, ty, true));
        }
        if self.settings.mode_of(self.base, self.channel) == Mode::History {
            // The validity columns, after the data columns (kept where they are).
            for f in commit::history::fields() {
                if let Some(data) = self.names.iter().find(|n| n.eq_ignore_ascii_case(f.name())) {
                    if self.existing_field(data).is_none() {
                        bail!(
                            "{}: column '{data}' has the name of a column hvrlake adds in mode=history ({}); rename it on the way (ColumnProperties /BaseName) or use another mode",
                            self.base,
                            commit::history::fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    continue;
                }
                fields.push(f);
            }
        }
        if self.settings.mode_of(self.base, self.channel) == Mode::SoftDelete {
            // The deletion flag and time, after the data columns (kept where they are).
            for (name, ty) in [
                (&self.settings.delete_column, DataType::Boolean),
                (
                    &self.settings.deleted_at_column,
                    DeclaredType::Timestamp.arrow(),
                ),
            ] {
                if !fields.iter().any(|f| f.name().eq_ignore_ascii_case(name)) {
                    fields.push(match self.existing_field(name) {
                        Some(f) => f.as_ref().clone(),
                        None => Field::new(name, ty, true),
                    });
                }
            }
        }
        let columns = commit::partition::with_spec(
            Arc::new(Schema::new(fields)),
            self.partitioning,
            self.base,
        )?;
        if self.existing.is_some() || !self.settings.deletion_vectors {
            return Ok(columns);
        }
        // A new table: merges mark changed rows in deletion vectors (commit::create sets the
        // property the columns carry).
        let mut meta = columns.metadata().clone();
        meta.insert(
            commit::deletion_vectors::PROPERTY.to_string(),
            "true".to_string(),
        );
        Ok(Arc::new(Schema::new_with_metadata(
            columns.fields().clone(),
            meta,
        )))
    }
}
