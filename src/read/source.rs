//! The bytes of one input file: memory-mapped when local, decoded to UTF-8 when the
//! channel writes another encoding.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::settings::Encoding;

/// The bytes of a file, owned or mapped.
pub enum Bytes {
    /// A read-only memory map of a local file.
    Mapped(Mmap),
    /// Bytes held in memory (transcoded text, or fetched objects).
    Owned(Vec<u8>),
}

impl Bytes {
    /// Tells the kernel the mapped pages wholly inside `[start, end)` are no longer needed,
    /// so they leave this process's resident set (they are read again from the file if
    /// touched). Owned bytes are left alone.
    pub fn release(&self, start: usize, end: usize) {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = self {
            const PAGE: usize = 4096;
            let from = start.div_ceil(PAGE) * PAGE;
            let to = if end >= m.len() {
                m.len()
            } else {
                end / PAGE * PAGE
            };
            if to > from {
                // SAFETY: the map is a read-only file mapping: after MADV_DONTNEED its pages
                // are read back from the file on the next access, so every slice of it stays
                // valid and keeps its contents.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
                };
            }
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Maps a local file; a missing or empty file is an error naming it.
pub fn map_file(path: &Path, shown: &str) -> Result<Bytes> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::msg(format!("{shown}: file does not exist")),
        _ => Error::msg(format!("{shown}: cannot open: {e}")),
    })?;
    let len = file
        .metadata()
        .map_err(|e| Error::msg(format!("{shown}: {e}")))?
        .len();
    if len == 0 {
        crate::bail!("{shown}: file is empty (an HVR file has at least a header line)");
    }
    // SAFETY: the file is only read; HVR does not rewrite a file it has handed to the agent.
    let map =
        unsafe { Mmap::map(&file) }.map_err(|e| Error::msg(format!("{shown}: cannot map: {e}")))?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::Mapped(map))
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
