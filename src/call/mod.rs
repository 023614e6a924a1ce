//! The top: one call of hvrlake over a cycle's files. An AgentPlugin call ([`agent`]) or a
//! backfill ([`backfill`]) builds the tables of the call and their files ([`Call`]); then
//! every table is read and checked ([`prepare`]) before any is committed, each table is
//! committed in turn ([`cycle`]), compacted when its policy says so ([`compact`]), and the
//! files are removed. After an interrupted cycle, [`recover`] finds what is left.

pub mod agent;
pub mod backfill;
mod compact;
pub mod cycle;
mod prepare;
mod recover;
pub mod spec;

use std::io::Write;

use crate::bail;
use crate::error::Result;
use crate::hvr::env::HvrTable;
use crate::hvr::files::{FilePattern, cycle_order};
use crate::input::{self, InputFile};
use crate::settings::Settings;
use crate::table::progress;
use spec::{Kind, TableSpec};

/// The memory a call's reading may take by default: an eighth of the machine's memory (the
/// Arrow form of a CSV batch and the merge around it take a few times the files' size).
pub(crate) fn memory_budget() -> u64 {
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

/// What every step of a call needs.
pub struct Call<'a> {
    pub mode: &'a str,
    pub channel: &'a str,
    pub location: &'a str,
    pub settings: &'a Settings,
    pub pattern: &'a FilePattern,
    pub loc: Option<&'a input::Location>,
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
                captured_ms: t.captured_ms,
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
        cycle::run(kind, specs.clone(), self.settings, |s| {
            let _ = writeln!(stdout.lock(), "hvrlake: {mode}: {s}");
        })
        .await?;
        crate::diag::failpoint("before_remove");
        if !self.settings.keep_files {
            crate::input::remove(specs.iter().flat_map(|s| &s.files)).await;
        }
        Ok(())
    }
}
