//! One AgentPlugin call, `hvrlake <mode> <channel> <location> [userarg]`: the `*_begin` modes
//! check the settings, the `*_end` modes run the pipeline over the listed files.

use std::collections::HashMap;
use std::io::Write;

use futures::StreamExt;

use super::env::{HvrEnv, HvrTable};
use super::files::{FilePattern, cycle_order};
use crate::bail;
use crate::commit::progress;
use crate::error::{Error, Result};
use crate::pipeline::{self, InputFile, Kind, TableSpec};
use crate::settings::Settings;
use crate::storage;

/// The modes hvrlake acts on; HVR's other modes exit 2 without output.
pub const MODES: &[(&str, &str)] = &[
    ("refr_write_begin", "checks the settings; changes nothing"),
    (
        "refr_write_end",
        "replaces every table in HVR_TBL_NAMES with exactly its refresh rows (no file: the table becomes empty)",
    ),
    ("integ_begin", "checks the settings; changes nothing"),
    (
        "integ_end",
        "applies the cycle's changes: one Delta commit per table, then removes the files",
    ),
];

/// Runs one call. `Ok` means exit 0.
pub async fn run(
    mode: &str,
    channel: &str,
    location: &str,
    userarg: Option<&str>,
    env: &HashMap<String, String>,
) -> Result<()> {
    let settings = Settings::from_sources(userarg, env)?;
    let hvr = HvrEnv::from_env(env)?;
    // The begin modes only check: the settings, the environment and the target URL.
    storage::lake_url(&settings.target)?;
    let kind = match mode {
        "refr_write_begin" | "integ_begin" => return Ok(()),
        "refr_write_end" => Kind::Refresh,
        "integ_end" => Kind::Integrate,
        other => bail!("mode '{other}' is not handled"),
    };
    let pattern = FilePattern::new(&settings.file_pattern)?;
    // One call at a time works on a location's files (held until this function returns).
    let state_dir = super::lock::lock_dir(hvr.state_dir.as_deref(), hvr.file_loc.as_deref());
    let _lock = match &state_dir {
        Some(dir) => Some(super::lock::acquire(
            dir,
            std::time::Duration::from_secs(settings.lock_wait),
        )?),
        None => None,
    };
    let loc = match &hvr.file_loc {
        Some(l) => Some(storage::Location::open(
            &storage::file_loc(l)?,
            &settings.storage,
        )?),
        None if hvr.files.is_empty() => None,
        None => bail!("HVR_FILE_LOC is not set but HVR_FILE_NAMES lists files"),
    };
    let call = Call {
        mode,
        channel,
        location,
        settings: &settings,
        pattern: &pattern,
        loc: loc.as_ref(),
    };
    if kind == Kind::Integrate && hvr.tables.is_empty() && hvr.files.is_empty() {
        // HVR's call after an interrupted integrate job: the earlier cycles' files may still
        // lie in the location.
        return super::recover::leftover_cycles(&call, state_dir.as_deref()).await;
    }
    super::recover::remember(&call, &hvr.tables).await?;
    let files: Vec<(String, Option<u64>)> = hvr
        .files
        .iter()
        .enumerate()
        .map(|(n, f)| (f.clone(), hvr.file_rows.get(n).copied()))
        .collect();
    let specs = call.specs(&hvr.tables, &files)?;
    call.apply(kind, specs).await
}

/// What every step of a call needs.
pub(super) struct Call<'a> {
    pub mode: &'a str,
    pub channel: &'a str,
    pub location: &'a str,
    pub settings: &'a Settings,
    pub pattern: &'a FilePattern,
    pub loc: Option<&'a storage::Location>,
}

impl Call<'_> {
    /// The tables with their files (`(name, rows HVR says it wrote)`), each file matched to
    /// its table by name.
    pub fn specs(
        &self,
        tables: &[HvrTable],
        files: &[(String, Option<u64>)],
    ) -> Result<Vec<TableSpec>> {
        let mut specs: Vec<TableSpec> = tables
            .iter()
            .map(|t| TableSpec {
                name: t.name.clone(),
                base_name: t.base_name.clone(),
                keys: t.keys.clone(),
                columns: t.columns.clone(),
                channel_columns: t.channel_columns.clone(),
                files: Vec::new(),
                app_id: Some(progress::app_id(self.channel, self.location, &t.base_name)),
                cycle: None,
            })
            .collect();
        for (f, rows) in files {
            let Some(table) = self.pattern.table_of(f) else {
                bail!(
                    "file {f}: its name does not match setting 'file_pattern' ({})",
                    self.settings.file_pattern
                );
            };
            let Some(spec) = specs
                .iter_mut()
                .find(|s| s.name.eq_ignore_ascii_case(table))
            else {
                bail!("file {f}: names table '{table}', which is not in HVR_TBL_NAMES");
            };
            let source = self
                .loc
                .expect("a location when files are listed")
                .file(f)?;
            if let Some(stamp) = self.pattern.cycle_of(f)
                && spec
                    .cycle
                    .as_deref()
                    .is_none_or(|c| cycle_order(stamp) > cycle_order(c))
            {
                spec.cycle = Some(stamp.to_string());
            }
            spec.files.push(InputFile {
                name: f.clone(),
                source,
                expected_rows: *rows,
            });
        }
        Ok(specs)
    }

    /// Runs the pipeline over `specs`, then removes their files.
    pub async fn apply(&self, kind: Kind, mut specs: Vec<TableSpec>) -> Result<()> {
        if kind == Kind::Integrate {
            // integ_end lists only tables with changes; a listed table without files has none.
            specs.retain(|s| !s.files.is_empty());
        }
        let stdout = std::io::stdout();
        let mode = self.mode;
        pipeline::run(kind, specs.clone(), self.settings, |s| {
            let _ = writeln!(stdout.lock(), "hvrlake: {mode}: {s}");
        })
        .await?;
        crate::failpoint("before_remove");
        if !self.settings.keep_files {
            remove(specs.iter().flat_map(|s| &s.files)).await;
        }
        Ok(())
    }
}

/// Removes processed files, several DELETEs at once when the location is on object storage;
/// a file that cannot be removed is a warning (its table is committed).
pub(crate) async fn remove<'f>(files: impl Iterator<Item = &'f InputFile>) {
    let mut removed = futures::stream::iter(files)
        .map(|f| async move { (f, f.source.remove().await) })
        .buffer_unordered(16);
    while let Some((f, done)) = removed.next().await {
        if let Err(e) = done {
            eprintln!(
                "W_JX0E00: {}: committed, but the file could not be removed: {e}",
                f.name
            );
        }
    }
}

/// Whether hvrlake handles this mode.
pub fn handles(mode: &str) -> bool {
    MODES.iter().any(|(m, _)| *m == mode)
}

/// Turns an error into the one line HVR shows in the job log.
pub fn error_line(e: &Error) -> String {
    format!(
        "F_JX0D03: {}",
        storage::redact(e.message()).replace('\n', " ")
    )
}
