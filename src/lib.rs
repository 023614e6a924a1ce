//! hvrlake loads the files an HVR channel writes into Delta Lake tables, exactly once.
//!
//! The modules, in the order a cycle flows through them; each imports only modules below it:
//! - [`cli`]: argv → a command; an error → one line and an exit code;
//! - [`call`]: one call: read every table's files, then commit each, then remove the files;
//!   recovery after an interrupted cycle; backfills; the compaction policy;
//! - [`hvr`]: the `HVR_*` environment, file names → tables, the location lock;
//! - [`settings`]: userarg > `HVRLAKE_*` > TOML file → one validated [`settings::Settings`];
//! - [`input`]: a file's bytes: mapped locally, ranged GETs from object stores, transcoded;
//! - [`read`]: one decoder per format (CSV, Parquet) → typed Arrow change batches;
//! - [`resolve`]: a table's columns and their types (existing, declared, Parquet's, inferred);
//! - [`coalesce`]: a table's changes → the last change per key;
//! - [`mode`]: what a table keeps: merge, soft delete, history, append, refresh;
//! - [`upkeep`]: compaction, vacuum and `inspect`;
//! - [`write`]: every data file: writer options, hvrlake's encoder, delta-rs's writer;
//! - [`table`]: the Delta table: open, create, schema, commit, progress marker, partitions;
//! - [`schema`], [`change`]: column types and the change batch, shared by every stage;
//! - [`storage`]: URLs, mapped bytes, credentials kept out of output;
//! - [`diag`], [`error`], [`redact`]: timings, failpoints, errors, credentials kept out of
//!   what is printed (leaves).

#[cfg(feature = "lake")]
pub mod call;
pub mod change;
#[cfg(feature = "lake")]
pub mod cli;
#[cfg(feature = "lake")]
pub mod coalesce;
pub mod diag;
pub mod error;
pub mod hvr;
pub mod input;
pub mod mode;
pub mod read;
pub mod redact;
#[cfg(feature = "lake")]
pub mod resolve;
pub mod schema;
pub mod settings;
pub mod storage;
#[cfg(feature = "lake")]
pub mod table;
#[cfg(feature = "lake")]
pub mod upkeep;
#[cfg(feature = "lake")]
pub mod write;
