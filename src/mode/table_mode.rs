//! The one interface every table mode implements, the cycle a mode applies, and the one
//! match from a mode's setting to its behaviour ([`Mode::keeper`]).

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, SchemaRef};
use deltalake::DeltaTable;
use futures::future::BoxFuture;

use crate::change::NetChanges;
use crate::error::Result;
use crate::table::Outcome;
use crate::table::progress::Mark;

use super::{Mode, ModeOptions, append, history, merge, soft_delete};

impl Mode {
    /// The mode's behaviour.
    pub fn keeper(self) -> &'static dyn TableMode {
        match self {
            Mode::Merge => &merge::Merge,
            Mode::SoftDelete => &soft_delete::SoftDelete,
            Mode::History => &history::History,
            Mode::Append => &append::Append,
        }
    }
}

/// A cycle's changes as a mode applies them.
pub enum Changes<'a> {
    /// Every change of the cycle (schema `schema`: the table's columns, then op and order),
    /// for the modes that do not coalesce.
    All {
        /// The change batches.
        batches: &'a [RecordBatch],
        /// Their schema.
        schema: &'a SchemaRef,
    },
    /// The last change per key, for the modes that coalesce.
    Net(NetChanges),
}

/// One commit of a mode: a cycle's changes into a table, with the cycle's progress marker.
pub struct Apply<'a> {
    /// The table as last loaded.
    pub table: DeltaTable,
    /// What to apply.
    pub changes: Changes<'a>,
    /// The table's columns (with the schema metadata new tables take).
    pub columns: &'a SchemaRef,
    /// The key columns.
    pub keys: &'a [String],
    /// The cycle's progress marker, committed with the changes.
    pub mark: Option<&'a Mark>,
    /// What the modes take from the settings.
    pub options: &'a ModeOptions,
}

/// What a table mode does at each point where modes differ.
pub trait TableMode: Sync {
    /// The stage name in `HVRLAKE_TIMINGS` lines.
    fn stage(&self) -> &'static str;

    /// Whether a cycle's changes are coalesced to the last change per key before
    /// [`TableMode::apply`] (then it gets [`Changes::Net`], else [`Changes::All`]).
    fn coalesces(&self) -> bool {
        true
    }

    /// Whether HVR's extra columns (`hvr_op`, `hvr_integ_seq`, ...) stay data columns.
    fn keeps_extras(&self) -> bool {
        false
    }

    /// Whether an integrate needs the table's key columns.
    fn needs_keys(&self) -> bool {
        true
    }

    /// The columns the mode adds after the data columns `data` of table `table` (those the
    /// table has already, as `existing` has them); an error when a data column takes the name
    /// of one.
    fn added_columns(
        &self,
        _table: &str,
        _data: &[Field],
        _existing: Option<&SchemaRef>,
        _options: &ModeOptions,
    ) -> Result<Vec<Field>> {
        Ok(Vec::new())
    }

    /// A batch of a refresh's rows (the table's `columns`) as the table keeps them; `now` is
    /// the refresh's time in microseconds.
    fn refresh_rows(
        &self,
        batch: RecordBatch,
        _columns: &SchemaRef,
        _options: &ModeOptions,
        _now: i64,
    ) -> Result<RecordBatch> {
        Ok(batch)
    }

    /// Applies a cycle's changes to the table in one commit.
    fn apply<'a>(&'a self, job: Apply<'a>) -> BoxFuture<'a, Result<(DeltaTable, Outcome)>>;
}

/// A table that does not exist yet, created with `rows` (the table's `columns`) in one commit
/// with the cycle's progress `mark`: its schema, properties, keys and first data files
/// together.
pub(crate) async fn create_with_rows(
    table: DeltaTable,
    rows: Vec<RecordBatch>,
    columns: &SchemaRef,
    keys: &[String],
    mark: Option<&Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let writers = std::thread::available_parallelism().map_or(1, usize::from);
    let count = rows.iter().map(RecordBatch::num_rows).sum();
    let mut sink = crate::write::files::FileSink::start(table, columns.clone(), writers)?;
    let sent = tokio::task::block_in_place(|| rows.into_iter().try_for_each(|b| sink.send(b)));
    let staged = sink.finish().await?;
    if let Err(e) = sent {
        staged.discard().await;
        return Err(e);
    }
    let (table, adds) = staged.into_parts();
    crate::table::create_with(table, columns, keys, adds, count, mark).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_keeps_what_its_setting_says() {
        let all = ["merge", "soft_delete", "history", "append"].map(|m| Mode::parse(m).unwrap());
        let stages: Vec<_> = all.iter().map(|m| m.keeper().stage()).collect();
        assert_eq!(stages, ["merge", "merge", "history", "append"]);
        let coalesce: Vec<_> = all.iter().map(|m| m.keeper().coalesces()).collect();
        assert_eq!(coalesce, [true, true, false, false]);
        let extras: Vec<_> = all.iter().map(|m| m.keeper().keeps_extras()).collect();
        assert_eq!(extras, [false, false, false, true]);
        let keys: Vec<_> = all.iter().map(|m| m.keeper().needs_keys()).collect();
        assert_eq!(keys, [true, true, true, false]);
        assert_eq!(Mode::parse(" Soft_Delete "), Some(Mode::SoftDelete));
        assert_eq!(Mode::parse("upsert"), None);
    }

    #[test]
    fn refresh_rows_are_live_and_current() {
        use arrow::array::{Array, AsArray, BooleanArray, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        let options = ModeOptions {
            delete_column: "is_deleted".into(),
            deleted_at_column: "deleted_at".into(),
            ..ModeOptions::default()
        };
        let columns: SchemaRef = std::sync::Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("is_deleted", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            columns.clone(),
            vec![
                std::sync::Arc::new(Int64Array::from(vec![1, 2])),
                std::sync::Arc::new(BooleanArray::from(vec![None, Some(true)])),
            ],
        )
        .unwrap();
        let soft = Mode::SoftDelete.keeper();
        let out = soft
            .refresh_rows(batch.clone(), &columns, &options, 0)
            .unwrap();
        let flag = out.column(1).as_boolean();
        assert_eq!(
            (flag.value(0), flag.value(1), flag.null_count()),
            (false, false, 0)
        );
        // A merge table keeps the rows as they are.
        let same = Mode::Merge
            .keeper()
            .refresh_rows(batch.clone(), &columns, &options, 0);
        assert_eq!(same.unwrap(), batch);
    }
}
