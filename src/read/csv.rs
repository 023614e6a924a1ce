//! HVR CSV → typed Arrow change batches, in parallel.
//!
//! The body after the header is cut into pieces of about `chunk_bytes` at record boundaries
//! found by quote parity: each piece counts its quotes and notes its first newline at even
//! and at odd parity, and a prefix pass picks, for every piece, the newline that is really
//! outside quotes. Pieces are then tokenized and decoded on rayon's pool. Anything
//! unexpected (a stray quote, a bad record) sends the file through the same decoder as one
//! piece, so errors are reported at the first bad place in file order.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    StringArray, TimestampMicrosecondBuilder, TimestampNanosecondBuilder, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, TimeUnit};
use memchr::{memchr, memchr2};
use rayon::prelude::*;

use super::{FileColumns, TableLayout, shown};
use crate::change::{self, Op};
use crate::error::{Error, Result};
use crate::schema::types::{self, Check, Inference};
use crate::storage::mapped::Bytes;

const QUOTED: u32 = 1 << 31;
const ESCAPED: u32 = 1 << 30;
const OFFSET: u32 = ESCAPED - 1;
const MAX_PIECE: usize = OFFSET as usize;
const INVALID_UTF8: &str = "invalid UTF-8 (set csv_encoding if the files are not UTF-8)";

/// Text encodings HVR can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, read without conversion.
    Utf8,
    /// ISO-8859-1 (Latin-1).
    Latin1,
    /// WINDOWS-1252.
    Windows1252,
    /// UTF-16 little endian.
    Utf16Le,
    /// UTF-16 big endian.
    Utf16Be,
}

/// The CSV dialect of the channel's files.
#[derive(Clone, Debug)]
pub struct CsvDialect {
    /// Field separator byte.
    pub separator: u8,
    /// Quote byte.
    pub quote: u8,
    /// NULL token; `None` means an empty unquoted field is NULL.
    pub null: Option<String>,
    /// Text encoding of the files.
    pub encoding: Encoding,
}

/// One field of a tokenized piece: offsets relative to the piece, flags in `start`'s top bits.
#[derive(Clone, Copy, Debug)]
struct Tok {
    start: u32,
    end: u32,
}

/// A problem at a byte offset of the file, turned into `file:line:col` by [`CsvFile::error`].
#[derive(Debug)]
struct At {
    pos: usize,
    msg: String,
}

/// One CSV file, UTF-8, split into record-aligned pieces.
pub struct CsvFile<'a> {
    bytes: &'a [u8],
    name: &'a str,
    dialect: &'a CsvDialect,
    /// The header's column names.
    pub header: Vec<String>,
    /// Where the body (the records after the header) starts.
    body: usize,
    /// The piece size asked for.
    chunk: usize,
    /// The mapped file, when pages may be released once decoded.
    source: Option<&'a Bytes>,
}

impl<'a> CsvFile<'a> {
    /// Reads the header and cuts the body into pieces of about `chunk_bytes`.
    pub fn open(
        bytes: &'a [u8],
        name: &'a str,
        dialect: &'a CsvDialect,
        chunk_bytes: usize,
    ) -> Result<Self> {
        Self::open_in(bytes, None, name, dialect, chunk_bytes)
    }

    /// [`CsvFile::open`] on a mapped file whose pages are released as soon as they have been
    /// scanned or decoded, so a file larger than memory streams through.
    pub fn open_mapped(
        source: &'a Bytes,
        name: &'a str,
        dialect: &'a CsvDialect,
        chunk_bytes: usize,
    ) -> Result<Self> {
        Self::open_in(source, Some(source), name, dialect, chunk_bytes)
    }

    fn open_in(
        bytes: &'a [u8],
        source: Option<&'a Bytes>,
        name: &'a str,
        dialect: &'a CsvDialect,
        chunk_bytes: usize,
    ) -> Result<Self> {
        let mut f = CsvFile {
            bytes,
            name,
            dialect,
            header: Vec::new(),
            body: 0,
            chunk: chunk_bytes.clamp(1, MAX_PIECE),
            source,
        };
        let mut toks = Vec::new();
        let header_end = match f.tokenize_record(0, &mut toks) {
            Ok(end) => end,
            Err(at) => return Err(f.error(at)),
        };
        let head = &bytes[..header_end];
        if let Err(e) = std::str::from_utf8(head) {
            return Err(f.error(At {
                pos: e.valid_up_to(),
                msg: "invalid UTF-8 in the header".into(),
            }));
        }
        f.header = toks
            .iter()
            .map(|t| String::from_utf8_lossy(&field(head, *t)).trim().to_string())
            .collect();
        if f.header.iter().all(|h| h.is_empty()) {
            return Err(f.error(At {
                pos: 0,
                msg: "the header line names no columns".into(),
            }));
        }
        f.body = header_end;
        Ok(f)
    }

    /// Infers a type for each file position from every non-NULL value, in parallel.
    pub fn infer(&self) -> Result<Vec<Inference>> {
        Ok(self.infer_pieces(usize::MAX)?.0)
    }

    /// Infers types from the first `pieces` pieces only: a guess that
    /// [`CsvFile::decode_each`] can check against every value while it decodes. Also says
    /// how many pieces it read (fewer when the file has fewer).
    pub fn infer_sample(&self, pieces: usize) -> Result<(Vec<Inference>, usize)> {
        self.infer_pieces(pieces.max(1))
    }

    fn infer_pieces(&self, pieces: usize) -> Result<(Vec<Inference>, usize)> {
        let n = self.header.len();
        let mut all = vec![Inference::default(); n];
        let read = self.pieces_each(
            pieces,
            |start, end, _, toks| {
                let mut inf = vec![Inference::default(); n];
                self.infer_into(&self.bytes[start..end], toks, &mut inf, None);
                Ok(inf)
            },
            |wave| {
                for p in wave {
                    merge_into(&mut all, &p);
                }
                Ok(())
            },
        )?;
        Ok((all, read))
    }

    /// Adds every non-NULL value of a tokenized piece to `inf`, only at the positions `checks`
    /// marks [`Check::Infer`] when given.
    fn infer_into(
        &self,
        piece: &[u8],
        toks: &[Tok],
        inf: &mut [Inference],
        checks: Option<&[Check]>,
    ) {
        let n = self.header.len();
        if checks.is_some_and(|c| !c.contains(&Check::Infer)) {
            return;
        }
        for rec in toks.chunks_exact(n) {
            for (i, t) in rec.iter().enumerate() {
                if checks.is_some_and(|c| c[i] != Check::Infer) {
                    continue;
                }
                if !self.is_null(piece, *t) {
                    inf[i].add(&field(piece, *t));
                }
            }
        }
    }

    /// Decodes every record into batches of `layout`, `file_index` ordering files.
    pub fn decode(
        &self,
        layout: &TableLayout,
        plan: &FileColumns,
        file_index: u32,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        self.decode_each(layout, plan, file_index, None, |b| {
            out.push(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Decodes every record into batches of `layout` (a change batch, or only the data
    /// columns for a refresh), handing them to `sink` in file order as each wave of pieces is
    /// done; nothing after the first bad record reaches `sink`.
    ///
    /// With `checks` (one per file position), also makes sure every value keeps the types a
    /// refresh guessed from a sample, in the same pass: positions marked [`Check::Strict`] are
    /// decoded by inference's rules, and the values of positions marked [`Check::Infer`] are
    /// inferred and returned. So the files are read once when the guess holds.
    pub fn decode_each(
        &self,
        layout: &TableLayout,
        plan: &FileColumns,
        file_index: u32,
        checks: Option<&[Check]>,
        mut sink: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<Option<Vec<Inference>>> {
        let schema = layout.batch_schema();
        let n = self.header.len();
        let mut inferred = checks.map(|_| vec![Inference::default(); n]);
        self.pieces_each(
            usize::MAX,
            |start, end, piece_no, toks| {
                let piece = &self.bytes[start..end];
                let d = PieceDecoder {
                    file: self,
                    piece,
                    base: start,
                    toks,
                    ncols: n,
                    checks,
                };
                let columns = d.decode(layout, plan, file_index, piece_no)?;
                let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| At {
                    pos: start,
                    msg: e.to_string(),
                })?;
                let inf = checks.map(|c| {
                    let mut inf = vec![Inference::default(); n];
                    self.infer_into(piece, toks, &mut inf, Some(c));
                    inf
                });
                Ok((batch, inf))
            },
            |wave| {
                for (b, inf) in wave {
                    if let (Some(all), Some(inf)) = (inferred.as_mut(), inf) {
                        merge_into(all, &inf);
                    }
                    if b.num_rows() > 0 {
                        sink(b)?;
                    }
                }
                Ok(())
            },
        )?;
        Ok(inferred)
    }

    /// Runs `f` on every tokenized piece (the first `max_pieces`), a wave of pieces at a time
    /// on rayon's pool, and hands each wave's results in file order to `sink`; the pages of a
    /// finished wave are released. Returns how many pieces it ran. The pieces are cut just
    /// ahead of each wave ([`Cuts`]). When a piece fails while pieces were cut by quote
    /// parity, the rest of the file is re-cut by reading its records one after another, so
    /// that a quote inside an unquoted field cannot shift the cuts and the error reported is
    /// the first in file order.
    fn pieces_each<T: Send>(
        &self,
        max_pieces: usize,
        f: impl Fn(usize, usize, u32, &[Tok]) -> Result<T, At> + Sync,
        mut sink: impl FnMut(Vec<T>) -> Result<()>,
    ) -> Result<usize> {
        let run = |start: usize, end: usize, piece_no: u32, split: bool| -> Result<T, At> {
            if end - start > MAX_PIECE {
                return Err(At {
                    pos: start,
                    msg: format!("a record run longer than {MAX_PIECE} bytes"),
                });
            }
            // Each worker tokenizes into the buffer it used for its last piece: fresh memory
            // for every piece costs page faults and cache misses on every token written.
            thread_local! {
                static TOKS: std::cell::Cell<Vec<Tok>> = const { std::cell::Cell::new(Vec::new()) };
            }
            let toks = match self.tokenize(start, end, split, TOKS.take()) {
                Ok(toks) => toks,
                // Text is checked as UTF-8 when it is decoded; a record that cannot be read
                // reports any invalid UTF-8 before it first, as the first error in the file.
                Err(at) => {
                    return Err(
                        match super::utf8::validate(&self.bytes[start..at.pos.clamp(start, end)]) {
                            Err(k) => At {
                                pos: start + k,
                                msg: INVALID_UTF8.into(),
                            },
                            Ok(()) => at,
                        },
                    );
                }
            };
            let out = f(start, end, piece_no, &toks);
            TOKS.set(toks);
            out
        };
        let wave = (rayon::current_num_threads() * 2).max(2);
        let mut cuts = Cuts::new(self.bytes, self.body, self.chunk, self.dialect.quote);
        // The end of a wave's last piece is in the stretch after it: one more the first time.
        cuts.reach(wave.min(max_pieces).saturating_sub(1), wave + 1);
        // Pieces cut by quote parity are safe only while no quote sits inside an unquoted
        // field; one piece alone needs no cut.
        let mut split = !(cuts.done && cuts.bounds.len() == 2);
        let mut i = 0;
        loop {
            cuts.reach((i + wave).min(max_pieces).saturating_sub(1), wave);
            let bounds = &cuts.bounds;
            if i + 1 >= bounds.len() || i >= max_pieces {
                break;
            }
            let j = (i + wave).min(bounds.len() - 1).min(max_pieces);
            let results: Vec<Result<T, At>> = (i..j)
                .into_par_iter()
                .map(|k| run(bounds[k], bounds[k + 1], k as u32, split))
                .collect();
            if let Some(bad) = results.iter().position(Result::is_err) {
                if split {
                    let rest = self
                        .sequential_bounds(bounds[i])
                        .map_err(|at| self.error(at))?;
                    cuts.bounds.truncate(i);
                    cuts.bounds.extend(rest);
                    cuts.done = true;
                    split = false;
                    continue;
                }
                let at = results
                    .into_iter()
                    .nth(bad)
                    .and_then(Result::err)
                    .expect("the failed piece");
                return Err(self.error(at));
            }
            self.release(bounds[i], bounds[j]);
            sink(results.into_iter().filter_map(Result::ok).collect())?;
            i = j;
        }
        Ok(i)
    }

    /// Cuts `bytes[from..]` into pieces of about `chunk` bytes by reading record after
    /// record: slow, but right whatever the quotes do. Fails at the first bad record (or
    /// at invalid UTF-8 before it).
    fn sequential_bounds(&self, from: usize) -> Result<Vec<usize>, At> {
        let (n, end) = (self.header.len(), self.bytes.len());
        let mut out = vec![from];
        let mut toks = Vec::with_capacity(n);
        let mut stray = false;
        let mut pos = from;
        let utf8 = |upto: usize| -> Result<(), At> {
            match std::str::from_utf8(&self.bytes[from..upto]) {
                Ok(_) => Ok(()),
                Err(e) => Err(At {
                    pos: from + e.valid_up_to(),
                    msg: INVALID_UTF8.into(),
                }),
            }
        };
        while pos < end {
            toks.clear();
            let next = match self.tokenize_in(pos, end, 0, &mut toks, &mut stray) {
                Ok(next) => next,
                Err(at) => {
                    utf8(at.pos)?;
                    return Err(at);
                }
            };
            if toks.len() != n {
                utf8(pos)?;
                return Err(At {
                    pos,
                    msg: format!("expected {n} fields as in the header, found {}", toks.len()),
                });
            }
            pos = next;
            if pos < end && pos - out.last().copied().unwrap_or(from) >= self.chunk {
                out.push(pos);
            }
        }
        out.push(end);
        out.dedup();
        if out.len() == 1 {
            out.push(end);
        }
        Ok(out)
    }

    /// Drops the mapped pages of `bytes[start..end]` that lie wholly inside it.
    fn release(&self, start: usize, end: usize) {
        if let Some(source) = self.source {
            source.release(start, end);
        }
    }

    /// Tokenizes `bytes[start..end]`, which begins and ends at record boundaries.
    /// With `split`, a stray quote is an error, since it makes the parity split unsafe.
    /// `buf` is reused for the tokens when it can be.
    fn tokenize(
        &self,
        start: usize,
        end: usize,
        split: bool,
        buf: Vec<Tok>,
    ) -> Result<Vec<Tok>, At> {
        match self.tokenize_fast(start, end, buf) {
            Some(toks) => Ok(toks),
            None => self.tokenize_careful(start, end, split),
        }
    }

    /// [`CsvFile::tokenize`] record by record, for anything the fast path gives up on.
    fn tokenize_careful(&self, start: usize, end: usize, split: bool) -> Result<Vec<Tok>, At> {
        let ncols = self.header.len();
        let mut toks = Vec::with_capacity((end - start) / 8);
        let mut pos = start;
        let mut stray = false;
        while pos < end {
            let before = toks.len();
            let next = self.tokenize_in(pos, end, start, &mut toks, &mut stray)?;
            let found = toks.len() - before;
            if found != ncols {
                return Err(At {
                    pos,
                    msg: format!("expected {ncols} fields as in the header, found {found}"),
                });
            }
            pos = next;
        }
        if stray && split {
            // A quote inside an unquoted field breaks quote parity: only a sequential split is safe.
            return Err(At {
                pos: start,
                msg: "quote inside an unquoted field".into(),
            });
        }
        Ok(toks)
    }

    /// Tokenizes `bytes[start..end]` 64 bytes at a time: quotes, separators and newlines are
    /// compared at once into bit masks ([`masks`]), the bytes inside quotes follow from the
    /// quote mask by a prefix XOR, and only the separators and newlines outside quotes are
    /// visited, one per field. Gives up (`None`) on anything irregular (a quote that neither
    /// opens a field nor closes one nor is doubled inside one, a quote never closed, a byte
    /// other than a separator or newline after a closing quote, a record with the wrong field
    /// count), and [`CsvFile::tokenize`] then goes through the careful tokenizer, which
    /// accepts or reports it exactly.
    fn tokenize_fast(&self, start: usize, end: usize, mut toks: Vec<Tok>) -> Option<Vec<Tok>> {
        let s = &self.bytes[start..end];
        let (sep, quote) = (self.dialect.separator, self.dialect.quote);
        if sep == b'\n' || quote == b'\n' || sep == quote || sep == b'\r' || quote == b'\r' {
            return None;
        }
        let n = self.header.len();
        let len = s.len();
        toks.clear();
        toks.reserve(len / 8 + n);
        let mut field = 0usize; // where the current field starts
        let mut fields = 0usize; // fields of the current record so far
        let mut inside = 0u64; // all ones when the previous block ended inside quotes
        let mut prev_end = 1u64; // bit 0: the byte before this block ends a field (or none)
        let mut prev_close = 0u64; // bit 0: the byte before this block is a closing quote
        let mut block = 0usize;
        while block < len {
            let [q, sp, nl] = masks(&s[block..len.min(block + 64)], [quote, sep, b'\n']);
            let mut ends = sp | nl;
            if q != 0 || inside != 0 {
                // Bit i of `inq`: inside quotes after byte i (an opening quote is inside, its
                // closing quote outside).
                let inq = prefix_xor(q) ^ inside;
                ends &= !inq;
                let open = q & inq;
                let close = q & !inq;
                // A quote opens a field only where one starts (after a separator or newline
                // outside quotes, or at the piece's start) or right after a closing quote (a
                // doubled quote inside a field).
                let after_end = (ends << 1) | prev_end;
                let after_close = (close << 1) | prev_close;
                if open & !(after_end | after_close) != 0 {
                    return None;
                }
                inside = 0u64.wrapping_sub(inq >> 63);
                prev_close = close >> 63;
            } else {
                prev_close = 0;
            }
            prev_end = ends >> 63;
            let mut bits = ends;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                let p = block + bit as usize;
                let newline = nl >> bit & 1 != 0;
                if s[field] == quote {
                    toks.push(quoted_field(s, field, p, newline)?);
                } else {
                    let crlf = newline && p > field && s[p - 1] == b'\r';
                    toks.push(Tok {
                        start: field as u32,
                        end: (p - usize::from(crlf)) as u32,
                    });
                }
                fields += 1;
                if newline {
                    if fields != n {
                        return None;
                    }
                    fields = 0;
                }
                field = p + 1;
            }
            block += 64;
        }
        if inside != 0 {
            return None;
        }
        if field < len || fields > 0 {
            if field < len && s[field] == quote {
                toks.push(quoted_field(s, field, len, false)?);
            } else {
                toks.push(Tok {
                    start: field as u32,
                    end: len as u32,
                });
            }
            if fields + 1 != n {
                return None;
            }
        }
        Some(toks)
    }

    fn tokenize_record(&self, pos: usize, toks: &mut Vec<Tok>) -> Result<usize, At> {
        let mut stray = false;
        self.tokenize_in(pos, self.bytes.len(), 0, toks, &mut stray)
    }

    /// Tokenizes one record at `pos` (offsets relative to `base`); returns where the next starts.
    fn tokenize_in(
        &self,
        mut i: usize,
        end: usize,
        base: usize,
        toks: &mut Vec<Tok>,
        stray: &mut bool,
    ) -> Result<usize, At> {
        let s = self.bytes;
        let (sep, quote) = (self.dialect.separator, self.dialect.quote);
        loop {
            if i < end && s[i] == quote {
                let open = i;
                let fstart = i + 1;
                let mut j = fstart;
                let mut flags = QUOTED;
                loop {
                    match memchr(quote, &s[j..end]) {
                        None => {
                            return Err(At {
                                pos: open,
                                msg: "quoted field is never closed".into(),
                            });
                        }
                        Some(k) => {
                            j += k;
                            if j + 1 < end && s[j + 1] == quote {
                                flags |= ESCAPED;
                                j += 2;
                            } else {
                                break;
                            }
                        }
                    }
                }
                toks.push(Tok {
                    start: (fstart - base) as u32 | flags,
                    end: (j - base) as u32,
                });
                i = j + 1;
                if i < end && s[i] == b'\r' && i + 1 < end && s[i + 1] == b'\n' {
                    i += 1;
                }
                if i >= end {
                    return Ok(end);
                }
                if s[i] == sep {
                    i += 1;
                    continue;
                }
                if s[i] == b'\n' {
                    return Ok(i + 1);
                }
                return Err(At {
                    pos: i,
                    msg: format!("unexpected {} after a closing quote", shown(&s[i..i + 1])),
                });
            }
            let stop = memchr2(sep, b'\n', &s[i..end]).map_or(end, |k| i + k);
            let mut fend = stop;
            if stop < end && s[stop] == b'\n' && fend > i && s[fend - 1] == b'\r' {
                fend -= 1;
            }
            if !*stray && memchr(quote, &s[i..fend]).is_some() {
                *stray = true;
            }
            toks.push(Tok {
                start: (i - base) as u32,
                end: (fend - base) as u32,
            });
            if stop >= end {
                return Ok(end);
            }
            if s[stop] == sep {
                i = stop + 1;
                continue;
            }
            return Ok(stop + 1);
        }
    }

    fn is_null(&self, piece: &[u8], t: Tok) -> bool {
        is_null(piece, t, self.dialect.null.as_deref().map(str::as_bytes))
    }

    /// Turns a byte offset into `file:line:col: message` (1-based, col in characters).
    fn error(&self, at: At) -> Error {
        let pos = at.pos.min(self.bytes.len());
        let before = &self.bytes[..pos];
        let line = memchr::memchr_iter(b'\n', before).count() + 1;
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
        let col = before[line_start..]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        Error::msg(format!("{}:{line}:{col}: {}", self.name, at.msg))
    }
}

/// The token of a field of `s` that starts with a quote at `field` and ends at the separator
/// or newline at `p` (or the end of `s`), all outside quotes; None unless its closing quote is
/// right before `p` (or before a CR ending the record).
#[inline(never)]
fn quoted_field(s: &[u8], field: usize, p: usize, newline: bool) -> Option<Tok> {
    let quote = s[field];
    let mut close = p - 1;
    if newline && s[close] == b'\r' && close > field + 1 {
        close -= 1;
    }
    if close <= field || s[close] != quote {
        return None;
    }
    let escaped = memchr(quote, &s[field + 1..close]).is_some();
    Some(Tok {
        start: (field + 1) as u32 | QUOTED | if escaped { ESCAPED } else { 0 },
        end: close as u32,
    })
}

/// Bit masks of where three bytes (quote, separator, newline) are in a block of up to 64
/// bytes: compared 16 at a time (SSE2, which every x86_64 has).
#[inline]
fn masks(chunk: &[u8], find: [u8; 3]) -> [u64; 3] {
    #[cfg(target_arch = "x86_64")]
    if chunk.len() == 64 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64; the four unaligned loads read bytes 0..64 of
        // `chunk`, which has 64.
        unsafe {
            let want = find.map(|x| _mm_set1_epi8(x as i8));
            let mut out = [0u64; 3];
            for i in 0..4 {
                let v = _mm_loadu_si128(chunk.as_ptr().add(i * 16) as *const __m128i);
                for (o, w) in out.iter_mut().zip(&want) {
                    *o |= (_mm_movemask_epi8(_mm_cmpeq_epi8(v, *w)) as u32 as u64) << (i * 16);
                }
            }
            return out;
        }
    }
    let mut out = [0u64; 3];
    for (i, &x) in chunk.iter().enumerate() {
        for (o, &w) in out.iter_mut().zip(&find) {
            *o |= u64::from(x == w) << i;
        }
    }
    out
}

/// Bit i of the result is the XOR of bits 0..=i of `x`: set where an odd number of quotes
/// is at or before i.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Merges what each position's values allow into `all`.
fn merge_into(all: &mut [Inference], piece: &[Inference]) {
    for (a, b) in all.iter_mut().zip(piece) {
        a.merge(b);
    }
}

/// Whether a field is NULL: unquoted, and the NULL token (`null`) or empty when there is none.
#[inline(always)]
fn is_null(piece: &[u8], t: Tok, null: Option<&[u8]>) -> bool {
    if t.start & QUOTED != 0 {
        return false;
    }
    match null {
        Some(token) => &piece[t.start as usize..t.end as usize] == token,
        None => t.start == t.end,
    }
}

/// The text of a field, with doubled quotes undone.
#[inline(always)]
fn field(piece: &[u8], t: Tok) -> Cow<'_, [u8]> {
    let v = &piece[(t.start & OFFSET) as usize..t.end as usize];
    if t.start & ESCAPED == 0 {
        return Cow::Borrowed(v);
    }
    Cow::Owned(unescape(piece, t))
}

/// A quoted field's text with its doubled quotes undone: the rare case of [`field`].
#[cold]
#[inline(never)]
fn unescape(piece: &[u8], t: Tok) -> Vec<u8> {
    let mut out = Vec::new();
    unescape_into(piece, t, &mut out);
    out
}

/// Appends a quoted field's text to `out` with its doubled quotes undone.
#[inline(never)]
fn unescape_into(piece: &[u8], t: Tok, out: &mut Vec<u8>) {
    let mut v = &piece[(t.start & OFFSET) as usize..t.end as usize];
    let q = piece[(t.start & OFFSET) as usize - 1];
    out.reserve(v.len());
    // Runs between quotes are copied whole; each doubled quote leaves one.
    while let Some(i) = memchr::memchr(q, v) {
        out.extend_from_slice(&v[..=i]);
        v = v.get(i + 2..).unwrap_or_default();
    }
    out.extend_from_slice(v);
}

/// The pieces of a file's body, cut a wave at a time at newlines outside quotes.
///
/// The body is looked at in stretches of `size` bytes. For each stretch, its quotes are
/// counted and its first newline at even and at odd quote parity noted (stretches on rayon's
/// pool); the parity before a stretch is that of all the quotes before it, so its newline
/// outside quotes is known once the stretches before it are counted, and a piece runs from
/// one such newline to the next. Stretches are counted only as far as the next wave of pieces
/// needs, right before those pieces are tokenized: each page is first touched once, and can
/// be released as soon as its records are decoded.
struct Cuts<'a> {
    bytes: &'a [u8],
    size: usize,
    quote: u8,
    /// Piece boundaries found so far: piece i is `bytes[bounds[i]..bounds[i + 1]]`.
    bounds: Vec<usize>,
    /// Where the first stretch not yet counted starts.
    next: usize,
    /// Whether `next` lies inside quotes.
    inside: bool,
    /// Whether `bounds` ends at the end of the file.
    done: bool,
}

impl<'a> Cuts<'a> {
    fn new(bytes: &'a [u8], body: usize, size: usize, quote: u8) -> Self {
        Cuts {
            bytes,
            size,
            quote,
            bounds: vec![body],
            next: body,
            inside: false,
            done: false,
        }
    }

    /// Counts stretches, `batch` at a time, until piece `piece` has both its boundaries (or
    /// the file has fewer pieces).
    fn reach(&mut self, piece: usize, batch: usize) {
        let (bytes, size, quote) = (self.bytes, self.size, self.quote);
        let len = bytes.len();
        while !self.done && self.bounds.len() <= piece + 1 {
            let starts: Vec<usize> = (self.next..len).step_by(size).take(batch).collect();
            let scans: Vec<(usize, Option<usize>, Option<usize>)> = starts
                .par_iter()
                .map(|&s| count_stretch(&bytes[s..(s + size).min(len)], s, quote))
                .collect();
            for (&s, (quotes, even, odd)) in starts.iter().zip(scans) {
                // The first stretch starts the body, which is a boundary already.
                if s > self.bounds[0] {
                    let nl = if self.inside { odd } else { even };
                    if let Some(nl) = nl
                        && nl + 1 > *self.bounds.last().unwrap()
                        && nl + 1 < len
                    {
                        self.bounds.push(nl + 1);
                    }
                }
                self.inside ^= quotes % 2 == 1;
            }
            self.next = starts.last().map_or(len, |&s| (s + size).min(len));
            if self.next >= len {
                let last = *self.bounds.last().unwrap();
                if len > last || self.bounds.len() == 1 {
                    self.bounds.push(len.max(last));
                }
                self.done = true;
            }
        }
    }
}

/// For the stretch `piece`, which starts at `offset` of the file: its quote count, and its
/// first newline after an even and after an odd number of its quotes.
fn count_stretch(piece: &[u8], offset: usize, quote: u8) -> (usize, Option<usize>, Option<usize>) {
    let (mut quotes, mut even, mut odd) = (0usize, None, None);
    let mut i = 0;
    while let Some(k) = memchr2(quote, b'\n', &piece[i..]) {
        let p = i + k;
        if piece[p] == quote {
            quotes += 1;
        } else if quotes % 2 == 0 {
            even.get_or_insert(offset + p);
        } else {
            odd.get_or_insert(offset + p);
        }
        i = p + 1;
        if even.is_some() && odd.is_some() {
            quotes += memchr::memchr_iter(quote, &piece[i..]).count();
            break;
        }
    }
    (quotes, even, odd)
}

/// Decodes one tokenized piece into the columns of a change batch.
struct PieceDecoder<'p, 'f> {
    file: &'p CsvFile<'f>,
    piece: &'p [u8],
    base: usize,
    toks: &'p [Tok],
    ncols: usize,
    /// What a refresh checks at each file position, when it guessed types.
    checks: Option<&'p [Check]>,
}

impl PieceDecoder<'_, '_> {
    fn rows(&self) -> usize {
        self.toks.len() / self.ncols
    }

    fn tok(&self, row: usize, pos: usize) -> Tok {
        self.toks[row * self.ncols + pos]
    }

    fn at(&self, t: Tok, msg: String) -> At {
        At {
            pos: self.base + (t.start & OFFSET) as usize,
            msg,
        }
    }

    fn decode(
        &self,
        layout: &TableLayout,
        plan: &FileColumns,
        file_index: u32,
        piece_no: u32,
    ) -> Result<Vec<ArrayRef>, At> {
        let rows = self.rows();
        if layout.refresh {
            // A refresh's rows are the table: only the data columns.
            return self.columns(layout, plan);
        }
        // Operation per row first: key checks depend on it.
        let mut ops = Int8Builder::with_capacity(rows);
        let mut op_of_row = Vec::with_capacity(rows);
        for r in 0..rows {
            let op = if layout.refresh {
                Op::Upsert
            } else {
                self.op(r, plan, &layout.op_column)?
            };
            op_of_row.push(op);
            ops.append_value(op as i8);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.data.len() + 2);
        for (ci, (f, col)) in layout
            .columns
            .fields()
            .iter()
            .zip(self.columns(layout, plan)?)
            .enumerate()
        {
            if !layout.refresh && layout.keys.contains(&ci) && col.null_count() > 0 {
                for (r, op) in op_of_row.iter().enumerate() {
                    if col.is_null(r) && !op.allows_null_key() {
                        let pos = plan.data[ci].expect("a key column present in the file");
                        return Err(self.at(
                            self.tok(r, pos),
                            format!("key column '{}' is NULL", f.name()),
                        ));
                    }
                }
            }
            columns.push(col);
        }
        columns.push(Arc::new(ops.finish()));
        let mut order = BinaryBuilder::with_capacity(rows, rows * 24);
        let mut buf = Vec::with_capacity(64);
        for r in 0..rows {
            buf.clear();
            if let Some(pos) = plan.seq {
                let t = self.tok(r, pos);
                let v = field(self.piece, t);
                if self.file.is_null(self.piece, t) || !change::encode_seq(&v, &mut buf) {
                    return Err(self.at(
                        t,
                        format!("{} {} is not |-separated hex", layout.seq_column, shown(&v)),
                    ));
                }
            } else {
                buf.push(0);
            }
            buf.extend_from_slice(&file_index.to_be_bytes());
            buf.extend_from_slice(&piece_no.to_be_bytes());
            buf.extend_from_slice(&(r as u32).to_be_bytes());
            order.append_value(&buf);
        }
        columns.push(Arc::new(order.finish()));
        Ok(columns)
    }

    fn op(&self, r: usize, plan: &FileColumns, op_name: &str) -> Result<Op, At> {
        if let Some(pos) = plan.flag {
            let t = self.tok(r, pos);
            if !self.file.is_null(self.piece, t) {
                let v = field(self.piece, t);
                match types::parse_bool(&v) {
                    Some(true) => {
                        // A flagged row is a delete; keep a partial-key delete as such.
                        let op = match plan.op {
                            Some(_) => self.op(
                                r,
                                &FileColumns {
                                    flag: None,
                                    ..plan.clone()
                                },
                                op_name,
                            )?,
                            None => Op::Delete,
                        };
                        return Ok(if op == Op::PartialDelete {
                            op
                        } else {
                            Op::Delete
                        });
                    }
                    Some(false) => {}
                    None => {
                        return Err(
                            self.at(t, format!("soft-delete flag {} is not 0 or 1", shown(&v)))
                        );
                    }
                }
            }
        }
        let Some(pos) = plan.op else {
            return Ok(Op::Upsert);
        };
        let t = self.tok(r, pos);
        let v = field(self.piece, t);
        if self.file.is_null(self.piece, t) {
            return Err(self.at(t, format!("{op_name} is NULL")));
        }
        match types::parse_i64(&v) {
            Some(code) => Op::from_hvr(code).ok_or_else(|| {
                self.at(
                    t,
                    format!("{op_name} {code} is not an operation hvrlake applies (0-5, 8, 10-12)"),
                )
            }),
            None => Err(self.at(t, format!("{op_name} {} is not an integer", shown(&v)))),
        }
    }

    /// The data columns of `layout`, decoded a block of rows at a time, every column of a
    /// block in turn, so that the block's text and tokens stay in the core's cache.
    fn columns(&self, layout: &TableLayout, plan: &FileColumns) -> Result<Vec<ArrayRef>, At> {
        let rows = self.rows();
        let text = self.piece.len() / self.ncols.max(1);
        let mut cols: Vec<Option<Column<'_>>> = layout
            .columns
            .fields()
            .iter()
            .zip(&plan.data)
            .map(|(f, pos)| {
                pos.map(|pos| {
                    // A refresh that guessed its types decodes guessed numbers strictly.
                    let strict =
                        layout.refresh && self.checks.is_some_and(|c| c[pos] == Check::Strict);
                    Column::new(pos, f.name(), f.data_type(), strict, rows, text)
                })
            })
            .collect();
        let block = (rows * BLOCK_BYTES / self.piece.len().max(1)).max(64);
        let mut start = 0;
        while start < rows {
            let end = (start + block).min(rows);
            // Of the block's bad values, the first in the file is reported.
            let mut bad: Option<At> = None;
            for c in cols.iter_mut().flatten() {
                if let Err(at) = c.append(self, start, end)
                    && bad.as_ref().is_none_or(|b| at.pos < b.pos)
                {
                    bad = Some(at);
                }
            }
            if let Some(at) = bad {
                return Err(at);
            }
            if start == 0 {
                for c in cols.iter_mut().flatten() {
                    if let Builder::Text(b) = &mut c.b {
                        b.reserve_rows(rows);
                    }
                }
            }
            start = end;
        }
        cols.into_iter()
            .zip(layout.columns.fields())
            .map(|(c, f)| match c {
                None => Ok(new_null_array(f.data_type(), rows)),
                Some(c) => c.finish(self),
            })
            .collect()
    }
}

/// Bytes of a piece decoded at once, every column in turn: with their tokens, well inside a
/// core's L2 cache.
const BLOCK_BYTES: usize = 256 << 10;

/// The values of one column of a piece on their way into Arrow.
struct Column<'n> {
    /// The column's position in the file.
    pos: usize,
    name: &'n str,
    ty: &'n DataType,
    /// Also require each value to keep the type inference gave the column
    /// ([`types::parse_i64_kept`] and the like).
    strict: bool,
    b: Builder,
}

/// An Arrow builder for each type a column is decoded as directly; text for the others, cast
/// at the end.
enum Builder {
    Int64(Int64Builder),
    Int32(Int32Builder),
    Int16(Int16Builder),
    Int8(Int8Builder),
    Float64(Float64Builder),
    Float32(Float32Builder),
    Boolean(BooleanBuilder),
    Date32(Date32Builder, types::Days),
    Decimal(Decimal128Builder),
    Micros(TimestampMicrosecondBuilder, types::Days),
    Nanos(TimestampNanosecondBuilder, types::Days),
    Binary(BinaryBuilder),
    /// Text, kept as bytes until [`Column::append`] has checked that they are UTF-8.
    Text(TextValues),
}

impl<'n> Column<'n> {
    fn new(
        pos: usize,
        name: &'n str,
        ty: &'n DataType,
        strict: bool,
        rows: usize,
        text: usize,
    ) -> Self {
        let b = match ty {
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int16 => Builder::Int16(Int16Builder::with_capacity(rows)),
            DataType::Int8 => Builder::Int8(Int8Builder::with_capacity(rows)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
            DataType::Float32 => Builder::Float32(Float32Builder::with_capacity(rows)),
            DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(rows)),
            DataType::Date32 => {
                Builder::Date32(Date32Builder::with_capacity(rows), types::Days::default())
            }
            DataType::Decimal128(_, _) => Builder::Decimal(Decimal128Builder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Builder::Micros(
                TimestampMicrosecondBuilder::with_capacity(rows),
                types::Days::default(),
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Builder::Nanos(
                TimestampNanosecondBuilder::with_capacity(rows),
                types::Days::default(),
            ),
            DataType::Binary => Builder::Binary(BinaryBuilder::with_capacity(rows, 0)),
            _ => Builder::Text(TextValues::with_capacity(rows, text)),
        };
        Column {
            pos,
            name,
            ty,
            strict,
            b,
        }
    }

    /// Decodes the values of rows `start..end` (`start < end`); with `strict`, a value that
    /// parses but would not have given the column's type to inference is an error too.
    fn append(&mut self, d: &PieceDecoder<'_, '_>, start: usize, end: usize) -> Result<(), At> {
        let (ty, name, strict) = (self.ty, self.name, self.strict);
        let null = d.file.dialect.null.as_deref().map(str::as_bytes);
        let toks = d.toks[start * d.ncols + self.pos..end * d.ncols]
            .iter()
            .step_by(d.ncols)
            .copied();
        let what = || types::type_name(ty);
        macro_rules! build {
            ($b:expr, $parse:expr) => {{
                let b = $b;
                for t in toks {
                    if is_null(d.piece, t, null) {
                        b.append_null();
                        continue;
                    }
                    let v = field(d.piece, t);
                    match $parse(&*v) {
                        Some(x) => b.append_value(x),
                        None => {
                            return Err(d.at(
                                t,
                                format!("column '{name}': {} is not a valid {}", shown(&v), what()),
                            ));
                        }
                    }
                }
            }};
        }
        match &mut self.b {
            Builder::Int64(b) if strict => build!(b, types::parse_i64_kept),
            Builder::Int64(b) => build!(b, types::parse_i64),
            Builder::Int32(b) => build!(b, |v| types::parse_i64(v)
                .and_then(|x| i32::try_from(x).ok())),
            Builder::Int16(b) => build!(b, |v| types::parse_i64(v)
                .and_then(|x| i16::try_from(x).ok())),
            Builder::Int8(b) => build!(b, |v| types::parse_i64(v)
                .and_then(|x| i8::try_from(x).ok())),
            Builder::Float64(b) => build!(b, parse_f64),
            Builder::Float32(b) => build!(b, |v| parse_f64(v).map(|x| x as f32)),
            Builder::Boolean(b) => {
                build!(b, |v| (!strict || types::keeps_bool(v))
                    .then(|| types::parse_bool(v))
                    .flatten())
            }
            Builder::Date32(b, days) => build!(b, |v| days.date(v)),
            Builder::Decimal(b) => {
                let DataType::Decimal128(p, s) = *ty else {
                    unreachable!("a decimal builder for {ty}")
                };
                if strict {
                    build!(b, |v| types::parse_decimal_kept(v, p, s))
                } else {
                    build!(b, |v| types::parse_decimal(v, p, s))
                }
            }
            Builder::Micros(b, days) => build!(b, |v| days.timestamp_micros(v)),
            Builder::Nanos(b, days) => build!(b, |v| days
                .timestamp_micros(v)
                .and_then(|m| m.checked_mul(1000))),
            Builder::Binary(b) => build!(b, types::parse_hex),
            Builder::Text(b) => {
                // The values of the block are checked as UTF-8 all at once, while they are in
                // the cache: together they are UTF-8 and no value starts with a continuation
                // byte exactly when each value is UTF-8 on its own.
                let from = b.bytes.len();
                let mut continuation = false;
                for t in toks {
                    if is_null(d.piece, t, null) {
                        b.push_null();
                    } else {
                        continuation |= b.push(d.piece, t).is_some_and(|c| c & 0xC0 == 0x80);
                    }
                }
                if continuation || super::utf8::validate(&b.bytes[from..]).is_err() {
                    return Err(self.invalid_utf8(d, start, end));
                }
            }
        }
        Ok(())
    }

    /// Where the first value of rows `start..end` that is not UTF-8 goes wrong.
    fn invalid_utf8(&self, d: &PieceDecoder<'_, '_>, start: usize, end: usize) -> At {
        let msg = || INVALID_UTF8.to_string();
        for row in start..end {
            let t = d.tok(row, self.pos);
            let from = (t.start & OFFSET) as usize;
            // Doubled quotes are ASCII, so the field as written fails where its value does.
            if let Err(k) = super::utf8::validate(&d.piece[from..t.end as usize]) {
                return At {
                    pos: d.base + from + k,
                    msg: msg(),
                };
            }
        }
        d.at(d.tok(start, self.pos), msg())
    }

    fn finish(self, d: &PieceDecoder<'_, '_>) -> Result<ArrayRef, At> {
        let ty = self.ty;
        Ok(match self.b {
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int16(mut b) => Arc::new(b.finish()),
            Builder::Int8(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::Date32(mut b, _) => Arc::new(b.finish()),
            Builder::Decimal(mut b) => {
                let DataType::Decimal128(p, s) = *ty else {
                    unreachable!("a decimal builder for {ty}")
                };
                Arc::new(b.finish().with_precision_and_scale(p, s).map_err(|e| At {
                    pos: d.base,
                    msg: e.to_string(),
                })?)
            }
            Builder::Micros(mut b, _) => match ty {
                DataType::Timestamp(_, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
                _ => unreachable!("a timestamp builder for {ty}"),
            },
            Builder::Nanos(mut b, _) => match ty {
                DataType::Timestamp(_, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
                _ => unreachable!("a timestamp builder for {ty}"),
            },
            Builder::Binary(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => {
                // SAFETY: the offsets start at 0 and never go down, and `append` checked
                // every value as UTF-8.
                let text: ArrayRef = Arc::new(unsafe {
                    StringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(b.offsets.into()),
                        b.bytes.into(),
                        b.nulls.finish(),
                    )
                });
                if *ty == DataType::Utf8 {
                    text
                } else {
                    arrow::compute::cast(&text, ty).map_err(|e| {
                        d.at(
                            d.tok(0, self.pos),
                            format!("column '{}' cannot be read as {ty}: {e}", self.name),
                        )
                    })?
                }
            }
        })
    }
}

/// A text column's values as they are decoded: their bytes one after another, where each
/// ends, and which are NULL.
struct TextValues {
    bytes: Vec<u8>,
    /// Starts with 0; one more for each value.
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

/// The bytes [`TextValues::push`] copies at a time: a short value is one copy of known
/// size instead of a call to `memcpy`.
const COPY: usize = 32;

impl TextValues {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextValues {
            bytes: Vec::with_capacity(bytes),
            offsets,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// Appends the text of field `t` of `piece`; returns its first byte.
    #[inline(always)]
    fn push(&mut self, piece: &[u8], t: Tok) -> Option<u8> {
        let from = (t.start & OFFSET) as usize;
        let len = t.end as usize - from;
        let at = self.bytes.len();
        if t.start & ESCAPED != 0 {
            unescape_into(piece, t, &mut self.bytes);
        } else if len <= 2 * COPY
            && from + 2 * COPY <= piece.len()
            && self.bytes.capacity() - at >= 2 * COPY
        {
            // SAFETY: both ranges of 2 * COPY bytes are in bounds (checked just above), and
            // the bytes past the value that are copied too lie beyond the new length.
            unsafe {
                let src = piece.as_ptr().add(from);
                let dst = self.bytes.as_mut_ptr().add(at);
                std::ptr::copy_nonoverlapping(src, dst, COPY);
                if len > COPY {
                    std::ptr::copy_nonoverlapping(src.add(COPY), dst.add(COPY), COPY);
                }
                self.bytes.set_len(at + len);
            }
        } else {
            self.bytes.extend_from_slice(&piece[from..t.end as usize]);
        }
        // A piece is under 1 GiB (`MAX_PIECE`), so its text is.
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_non_null();
        self.bytes.get(at).copied()
    }

    fn push_null(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_null();
    }

    /// Makes room for the rest of a piece's `rows` rows, at the bytes per row so far.
    fn reserve_rows(&mut self, rows: usize) {
        let done = self.offsets.len() - 1;
        if done > 0 && rows > done {
            let more = self.bytes.len() / done * (rows - done);
            self.bytes.reserve(more + more / 8 + 2 * COPY);
        }
    }
}

fn parse_f64(v: &[u8]) -> Option<f64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Encoding;

    fn dialect() -> CsvDialect {
        CsvDialect {
            separator: b',',
            quote: b'"',
            null: None,
            encoding: Encoding::Utf8,
        }
    }

    fn records(text: &str, chunk: usize) -> Result<Vec<Vec<String>>> {
        let d = dialect();
        let f = CsvFile::open(text.as_bytes(), "t.csv", &d, chunk)?;
        let n = f.header.len();
        let mut out = Vec::new();
        f.pieces_each(
            usize::MAX,
            |s, e, _, toks| {
                Ok(toks
                    .chunks_exact(n)
                    .map(|r| {
                        r.iter()
                            .map(|t| {
                                String::from_utf8(field(&f.bytes[s..e], *t).into_owned()).unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>())
            },
            |wave| {
                out.extend(wave.into_iter().flatten());
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn every_piece_size_gives_the_same_records() {
        let text = "a,b\n1,\"x,\ny\"\n2,\"q\"\"uote\"\n3,Müller 東京\n\"4\",\n5,\"\n\n\"\"\"\n";
        let want = records(text, 1 << 20).unwrap();
        assert_eq!(want.len(), 5);
        assert_eq!(want[0], vec!["1", "x,\ny"]);
        assert_eq!(want[1], vec!["2", "q\"uote"]);
        assert_eq!(want[4], vec!["5", "\n\n\""]);
        for chunk in 1..text.len() + 2 {
            assert_eq!(records(text, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn masks_mark_every_quote_separator_and_newline() {
        let mut text = Vec::new();
        for i in 0..200u32 {
            text.push(b"ab,\"\nxyz\r"[(i * 7 % 11 % 9) as usize]);
        }
        for len in [0, 1, 63, 64] {
            let s = &text[..len];
            let got = masks(s, [b'"', b',', b'\n']);
            for (k, c) in [b'"', b',', b'\n'].iter().enumerate() {
                let want = s
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (i, b)| m | (u64::from(b == c) << i));
                assert_eq!(got[k], want, "length {len}, byte {c}");
            }
        }
        assert_eq!(prefix_xor(0b1001_0010), (!0u64 << 7) | 0b1110);
    }

    #[test]
    fn fast_tokenizer_agrees_with_the_careful_one() {
        let cases = [
            "a,b\n1,2\n",
            "a,b\r\n1,\"x\"\"y\"\r\n\"\",\n",
            "a,b\n1,\"x\"\r,2\n",
            "a,b\n1,2",
            "a,b\n1,",
            "a,b\n\"1\"\r",
            "a,b\n\"1\",\"2\"",
            "a,b\n1,x\"y\n",
            "a,b\n\n",
            "a,b\n1,2,3\n",
            "a,b\n\"unclosed,1\n",
            "a,b\n\"a\"b,1\n",
            "a,b\n\"a\"\"\n",
            "a,b\n1,2\r\n3,\"4\n5\"\r\n",
            "a,b\n,\n,\"\"\n",
            "a,b\n1,2\r",
            "a,b\n\"\"\"\",\"\"\"\"\"\"\n",
        ];
        let d = dialect();
        let mut fast_taken = 0;
        for text in cases {
            let f = CsvFile::open(text.as_bytes(), "t.csv", &d, 1 << 20).unwrap();
            let (start, end) = (f.body, text.len());
            let careful = f.tokenize_careful(start, end, false);
            if let Some(fast) = f.tokenize_fast(start, end, Vec::new()) {
                fast_taken += 1;
                let careful =
                    careful.unwrap_or_else(|e| panic!("{text:?}: fast ok, careful {e:?}"));
                let pairs = |t: &[Tok]| t.iter().map(|t| (t.start, t.end)).collect::<Vec<_>>();
                assert_eq!(pairs(&fast), pairs(&careful), "{text:?}");
            }
        }
        assert!(
            fast_taken >= 8,
            "the fast path took only {fast_taken} cases"
        );
    }

    #[test]
    fn fast_tokenizer_agrees_with_the_careful_one_on_random_text() {
        // Random records from separators, quotes, CRs, newlines and letters, across 64-byte
        // blocks: wherever the fast tokenizer answers, the careful one gives the same fields.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let d = dialect();
        let (mut fast_taken, mut quoted) = (0, 0);
        for round in 0..20_000 {
            let mut text = b"a,b,c\n".to_vec();
            let rows = 1 + next(6);
            for _ in 0..rows {
                for col in 0..3 {
                    // Mostly well-formed fields, sometimes anything.
                    match next(if round % 4 == 0 { 6 } else { 4 }) {
                        0 => {}
                        1 => text.extend((0..next(70)).map(|_| b"xyz9"[next(4) as usize])),
                        2 | 3 => {
                            text.push(b'"');
                            for _ in 0..next(70) {
                                text.extend_from_slice(
                                    [&b"x"[..], b",", b"\n", b"\"\"", b"\r\n", b"y"]
                                        [next(6) as usize],
                                );
                            }
                            text.push(b'"');
                        }
                        _ => text.extend((0..next(8)).map(|_| b"x,\"\n\r"[next(5) as usize])),
                    }
                    if col < 2 {
                        text.push(b',');
                    }
                }
                text.extend_from_slice(if next(3) == 0 { b"\r\n" } else { b"\n" });
            }
            if next(5) == 0 {
                text.pop();
            }
            let f = CsvFile::open(&text, "t.csv", &d, 1 << 20).unwrap();
            let (start, end) = (f.body, text.len());
            let careful = f.tokenize_careful(start, end, true);
            match f.tokenize_fast(start, end, Vec::new()) {
                Some(fast) => {
                    fast_taken += 1;
                    quoted += usize::from(fast.iter().any(|t| t.start & QUOTED != 0));
                    let careful = careful.unwrap_or_else(|e| {
                        panic!(
                            "{:?}: fast ok, careful {e:?}",
                            String::from_utf8_lossy(&text)
                        )
                    });
                    let pairs = |t: &[Tok]| t.iter().map(|t| (t.start, t.end)).collect::<Vec<_>>();
                    assert_eq!(
                        pairs(&fast),
                        pairs(&careful),
                        "{:?}",
                        String::from_utf8_lossy(&text)
                    );
                }
                None => assert!(
                    round % 4 == 0 || careful.is_err(),
                    "the fast path gave up on well-formed text {:?}",
                    String::from_utf8_lossy(&text)
                ),
            }
        }
        assert!(
            fast_taken > 10_000 && quoted > 5_000,
            "{fast_taken} {quoted}"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = records("a,b\n1,2\n3,\"open\n4,5\n", 3).unwrap_err();
        assert_eq!(e.message(), "t.csv:3:3: quoted field is never closed");
        let e = records("a,b\n1,2\n3\n", 2).unwrap_err();
        assert_eq!(
            e.message(),
            "t.csv:3:1: expected 2 fields as in the header, found 1"
        );
        let e = text_values(b"a,b\n1,\xff\n", 4).unwrap_err();
        assert!(e.message().starts_with("t.csv:2:3: invalid UTF-8"), "{e}");
    }

    /// Every value of a file whose columns are all text, decoded with pieces of `chunk`.
    fn text_values(text: &[u8], chunk: usize) -> Result<Vec<String>> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Field, Schema};
        let d = dialect();
        let f = CsvFile::open(text, "t.csv", &d, chunk)?;
        let fields: Vec<Field> = f
            .header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect();
        let layout = TableLayout::refresh_of(Arc::new(Schema::new(fields)), false);
        let plan = layout.plan(&f.header, "t.csv")?;
        let mut out = Vec::new();
        for b in f.decode(&layout, &plan, 0)? {
            for r in 0..b.num_rows() {
                for c in b.columns() {
                    out.push(c.as_string::<i32>().value(r).to_string());
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn invalid_utf8_is_found_in_text_values_wherever_it_is() {
        let bad = |text: &[u8], chunk: usize, place: &str| {
            let e = text_values(text, chunk).unwrap_err();
            let want = format!("t.csv:{place}: invalid UTF-8");
            assert!(e.message().starts_with(&want), "{e}, wanted {want}");
        };
        // A lead byte ending one value and its continuation starting the next one: each
        // value is invalid though the two side by side are not.
        bad(b"a,b\n1,x\xC3\n2,\xA9y\n", 1 << 20, "2:4");
        bad(b"a,b\n1,x\xC3\n\xA9,y\n", 1 << 20, "2:4");
        // Inside a quoted field with a doubled quote, and a surrogate (ED A0 80).
        bad(b"a,b\n1,\"q\"\"\xff\"\n", 1 << 20, "2:7");
        bad(b"a,b\n1,ok\n2,\xED\xA0\x80\n", 1 << 20, "3:3");
        // Before a record that cannot be read: the first problem in the file is reported.
        bad(b"a,b\n1,\xff\n2\n", 1 << 20, "2:3");
        // Far into the file, in a later piece and a later block of rows.
        let mut text = b"a,b\n".to_vec();
        for i in 0..20_000 {
            if i == 17_000 {
                text.extend_from_slice(b"17000,caf\xE9\n");
            } else {
                text.extend_from_slice(format!("{i},café 東京 😀 {i}\n").as_bytes());
            }
        }
        for chunk in [64, 4096, 1 << 20] {
            bad(&text, chunk, "17002:10");
        }
        // Well-formed text of every width reads back as it was written.
        let good = "a,b\né,\"東京, \"\"😀\"\"\"\nÿ,\n";
        for chunk in [1, 5, 1 << 20] {
            assert_eq!(
                text_values(good.as_bytes(), chunk).unwrap(),
                ["é", "東京, \"😀\"", "ÿ", ""],
                "chunk {chunk}"
            );
        }
    }
}
