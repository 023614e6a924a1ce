//! Every data file a table gets passes through here: the writer options, the writers fed from
//! the readers ([`files`]), the pages hvrlake encodes itself ([`encode`]), and the local files
//! written around the page cache ([`direct`]).

pub mod direct;
pub mod encode;
pub mod files;
pub mod widen;

use arrow::datatypes::{DataType, SchemaRef};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;

/// How data files are written: zstd level 1 (about the speed of snappy, smaller files),
/// statistics on every column, row groups of up to 131,072 rows, and dictionary encoding only for
/// text columns: on numbers and timestamps it costs time and saves little after zstd.
pub fn writer_properties(columns: &SchemaRef) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 17))
        .set_dictionary_enabled(false)
        .set_dictionary_page_size_limit(128 << 10);
    for f in columns.fields() {
        if matches!(
            f.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    b.build()
}
