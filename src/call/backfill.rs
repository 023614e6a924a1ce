//! `hvrlake backfill`: builds the lake from HVR files that already exist (a refresh, then
//! many integrate cycles), resumably and exactly once.
//!
//! The files of every SOURCE (a directory, a glob, or an `s3://`/`az://`/`abfss://` prefix)
//! are matched to tables by `file_pattern` and to cycles by the `{hvr_integ_tstamp}` of their
//! names. Refresh sources (`--refresh`) load first, one overwrite per table. The change
//! cycles are then applied in stamp order, many cycles per commit: cycles are gathered into
//! a batch until their files reach the memory budget (`--max-memory`), and each batch is one
//! pipeline call, one commit per table. Each commit records, under the app id
//! `hvrlake/backfill/<table>`, the newest cycle stamp it holds; a backfill run again skips
//! every cycle at or before what each table records, so a killed backfill continues where it
//! stopped.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;

use super::cycle;
use super::spec::{Kind, TableSpec};
use crate::bail;
use crate::error::{Context, Error, Result};
use crate::hvr::files::{FilePattern, cycle_order};
use crate::input::InputFile;
use crate::input::Location;
use crate::settings::Settings;
use crate::storage;
use crate::table::{self, progress};

/// The command line of `hvrlake backfill`, parsed.
#[derive(Debug, Default)]
pub struct Args {
    /// Settings as `name=value` words (the same as the agent's userarg), `target` included.
    pub settings: Vec<String>,
    /// Key columns per table (channel name, lower case).
    pub keys: HashMap<String, Vec<String>>,
    /// Target names per table (`sch.T`), when not the table's own name.
    pub bases: HashMap<String, String>,
    /// Sources of full loads.
    pub refresh: Vec<String>,
    /// Sources of change files.
    pub sources: Vec<String>,
    /// Remove the files once their table has them.
    pub remove_files: bool,
    /// Only say what would be done.
    pub dry_run: bool,
    /// Budget for one batch of cycles, in bytes of input files.
    pub max_memory: Option<u64>,
}

/// The usage line of the subcommand.
pub const USAGE: &str = "hvrlake backfill --target URL [--keys TABLE=COL[,COL...]]... [--base TABLE=SCHEMA.TABLE]... [--refresh SOURCE]... [--remove-files] [--dry-run] [--max-memory SIZE] [NAME=VALUE]... SOURCE...";

impl Args {
    /// Parses the words after `backfill`.
    pub fn parse(words: &[String]) -> Result<Self> {
        let mut a = Args::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (w.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline.clone().or_else(|| it.next().cloned()) {
                    Some(v) => Ok(v),
                    None => bail!("backfill: {name} needs a value; usage: {USAGE}"),
                }
            };
            match flag {
                "--target" => a.settings.push(format!("target={}", value("--target")?)),
                "--keys" => {
                    let v = value("--keys")?;
                    let Some((t, cols)) = v.split_once('=') else {
                        bail!("backfill: --keys {v}: expected TABLE=COL[,COL...]");
                    };
                    let cols: Vec<String> = cols
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if cols.is_empty() {
                        bail!("backfill: --keys {v}: no key column");
                    }
                    a.keys.insert(t.to_ascii_lowercase(), cols);
                }
                "--base" => {
                    let v = value("--base")?;
                    let Some((t, b)) = v.split_once('=') else {
                        bail!("backfill: --base {v}: expected TABLE=SCHEMA.TABLE");
                    };
                    a.bases.insert(t.to_ascii_lowercase(), b.to_string());
                }
                "--refresh" => a.refresh.push(value("--refresh")?),
                "--max-memory" => {
                    let v = value("--max-memory")?;
                    a.max_memory = Some(parse_size(&v).ok_or_else(|| {
                        Error::msg(format!(
                            "backfill: --max-memory {v}: expected a size such as 512M or 4G"
                        ))
                    })?);
                }
                "--remove-files" => a.remove_files = true,
                "--dry-run" => a.dry_run = true,
                f if f.starts_with("--") => bail!("backfill: unknown option {f}; usage: {USAGE}"),
                s if s.contains('=') && !s.contains('/') && !s.contains("://") => {
                    a.settings.push(s.to_string())
                }
                s => a.sources.push(s.to_string()),
            }
        }
        if a.sources.is_empty() && a.refresh.is_empty() {
            bail!("backfill: no SOURCE given; usage: {USAGE}");
        }
        Ok(a)
    }
}

/// `512M`, `4G`, `1.5G`, or plain bytes.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        (i, 't' | 'T') => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

/// One file found in a source.
#[derive(Clone, Debug)]
struct Found {
    location: usize,
    name: String,
    table: String,
    stamp: String,
    bytes: u64,
}

/// Opens the sources and lists the files that belong to tables.
async fn scan(
    sources: &[String],
    pattern: &FilePattern,
    settings: &Settings,
    locations: &mut Vec<Location>,
) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for src in sources {
        for (loc, only) in open_source(src, settings)? {
            let idx = locations.len();
            let files = loc
                .list(None)
                .await
                .with_context(|| format!("source {src}"))?;
            locations.push(loc);
            for (name, bytes) in files {
                if only.as_ref().is_some_and(|o| o != &name) {
                    continue;
                }
                let Some(table) = pattern.table_of(&name) else {
                    eprintln!(
                        "W_JX0E00: {src}: {name}: skipped, its name does not match file_pattern ({})",
                        settings.file_pattern
                    );
                    continue;
                };
                found.push(Found {
                    location: idx,
                    table: table.to_ascii_lowercase(),
                    stamp: pattern.cycle_of(&name).unwrap_or("").to_string(),
                    name,
                    bytes,
                });
            }
        }
    }
    Ok(found)
}

/// A source as locations to list: a directory or an object-store prefix is one; a glob is
/// each directory it matches, and the parent of each file it matches (that file only).
fn open_source(src: &str, settings: &Settings) -> Result<Vec<(Location, Option<String>)>> {
    if src.contains("://") && !src.starts_with("file://") {
        let loc = Location::open(&storage::file_loc(src)?, &settings.storage)?;
        return Ok(vec![(loc, None)]);
    }
    let path = src.strip_prefix("file://").unwrap_or(src);
    if !path.contains(['*', '?']) {
        let p = PathBuf::from(path);
        if !p.is_dir() {
            bail!("source {src}: not a directory");
        }
        return Ok(vec![(Location::Local(p), None)]);
    }
    // A glob: the directory before the first wildcard, and the rest as a pattern.
    let parts: Vec<&str> = path.split('/').collect();
    let first = parts
        .iter()
        .position(|p| p.contains(['*', '?']))
        .expect("a wildcard");
    let base = if first == 0 {
        PathBuf::from(".")
    } else {
        PathBuf::from(parts[..first].join("/"))
    };
    let mut re = String::from("^");
    for (i, part) in parts[first..].iter().enumerate() {
        if i > 0 {
            re.push('/');
        }
        for c in part.chars() {
            match c {
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
    }
    re.push('$');
    let re = regex::Regex::new(&re).map_err(|e| Error::msg(format!("source {src}: {e}")))?;
    if !base.is_dir() {
        bail!("source {src}: directory {} does not exist", base.display());
    }
    let mut out = Vec::new();
    let mut todo = vec![base.clone()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let Ok(rel) = path.strip_prefix(&base) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if re.is_match(&rel) {
                if path.is_dir() {
                    out.push((Location::Local(path), None));
                } else if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
                    let name = name.to_string_lossy().into_owned();
                    out.push((Location::Local(parent.to_path_buf()), Some(name)));
                }
            } else if path.is_dir() && rel.matches('/').count() + 1 < parts.len() - first {
                todo.push(path);
            }
        }
    }
    if out.is_empty() {
        bail!("source {src}: matches nothing");
    }
    Ok(out)
}

/// Per-table work of a backfill.
struct Plan {
    /// Refresh files per table.
    refresh: BTreeMap<String, Vec<Found>>,
    /// Change files by cycle, oldest first.
    cycles: Vec<(String, Vec<Found>)>,
}

fn group(refresh: Vec<Found>, changes: Vec<Found>) -> Plan {
    let mut r: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for f in refresh {
        r.entry(f.table.clone()).or_default().push(f);
    }
    for files in r.values_mut() {
        files.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut c: BTreeMap<(bool, usize, String), (String, Vec<Found>)> = BTreeMap::new();
    for f in changes {
        let (d, l, t) = cycle_order(&f.stamp);
        c.entry((d, l, t.to_string()))
            .or_insert_with(|| (f.stamp.clone(), Vec::new()))
            .1
            .push(f);
    }
    let cycles = c
        .into_values()
        .map(|(s, mut files)| {
            files.sort_by(|a, b| a.name.cmp(&b.name));
            (s, files)
        })
        .collect();
    Plan { refresh: r, cycles }
}

/// Runs `hvrlake backfill`; prints progress and a summary on stdout.
pub async fn run(args: Args, env: &HashMap<String, String>) -> Result<()> {
    let userarg = args
        .settings
        .iter()
        .map(|s| match s.split_once('=') {
            Some((n, v)) if v.contains(char::is_whitespace) => format!("{n}='{v}'"),
            _ => s.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut settings = Settings::from_sources(Some(&userarg), env)?;
    settings.keep_files = !args.remove_files;
    storage::register_stores();
    let lake = storage::lake_url(&settings.target)?;
    let pattern = FilePattern::new(&settings.file_pattern)?;
    let budget = args.max_memory.unwrap_or_else(super::memory_budget);
    let mut locations = Vec::new();
    let refresh = scan(&args.refresh, &pattern, &settings, &mut locations).await?;
    let changes = scan(&args.sources, &pattern, &settings, &mut locations).await?;
    let plan = group(refresh, changes);
    let standing = Standing::read(&plan, &args, &settings, &lake).await?;
    let tables = &standing.tables;
    // Each table's work: its refresh, then its cycles in batches within its share of the
    // budget. Tables run side by side.
    let parallel = tables.len().clamp(
        1,
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2),
    );
    let share = (budget / parallel as u64).max(1);
    let jobs = jobs(&plan, &standing, share);
    let total_bytes: u64 = jobs
        .iter()
        .flat_map(|j| j.refresh.iter().flatten().chain(j.batches.iter().flatten()))
        .map(|f| f.bytes)
        .sum();
    let all_cycles = plan.cycles.len();
    let cycles_to_apply = plan
        .cycles
        .iter()
        .filter(|(stamp, files)| files.iter().any(|f| !standing.is_done(&f.table, stamp)))
        .count();
    println!(
        "hvrlake: backfill: {} table(s), {} refresh(es), {} cycle(s) to apply in {} batch(es) of at most {:.1} MB per table, {} table(s) at a time ({} cycle(s) already applied), {:.1} MB of files",
        tables.len(),
        jobs.iter().filter(|j| j.refresh.is_some()).count(),
        cycles_to_apply,
        jobs.iter().map(|j| j.batches.len()).sum::<usize>(),
        share as f64 / (1 << 20) as f64,
        parallel,
        all_cycles - cycles_to_apply,
        total_bytes as f64 / 1e6
    );
    if args.dry_run {
        dry_run(&args, &plan, &jobs, &standing);
        return Ok(());
    }

    let progress = Progress::new(&jobs);
    let spec = |t: &str, files: &[&Found]| -> Result<TableSpec> {
        let base = base_of(&args, t);
        let cycle = files
            .iter()
            .map(|f| f.stamp.as_str())
            .max_by_key(|s| cycle_order(s))
            .map(str::to_string);
        let files = files
            .iter()
            .map(|f| {
                Ok(InputFile {
                    name: f.name.clone(),
                    source: locations[f.location].file(&f.name)?,
                    expected_rows: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TableSpec {
            name: t.to_string(),
            base_name: base.clone(),
            keys: args.keys.get(t).cloned().unwrap_or_default(),
            columns: Vec::new(),
            channel_columns: Vec::new(),
            files,
            app_id: Some(app_id(&base)),
            cycle,
            captured_ms: None,
        })
    };
    let batches_done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<()>> = futures::stream::iter(jobs.iter())
        .map(|job| run_job(job, &spec, &settings, &progress, &batches_done))
        .buffer_unordered(parallel)
        .collect()
        .await;
    progress.finish();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// Where the tables of a backfill stand: every table of the plan, the newest cycle its
/// backfill progress records (a refresh still to load counts as every cycle up to its own
/// stamp), and whether it has any progress at all.
struct Standing {
    tables: Vec<String>,
    done: HashMap<String, Option<String>>,
    started: HashMap<String, bool>,
}

impl Standing {
    async fn read(plan: &Plan, args: &Args, settings: &Settings, lake: &url::Url) -> Result<Self> {
        // Where each table stands: the newest cycle its backfill progress records.
        let mut tables: Vec<String> = plan.refresh.keys().cloned().collect();
        for (_, files) in &plan.cycles {
            for f in files {
                if !tables.contains(&f.table) {
                    tables.push(f.table.clone());
                }
            }
        }
        let mut done: HashMap<String, Option<String>> = HashMap::new();
        let mut started: HashMap<String, bool> = HashMap::new();
        for t in &tables {
            let base = base_of(args, t);
            let url = storage::table_url(lake, &base)?;
            let table = table::open(&url, &settings.storage).await.context(&base)?;
            let exists = table::exists(&table);
            if !exists && !args.keys.contains_key(t) && !args.dry_run {
                bail!(
                    "table {t}: the target has no table {base} yet: give its key columns with --keys {t}=COL[,COL...]"
                );
            }
            let entry = progress::last_entry(&table, &app_id(&base))
                .await
                .context(&base)?;
            started.insert(t.clone(), entry.is_some());
            done.insert(
                t.clone(),
                entry.and_then(|e| e["cycle"].as_str().map(str::to_string)),
            );
        }
        // A refresh to load makes every cycle up to its own stamp history.
        for (t, files) in &plan.refresh {
            if !started.get(t).copied().unwrap_or(false)
                && let Some(stamp) = files
                    .iter()
                    .map(|f| f.stamp.as_str())
                    .max_by_key(|s| cycle_order(s))
            {
                done.insert(t.clone(), Some(stamp.to_string()));
            }
        }

        Ok(Standing {
            tables,
            done,
            started,
        })
    }

    /// Whether table `t` has the cycle `stamp` already.
    fn is_done(&self, t: &str, stamp: &str) -> bool {
        self.done
            .get(t)
            .cloned()
            .flatten()
            .is_some_and(|d| cycle_order(&d) >= cycle_order(stamp))
    }

    /// Whether table `t` has any backfill progress.
    fn started(&self, t: &str) -> bool {
        self.started.get(t).copied().unwrap_or(false)
    }
}

/// Each table's work: its refresh (unless it started already), then the cycles it does not
/// have, in batches of at most `share` bytes.
fn jobs<'p>(plan: &'p Plan, standing: &Standing, share: u64) -> Vec<Job<'p>> {
    let mut jobs: Vec<Job> = Vec::new();
    for t in &standing.tables {
        let refresh = plan
            .refresh
            .get(t)
            .filter(|_| !standing.started(t))
            .map(|files| files.iter().collect::<Vec<_>>());
        let mut batches: Vec<Vec<&Found>> = Vec::new();
        let mut cycles_todo = 0;
        let mut size = 0u64;
        for (stamp, files) in &plan.cycles {
            let mine: Vec<&Found> = files
                .iter()
                .filter(|f| &f.table == t && !standing.is_done(t, stamp))
                .collect();
            if mine.is_empty() {
                continue;
            }
            cycles_todo += 1;
            let bytes: u64 = mine.iter().map(|f| f.bytes).sum();
            if batches.is_empty() || size + bytes > share {
                batches.push(Vec::new());
                size = 0;
            }
            batches.last_mut().expect("a batch").extend(mine);
            size += bytes;
        }
        if refresh.is_some() || !batches.is_empty() {
            jobs.push(Job {
                table: t.clone(),
                refresh,
                batches,
                cycles: cycles_todo,
            });
        }
    }
    jobs
}

/// What a dry run prints: each table's refresh files, cycles and batches.
fn dry_run(args: &Args, plan: &Plan, jobs: &[Job], standing: &Standing) {
    for t in &standing.tables {
        let job = jobs.iter().find(|j| &j.table == t);
        let cycles: Vec<&String> = plan
            .cycles
            .iter()
            .filter(|c| c.1.iter().any(|f| &f.table == t) && !standing.is_done(t, &c.0))
            .map(|c| &c.0)
            .collect();
        println!(
            "hvrlake: backfill: dry run: {} -> {}: refresh files {}, cycles {} ({} .. {}) in {} batch(es), done up to {}",
            t,
            base_of(args, t),
            job.and_then(|j| j.refresh.as_ref()).map_or(0, Vec::len),
            cycles.len(),
            cycles.first().map_or("-", |s| s.as_str()),
            cycles.last().map_or("-", |s| s.as_str()),
            job.map_or(0, |j| j.batches.len()),
            standing.done[t].as_deref().unwrap_or("-")
        );
    }
}

/// The target name of table `t`: as `--base` gives it, else its own.
fn base_of(args: &Args, t: &str) -> String {
    args.bases.get(t).cloned().unwrap_or_else(|| t.to_string())
}

/// Runs one table's refresh and batches, in order.
async fn run_job(
    job: &Job<'_>,
    spec: &(dyn Fn(&str, &[&Found]) -> Result<TableSpec> + Sync),
    settings: &Settings,
    progress: &Progress,
    batches_done: &std::sync::atomic::AtomicUsize,
) -> Result<()> {
    let steps = job
        .refresh
        .iter()
        .map(|f| (Kind::Refresh, f))
        .chain(job.batches.iter().map(|b| (Kind::Integrate, b)));
    for (kind, files) in steps {
        let specs = vec![spec(&job.table, files)?];
        cycle::run(kind, specs.clone(), settings, |s| {
            progress.summary(&job.table, s)
        })
        .await?;
        if kind == Kind::Integrate {
            let n = batches_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            crate::diag::failpoint(&format!("backfill_batch:{n}"));
        }
        if !settings.keep_files {
            crate::input::remove(specs.iter().flat_map(|s| &s.files)).await;
        }
        progress.advance(&job.table, files.len(), files.iter().map(|f| f.bytes).sum());
    }
    Ok(())
}

/// The app id under which a table's backfill progress is recorded.
fn app_id(base: &str) -> String {
    format!("hvrlake/backfill/{base}")
}

/// One table's work.
struct Job<'a> {
    table: String,
    refresh: Option<Vec<&'a Found>>,
    batches: Vec<Vec<&'a Found>>,
    cycles: usize,
}

/// Where one table stands.
#[derive(Default, Clone)]
struct TableProgress {
    steps: usize,
    steps_done: usize,
    cycles: usize,
    files: usize,
    bytes: u64,
    bytes_total: u64,
    rows_in: usize,
    inserted: usize,
    updated: usize,
    deleted: usize,
    version: Option<u64>,
}

/// Progress per table and overall: plain lines when stdout is not a terminal, a block of
/// lines redrawn in place on a terminal; a summary table at the end.
struct Progress {
    started: Instant,
    order: Vec<String>,
    state: std::sync::Mutex<(HashMap<String, TableProgress>, usize)>,
    terminal: bool,
}

impl Progress {
    fn new(jobs: &[Job]) -> Self {
        let tables = jobs
            .iter()
            .map(|j| {
                let p = TableProgress {
                    steps: j.batches.len() + usize::from(j.refresh.is_some()),
                    cycles: j.cycles,
                    bytes_total: j
                        .refresh
                        .iter()
                        .flatten()
                        .chain(j.batches.iter().flatten())
                        .map(|f| f.bytes)
                        .sum(),
                    ..TableProgress::default()
                };
                (j.table.clone(), p)
            })
            .collect();
        let p = Progress {
            started: Instant::now(),
            order: jobs.iter().map(|j| j.table.clone()).collect(),
            state: std::sync::Mutex::new((tables, 0)),
            terminal: std::io::stdout().is_terminal()
                && std::env::var_os("HVRLAKE_PROGRESS").is_none_or(|v| v != "plain"),
        };
        if p.terminal {
            let mut st = p.state.lock().expect("progress");
            p.draw(&st.0, 0);
            st.1 = p.order.len() + 1;
        }
        p
    }

    /// A table's commit summary (from the pipeline).
    fn summary(&self, table: &str, s: &cycle::Summary) {
        let mut st = self.state.lock().expect("progress");
        let t = st.0.entry(table.to_string()).or_default();
        t.rows_in += s.rows_in;
        t.inserted += s.outcome.inserted;
        t.updated += s.outcome.updated;
        t.deleted += s.outcome.deleted;
        t.version = s.outcome.version.or(t.version);
        if !self.terminal {
            println!("hvrlake: backfill: {s}");
        }
    }

    /// A step (refresh or batch) of `table` is done.
    fn advance(&self, table: &str, files: usize, bytes: u64) {
        let mut st = self.state.lock().expect("progress");
        let t = st.0.entry(table.to_string()).or_default();
        t.steps_done += 1;
        t.files += files;
        t.bytes += bytes;
        let line = Self::line(table, t, self.started);
        let (tables, drawn) = &mut *st;
        if self.terminal {
            self.draw(tables, *drawn);
            *drawn = self.order.len() + 1;
        } else {
            println!("hvrlake: backfill: {line}");
            println!("hvrlake: backfill: {}", self.overall(tables));
        }
    }

    fn line(table: &str, t: &TableProgress, started: Instant) -> String {
        let pct = if t.bytes_total == 0 {
            100.0
        } else {
            100.0 * t.bytes as f64 / t.bytes_total as f64
        };
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = t.bytes as f64 / secs;
        let eta = if t.bytes == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.0}s",
                t.bytes_total.saturating_sub(t.bytes) as f64 / rate.max(1.0)
            )
        };
        format!(
            "{table:<20} {} {pct:>3.0}% step {}/{} files={} rows={} {:.1}MB {:.1}MB/s eta {}",
            bar(pct),
            t.steps_done,
            t.steps,
            t.files,
            t.rows_in,
            t.bytes as f64 / 1e6,
            rate / 1e6,
            eta
        )
    }

    fn overall(&self, tables: &HashMap<String, TableProgress>) -> String {
        let all = tables.values().fold(TableProgress::default(), |mut a, t| {
            a.steps += t.steps;
            a.steps_done += t.steps_done;
            a.files += t.files;
            a.bytes += t.bytes;
            a.bytes_total += t.bytes_total;
            a.rows_in += t.rows_in;
            a
        });
        Self::line("all tables", &all, self.started)
    }

    /// Redraws the block (one line per table, then the overall line) over the last one.
    fn draw(&self, tables: &HashMap<String, TableProgress>, drawn: usize) {
        use std::io::Write;
        let mut out = String::new();
        if drawn > 0 {
            out.push_str(&format!("\x1b[{drawn}A"));
        }
        for t in &self.order {
            let line = Self::line(t, &tables[t], self.started);
            out.push_str(&format!("\r\x1b[K{line}\n"));
        }
        out.push_str(&format!("\r\x1b[K{}\n", self.overall(tables)));
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(out.as_bytes());
        let _ = o.flush();
    }

    /// The summary table.
    fn finish(&self) {
        let st = self.state.lock().expect("progress");
        println!(
            "hvrlake: backfill: {:<20} {:>6} {:>6} {:>8} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "table",
            "cycles",
            "files",
            "MB",
            "rows_in",
            "inserted",
            "updated",
            "deleted",
            "version"
        );
        for name in &self.order {
            let t = &st.0[name];
            println!(
                "hvrlake: backfill: {:<20} {:>6} {:>6} {:>8.1} {:>10} {:>10} {:>10} {:>10} {:>8}",
                name,
                t.cycles,
                t.files,
                t.bytes as f64 / 1e6,
                t.rows_in,
                t.inserted,
                t.updated,
                t.deleted,
                t.version.map_or("-".to_string(), |v| v.to_string())
            );
        }
        let bytes: u64 = st.0.values().map(|t| t.bytes).sum();
        println!(
            "hvrlake: backfill: done: {} table(s), {:.1} MB in {:.1} s",
            self.order.len(),
            bytes as f64 / 1e6,
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn bar(pct: f64) -> String {
    let n = ((pct / 5.0) as usize).min(20);
    format!("[{}{}]", "#".repeat(n), ".".repeat(20 - n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_sizes() {
        let words: Vec<String> = [
            "--target",
            "/lake",
            "--keys",
            "orders=id",
            "--keys=lines=id,n",
            "--refresh",
            "/old/refresh",
            "csv_null=\\N",
            "/old/cycles",
            "--max-memory",
            "1.5G",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = Args::parse(&words).unwrap();
        assert_eq!(a.settings, vec!["target=/lake", "csv_null=\\N"]);
        assert_eq!(a.keys["lines"], vec!["id", "n"]);
        assert_eq!(a.refresh, vec!["/old/refresh"]);
        assert_eq!(a.sources, vec!["/old/cycles"]);
        assert_eq!(a.max_memory, Some(1610612736));
        assert!(Args::parse(&["--bogus".to_string()]).is_err());
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
