//! The files of a cycle → Arrow change batches: one decoder per format ([`csv`], [`parquet`]),
//! each decoding a file's bytes ([`crate::input`]) in parallel pieces straight into the
//! table's column types ([`crate::schema::types`]), with two extra columns: the normalized
//! operation and its sortable order ([`crate::change`]).

pub mod csv;
pub mod parquet;
pub mod utf8;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::change;

/// The columns of a table as the change stream carries them.
#[derive(Clone, Debug)]
pub struct TableLayout {
    /// The table's data columns, with their target types.
    pub columns: SchemaRef,
    /// Positions of the key columns in `columns`.
    pub keys: Vec<usize>,
    /// The extra columns by role, as lower-case names.
    pub op_column: String,
    /// Soft-delete flag column name, lower case.
    pub delete_column: String,
    /// Sequence column name, lower case.
    pub seq_column: String,
    /// Whether extra columns also remain data columns.
    pub keep_extras: bool,
    /// Whether rows are refresh rows (every row an insert, no key checks).
    pub refresh: bool,
}

impl TableLayout {
    /// A refresh of `columns` with the default names of the extra columns (`hvr_op`,
    /// `is_deleted`, `hvr_integ_seq`): for reading files outside a call.
    pub fn refresh_of(columns: SchemaRef, keep_extras: bool) -> Self {
        TableLayout {
            columns,
            keys: vec![],
            op_column: "hvr_op".into(),
            delete_column: "is_deleted".into(),
            seq_column: "hvr_integ_seq".into(),
            keep_extras,
            refresh: true,
        }
    }

    /// The schema of a change batch: the data columns, then op and order.
    pub fn change_schema(&self) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = self.columns.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(change::OP, DataType::Int8, false)));
        fields.push(Arc::new(Field::new(change::ORDER, DataType::Binary, false)));
        Arc::new(Schema::new(fields))
    }

    /// The schema of the batches a reader yields: a refresh's are the data columns only,
    /// an integrate's are change batches.
    pub fn batch_schema(&self) -> SchemaRef {
        if self.refresh {
            self.columns.clone()
        } else {
            self.change_schema()
        }
    }

    /// How the named columns of a file (its header) map onto this layout.
    pub fn plan(&self, names: &[String], file: &str) -> crate::error::Result<FileColumns> {
        let mut plan = FileColumns {
            data: vec![None; self.columns.fields().len()],
            op: None,
            seq: None,
            flag: None,
        };
        for (pos, name) in names.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            let mut extra = false;
            if lower == self.op_column {
                plan.op = Some(pos);
                extra = true;
            } else if lower == self.seq_column {
                plan.seq = Some(pos);
                extra = true;
            } else if lower == self.delete_column {
                plan.flag = Some(pos);
                extra = true;
            } else if lower.starts_with("hvr_") {
                extra = true;
            }
            if extra && !self.keep_extras {
                continue;
            }
            match self
                .columns
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
            {
                Some(i) => {
                    if plan.data[i].is_some() {
                        crate::bail!("{file}: column '{name}' appears twice in the header");
                    }
                    plan.data[i] = Some(pos);
                }
                None => crate::bail!(
                    "{file}: column '{name}' is not a column of the table (table columns: {})",
                    self.columns
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            }
        }
        for &k in &self.keys {
            if plan.data[k].is_none() && !self.refresh {
                crate::bail!(
                    "{file}: key column '{}' is missing from the file",
                    self.columns.field(k).name()
                );
            }
        }
        Ok(plan)
    }
}

/// Where each table column, and each extra column, sits in one file.
#[derive(Clone, Debug)]
pub struct FileColumns {
    /// For each table column, its position in the file, if present.
    pub data: Vec<Option<usize>>,
    /// Position of the op column.
    pub op: Option<usize>,
    /// Position of the sequence column.
    pub seq: Option<usize>,
    /// Position of the soft-delete flag column.
    pub flag: Option<usize>,
}

/// Shortens a value for an error message.
pub fn shown(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    format!("{out:?}")
}
