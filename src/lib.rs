//! hvrlake loads the files an HVR channel writes into Delta Lake tables, exactly once.
//!
//! The pipeline, in the order data flows:
//! - [`hvr`]: the AgentPlugin call and its `HVR_*` environment → tables and their files;
//! - [`settings`]: userarg + `HVRLAKE_*` + TOML file → one validated [`settings::Settings`];
//! - [`read`]: each file, memory-mapped and parsed in parallel → typed Arrow change batches;
//! - [`change`]: what each `hvr_op` means and how changes are ordered;
//! - [`coalesce`]: the changes of a table → the last change per key (DataFusion);
//! - [`commit`]: the net changes → one Delta transaction per table (merge, or refresh overwrite);
//! - [`storage`]: lake and table URLs, file locations, credentials kept out of output;
//! - [`pipeline`]: one call's read → coalesce → commit for every table;
//! - [`backfill`]: existing file sets (a refresh, then many cycles) → the same pipeline, in
//!   batches of cycles, resumable;
//! - [`upkeep`]: compaction, vacuum and `inspect`.

#[cfg(feature = "lake")]
pub mod backfill;
pub mod change;
#[cfg(feature = "lake")]
pub mod cli;
#[cfg(feature = "lake")]
pub mod coalesce;
#[cfg(feature = "lake")]
pub mod commit;
pub mod error;
pub mod hvr;
#[cfg(feature = "lake")]
pub mod pipeline;
pub mod read;
pub mod settings;
pub mod storage;
#[cfg(feature = "lake")]
pub mod upkeep;

/// Crash-test hook: when the environment variable `HVRLAKE_FAILPOINT` equals `name`, the
/// process dies on the spot (abort, like a kill), so tests can stop hvrlake at exact points
/// (`after_commit:TABLE`, `before_remove`). Without the variable it does nothing.
pub fn failpoint(name: &str) {
    if std::env::var("HVRLAKE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("hvrlake: failpoint {name}: stopping the process");
        std::process::abort();
    }
}
