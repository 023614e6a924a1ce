//! One call's work, per table: read every file, then commit each table in turn, retrying a
//! commit that lost to another writer or whose outcome is unknown. All tables are read and checked before any table is written, so bad input changes nothing.

use std::time::Instant;

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

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

/// Runs one call over `tables`: reads all, then commits each (the caller removes the files).
/// `report` receives each table's summary as soon as its commit is done.
pub async fn run(
    kind: Kind,
    tables: Vec<TableSpec>,
    settings: &Settings,
    mut report: impl FnMut(&Summary),
) -> Result<Vec<Summary>> {
    storage::register_stores();
    let lake = storage::lake_url(&settings.target)?;
    let storage_options = settings.storage.clone();
    let mut steps: Vec<Step> = Vec::with_capacity(tables.len());
    let mut store_checked = settings.single_writer;
    for spec in tables {
        let started = Instant::now();
        let step = async {
            let url = storage::table_url(&lake, &spec.base_name)?;
            let table = table::open(&url, &storage_options)
                .await
                .context(&spec.base_name)?;
            stage_time(&spec.base_name, "open", started);
            if !store_checked {
                // Once per call: every table of a lake is on the same store.
                table::check_conditional_writes(&table)
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
            let p = super::prepare::prepare(kind, spec, table, settings, started).await;
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
                    table = table::open(&url, &storage_options).await.context(&name)?;
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
        };
        report(&s);
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
        summaries.push(s);
    }
    Ok(summaries)
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
