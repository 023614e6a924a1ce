//! The bytes of a local file, memory-mapped (input files, and the data files a merge on a
//! local table rewrites), or bytes held in memory.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

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
