//! Deletion vectors (Delta's `deletionVectors` table feature): instead of rewriting a data file
//! that holds changed keys, a merge marks those rows deleted in a bitmap stored beside the
//! table, and commits the same file again with the new bitmap. A cycle then costs what its
//! changes cost, not what the files they touch cost.
//!
//! The bitmaps are Delta's `RoaringBitmapArray` (portable 64-bit roaring, magic 1681511377),
//! written by the kernel's [`StreamingDeletionVectorWriter`] into one
//! `deletion_vector_<uuid>.bin` per commit, with its size and CRC framing; they are read back
//! here to add to a file's existing bitmap.

use delta_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use deltalake::DeltaTable;
use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringTreemap;

use crate::error::{Error, Result};

/// The table property that switches deletion vectors on.
pub const PROPERTY: &str = "delta.enableDeletionVectors";

/// `RoaringBitmapArray` magic number, little-endian, before the bitmap.
const MAGIC: u32 = 1681511377;

/// Whether merges into `table` may write deletion vectors: its property says so (delta-rs then
/// gives it the table feature).
pub fn enabled(table: &DeltaTable) -> bool {
    super::property_is_true(table, PROPERTY)
}

/// The rows a file's deletion vector deletes.
pub async fn read(
    store: &dyn ObjectStore,
    dv: &DeletionVectorDescriptor,
) -> Result<RoaringTreemap> {
    let bad = |what: &str| Error::msg(format!("deletion vector {}: {what}", dv.path_or_inline_dv));
    let bytes: Vec<u8> = match dv.storage_type {
        StorageType::Inline => z85::decode(&dv.path_or_inline_dv).map_err(|_| bad("not z85"))?,
        StorageType::UuidRelativePath => {
            let path = relative_path(&dv.path_or_inline_dv).ok_or_else(|| bad("no uuid"))?;
            let start = dv.offset.unwrap_or(1) as u64;
            let end = start + 4 + dv.size_in_bytes as u64;
            let framed = store
                .get_range(&deltalake::Path::from(path), start..end)
                .await?;
            let size = u32::from_be_bytes(framed[..4].try_into().expect("4 bytes")) as usize;
            if size != dv.size_in_bytes as usize {
                return Err(bad("size in the file differs from the log's"));
            }
            framed[4..].to_vec()
        }
        StorageType::AbsolutePath => {
            return Err(bad(
                "stored at an absolute path, which hvrlake does not read",
            ));
        }
    };
    if bytes.len() < 4 || u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(bad("not a portable roaring bitmap"));
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).map_err(|e| bad(&e.to_string()))
}

/// `deletion_vector_<uuid>.bin` under the optional random prefix, from a descriptor's
/// `<prefix><z85 uuid>`.
fn relative_path(encoded: &str) -> Option<String> {
    let split = encoded.len().checked_sub(20)?;
    let (prefix, id) = encoded.split_at(split);
    let uuid = uuid::Uuid::from_slice(&z85::decode(id).ok()?).ok()?;
    Some(if prefix.is_empty() {
        format!("deletion_vector_{uuid}.bin")
    } else {
        format!("{prefix}/deletion_vector_{uuid}.bin")
    })
}

/// Writes `vectors` (the rows each file's deletion vector deletes) into one new
/// `deletion_vector_<uuid>.bin` under the table; their descriptors, in the same order.
pub async fn write(
    store: &dyn ObjectStore,
    vectors: &[RoaringTreemap],
) -> Result<Vec<DeletionVectorDescriptor>> {
    if vectors.is_empty() {
        return Ok(Vec::new());
    }
    let uuid = uuid::Uuid::new_v4();
    let mut bytes: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(vectors.len());
    let failed = |e: delta_kernel::Error| Error::msg(format!("writing a deletion vector: {e}"));
    {
        let mut w = StreamingDeletionVectorWriter::new(&mut bytes);
        for rows in vectors {
            let mut dv = KernelDeletionVector::new();
            dv.add_deleted_row_indexes(rows.iter());
            let done = w.write_deletion_vector(dv).map_err(failed)?;
            out.push(DeletionVectorDescriptor {
                storage_type: StorageType::UuidRelativePath,
                path_or_inline_dv: z85::encode(uuid.as_bytes()),
                offset: Some(done.offset),
                size_in_bytes: done.size_in_bytes,
                cardinality: done.cardinality,
            });
        }
        w.finalize().map_err(failed)?;
    }
    let path = deltalake::Path::from(format!("deletion_vector_{uuid}.bin"));
    store.put(&path, bytes.into()).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn vectors_read_back_as_written() {
        let store = object_store::memory::InMemory::new();
        let a: RoaringTreemap = [0u64, 5, 9, 70_000, 5_000_000_000].into_iter().collect();
        let b: RoaringTreemap = (100u64..200).collect();
        let ds = write(&store, &[a.clone(), b.clone()]).await.unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].cardinality, 5);
        assert_eq!(ds[1].cardinality, 100);
        assert_eq!(ds[0].path_or_inline_dv.len(), 20);
        assert_eq!(read(&store, &ds[0]).await.unwrap(), a);
        assert_eq!(read(&store, &ds[1]).await.unwrap(), b);
        // The kernel (what delta-rs readers use) reads the same rows.
        let kernel: delta_kernel::actions::deletion_vector::DeletionVectorDescriptor =
            ds[1].clone().try_into().unwrap();
        let rel = kernel
            .absolute_path(&url::Url::parse("memory:///t/").unwrap())
            .unwrap()
            .unwrap();
        assert!(rel.path().starts_with("/t/deletion_vector_"), "{rel}");
    }
}
