//! Input files where HVR writes them: a local directory (memory-mapped), or an `s3://`,
//! `az://` or `abfss://` prefix (HVR_FILE_LOC as a URL), read with parallel ranged GETs into
//! memory and removed with DELETEs once their table is committed.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{Error, Result};
use crate::storage::mapped::{self as source, Bytes};
use crate::storage::{FileLoc, file_path, redact};

/// Bytes asked for by one ranged GET.
const RANGE_BYTES: u64 = 8 << 20;
/// Ranged GETs of one file in flight at once.
const RANGES_IN_FLIGHT: usize = 8;

/// Where one input file is.
#[derive(Clone, Debug)]
pub enum FileRef {
    /// A file on a local (or mounted) file system.
    Local(PathBuf),
    /// An object under the file location's prefix.
    Object {
        /// The store, rooted at the file location.
        store: Arc<dyn ObjectStore>,
        /// The object's path under that root.
        path: ObjectPath,
    },
}

/// The file location opened for reading and removing its files.
#[derive(Clone, Debug)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An object-store prefix; the store is rooted there.
    Store(Arc<dyn ObjectStore>),
}

impl Location {
    /// Opens `loc` with the object-store options of the settings (credentials, endpoint,
    /// retries), which are the same as the lake's.
    pub fn open(loc: &FileLoc, options: &HashMap<String, String>) -> Result<Self> {
        Ok(match loc {
            FileLoc::Local(p) => Location::Local(p.clone()),
            FileLoc::Url { url, options: own } => {
                let mut all = options.clone();
                all.extend(own.iter().cloned());
                Location::Store(store_at(url, &all)?)
            }
        })
    }

    /// The listed file `name` under this location (it may not leave the location).
    pub fn file(&self, name: &str) -> Result<FileRef> {
        Ok(match self {
            Location::Local(dir) => FileRef::Local(file_path(dir, name)?),
            Location::Store(store) => {
                // The same rule as for local names: a plain relative path.
                file_path(std::path::Path::new(""), name)?;
                let path = ObjectPath::parse(name).map_err(|e| {
                    Error::msg(format!(
                        "file name '{name}' in HVR_FILE_NAMES is not a valid object name: {e}"
                    ))
                })?;
                FileRef::Object {
                    store: store.clone(),
                    path,
                }
            }
        })
    }
}

impl Location {
    /// Every file under the location, as names relative to it with their sizes, except
    /// HVR's own folders (`_hvr_state`, `_hvr_intermediate`, anything starting `_hvr_`) and
    /// `skip`.
    pub async fn list(&self, skip: Option<&std::path::Path>) -> Result<Vec<(String, u64)>> {
        let hvr_own = |name: &str| name.split('/').any(|seg| seg.starts_with("_hvr_"));
        let mut out = Vec::new();
        match self {
            Location::Local(dir) => {
                let mut todo = vec![dir.clone()];
                while let Some(d) = todo.pop() {
                    if skip.is_some_and(|s| s == d) {
                        continue;
                    }
                    for entry in std::fs::read_dir(&d)? {
                        let entry = entry?;
                        let path = entry.path();
                        let Ok(rel) = path.strip_prefix(dir) else {
                            continue;
                        };
                        let name = rel.to_string_lossy().replace('\\', "/");
                        if hvr_own(&name) {
                            continue;
                        }
                        let meta = entry.metadata()?;
                        if meta.is_dir() {
                            todo.push(path);
                        } else {
                            out.push((name, meta.len()));
                        }
                    }
                }
            }
            Location::Store(store) => {
                let all: Vec<_> = store.list(None).try_collect().await?;
                out.extend(
                    all.into_iter()
                        .map(|m| (m.location.to_string(), m.size))
                        .filter(|(n, _)| !hvr_own(n)),
                );
            }
        }
        out.sort();
        Ok(out)
    }
}

/// An object store rooted at `url`, built by delta-rs's own factories (so the same
/// `AWS_*`/`AZURE_*` variables and settings apply as for the lake).
pub fn store_at(url: &Url, options: &HashMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
    crate::storage::register_stores();
    deltalake::logstore::store_for(url, options.iter()).map_err(|e| {
        Error::msg(format!(
            "HVR_FILE_LOC {}: {}",
            redact(url.as_str()),
            redact(&e.to_string())
        ))
    })
}

impl FileRef {
    /// The file's bytes: mapped when local, fetched with parallel ranged GETs otherwise.
    /// A missing or empty file is an error naming it (`shown`).
    pub async fn read(&self, shown: &str) -> Result<Bytes> {
        match self {
            FileRef::Local(p) => source::map_file(p, shown),
            FileRef::Object { store, path } => fetch(store, path, shown).await.map(Bytes::Owned),
        }
    }

    /// Removes the file; one that is already gone is not an error.
    pub async fn remove(&self) -> std::result::Result<(), String> {
        let done = match self {
            FileRef::Local(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            FileRef::Object { store, path } => match store.delete(path).await {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => Err(e.to_string()),
                _ => Ok(()),
            },
        };
        done.map_err(|e| redact(&e))
    }
}

async fn fetch(store: &Arc<dyn ObjectStore>, path: &ObjectPath, shown: &str) -> Result<Vec<u8>> {
    let failed = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => Error::msg(format!("{shown}: file does not exist")),
        e => Error::msg(format!("{shown}: cannot read: {}", redact(&e.to_string()))),
    };
    let len = store.head(path).await.map_err(failed)?.size;
    if len == 0 {
        crate::bail!("{shown}: file is empty (an HVR file has at least a header line)");
    }
    let ranges: Vec<Range<u64>> = (0..len)
        .step_by(RANGE_BYTES as usize)
        .map(|s| s..(s + RANGE_BYTES).min(len))
        .collect();
    let mut out = Vec::with_capacity(len as usize);
    let mut parts = futures::stream::iter(ranges)
        .map(|r| store.get_range(path, r))
        .buffered(RANGES_IN_FLIGHT);
    while let Some(part) = parts.try_next().await.map_err(failed)? {
        out.extend_from_slice(&part);
    }
    if out.len() as u64 != len {
        crate::bail!(
            "{shown}: read {} bytes where the store listed {len} (the file changed while it was read)",
            out.len()
        );
    }
    Ok(out)
}
