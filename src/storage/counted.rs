//! The object-store requests of a call, counted: every store delta-rs opens for an `s3://` or
//! Azure lake is wrapped ([`wrap_factories`]), and `HVRLAKE_TIMINGS` prints the counts of the
//! call ([`report`]). What a cycle costs on an object store is mostly its round trips.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use url::Url;

/// Requests by kind: get (ranges included), head, put (multipart parts included), list,
/// delete, copy or rename.
static COUNTS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
const NAMES: [&str; 6] = ["get", "head", "put", "list", "delete", "copy"];
const GET: usize = 0;
const HEAD: usize = 1;
const PUT: usize = 2;
const LIST: usize = 3;
const DELETE: usize = 4;
const COPY: usize = 5;

fn count(kind: usize, n: u64) {
    COUNTS[kind].fetch_add(n, Ordering::Relaxed);
}

/// The requests counted so far, as `requests=N (get=… head=… …)`.
pub fn report() -> String {
    let n: Vec<u64> = COUNTS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let parts: Vec<String> = NAMES
        .iter()
        .zip(&n)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    format!(
        "object-store requests={} ({})",
        n.iter().sum::<u64>(),
        parts.join(" ")
    )
}

/// Wraps the store factories registered for `schemes` so that their stores count requests.
pub fn wrap_factories(schemes: &[&str]) {
    let registry = deltalake::logstore::object_store_factories();
    for scheme in schemes {
        let Ok(url) = Url::parse(&format!("{scheme}://")) else {
            continue;
        };
        let Some(inner) = registry.get(&url).map(|f| f.value().clone()) else {
            continue;
        };
        registry.insert(url, Arc::new(CountingFactory { inner }));
    }
}

struct CountingFactory {
    inner: Arc<dyn ObjectStoreFactory>,
}

impl ObjectStoreFactory for CountingFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = self.inner.parse_url_opts(url, config)?;
        Ok((Arc::new(Counted { inner: store }), path))
    }
}

/// A store that counts the requests it passes on.
#[derive(Debug)]
struct Counted {
    inner: ObjectStoreRef,
}

impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counted {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        count(PUT, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        count(PUT, 1);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload { inner }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        count(if options.head { HEAD } else { GET }, 1);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        count(GET, ranges.len() as u64);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        use futures::StreamExt;
        let counted = locations.inspect(|_| count(DELETE, 1)).boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        count(LIST, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        count(LIST, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        count(LIST, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        count(COPY, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        count(COPY, 1);
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts are counted as puts.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
}

#[async_trait::async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        count(PUT, 1);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        count(PUT, 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        count(DELETE, 1);
        self.inner.abort().await
    }
}
