//! Data files on their way into a table: batches fed to one Parquet writer per core
//! ([`FileSink`]), then the files written and not yet committed ([`Staged`]), which a
//! refresh or a merge commits, or which are deleted when the call fails.

use std::num::NonZeroU64;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::DeltaTable;
use deltalake::kernel::Add;
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

use super::encode::DataFileWriter;
use super::writer_properties;
use crate::error::{Error, Result};
use crate::table;

/// Size at which a writer starts a new data file.
pub const TARGET_FILE_BYTES: u64 = 256 << 20;

/// Rows handed to one writer before the next takes over.
const SLICE_ROWS: usize = 1 << 16;

/// Statistics columns when the table does not say (Delta's default).
const INDEXED_COLUMNS: u64 = 32;

/// The error of a send to a writer whose task has ended.
fn stopped() -> Error {
    Error::msg("a data file writer stopped early (its error follows when it is joined)")
}

/// Writers fed in turn with batches (past the first run, a busy writer's batch goes to one
/// with room); each writes its own data files.
pub struct FileSink {
    senders: Vec<mpsc::Sender<RecordBatch>>,
    tasks: Vec<JoinHandle<Result<Vec<Add>>>>,
    /// The writers' schema (the table's columns, no metadata).
    schema: SchemaRef,
    /// Rows sent so far.
    next: usize,
    table: DeltaTable,
    created_dir: bool,
}

impl FileSink {
    /// Starts `writers` writer tasks on the current runtime for data files of `columns`
    /// under `table`'s location. The table itself is not touched.
    pub fn start(table: DeltaTable, columns: SchemaRef, writers: usize) -> Result<Self> {
        let created_dir = table::prepare_location(&table)?;
        let indexed = if table::exists(&table) {
            table
                .snapshot()?
                .table_config()
                .data_skipping_num_indexed_cols
                .unwrap_or(DataSkippingNumIndexedCols::NumColumns(INDEXED_COLUMNS))
        } else {
            DataSkippingNumIndexedCols::NumColumns(INDEXED_COLUMNS)
        };
        let properties = writer_properties(&columns);
        // A partitioned table: each writer splits its batches by partition values.
        let partitions = table::partition::names(&columns);
        let partitioned = !partitions.is_empty();
        // The writers compare each batch's schema with theirs, metadata too: none on either.
        let schema = table::plain_schema(&columns);
        let config = WriterConfig::new(
            schema.clone(),
            partitions,
            Some(properties),
            NonZeroU64::new(TARGET_FILE_BYTES),
            None,
            indexed,
            None,
        );
        // Flat tables of the common types get files hvrlake encodes itself (crate::write::encode);
        // others (and partitioned tables) delta-rs's writer.
        let own = !partitioned && super::encode::supported(&schema);
        let plain_encodings = columns
            .metadata()
            .get(super::encode::PLAIN_ENCODINGS)
            .is_some_and(|v| v == "true");
        let indexed_columns = match indexed {
            DataSkippingNumIndexedCols::AllColumns => usize::MAX,
            DataSkippingNumIndexedCols::NumColumns(n) => n as usize,
        };
        let mut senders = Vec::with_capacity(writers);
        let mut tasks = Vec::with_capacity(writers);
        for _ in 0..writers.max(1) {
            let (tx, mut rx) = mpsc::channel::<RecordBatch>(2);
            let task = if own {
                let mut writer = DataFileWriter::new(
                    table.object_store(),
                    schema.clone(),
                    indexed_columns,
                    TARGET_FILE_BYTES,
                )?
                .plain_encodings(plain_encodings)
                .local_dir(table::local_dir(table.table_url()));
                tokio::spawn(async move {
                    while let Some(batch) = rx.recv().await {
                        if let Err(e) = writer.write(&batch).await {
                            writer.abort().await;
                            return Err(e);
                        }
                    }
                    writer.close().await
                })
            } else {
                let mut writer = DeltaWriter::new(table.object_store(), config.clone());
                tokio::spawn(async move {
                    while let Some(batch) = rx.recv().await {
                        if let Err(e) = writer.write(&batch).await {
                            let _ = writer.abort().await;
                            return Err(e.into());
                        }
                    }
                    Ok(writer.close().await?)
                })
            };
            tasks.push(task);
            senders.push(tx);
        }
        Ok(FileSink {
            senders,
            tasks,
            schema,
            next: 0,
            table,
            created_dir,
        })
    }

    /// Hands one batch to the next writer (or, past the first run, to any with room); when
    /// every one is busy, waits for the next writer. Call it from a thread
    /// outside the runtime. A writer that failed is reported by [`FileSink::finish`].
    pub fn send(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = if batch.schema() == self.schema {
            batch
        } else {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?
        };
        // Runs of about SLICE_ROWS rows per writer: a small write stays one file.
        let n = self.senders.len();
        let i = (self.next / SLICE_ROWS) % n;
        let spill = self.next >= SLICE_ROWS;
        self.next += batch.num_rows();
        // Past the first run, a batch whose writer is still busy goes to one that has room:
        // waiting on the busy one would leave the other writers idle.
        let mut batch = batch;
        for k in 0..if spill { n } else { 1 } {
            match self.senders[(i + k) % n].try_send(batch) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(b)) => batch = b,
                Err(TrySendError::Closed(_)) => return Err(stopped()),
            }
        }
        self.senders[i].blocking_send(batch).map_err(|_| stopped())
    }

    /// Waits for every writer and returns the files written, uncommitted. On any failure the
    /// files already written are deleted.
    pub async fn finish(self) -> Result<Staged> {
        let FileSink {
            senders,
            tasks,
            table,
            created_dir,
            ..
        } = self;
        drop(senders);
        let mut adds = Vec::new();
        let mut failed: Option<Error> = None;
        for t in tasks {
            match t.await {
                Ok(Ok(a)) => adds.extend(a),
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => failed = failed.or(Some(Error::msg(format!("writer task: {e}")))),
            }
        }
        let staged = Staged {
            table,
            adds,
            created_dir,
        };
        match failed {
            None => Ok(staged),
            Some(e) => {
                staged.discard().await;
                Err(e)
            }
        }
    }
}

/// Data files written for a table but not committed yet.
pub struct Staged {
    pub(super) table: DeltaTable,
    pub(super) adds: Vec<Add>,
    created_dir: bool,
}

impl Staged {
    /// Deletes the staged files (best effort: a file left behind is not part of the table,
    /// and `VACUUM` removes it).
    pub async fn discard(self) {
        let store = self.table.object_store();
        let paths = futures::stream::iter(self.adds.into_iter().map(|a| {
            Ok(deltalake::Path::parse(&a.path).unwrap_or_else(|_| deltalake::Path::from(a.path)))
        }))
        .boxed();
        let _ = store.delete_stream(paths).collect::<Vec<_>>().await;
        if self.created_dir
            && let Some(dir) = table::local_dir(self.table.table_url())
        {
            let _ = std::fs::remove_dir(&dir);
        }
    }

    /// The files written.
    pub fn adds(&self) -> &[Add] {
        &self.adds
    }

    /// The table and the files written, for a commit made elsewhere.
    pub fn into_parts(self) -> (DeltaTable, Vec<Add>) {
        (self.table, self.adds)
    }
}
