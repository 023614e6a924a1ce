//! Partitioned tables (setting `partition_by=TABLE:EXPR,...`): which columns a table is
//! partitioned by, the columns derived from date parts of a timestamp or date column, and
//! which partitions a cycle's changes can touch, so that merges read only those.
//!
//! The expressions travel with the table's columns (as metadata of the Arrow schema under
//! [`PROPERTY`]) and are recorded in the Delta table's properties under the same name; the
//! Delta partition columns are their column names.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::kernels::temporal::{DatePart, date_part};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};

use crate::error::Result;
pub use crate::schema::partition::{Part, PartExpr, parse_list, spec_text};

/// Table property (and schema metadata key) holding the partition expressions.
pub const PROPERTY: &str = "hvrlake.partition_by";

/// The partition expressions `columns` carry (none when the table is not partitioned).
pub fn spec_of(columns: &Schema) -> Vec<PartExpr> {
    columns
        .metadata()
        .get(PROPERTY)
        .and_then(|t| parse_list(t).ok())
        .unwrap_or_default()
}

/// The partition column names of `columns`.
pub fn names(columns: &Schema) -> Vec<String> {
    spec_of(columns).iter().map(PartExpr::column).collect()
}

/// `columns` partitioned by `spec`: the derived columns added after the others (kept where
/// they are when present), source names spelled as the table spells them, and the spec
/// recorded in the schema's metadata. Errors name what does not fit: a source column the
/// table does not have, or a date part of a column that is neither a date nor a timestamp.
pub fn with_spec(columns: SchemaRef, spec: &[PartExpr], table: &str) -> Result<SchemaRef> {
    if spec.is_empty() {
        let mut meta = columns.metadata().clone();
        if meta.remove(PROPERTY).is_none() {
            return Ok(columns);
        }
        return Ok(Arc::new(Schema::new_with_metadata(
            columns.fields().clone(),
            meta,
        )));
    }
    let mut fields: Vec<Field> = columns
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut resolved = Vec::with_capacity(spec.len());
    for e in spec {
        let Some(source) = fields
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(&e.source))
            .cloned()
        else {
            crate::bail!(
                "setting 'partition_by': {table} has no column '{}' to partition by",
                e.source
            );
        };
        let e = PartExpr {
            source: source.name().clone(),
            part: e.part,
        };
        let ty = match (e.part, source.data_type()) {
            (Part::Value, DataType::Float32 | DataType::Float64) => crate::bail!(
                "setting 'partition_by': {table}.{} is a floating-point column; partition by a part of a date, or a column with few distinct values",
                e.source
            ),
            (Part::Value, t) => t.clone(),
            (_, DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)) => match e.part {
                Part::Year => DataType::Int32,
                Part::Month => DataType::Utf8,
                _ => DataType::Date32,
            },
            (_, t) => crate::bail!(
                "setting 'partition_by': {} takes a date or timestamp column, and {table}.{} is {t}",
                e.text(),
                e.source
            ),
        };
        if e.derived() {
            let name = e.column();
            match fields.iter().find(|f| f.name().eq_ignore_ascii_case(&name)) {
                Some(f) if f.data_type() == &ty => {}
                Some(f) => crate::bail!(
                    "setting 'partition_by': {table} already has a column '{}' ({}) that is not {}",
                    f.name(),
                    f.data_type(),
                    e.text()
                ),
                None => fields.push(Field::new(name, ty, true)),
            }
        }
        resolved.push(e);
    }
    let mut meta = columns.metadata().clone();
    meta.insert(PROPERTY.to_string(), spec_text(&resolved));
    Ok(Arc::new(Schema::new_with_metadata(fields, meta)))
}

/// `batch` with its derived partition columns computed from their sources (`spec` as
/// [`spec_of`] gives it for the table's columns).
pub fn fill(batch: RecordBatch, spec: &[PartExpr]) -> Result<RecordBatch> {
    if !spec.iter().any(PartExpr::derived) {
        return Ok(batch);
    }
    let schema = batch.schema();
    let mut cols = batch.columns().to_vec();
    for e in spec.iter().filter(|e| e.derived()) {
        let (Ok(src), Ok(dst)) = (schema.index_of(&e.source), schema.index_of(&e.column())) else {
            continue;
        };
        let source = batch.column(src);
        let value: ArrayRef = match e.part {
            Part::Year => Arc::new(date_part(source, DatePart::Year)?),
            Part::Day => arrow::compute::cast(source, &DataType::Date32)?,
            _ => {
                let y = date_part(source, DatePart::Year)?;
                let m = date_part(source, DatePart::Month)?;
                let (y, m) = (y.as_primitive::<Int32Type>(), m.as_primitive::<Int32Type>());
                Arc::new(StringArray::from_iter((0..y.len()).map(|i| {
                    y.is_valid(i)
                        .then(|| format!("{:04}-{:02}", y.value(i), m.value(i)))
                })))
            }
        };
        cols[dst] = arrow::compute::cast(&value, schema.field(dst).data_type())?;
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// A data file's partition values, by partition column in the table's order (`None`: NULL).
pub type Values = Vec<(String, Option<String>)>;

/// A data file's partition values as Delta records them (by column name), in the order of
/// the partition columns `names` ([`names`], worked out once per table, not per file).
pub fn file_values(names: &[String], recorded: Option<&HashMap<String, Option<String>>>) -> Values {
    names
        .iter()
        .map(|n| {
            (
                n.clone(),
                recorded.and_then(|r| r.get(n).cloned().flatten()),
            )
        })
        .collect()
}

/// Types whose partition values hvrlake writes as Arrow prints them, so that a change's
/// values can be compared with a file's.
fn comparable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Boolean
    )
}

/// The partitions a cycle's coalesced changes (`batches`: data columns, then op) can touch,
/// or None when they cannot be told and every file must be looked at.
///
/// A change is found in the partition its own values give only when the row it replaces has
/// the same partition values: always when every partition column is a key column or derived
/// from one; with `stable` (the setting `partition_stable`) for any partition column, the
/// user's word that a row never moves to another partition. A delete whose partition values
/// are not there (NULL in a column that is not a key) could be anywhere.
pub fn touched(
    batches: &[RecordBatch],
    columns: &Schema,
    keys: &[String],
    stable: bool,
) -> Result<Option<HashSet<Vec<Option<String>>>>> {
    let spec = spec_of(columns);
    if spec.is_empty() {
        return Ok(None);
    }
    let from_key = |e: &PartExpr| keys.iter().any(|k| k.eq_ignore_ascii_case(&e.source));
    if !stable && !spec.iter().all(from_key) {
        return Ok(None);
    }
    let mut out = HashSet::new();
    for b in batches {
        let op = b
            .column_by_name(crate::change::OP)
            .map(|c| c.as_primitive::<arrow::datatypes::Int8Type>().clone());
        let mut texts = Vec::with_capacity(spec.len());
        for e in &spec {
            let Some(c) = b.column_by_name(&e.column()) else {
                return Ok(None);
            };
            if !comparable(c.data_type()) {
                return Ok(None);
            }
            texts.push((
                from_key(e),
                arrow::compute::cast(c, &DataType::Utf8)?
                    .as_string::<i32>()
                    .clone(),
            ));
        }
        for r in 0..b.num_rows() {
            let delete = op
                .as_ref()
                .is_some_and(|o| o.value(r) != crate::change::Op::Upsert as i8);
            if delete && texts.iter().any(|(k, t)| !k && t.is_null(r)) {
                return Ok(None);
            }
            out.insert(
                texts
                    .iter()
                    .map(|(_, t)| t.is_valid(r).then(|| t.value(r).to_string()))
                    .collect(),
            );
        }
    }
    Ok(Some(out))
}

/// A data file's partition values, as [`touched`] gives partitions.
pub fn file_key(values: &Values) -> Vec<Option<String>> {
    values.iter().map(|(_, v)| v.clone()).collect()
}

/// `batch` read from a data file (which does not store its partition columns) with them
/// added from the file's partition `values`, typed as `columns` has them.
pub fn with_values(batch: RecordBatch, columns: &Schema, values: &Values) -> Result<RecordBatch> {
    if values.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut cols = batch.columns().to_vec();
    for (n, v) in values {
        if batch.schema().index_of(n).is_ok() {
            continue;
        }
        let f = columns.field_with_name(n)?;
        let text = StringArray::from(vec![v.clone(); batch.num_rows()]);
        cols.push(arrow::compute::cast(&text, f.data_type())?);
        fields.push(Arc::new(f.clone()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_and_print_back() {
        let spec = parse_list("year(created_at), region ,month(ts),day(d)").unwrap();
        assert_eq!(spec_text(&spec), "year(created_at),region,month(ts),day(d)");
        assert_eq!(spec[0].column(), "created_at_year");
        assert_eq!(spec[2].column(), "ts_month");
        assert_eq!(parse_list("week(x)"), Err("week(x)".to_string()));
        assert_eq!(parse_list("year()"), Err("year()".to_string()));
    }

    #[test]
    fn date_parts_are_filled_from_a_timestamp() {
        let columns = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", crate::schema::types::utc_micros(), true),
        ]));
        let spec = parse_list("year(ts),month(TS),day(ts)").unwrap();
        let columns = with_spec(columns, &spec, "t").unwrap();
        assert_eq!(names(&columns), ["ts_year", "ts_month", "ts_day"]);
        let micros = 1_795_000_000_000_000i64; // 2026-11-18 ... UTC
        let batch = RecordBatch::try_new(
            columns.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![Some(micros), None])
                        .with_timezone("UTC"),
                ),
                arrow::array::new_null_array(&DataType::Int32, 2),
                arrow::array::new_null_array(&DataType::Utf8, 2),
                arrow::array::new_null_array(&DataType::Date32, 2),
            ],
        )
        .unwrap();
        let filled = fill(batch, &spec_of(&columns)).unwrap();
        let text = |i: usize| {
            let c = arrow::compute::cast(filled.column(i), &DataType::Utf8).unwrap();
            let s = c.as_string::<i32>();
            (0..2)
                .map(|r| s.is_valid(r).then(|| s.value(r).to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(text(2), [Some("2026".to_string()), None]);
        assert_eq!(text(3), [Some("2026-11".to_string()), None]);
        assert_eq!(text(4), [Some("2026-11-18".to_string()), None]);
        // A date part of a text column is refused, naming it.
        let bad = with_spec(
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)])),
            &parse_list("year(s)").unwrap(),
            "t",
        );
        assert!(bad.unwrap_err().message().contains("t.s is Utf8"));
    }
}
