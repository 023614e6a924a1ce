//! What a call is asked to do: integrate or refresh ([`Kind`]), and each table with its files
//! ([`TableSpec`]).

use crate::input::InputFile;

/// What a call does to each table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Apply changes (integrate).
    Integrate,
    /// Replace the table (refresh).
    Refresh,
}

/// One table of a call and its files.
#[derive(Clone, Debug)]
pub struct TableSpec {
    /// Channel name (used in file names).
    pub name: String,
    /// Target name; `sch.T` lives at `<target>/sch/T`.
    pub base_name: String,
    /// Key columns (target names); empty to use the ones the table records.
    pub keys: Vec<String>,
    /// All columns (target names), extra columns included; empty to take them from the files.
    pub columns: Vec<String>,
    /// The same columns by channel name, for headers that use those.
    pub channel_columns: Vec<String>,
    /// Files in the order HVR wrote them.
    pub files: Vec<InputFile>,
    /// The Delta application id under which the table's progress is recorded
    /// ([`table::progress`]); None records none.
    pub app_id: Option<String>,
    /// The cycle's stamp (the `{hvr_integ_tstamp}` of its files), recorded with the progress.
    pub cycle: Option<String>,
    /// When the cycle's first row of the table was captured, in milliseconds since the epoch
    /// (`HVR_TBL_CAP_TSTAMP`): the start of the replication latency reported with the commit.
    pub captured_ms: Option<i64>,
}
