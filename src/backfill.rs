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

use crate::bail;
use crate::commit::{self, progress};
use crate::error::{Context, Error, Result};
use crate::hvr::files::{FilePattern, cycle_order};
use crate::pipeline::{self, InputFile, Kind, TableSpec};
use crate::settings::Settings;
use crate::storage::{self, Location};

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

/// The default budget: a quarter of the machine's memory (the Arrow form of a CSV batch and
/// the merge around it take a few times the files' size).
fn default_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024);
    (total / 8).max(64 << 20)
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
    commit::register_stores();
    let lake = storage::lake_url(&settings.target)?;
    let pattern = FilePattern::new(&settings.file_pattern)?;
    let budget = args.max_memory.unwrap_or_else(default_budget);
    let mut locations = Vec::new();
    let refresh = scan(&args.refresh, &pattern, &settings, &mut locations).await?;
    let changes = scan(&args.sources, &pattern, &settings, &mut locations).await?;
    let plan = group(refresh, changes);
    let base_of = |t: &str| args.bases.get(t).cloned().unwrap_or_else(|| t.to_string());

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
    let mut started_tables: HashMap<String, bool> = HashMap::new();
    for t in &tables {
        let base = base_of(t);
        let url = storage::table_url(&lake, &base)?;
        let table = commit::open(&url, &settings.storage).await.context(&base)?;
        let exists = commit::exists(&table);
        if !exists && !args.keys.contains_key(t) && !args.dry_run {
            bail!(
                "table {t}: the target has no table {base} yet: give its key columns with --keys {t}=COL[,COL...]"
            );
        }
        let entry = progress::last_entry(&table, &app_id(&base))
            .await
            .context(&base)?;
        started_tables.insert(t.clone(), entry.is_some());
        done.insert(
            t.clone(),
            entry.and_then(|e| e["cycle"].as_str().map(str::to_string)),
        );
    }
    // A refresh to load makes every cycle up to its own stamp history.
    for (t, files) in &plan.refresh {
        if !started_tables.get(t).copied().unwrap_or(false)
            && let Some(stamp) = files
                .iter()
                .map(|f| f.stamp.as_str())
                .max_by_key(|s| cycle_order(s))
        {
            done.insert(t.clone(), Some(stamp.to_string()));
        }
    }
    let is_done = |t: &str, stamp: &str| {
        done.get(t)
            .cloned()
            .flatten()
            .is_some_and(|d| cycle_order(&d) >= cycle_order(stamp))
    };

    // Batches of whole cycles within the budget.
    let mut batches: Vec<Vec<&(String, Vec<Found>)>> = Vec::new();
    let mut size = 0u64;
    for c in &plan.cycles {
        let bytes: u64 =
            c.1.iter()
                .filter(|f| !is_done(&f.table, &c.0))
                .map(|f| f.bytes)
                .sum();
        if bytes == 0 {
            continue;
        }
        if batches.is_empty() || size + bytes > budget {
            batches.push(Vec::new());
            size = 0;
        }
        batches.last_mut().expect("a batch").push(c);
        size += bytes;
    }
    let refresh_todo: Vec<(&String, &Vec<Found>)> = plan
        .refresh
        .iter()
        .filter(|(t, _)| !started_tables.get(*t).copied().unwrap_or(false))
        .collect();
    let total_bytes: u64 = refresh_todo
        .iter()
        .flat_map(|(_, f)| f.iter())
        .map(|f| f.bytes)
        .sum::<u64>()
        + batches
            .iter()
            .flatten()
            .flat_map(|c| c.1.iter())
            .filter(|f| !is_done(&f.table, &f.stamp))
            .map(|f| f.bytes)
            .sum::<u64>();
    let skipped_cycles = plan.cycles.len() - batches.iter().map(Vec::len).sum::<usize>();
    println!(
        "hvrlake: backfill: {} table(s), {} refresh(es), {} cycle(s) to apply in {} batch(es) of at most {} MB ({} cycle(s) already applied), {:.1} MB of files",
        tables.len(),
        refresh_todo.len(),
        batches.iter().map(Vec::len).sum::<usize>(),
        batches.len(),
        budget >> 20,
        skipped_cycles,
        total_bytes as f64 / 1e6
    );
    if args.dry_run {
        for t in &tables {
            let r = plan.refresh.get(t).map_or(0, Vec::len);
            let cycles: Vec<&String> = plan
                .cycles
                .iter()
                .filter(|c| c.1.iter().any(|f| &f.table == t) && !is_done(t, &c.0))
                .map(|c| &c.0)
                .collect();
            println!(
                "hvrlake: backfill: dry run: {} -> {}: refresh files {}, cycles {} ({} .. {}), done up to {}",
                t,
                base_of(t),
                if started_tables[t] { 0 } else { r },
                cycles.len(),
                cycles.first().map_or("-", |s| s.as_str()),
                cycles.last().map_or("-", |s| s.as_str()),
                done[t].as_deref().unwrap_or("-")
            );
        }
        return Ok(());
    }

    let progress = Progress::new(total_bytes);
    let spec = |t: &str, files: Vec<&Found>| -> Result<TableSpec> {
        let base = base_of(t);
        let cycle = files
            .iter()
            .map(|f| f.stamp.as_str())
            .max_by_key(|s| cycle_order(s))
            .map(str::to_string);
        let files = files
            .into_iter()
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
        })
    };
    let report = |s: &pipeline::Summary| println!("hvrlake: backfill: {s}");
    for (t, files) in refresh_todo {
        let specs = vec![spec(t, files.iter().collect())?];
        pipeline::run(Kind::Refresh, specs.clone(), &settings, report).await?;
        finish(
            &specs,
            &settings,
            &progress,
            files.iter().map(|f| f.bytes).sum(),
        )
        .await;
    }
    for (n, batch) in batches.iter().enumerate() {
        let mut per_table: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
        let mut bytes = 0;
        for (stamp, files) in batch.iter().map(|c| (&c.0, &c.1)) {
            for f in files.iter().filter(|f| !is_done(&f.table, stamp)) {
                per_table.entry(f.table.as_str()).or_default().push(f);
                bytes += f.bytes;
            }
        }
        let specs = per_table
            .into_iter()
            .map(|(t, files)| spec(t, files))
            .collect::<Result<Vec<_>>>()?;
        println!(
            "hvrlake: backfill: batch {}/{}: cycles {} .. {} ({} cycle(s), {} table(s))",
            n + 1,
            batches.len(),
            batch.first().map_or("", |c| c.0.as_str()),
            batch.last().map_or("", |c| c.0.as_str()),
            batch.len(),
            specs.len()
        );
        pipeline::run(Kind::Integrate, specs.clone(), &settings, report).await?;
        crate::failpoint(&format!("backfill_batch:{}", n + 1));
        finish(&specs, &settings, &progress, bytes).await;
    }
    println!(
        "hvrlake: backfill: done: {:.1} MB in {:.1} s",
        progress.total as f64 / 1e6,
        progress.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The app id under which a table's backfill progress is recorded.
fn app_id(base: &str) -> String {
    format!("hvrlake/backfill/{base}")
}

/// After a batch: removes its files when asked, and prints where the backfill stands.
async fn finish(specs: &[TableSpec], settings: &Settings, progress: &Progress, bytes: u64) {
    if !settings.keep_files {
        crate::hvr::call::remove(specs.iter().flat_map(|s| &s.files)).await;
    }
    progress.advance(specs.iter().map(|s| s.files.len()).sum(), bytes);
}

/// Files and bytes done, rate and time left, as a line per batch.
struct Progress {
    total: u64,
    started: Instant,
    done: std::sync::Mutex<(usize, u64)>,
    terminal: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            total,
            started: Instant::now(),
            done: std::sync::Mutex::new((0, 0)),
            terminal: std::io::stdout().is_terminal(),
        }
    }

    fn advance(&self, files: usize, bytes: u64) {
        let mut d = self.done.lock().expect("progress");
        d.0 += files;
        d.1 += bytes;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = d.1 as f64 / secs;
        let left = self.total.saturating_sub(d.1) as f64 / rate.max(1.0);
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * d.1 as f64 / self.total as f64
        };
        let bar = if self.terminal {
            let n = (pct / 5.0) as usize;
            format!("[{}{}] ", "#".repeat(n.min(20)), ".".repeat(20 - n.min(20)))
        } else {
            String::new()
        };
        println!(
            "hvrlake: backfill: {bar}{pct:.0}% files={} bytes={:.1}MB rate={:.1}MB/s eta={:.0}s",
            d.0,
            d.1 as f64 / 1e6,
            rate / 1e6,
            left
        );
    }
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
