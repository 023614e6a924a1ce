//! HVR Parquet → typed Arrow change batches, row groups decoded in parallel. HVR 6 writes
//! format v2 by default: int96 timestamps, decimal logical types, GZIP pages.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, Int8Array, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::util::display::FormatOptions;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;

use super::{FileColumns, TableLayout};
use crate::change::{self, Op};
use crate::error::{Error, Result};
use crate::schema::types::utc_micros;

/// One Parquet file held in memory or mapped.
pub struct ParquetFile {
    bytes: bytes::Bytes,
    meta: ArrowReaderMetadata,
    name: String,
}

impl ParquetFile {
    /// Reads the footer.
    pub fn open(bytes: bytes::Bytes, name: &str) -> Result<Self> {
        let meta = ArrowReaderMetadata::load(&bytes, Default::default())
            .map_err(|e| Error::msg(format!("{name}: not a readable Parquet file: {e}")))?;
        Ok(ParquetFile {
            bytes,
            meta,
            name: name.to_string(),
        })
    }

    /// The file's column names.
    pub fn names(&self) -> Vec<String> {
        self.meta
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The type a new table takes for the file's column at `pos`.
    pub fn column_type(&self, pos: usize) -> DataType {
        match self.meta.schema().field(pos).data_type() {
            DataType::Timestamp(_, _) => utc_micros(),
            DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
            DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
                DataType::Binary
            }
            DataType::Decimal128(p, s) if *p > 38 => DataType::Decimal128(38, *s),
            DataType::Decimal256(p, s) => DataType::Decimal128((*p).min(38), *s),
            DataType::UInt64 => DataType::Decimal128(20, 0),
            DataType::UInt32 => DataType::Int64,
            DataType::UInt16 | DataType::UInt8 => DataType::Int32,
            other => other.clone(),
        }
    }

    /// Decodes every row group into batches of `layout`.
    pub fn decode(
        &self,
        layout: &TableLayout,
        plan: &FileColumns,
        file_index: u32,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        self.decode_each(layout, plan, file_index, |b| {
            out.push(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Decodes the row groups, a wave of them at a time in parallel, into batches of
    /// `layout` (change batches, or the data columns only for a refresh), handed to `sink`
    /// in file order.
    pub fn decode_each(
        &self,
        layout: &TableLayout,
        plan: &FileColumns,
        file_index: u32,
        mut sink: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let groups = self.meta.metadata().num_row_groups();
        let schema = layout.batch_schema();
        let wave = (rayon::current_num_threads() * 2).max(2);
        for first in (0..groups).step_by(wave) {
            let per_group: Vec<Vec<RecordBatch>> = (first..(first + wave).min(groups))
                .into_par_iter()
                .map(|g| {
                    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
                        self.bytes.clone(),
                        self.meta.clone(),
                    )
                    .with_row_groups(vec![g])
                    .with_batch_size(65536)
                    .build()
                    .map_err(|e| Error::msg(format!("{}: row group {g}: {e}", self.name)))?;
                    let mut out = Vec::new();
                    let mut row = 0u32;
                    for batch in reader {
                        let batch = batch.map_err(|e| {
                            Error::msg(format!("{}: row group {g}: {e}", self.name))
                        })?;
                        let n = batch.num_rows() as u32;
                        out.push(self.change_batch(
                            &batch,
                            layout,
                            plan,
                            &schema,
                            [file_index, g as u32, row],
                        )?);
                        row += n;
                    }
                    Ok(out)
                })
                .collect::<Result<_>>()?;
            for b in per_group.into_iter().flatten() {
                if b.num_rows() > 0 {
                    sink(b)?;
                }
            }
        }
        Ok(())
    }

    fn change_batch(
        &self,
        b: &RecordBatch,
        layout: &TableLayout,
        plan: &FileColumns,
        schema: &SchemaRef,
        at: [u32; 3],
    ) -> Result<RecordBatch> {
        let rows = b.num_rows();
        let place = |r: usize| format!("{}: row {}", self.name, at[2] as usize + r + 1);
        let strict = CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        let int_col = |pos: usize, what: &str| -> Result<ArrayRef> {
            cast_with_options(b.column(pos), &DataType::Int64, &strict)
                .map_err(|e| Error::msg(format!("{}: {what} column: {e}", self.name)))
        };
        let op_col = match plan.op.filter(|_| !layout.refresh) {
            Some(p) => Some(int_col(p, &layout.op_column)?),
            None => None,
        };
        let flag_col = match plan.flag.filter(|_| !layout.refresh) {
            Some(p) => Some(
                cast_with_options(b.column(p), &DataType::Boolean, &strict).map_err(|e| {
                    Error::msg(format!(
                        "{}: {} column: {e}",
                        self.name, layout.delete_column
                    ))
                })?,
            ),
            None => None,
        };
        let mut ops = Vec::with_capacity(rows);
        for r in 0..rows {
            let mut op = Op::Upsert;
            if let Some(c) = &op_col {
                if c.is_null(r) {
                    crate::bail!("{}: {} is NULL", place(r), layout.op_column);
                }
                let code = c.as_primitive::<Int64Type>().value(r);
                op = Op::from_hvr(code).ok_or_else(|| {
                    Error::msg(format!(
                        "{}: {} {code} is not an operation hvrlake applies (0-5, 8, 10-12)",
                        place(r),
                        layout.op_column
                    ))
                })?;
            }
            if let Some(f) = &flag_col
                && f.is_valid(r)
                && f.as_boolean().value(r)
                && op != Op::PartialDelete
            {
                op = Op::Delete;
            }
            ops.push(op);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (ci, f) in layout.columns.fields().iter().enumerate() {
            let col = match plan.data[ci] {
                None => arrow::array::new_null_array(f.data_type(), rows),
                Some(p) => cast_with_options(b.column(p), f.data_type(), &strict).map_err(|e| {
                    Error::msg(format!(
                        "{}: column '{}': cannot be read as {}: {e}",
                        self.name,
                        f.name(),
                        crate::schema::types::type_name(f.data_type())
                    ))
                })?,
            };
            if !layout.refresh
                && layout.keys.contains(&ci)
                && let Some(r) = (0..rows).find(|&r| col.is_null(r) && !ops[r].allows_null_key())
            {
                crate::bail!("{}: key column '{}' is NULL", place(r), f.name());
            }
            columns.push(col);
        }
        if layout.refresh {
            return Ok(RecordBatch::try_new(schema.clone(), columns)?);
        }
        columns.push(Arc::new(Int8Array::from_iter_values(
            ops.iter().map(|o| *o as i8),
        )));
        let seq = match plan.seq {
            Some(p) => Some(
                cast_with_options(b.column(p), &DataType::Utf8, &strict)
                    .map_err(|e| Error::msg(format!("{}: {e}", self.name)))?,
            ),
            None => None,
        };
        let mut order = BinaryBuilder::with_capacity(rows, rows * 24);
        let mut buf = Vec::with_capacity(64);
        for r in 0..rows {
            buf.clear();
            match &seq {
                Some(s) => {
                    let s = s.as_string::<i32>();
                    if s.is_null(r) || !change::encode_seq(s.value(r).as_bytes(), &mut buf) {
                        crate::bail!("{}: {} is not |-separated hex", place(r), layout.seq_column);
                    }
                }
                None => buf.push(0),
            }
            buf.extend_from_slice(&at[0].to_be_bytes());
            buf.extend_from_slice(&at[1].to_be_bytes());
            buf.extend_from_slice(&(at[2] + r as u32).to_be_bytes());
            order.append_value(&buf);
        }
        columns.push(Arc::new(order.finish()));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
