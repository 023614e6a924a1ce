//! A Delta table: open, create, its columns, keys and properties, schema changes, and the one
//! commit per table per call that carries the cycle's progress marker ([`progress`]).
//! Partitioned tables ([`partition`]) and deletion vectors ([`deletion_vectors`]) are here
//! too; what a commit applies is decided by the table's mode (`crate::mode`).

pub mod data_file;
pub mod deletion_vectors;
pub mod partition;
pub mod progress;

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use deltalake::kernel::Action;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::error::Result;

/// Table property recording the key columns, comma-separated, set when hvrlake creates a table.
pub const KEYS_PROPERTY: &str = "hvrlake.keys";

/// What one commit did to the table's data files (as delta-rs's `MergeMetrics` says it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileMetrics {
    /// Data files in the table before the commit.
    pub before: usize,
    /// Files read to find the rows the changes touch.
    pub scanned: usize,
    /// Files not read: their key statistics or partition hold no changed key.
    pub skipped: usize,
    /// Files read in which a key changed, rewritten without the changed rows (copy-on-write).
    pub rewritten: usize,
    /// Files read in which a key changed, committed again with a deletion vector marking them.
    pub marked: usize,
    /// Files removed from the table (rewritten ones, wholly deleted ones, a refresh's all).
    pub removed: usize,
    /// Data files added.
    pub added: usize,
    /// Bytes of the data files added.
    pub bytes_added: u64,
}

impl std::fmt::Display for FileMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "files before={} scanned={} skipped={} rewritten={} marked={} removed={} added={} bytes_added={}",
            self.before,
            self.scanned,
            self.skipped,
            self.rewritten,
            self.marked,
            self.removed,
            self.added,
            self.bytes_added
        )
    }
}

/// What one commit did, for the summary line and `HVRLAKE_TIMINGS`.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Rows added that did not exist before.
    pub inserted: usize,
    /// Existing rows replaced.
    pub updated: usize,
    /// Rows removed.
    pub deleted: usize,
    /// The table version after the commit (unchanged when nothing was committed).
    pub version: Option<u64>,
    /// What the commit did to the data files.
    pub files: FileMetrics,
}

/// Opens the table at `url`, or an unloaded handle when no table is there yet. Nothing is
/// created on storage until a commit.
pub async fn open(url: &Url, storage: &HashMap<String, String>) -> Result<DeltaTable> {
    if let Some(dir) = local_dir(url)
        && !dir.exists()
    {
        return Ok(DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(storage.clone())
            .build()?);
    }
    let build = || {
        DeltaTableBuilder::from_url(url.clone())
            .map(|b| b.with_storage_options(storage.clone()))
            .and_then(|b| b.build())
    };
    let mut table = build()?;
    match table.load().await {
        Ok(()) => Ok(table),
        // Nothing at that prefix of an object store yet: the first commit creates it.
        Err(deltalake::DeltaTableError::NotATable(_)) => Ok(build()?),
        Err(e) => Err(e.into()),
    }
}

/// Checks that the object store under `table` refuses to create an object that already
/// exists (`If-None-Match: *`): delta-rs 1.x commits on object stores only through such
/// conditional writes, so a store that ignores them lets two writers both win the same
/// table version. Local directories are not checked (the file system's create-new is).
pub async fn check_conditional_writes(table: &DeltaTable) -> Result<()> {
    if local_dir(table.table_url()).is_some() {
        return Ok(());
    }
    let store = table.object_store();
    let mut last_error = None;
    // A request that fails in transit leaves its outcome unknown: probe again under a new
    // name rather than conclude anything from it.
    for attempt in 0..3 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = object_store::path::Path::from(format!(
            "_hvrlake_probe/{}-{nanos}-{attempt}",
            std::process::id()
        ));
        let put = |v: &'static [u8]| {
            store.put_opts(
                &path,
                object_store::PutPayload::from_static(v),
                object_store::PutMode::Create.into(),
            )
        };
        let first = put(b"first").await;
        let second = put(b"second").await;
        let _ = object_store::ObjectStoreExt::delete(&store, &path).await;
        match (first, second) {
            // The second create was refused: the object existed (whether or not the answer to
            // the first one arrived).
            (_, Err(object_store::Error::AlreadyExists { .. })) => return Ok(()),
            (Ok(_), Ok(_)) => crate::bail!(
                "{}: the object store accepted a second create of the same object (it ignores If-None-Match), so two writers could both commit the same Delta version; use a store with conditional writes, or set single_writer=true if no other writer ever touches this lake",
                crate::storage::redact(table.table_url().as_str())
            ),
            (Err(e), _) | (Ok(_), Err(e)) => last_error = Some(e),
        }
    }
    Err(last_error.expect("three failed probes").into())
}

/// The directory of a table on a local file system (None on an object store).
pub fn local_dir(url: &Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}

/// Makes the directory of a local table that is about to get its first files; true when
/// it did not exist before.
pub fn prepare_location(table: &DeltaTable) -> Result<bool> {
    if let Some(dir) = local_dir(table.table_url())
        && !dir.exists()
    {
        std::fs::create_dir_all(&dir)?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether a table exists at this handle.
pub fn exists(table: &DeltaTable) -> bool {
    table.version().is_some()
}

/// The table's columns as Arrow types, when the table exists.
pub fn columns(table: &DeltaTable) -> Result<Option<SchemaRef>> {
    if !exists(table) {
        return Ok(None);
    }
    let snapshot = table.snapshot()?;
    let schema = snapshot.snapshot().arrow_schema();
    // The partition expressions travel with the columns (table::partition).
    let spec = match snapshot.metadata().configuration().get(partition::PROPERTY) {
        Some(text) => partition::parse_list(text).unwrap_or_default(),
        None => snapshot
            .metadata()
            .partition_columns()
            .iter()
            .filter_map(|c| partition::PartExpr::parse(c))
            .collect(),
    };
    if spec.is_empty() {
        return Ok(Some(schema));
    }
    let mut meta = schema.metadata().clone();
    meta.insert(partition::PROPERTY.to_string(), partition::spec_text(&spec));
    Ok(Some(std::sync::Arc::new(
        arrow::datatypes::Schema::new_with_metadata(schema.fields().clone(), meta),
    )))
}

/// The key columns recorded in the table's properties.
pub fn recorded_keys(table: &DeltaTable) -> Result<Option<Vec<String>>> {
    if !exists(table) {
        return Ok(None);
    }
    Ok(table
        .snapshot()?
        .metadata()
        .configuration()
        .get(KEYS_PROPERTY)
        .map(|k| k.split(',').map(str::to_string).collect()))
}

/// `columns` without the schema metadata hvrlake carries on them (partitioning, properties for
/// a new table): delta-rs's writes compare a batch's schema with the table's, metadata too.
pub fn plain_schema(columns: &SchemaRef) -> SchemaRef {
    if columns.metadata().is_empty() {
        return columns.clone();
    }
    std::sync::Arc::new(arrow::datatypes::Schema::new(columns.fields().clone()))
}

/// Rows in the table's current version, from the file statistics.
pub fn row_count(table: &DeltaTable) -> Result<usize> {
    if !exists(table) {
        return Ok(0);
    }
    Ok(table
        .snapshot()?
        .log_data()
        .iter()
        .map(|f| {
            // Rows a deletion vector deletes are not the table's.
            let gone = f
                .deletion_vector_descriptor()
                .map_or(0, |d| d.cardinality as usize);
            f.num_records().unwrap_or(0).saturating_sub(gone)
        })
        .sum())
}

/// Commits `actions` on top of `table`'s current version as `operation`, with the cycle's
/// progress `mark` when given; returns the table at the new version.
pub async fn commit_actions(
    mut table: DeltaTable,
    actions: Vec<Action>,
    operation: DeltaOperation,
    mark: Option<&progress::Mark>,
) -> Result<(DeltaTable, u64)> {
    // Built from commit properties (not CommitBuilder::default()) so that delta-rs's
    // post-commit hook writes checkpoints on the table's interval: without them every load
    // replays the whole log, and each cycle gets slower than the last.
    let props = match mark {
        Some(m) => m.properties(),
        None => deltalake::kernel::transaction::CommitProperties::default(),
    };
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    let version = done.version() as u64;
    // The commit's own snapshot: no listing of the log for a version just written.
    table.state = Some(done.snapshot());
    Ok((table, version))
}

/// Creates the table with `columns`, recording `keys` in its properties (commit version 0).
pub async fn create(table: DeltaTable, columns: &SchemaRef, keys: &[String]) -> Result<DeltaTable> {
    Ok(create_with(table, columns, keys, Vec::new(), 0, None)
        .await?
        .0)
}

/// Creates the table with `columns` and `keys` and, in the same commit (version 0), `adds`
/// (a new table's first data files, holding `rows` rows) and the cycle's progress `mark`: a
/// new table is one commit, its schema, properties, keys and data together. When another
/// writer created the table first, that is a conflict: the caller loads the table and
/// commits on top of it.
pub async fn create_with(
    table: DeltaTable,
    columns: &SchemaRef,
    keys: &[String],
    adds: Vec<deltalake::kernel::Add>,
    rows: usize,
    mark: Option<&progress::Mark>,
) -> Result<(DeltaTable, Outcome)> {
    let files = FileMetrics {
        added: adds.len(),
        bytes_added: adds.iter().map(|a| a.size as u64).sum(),
        ..FileMetrics::default()
    };
    prepare_location(&table)?;
    let schema: StructType = columns.as_ref().try_into_kernel()?;
    let mut props: HashMap<String, Option<String>> = HashMap::new();
    if !keys.is_empty() {
        props.insert(KEYS_PROPERTY.to_string(), Some(keys.join(",")));
    }
    // Delta properties the columns carry for a new table (deletion vectors).
    for (k, v) in columns.metadata() {
        if k.starts_with("delta.") {
            props.insert(k.clone(), Some(v.clone()));
        }
    }
    let spec = partition::spec_of(columns);
    if !spec.is_empty() {
        props.insert(
            partition::PROPERTY.to_string(),
            Some(partition::spec_text(&spec)),
        );
    }
    // Only a bare create may find the table there already and take it as it is.
    let bare = adds.is_empty() && mark.is_none();
    let log_store = table.log_store();
    let created = table
        .create()
        .with_columns(schema.fields().cloned())
        .with_partition_columns(partition::names(columns))
        .with_configuration(props)
        .with_raise_if_key_not_exists(false)
        .with_actions(adds.into_iter().map(Action::Add))
        .with_commit_properties(mark.map(progress::Mark::properties).unwrap_or_default())
        .with_save_mode(if bare {
            SaveMode::Ignore
        } else {
            SaveMode::ErrorIfExists
        })
        .await;
    match created {
        Ok(table) => {
            let outcome = Outcome {
                inserted: rows,
                version: table.version(),
                files,
                ..Outcome::default()
            };
            Ok((table, outcome))
        }
        Err(e) if !bare && log_store.is_delta_table_location().await.unwrap_or(false) => Err(
            crate::error::Error::conflict(format!("the table was created by another writer ({e})")),
        ),
        Err(e) => Err(e.into()),
    }
}

/// The table property that switches the change data feed on.
pub const CHANGE_DATA_FEED: &str = "delta.enableChangeDataFeed";

/// Whether the table writes a change data feed.
pub fn change_data_feed(table: &DeltaTable) -> bool {
    property_is_true(table, CHANGE_DATA_FEED)
}

/// Whether `table`'s property `name` is `true` (in any case).
pub fn property_is_true(table: &DeltaTable, name: &str) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.metadata()
            .configuration()
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// Switches the change data feed on for `table` (creating the table with `columns` and `keys`
/// first when it does not exist yet); a table that has it already is returned as it is.
pub async fn enable_change_data_feed(
    table: DeltaTable,
    columns: &SchemaRef,
    keys: &[String],
) -> Result<DeltaTable> {
    let table = if exists(&table) {
        table
    } else {
        create(table, columns, keys).await?
    };
    if change_data_feed(&table) {
        return Ok(table);
    }
    Ok(table
        .set_tbl_properties()
        .with_properties(HashMap::from([(
            CHANGE_DATA_FEED.to_string(),
            "true".to_string(),
        )]))
        .await?)
}

/// The Metadata action that gives `table` the columns `columns`, when they differ from its
/// current ones (a cycle brought new columns); None when they are the same.
pub fn schema_change(table: &DeltaTable, columns: &SchemaRef) -> Result<Option<Action>> {
    use deltalake::kernel::MetadataExt;
    if !exists(table) {
        return Ok(None);
    }
    let snapshot = table.snapshot()?;
    let current = snapshot.snapshot().arrow_schema();
    let same = current.fields().len() == columns.fields().len()
        && current.fields().iter().zip(columns.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        });
    let parts = partition::names(columns);
    let same_parts = snapshot.metadata().partition_columns() == parts;
    if same && same_parts {
        return Ok(None);
    }
    let schema: StructType = columns.as_ref().try_into_kernel()?;
    if !same_parts {
        // A refresh with another partitioning: new metadata, same table id and properties.
        let spec = partition::spec_text(&partition::spec_of(columns));
        let mut config: HashMap<String, String> = snapshot.metadata().configuration().clone();
        config.remove(partition::PROPERTY);
        if !spec.is_empty() {
            config.insert(partition::PROPERTY.to_string(), spec);
        }
        let kernel = |e: deltalake::kernel::Error| crate::error::Error::msg(e.to_string());
        return Ok(Some(Action::Metadata(
            deltalake::kernel::new_metadata(&schema, parts, config)
                .map_err(kernel)?
                .with_table_id(snapshot.metadata().id().to_string())
                .map_err(kernel)?,
        )));
    }
    Ok(Some(Action::Metadata(
        snapshot
            .metadata()
            .clone()
            .with_schema(&schema)
            .map_err(|e| crate::error::Error::msg(e.to_string()))?,
    )))
}
