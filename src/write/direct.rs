//! A data file of a table on a local disk, written around the page cache (`O_DIRECT`).
//!
//! Writing a file through the page cache copies every byte into pages the kernel must first
//! find and zero; on these virtual machines that is also memory the host must back again, and
//! it was 13% of an integrate's CPU and 7% of a refresh's (docs/benchmarks.md, "Writing data
//! files"). A direct write hands the disk the process's own buffer, which stays warm from one block to the
//! next, so the copy leaves the call's CPU. What goes direct is whole blocks of [`ALIGN`] bytes
//! from a buffer aligned the same; the last partial block goes through the page cache. A file
//! system that refuses `O_DIRECT` (tmpfs, or any other platform than Linux) gets plain writes.
//!
//! The file is written under a staging name beside its final one (`<name>#partial`, where an
//! object store's local upload stages too) and renamed into place once complete, so a reader
//! never sees part of it.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The alignment of the buffer, of each direct write's length and of its file offset: the
/// logical block size of common disks (512 or 4096) divides it.
pub const ALIGN: usize = 4096;

/// Bytes gathered before they go to the disk in one write.
const CHUNK: usize = 4 << 20;

/// A local data file on its way to disk.
pub struct DirectFile {
    /// Opened with `O_DIRECT`; None when the file system refused it, or refused a write.
    direct: Option<File>,
    /// The same file through the page cache: the last partial block, and every write when
    /// `direct` is None.
    plain: File,
    staging: PathBuf,
    path: PathBuf,
    /// [`CHUNK`] bytes starting at `start`, which is aligned to [`ALIGN`] (the Vec has that much
    /// more room and never grows).
    buf: Vec<u8>,
    start: usize,
    /// Bytes of `buf` from `start` not yet written.
    fill: usize,
    /// Bytes of the file written so far.
    offset: u64,
}

impl DirectFile {
    /// Creates `path`'s staging file (its directory must exist).
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut staging = path.as_os_str().to_owned();
        staging.push("#partial");
        let staging = PathBuf::from(staging);
        let plain = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staging)?;
        let direct = open_direct(&staging);
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Ok(DirectFile {
            direct,
            plain,
            staging,
            path: path.to_path_buf(),
            buf,
            start,
            fill: 0,
            offset: 0,
        })
    }

    /// Whether whole blocks go around the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Every write through the page cache, as on a file system that refuses `O_DIRECT`.
    #[cfg(test)]
    fn plain_only(mut self) -> Self {
        self.direct = None;
        self
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (CHUNK - self.fill).min(data.len());
            let at = self.start + self.fill;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == CHUNK {
                self.flush(CHUNK)?;
            }
        }
        Ok(())
    }

    /// Writes out what is left and renames the file into place; returns its size.
    pub fn finish(mut self) -> io::Result<u64> {
        let whole = self.fill / ALIGN * ALIGN;
        if whole > 0 {
            self.flush(whole)?;
        }
        if self.fill > 0 {
            let tail = &self.buf[self.start..self.start + self.fill];
            write_at(&mut self.plain, tail, self.offset)?;
            self.offset += self.fill as u64;
        }
        std::fs::rename(&self.staging, &self.path)?;
        Ok(self.offset)
    }

    /// Deletes the staging file.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.staging);
    }

    /// Writes the first `n` pending bytes (a multiple of [`ALIGN`]) and moves the rest to the
    /// start of the buffer.
    fn flush(&mut self, n: usize) -> io::Result<()> {
        let block = &self.buf[self.start..self.start + n];
        if let Some(f) = &mut self.direct {
            match write_at(f, block, self.offset) {
                Ok(()) => {}
                // A file system that took the flag at open but not the write (an alignment
                // larger than ALIGN, say): this file goes through the page cache from here.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => return Err(e),
            }
        }
        if self.direct.is_none() {
            write_at(&mut self.plain, block, self.offset)?;
        }
        self.offset += n as u64;
        self.buf
            .copy_within(self.start + n..self.start + self.fill, self.start);
        self.fill -= n;
        Ok(())
    }
}

/// Writes all of `data` at `offset` of `f`.
fn write_at(f: &mut File, data: &[u8], offset: u64) -> io::Result<()> {
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ from block to block, so a block written at the wrong offset shows.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 4096) as u8).collect()
    }

    #[test]
    fn a_file_reads_back_as_written_whatever_the_sizes_of_the_writes() {
        round_trips(false);
    }

    #[test]
    fn a_file_system_without_direct_writes_gets_the_same_file() {
        round_trips(true);
    }

    fn round_trips(plain: bool) {
        let dir = tempfile::tempdir().unwrap();
        // Under a chunk, exactly blocks, a chunk and a bit, several chunks and an odd tail.
        for (i, total) in [0, 100, ALIGN * 3, CHUNK + 17, 3 * CHUNK + ALIGN + 5]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}.parquet"));
            let data = pattern(total);
            let mut f = DirectFile::create(&path).unwrap();
            if plain {
                f = f.plain_only();
                assert!(!f.is_direct());
            }
            for piece in data.chunks(1_000_003) {
                f.write(piece).unwrap();
            }
            assert!(!path.exists(), "the file shows only once complete");
            assert_eq!(f.finish().unwrap(), total as u64);
            assert_eq!(std::fs::read(&path).unwrap(), data, "{total} bytes");
            let mut staging = path.clone().into_os_string();
            staging.push("#partial");
            assert!(!Path::new(&staging).exists());
        }
    }

    #[test]
    fn an_aborted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.parquet");
        let mut f = DirectFile::create(&path).unwrap();
        f.write(&pattern(CHUNK + 1)).unwrap();
        f.abort();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
