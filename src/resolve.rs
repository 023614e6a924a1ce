//! A table's columns and their types, from every source in turn: the existing table's,
//! else declared (`types`), else the Parquet input's own, else inferred from every CSV value
//! ([`crate::schema::types::Inference`]); then the columns the table's mode adds, its
//! partitioning and, for a new table, its deletion vectors. Pure: the decoders' inference is
//! handed in, so every rule here is tested on its own.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::mode::{Mode, ModeOptions};
use crate::schema::partition::PartExpr;
use crate::schema::types::{Check, DeclaredType, Inference};
use crate::table;

/// What inference found in each input, by input position (`None` where it did not look),
/// then by header position.
pub type PerInput = [Option<Vec<Inference>>];

/// Where a table's types come from besides its CSV values.
pub struct TableTypes<'s> {
    /// The target table name, for messages.
    pub table: &'s str,
    /// Declared types, by lower-case column name.
    pub declared: HashMap<String, DeclaredType>,
    /// The sequence column: always text.
    pub seq_column: &'s str,
    /// Each input's header, as target names.
    pub headers: &'s [Vec<String>],
    /// Each input's column types by header position, when it carries them (Parquet).
    pub typed: Vec<Option<Vec<DataType>>>,
    /// How the table is partitioned ([`table::partition`]).
    pub partitioning: &'s [PartExpr],
    /// The table's mode, which may add columns.
    pub mode: Mode,
    /// What the mode takes from the settings.
    pub mode_options: ModeOptions,
    /// Whether a new table gets deletion vectors.
    pub deletion_vectors: bool,
}

/// The columns `names` of a table (as `existing` has them, when it exists), resolved from
/// [`TableTypes`].
pub struct Resolver<'r, 's> {
    types: &'r TableTypes<'s>,
    names: &'r [String],
    existing: Option<&'r SchemaRef>,
}

impl<'s> TableTypes<'s> {
    /// The resolver of the columns `names`, the existing table's columns being `existing`.
    pub fn columns<'r>(
        &'r self,
        names: &'r [String],
        existing: Option<&'r SchemaRef>,
    ) -> Resolver<'r, 's> {
        Resolver {
            types: self,
            names,
            existing,
        }
    }
}

impl Resolver<'_, '_> {
    fn declared(&self, col: &str) -> Option<DeclaredType> {
        if col.eq_ignore_ascii_case(self.types.seq_column) {
            // hvr_integ_seq is hex text, even when a file's values are all digits.
            return Some(DeclaredType::String);
        }
        self.types.declared.get(&col.to_ascii_lowercase()).copied()
    }

    fn existing_field(&self, n: &str) -> Option<Arc<Field>> {
        self.existing.and_then(|e| {
            e.fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(n))
                .cloned()
        })
    }

    /// Whether some column's type can only come from CSV values.
    pub fn need_inference(&self) -> bool {
        self.names
            .iter()
            .any(|n| self.declared(n).is_none() && self.existing_field(n).is_none())
    }

    /// How the read makes sure no value after `sample` changes column `n`'s type unnoticed.
    /// Settled: it does not come from CSV values, or the sample saw text in it (inference only
    /// ever widens, and text is the widest), or a date or a timestamp (decoding parses every
    /// value with the very parser inference uses, so a value that decodes keeps the guess, and
    /// one that does not fails the read and the full pass takes over). Strict: an integer,
    /// decimal or boolean, decoded by inference's rules to the same effect. Otherwise every
    /// value is inferred as it is decoded.
    pub fn check(&self, n: &str, sample: &PerInput) -> Check {
        if self.declared(n).is_some() || self.existing_field(n).is_some() {
            return Check::Settled;
        }
        if !self.names.iter().any(|c| c.eq_ignore_ascii_case(n)) {
            return Check::Settled;
        }
        let inf = self.merged(n, sample);
        if inf.seen() == 0 {
            return Check::Infer;
        }
        let guess = inf.result();
        if matches!(
            guess,
            DeclaredType::String | DeclaredType::Date | DeclaredType::Timestamp
        ) {
            Check::Settled
        } else if crate::schema::types::strict_checkable(&guess.arrow()) {
            Check::Strict
        } else {
            Check::Infer
        }
    }

    /// What every input's inference says of column `n`, together.
    fn merged(&self, n: &str, inferred: &PerInput) -> Inference {
        let mut inf = Inference::default();
        for (k, per_pos) in inferred.iter().enumerate() {
            if let (Some(per_pos), Some(pos)) = (
                per_pos,
                self.types.headers[k]
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(n)),
            ) {
                inf.merge(&per_pos[pos]);
            }
        }
        inf
    }

    /// The existing columns with the types their CSV values `inferred` need, where Delta's
    /// type widening allows it ([`Inference::widening`]); None when no column widens.
    pub fn widened(&self, inferred: &PerInput) -> Option<SchemaRef> {
        let existing = self.existing?;
        let mut changed = false;
        let fields: Vec<Field> = existing
            .fields()
            .iter()
            .map(
                |f| match self.merged(f.name(), inferred).widening(f.data_type()) {
                    Some(t) if self.declared(f.name()).is_none() => {
                        changed = true;
                        f.as_ref().clone().with_data_type(t)
                    }
                    _ => f.as_ref().clone(),
                },
            )
            .collect();
        changed.then(|| Arc::new(Schema::new(fields)))
    }

    /// The type an input that carries types gives column `n`.
    fn typed(&self, n: &str) -> Option<DataType> {
        self.types
            .typed
            .iter()
            .zip(self.types.headers)
            .find_map(|(typed, header)| {
                let pos = header.iter().position(|h| h.eq_ignore_ascii_case(n))?;
                Some(typed.as_ref()?[pos].clone())
            })
    }

    /// The columns, given what inference found in each input (`None` where it did not look).
    pub fn resolve(&self, inferred: &PerInput) -> Result<SchemaRef> {
        let mut fields = Vec::with_capacity(self.names.len());
        for n in self.names {
            if let Some(f) = self.existing_field(n) {
                fields.push(f.as_ref().clone());
                continue;
            }
            let ty: DataType = match self.declared(n) {
                Some(t) => t.arrow(),
                None => self
                    .typed(n)
                    .unwrap_or_else(|| self.merged(n, inferred).result().arrow()),
            };
            fields.push(Field::new(n, ty, true));
        }
        // The columns the table's mode adds (history's validity, soft delete's flag and time).
        let added = self.types.mode.keeper().added_columns(
            self.types.table,
            &fields,
            self.existing,
            &self.types.mode_options,
        )?;
        fields.extend(added);
        let columns = table::partition::with_spec(
            Arc::new(Schema::new(fields)),
            self.types.partitioning,
            self.types.table,
        )?;
        if self.existing.is_some() || !self.types.deletion_vectors {
            return Ok(columns);
        }
        // A new table: merges mark changed rows in deletion vectors (table::create sets the
        // property the columns carry).
        let mut meta = columns.metadata().clone();
        meta.insert(
            table::deletion_vectors::PROPERTY.to_string(),
            "true".to_string(),
        );
        Ok(Arc::new(Schema::new_with_metadata(
            columns.fields().clone(),
            meta,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inference over `values` for each column of one CSV input.
    fn csv(columns: &[&[&str]]) -> Option<Vec<Inference>> {
        Some(
            columns
                .iter()
                .map(|values| {
                    let mut inf = Inference::default();
                    for v in *values {
                        inf.add(v.as_bytes());
                    }
                    inf
                })
                .collect(),
        )
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn types<'s>(headers: &'s [Vec<String>], mode: Mode) -> TableTypes<'s> {
        TableTypes {
            table: "orders",
            declared: HashMap::new(),
            seq_column: "hvr_integ_seq",
            headers,
            typed: vec![None; headers.len()],
            partitioning: &[],
            mode,
            mode_options: ModeOptions {
                delete_column: "is_deleted".into(),
                deleted_at_column: "deleted_at".into(),
                ..ModeOptions::default()
            },
            deletion_vectors: false,
        }
    }

    fn kinds(s: &SchemaRef) -> Vec<(String, DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    #[test]
    fn existing_beats_declared_beats_parquet_beats_inferred() {
        let headers = vec![
            names(&["id", "amount", "note", "seq"]),
            names(&["id", "note"]),
        ];
        let mut t = types(&headers, Mode::Merge);
        t.seq_column = "seq";
        t.declared
            .insert("amount".into(), DeclaredType::Decimal(10, 2));
        // The second input is Parquet and says `note` is an Int32.
        t.typed[1] = Some(vec![DataType::Int64, DataType::Int32]);
        let existing: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("ID", DataType::Int32, false)]));
        let inferred = vec![csv(&[&["1"], &["2.5"], &["x"], &["10"]]), None];
        let cols = names(&["id", "amount", "note", "seq"]);
        let got = t
            .columns(&cols, Some(&existing))
            .resolve(&inferred)
            .unwrap();
        assert_eq!(
            kinds(&got),
            vec![
                ("ID".into(), DataType::Int32),
                ("amount".into(), DataType::Decimal128(10, 2)),
                ("note".into(), DataType::Int32),
                // Digits, but the sequence column is hex text.
                ("seq".into(), DataType::Utf8),
            ]
        );
        // Only `note` and `seq` have no declaration or table type; `seq` is declared text.
        assert!(t.columns(&cols, Some(&existing)).need_inference());
        let declared = names(&["id", "amount", "seq"]);
        assert!(!t.columns(&declared, Some(&existing)).need_inference());
    }

    #[test]
    fn inferred_types_come_from_every_input() {
        let headers = vec![names(&["id", "v"]), names(&["v", "id"])];
        let t = types(&headers, Mode::Merge);
        let cols = names(&["id", "v"]);
        let only_first = vec![csv(&[&["1"], &["7"]]), None];
        let both = vec![csv(&[&["1"], &["7"]]), csv(&[&["text"], &["2"]])];
        let r = t.columns(&cols, None);
        assert_eq!(
            kinds(&r.resolve(&only_first).unwrap())[1].1,
            DataType::Int64
        );
        assert_eq!(kinds(&r.resolve(&both).unwrap())[1].1, DataType::Utf8);
        // A guess of text is settled; of integers, checked strictly; unseen, inferred.
        assert_eq!(r.check("v", &both), Check::Settled);
        assert_eq!(r.check("id", &both), Check::Strict);
        assert_eq!(r.check("id", &[None, None]), Check::Infer);
    }

    #[test]
    fn modes_add_their_columns_and_refuse_their_names() {
        let headers = vec![names(&["id"])];
        let cols = names(&["id"]);
        let inferred = vec![csv(&[&["1"]])];
        let history = types(&headers, Mode::History);
        let got = history.columns(&cols, None).resolve(&inferred).unwrap();
        let added: Vec<String> = got.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            added,
            [
                "id",
                "valid_from",
                "valid_to",
                "is_current",
                "op",
                "integ_seq"
            ]
        );
        let soft = types(&headers, Mode::SoftDelete);
        let got = soft.columns(&cols, None).resolve(&inferred).unwrap();
        assert_eq!(
            kinds(&got)[1..],
            [
                ("is_deleted".into(), DataType::Boolean),
                ("deleted_at".into(), DeclaredType::Timestamp.arrow())
            ]
        );
        // A new history table whose data has a column named like a validity column.
        let clash = vec![names(&["id", "op"])];
        let history = types(&clash, Mode::History);
        let err = history
            .columns(&names(&["id", "op"]), None)
            .resolve(&[csv(&[&["1"], &["x"]])])
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("orders: column 'op' has the name"),
            "{err}"
        );
    }

    #[test]
    fn new_tables_get_deletion_vectors_existing_ones_keep_theirs() {
        let headers = vec![names(&["id"])];
        let mut t = types(&headers, Mode::Merge);
        t.deletion_vectors = true;
        let cols = names(&["id"]);
        let inferred = vec![csv(&[&["1"]])];
        let new = t.columns(&cols, None).resolve(&inferred).unwrap();
        assert_eq!(
            new.metadata()
                .get(table::deletion_vectors::PROPERTY)
                .map(String::as_str),
            Some("true")
        );
        let existing: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let old = t
            .columns(&cols, Some(&existing))
            .resolve(&inferred)
            .unwrap();
        assert!(old.metadata().is_empty());
    }

    #[test]
    fn an_existing_column_widens_where_delta_allows() {
        let headers = vec![names(&["id", "n", "d"])];
        let mut t = types(&headers, Mode::Merge);
        let existing: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("d", DataType::Int32, true),
        ]));
        let cols = names(&["id", "n", "d"]);
        let big = vec![csv(&[&["1"], &["3000000000"], &["3000000000"]])];
        let wider = t.columns(&cols, Some(&existing)).widened(&big).unwrap();
        assert_eq!(kinds(&wider)[1].1, DataType::Int64);
        // A declared column keeps its type.
        t.declared.insert("d".into(), DeclaredType::Int32);
        let wider = t.columns(&cols, Some(&existing)).widened(&big).unwrap();
        assert_eq!(kinds(&wider)[2].1, DataType::Int32);
        let small = vec![csv(&[&["1"], &["2"], &["3"]])];
        assert!(t.columns(&cols, Some(&existing)).widened(&small).is_none());
    }
}
