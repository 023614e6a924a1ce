//! What a table keeps of the changes. Each mode is one type behind [`TableMode`], in a file
//! of its own: [`merge`] (the current rows), [`soft_delete`], [`history`], [`append`]; the
//! setting's value ([`Mode`]) picks it in [`Mode::keeper`], the one place that matches on it.
//! [`refresh`] is the other kind of call: the staged files of a refresh replace the table.

#[cfg(feature = "lake")]
pub mod append;
#[cfg(feature = "lake")]
pub mod history;
#[cfg(feature = "lake")]
pub mod merge;
#[cfg(feature = "lake")]
pub mod refresh;
#[cfg(feature = "lake")]
pub mod soft_delete;
#[cfg(feature = "lake")]
mod table_mode;

#[cfg(feature = "lake")]
pub use table_mode::{Apply, Changes, TableMode};

/// What a table keeps of the changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The current rows: upserts replace, deletes remove.
    Merge,
    /// The change log: every change appended as a row, with its `hvr_*` columns.
    Append,
    /// The current rows, but a delete keeps its row, flagged deleted with the time.
    SoftDelete,
    /// Every version of every row, with its validity interval (SCD type 2).
    History,
}

impl Mode {
    /// Parses a mode as a setting names it.
    pub fn parse(v: &str) -> Option<Mode> {
        match v.trim().to_ascii_lowercase().as_str() {
            "merge" => Some(Mode::Merge),
            "append" => Some(Mode::Append),
            "soft_delete" => Some(Mode::SoftDelete),
            "history" => Some(Mode::History),
            _ => None,
        }
    }
}

/// What the modes take from the settings.
#[derive(Clone, Debug, Default)]
pub struct ModeOptions {
    /// soft_delete: the flag column (`delete_column`).
    pub delete_column: String,
    /// soft_delete: the deletion time column (`deleted_at_column`).
    pub deleted_at_column: String,
    /// merge: rows never move between partitions (`partition_stable`).
    pub partition_stable: bool,
    /// merge: data files get only PLAIN and dictionary pages (`plain_encodings`).
    pub plain_encodings: bool,
    /// merge with deletion vectors: a touched file left with at most `1 - rewrite_share` of
    /// its rows is rewritten rather than marked (`rewrite_share`).
    pub rewrite_share: f64,
}
