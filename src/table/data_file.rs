//! A table's data file read from its store with ranged GETs: what a Parquet reader asks for
//! (the footer, then the column chunks it needs), so a merge reads a few columns of a large
//! file without fetching all of it. parquet-rs 59 deprecates its own `ParquetObjectReader`
//! in favour of implementing `AsyncFileReader` directly (apache/arrow-rs#10308), which is
//! what this is.

/// A table's data file read from its store with ranged GETs (what a Parquet reader asks for:
/// the footer, then the column chunks it needs), for reading a few columns of large files.
pub struct DataFileReader {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: deltalake::Path,
    size: u64,
}

impl DataFileReader {
    /// The file at `path` (relative to the store) of `size` bytes (from the table's log).
    pub fn new(
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        path: deltalake::Path,
        size: u64,
    ) -> Self {
        DataFileReader { store, path, size }
    }
}

fn parquet_error(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl parquet::arrow::async_reader::AsyncFileReader for DataFileReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        use futures::FutureExt;
        use object_store::ObjectStoreExt;
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        use futures::FutureExt;
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        use futures::FutureExt;
        async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(std::sync::Arc::new(metadata))
        }
        .boxed()
    }
}
