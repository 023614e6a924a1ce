//! The bytes of one input file: mapped when local, fetched with ranged GETs from an object
//! store ([`object`]), decoded to UTF-8 when the channel writes another encoding; and the
//! removal of a cycle's files once their tables are committed.

#[cfg(feature = "lake")]
pub mod object;

#[cfg(feature = "lake")]
use futures::StreamExt;

use crate::error::Result;
use crate::read::csv::Encoding;
pub use crate::storage::mapped::Bytes;
#[cfg(feature = "lake")]
pub use object::{FileRef, Location, store_at};

/// One input file of a table.
#[cfg(feature = "lake")]
#[derive(Clone, Debug)]
pub struct InputFile {
    /// The name as listed (relative to the file location), for messages and removal.
    pub name: String,
    /// Where it is: a local path, or an object under the file location's prefix.
    pub source: FileRef,
    /// Rows HVR says it wrote (`HVR_FILE_NROWS`), checked when known.
    pub expected_rows: Option<u64>,
}

/// Removes processed files, several DELETEs at once when the location is on object storage;
/// a file that cannot be removed is a warning (its table is committed).
#[cfg(feature = "lake")]
pub async fn remove<'f>(files: impl Iterator<Item = &'f InputFile>) {
    let mut removed = futures::stream::iter(files)
        .map(|f| async move { (f, f.source.remove().await) })
        .buffer_unordered(16);
    while let Some((f, done)) = removed.next().await {
        if let Err(e) = done {
            eprintln!(
                "W_JX0E00: {}: committed, but the file could not be removed: {e}",
                f.name
            );
        }
    }
}

/// Turns text in `encoding` into UTF-8 (borrowing when it already is), dropping a BOM.
pub fn to_utf8(bytes: Bytes, encoding: Encoding, shown: &str) -> Result<Bytes> {
    let b: &[u8] = &bytes;
    Ok(match encoding {
        Encoding::Utf8 => {
            if b.starts_with(&[0xEF, 0xBB, 0xBF]) {
                Bytes::Owned(b[3..].to_vec())
            } else {
                bytes
            }
        }
        Encoding::Latin1 => Bytes::Owned(
            b.iter()
                .map(|&c| c as char)
                .collect::<String>()
                .into_bytes(),
        ),
        Encoding::Windows1252 => Bytes::Owned(
            b.iter()
                .map(|&c| cp1252(c))
                .collect::<String>()
                .into_bytes(),
        ),
        Encoding::Utf16Le | Encoding::Utf16Be => {
            if !b.len().is_multiple_of(2) {
                crate::bail!("{shown}: UTF-16 text has an odd number of bytes");
            }
            let units = b.chunks_exact(2).map(|p| match encoding {
                Encoding::Utf16Le => u16::from_le_bytes([p[0], p[1]]),
                _ => u16::from_be_bytes([p[0], p[1]]),
            });
            let mut s = String::with_capacity(b.len() / 2);
            for (i, c) in char::decode_utf16(units).enumerate() {
                match c {
                    Ok('\u{feff}') if i == 0 => {}
                    Ok(c) => s.push(c),
                    Err(_) => crate::bail!("{shown}: invalid UTF-16 at byte {}", i * 2),
                }
            }
            Bytes::Owned(s.into_bytes())
        }
    })
}

fn cp1252(c: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    match c {
        0x80..=0x9f => HIGH[(c - 0x80) as usize],
        _ => c as char,
    }
}
