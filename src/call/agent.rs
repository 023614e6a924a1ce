//! One AgentPlugin call, `hvrlake <mode> <channel> <location> [userarg]`: the `*_begin` modes
//! check the settings, the `*_end` modes run the pipeline over the listed files.

use std::collections::HashMap;

use super::Call;
use super::spec::Kind;
use crate::bail;
use crate::error::{Error, Result};
use crate::hvr::env::HvrEnv;
use crate::hvr::files::FilePattern;
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
    let state_dir = crate::hvr::lock::lock_dir(hvr.state_dir.as_deref(), hvr.file_loc.as_deref());
    let _lock = match &state_dir {
        Some(dir) => Some(crate::hvr::lock::acquire(
            dir,
            std::time::Duration::from_secs(settings.lock_wait),
        )?),
        None => None,
    };
    let loc = match &hvr.file_loc {
        Some(l) => Some(crate::input::Location::open(
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
