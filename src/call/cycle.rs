//! One call's work, per table: read every file, then commit each table, retrying a commit
//! that lost to another writer or whose outcome is unknown. Tables are worked on side by
//! side ([`Settings::tables_in_flight`]); all are read and checked before any is committed,
//! so bad input changes nothing, and each table is one commit with its progress marker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::StreamExt;

use super::prepare::{Payload, Prepared};
use super::spec::{Kind, TableSpec};
use crate::diag::stage_time;
use crate::error::{Context, Result};
use crate::mode::{Apply, Changes};
use crate::settings::Settings;
use crate::table::{self, Outcome, progress};
use crate::{coalesce, storage};

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
    /// Seconds from the capture of the cycle's first row of the table to its commit, when
    /// HVR gave the capture time (`HVR_TBL_CAP_TSTAMP`).
    pub latency: Option<f64>,
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
            latency: None,
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
        )?;
        match self.latency {
            Some(l) => write!(f, " latency={l:.3}"),
            None => Ok(()),
        }
    }
}

/// Runs one call over `tables`: reads all, then commits each (the caller removes the files).
/// Up to [`Settings::tables_in_flight`] tables are read at once, and then committed at once;
/// `report` receives each table's summary as its commit is done, in the order of `tables`.
pub async fn run(
    kind: Kind,
    tables: Vec<TableSpec>,
    settings: &Settings,
    mut report: impl FnMut(&Summary),
) -> Result<Vec<Summary>> {
    storage::register_stores();
    let lake = storage::lake_url(&settings.target)?;
    let width = settings.tables_in_flight(&lake).max(1);
    let call = Shared {
        kind,
        settings,
        lake: &lake,
        store_checked: tokio::sync::OnceCell::new(),
        budget: Budget::new(super::memory_budget()),
        failed: AtomicBool::new(false),
    };
    let read: Vec<Option<Result<Step>>> = futures::stream::iter(tables)
        .map(|spec| call.read(spec))
        .buffered(width)
        .collect()
        .await;
    let mut steps: Vec<Step> = Vec::with_capacity(read.len());
    let mut failure = None;
    for r in read.into_iter().flatten() {
        match r {
            Ok(step) => steps.push(step),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        // Bad input anywhere changes nothing: drop the files staged for other tables.
        for step in steps {
            if let Step::Apply(p) = step {
                p.discard().await;
            }
        }
        return Err(e);
    }
    let ctx = SessionContext::new();
    let mut commits = futures::stream::iter(steps)
        .map(|step| call.commit(&ctx, step))
        .buffered(width);
    let mut summaries = Vec::new();
    while let Some(done) = commits.next().await {
        match done {
            Ok(Some(s)) => {
                report(&s);
                summaries.push(s);
            }
            Ok(None) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    crate::diag::note(format_args!("{}", storage::counted::report()));
    match failure {
        Some(e) => Err(e),
        None => Ok(summaries),
    }
}

/// What the tables of one call share while they are worked on side by side.
struct Shared<'a> {
    kind: Kind,
    settings: &'a Settings,
    lake: &'a url::Url,
    /// Set once the store's conditional writes are checked: once per call, as every table of
    /// a lake is on the same store.
    store_checked: tokio::sync::OnceCell<()>,
    budget: Budget,
    /// A table failed: the tables not started yet are not started.
    failed: AtomicBool,
}

impl Shared<'_> {
    /// Opens and reads one table; None when another table failed before this one started.
    async fn read(&self, spec: TableSpec) -> Option<Result<Step>> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        let done = self.read_table(spec).await;
        if done.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        Some(done)
    }

    async fn read_table(&self, spec: TableSpec) -> Result<Step> {
        let (kind, settings) = (self.kind, self.settings);
        let started = Instant::now();
        let url = storage::table_url(self.lake, &spec.base_name)?;
        let table = table::open(&url, &settings.storage)
            .await
            .context(&spec.base_name)?;
        stage_time(&spec.base_name, "open", started);
        if !settings.single_writer {
            self.store_checked
                .get_or_try_init(|| table::check_conditional_writes(&table))
                .await
                .context(&spec.base_name)?;
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
        let p = super::prepare::prepare(kind, spec, table, settings, &self.budget, started).await;
        stage_time(&name, "read", t);
        p.map(|p| Step::Apply(Box::new(p)))
    }

    /// Commits one table read before (after a failed commit elsewhere, discards it instead);
    /// None when nothing was committed because another table failed.
    async fn commit(&self, ctx: &SessionContext, step: Step) -> Result<Option<Summary>> {
        let p = match step {
            Step::Skip(s) => return Ok(Some(s)),
            Step::Apply(p) => p,
        };
        if self.failed.load(Ordering::Relaxed) {
            p.discard().await;
            return Ok(None);
        }
        let done = self.commit_table(ctx, *p).await;
        if done.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        done.map(Some)
    }

    async fn commit_table(&self, ctx: &SessionContext, mut p: Prepared) -> Result<Summary> {
        let (kind, settings) = (self.kind, self.settings);
        let name = p.spec.base_name.clone();
        let cycle = cycle_of(kind, &p.spec, max_seq(&p.payload));
        let mut table = p.table.clone();
        let mut attempt = 0;
        let outcome = loop {
            match commit_table(ctx, &mut p, settings, table, cycle.as_ref(), attempt > 0).await {
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
                    let url = storage::table_url(self.lake, &name)?;
                    table = table::open(&url, &settings.storage).await.context(&name)?;
                }
                Err(e) => return Err(e.context(&name)),
            }
        };
        // `skipped`: an earlier attempt of this call landed although its answer was lost.
        let (outcome, skipped, table) = outcome;
        crate::diag::note(format_args!("{name}: {}", outcome.files));
        let s = Summary {
            table: name,
            rows_in: if skipped { 0 } else { p.rows_in },
            outcome,
            files: p.spec.files.len(),
            bytes: p.bytes,
            seconds: p.started.elapsed().as_secs_f64(),
            skipped,
            latency: latency(p.spec.captured_ms),
        };
        crate::diag::failpoint(&format!("after_commit:{}", s.table));
        if kind == Kind::Integrate
            && !skipped
            && (settings.compact_small_files > 0
                || settings.compact_every > 0
                || settings.compact_deleted_share > 0.0)
        {
            let app = cycle.as_ref().map(|c| c.app_id.as_str());
            super::compact::compact_if_needed(table, &s.table, app, settings).await;
        }
        Ok(s)
    }
}

/// Seconds from a capture time (ms since the epoch) to now; None without one.
fn latency(captured_ms: Option<i64>) -> Option<f64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    captured_ms.map(|c| (now - c) as f64 / 1000.0)
}

/// The memory the tables being read take at once, in MiB: a table holds its input's size
/// (at most the whole budget) while it is parsed, so many small tables read side by side and
/// big ones one after the other.
pub(super) struct Budget {
    mib: tokio::sync::Semaphore,
    total: u32,
}

impl Budget {
    fn new(bytes: u64) -> Self {
        let total = (bytes >> 20).clamp(1, u32::MAX as u64 >> 4) as u32;
        Budget {
            mib: tokio::sync::Semaphore::new(total as usize),
            total,
        }
    }

    /// Waits until `bytes` of input fit the budget; they are released when the permit drops.
    pub(super) async fn hold(&self, bytes: u64) -> tokio::sync::SemaphorePermit<'_> {
        let want = (bytes.div_ceil(1 << 20)).clamp(1, self.total as u64) as u32;
        self.mib
            .acquire_many(want)
            .await
            .expect("the budget is never closed")
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
        captured_ms: spec.captured_ms,
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
        table::enable_change_data_feed(table, &p.columns, &p.keys).await?
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
        Payload::Changes { .. } => crate::write::widen::widen_types(table, &p.columns).await?,
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
        Payload::Changes {
            changes,
            schema,
            net: kept,
        } => {
            let keeper = mode.keeper();
            let changes = if keeper.coalesces() {
                let t = Instant::now();
                let net = match kept {
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
                            // The net changes hold for any version of the table: a retry
                            // reuses them, and the cycle's changes are freed now, so the
                            // merge's buffers take their memory instead of fresh pages.
                            changes.clear();
                            changes.shrink_to_fit();
                            *kept = Some(net.clone());
                        }
                        net
                    }
                };
                stage_time(name, "coalesce", t);
                Changes::Net(net)
            } else {
                Changes::All {
                    batches: changes,
                    schema,
                }
            };
            let t = Instant::now();
            let options = settings.mode_options();
            let done = keeper
                .apply(Apply {
                    table,
                    changes,
                    columns: &p.columns,
                    keys: &p.keys,
                    mark,
                    options: &options,
                })
                .await;
            stage_time(name, keeper.stage(), t);
            done
        }
    };
    done.map(|(table, outcome)| (outcome, false, table))
}
