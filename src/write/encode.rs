//! Data files encoded by hvrlake itself: Arrow batches of a flat table into Parquet pages
//! (definition levels straight from the validity bitmap, zstd level 1) and
//! uploaded through `object_store` (or, for a table on a local disk, written around the page
//! cache: `write::direct`), with the Delta statistics of each file taken from the values as
//! they are encoded.
//!
//! parquet-rs's `ArrowWriter` spends most of a refresh's writing time outside compression
//! (levels, per-value statistics, a heap buffer per decimal, dictionary tries): encoding the
//! same pages here costs about a third of it (docs/benchmarks.md, "Writing data files"). Only the
//! common flat types are encoded here ([`supported`]); a table with any other column, or a
//! partitioned one, keeps delta-rs's writer (`write::files`).
//!
//! What a file holds: row groups of [`ROW_GROUP_ROWS`] rows, data pages (v1) of up to
//! [`PAGE_ROWS`] values (text by dictionary while the chunk's dictionary stays under
//! [`DICT_MAX_BYTES`], then DELTA_LENGTH_BYTE_ARRAY; integers, dates, timestamps and
//! decimals stored as INT32/INT64 DELTA_BINARY_PACKED; the rest PLAIN; only PLAIN and
//! dictionaries with [`DataFileWriter::plain_encodings`]), each column chunk with
//! min/max/null-count statistics in the footer (text longer than [`STATS_MAX_BYTES`] gets
//! no min/max) and an offset index (no column index: pages carry no statistics of their
//! own), and the Arrow schema in the footer's key-value metadata as `ArrowWriter` writes it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampNanosecondType,
};
use bytes::Bytes;
use deltalake::kernel::Add;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, LogicalType, Type as Physical, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::write::direct::DirectFile;

/// Rows per row group (as `write::writer_properties` gives `ArrowWriter`).
pub const ROW_GROUP_ROWS: usize = 1 << 17;

/// Values per data page at most.
pub const PAGE_ROWS: usize = 1 << 14;

/// A text column chunk's dictionary stops growing past this many bytes (the limit
/// `write::writer_properties` gives parquet-rs).
pub const DICT_MAX_BYTES: usize = 128 << 10;

/// Text and binary min/max longer than this are left out of the statistics (a prefix would
/// do for the minimum, but the maximum would need rounding up).
pub const STATS_MAX_BYTES: usize = 64;

/// Set to "true" in the metadata of the columns given `write::files` (by the
/// `plain_encodings` setting): the data files get only PLAIN and dictionary pages
/// ([`DataFileWriter::plain_encodings`]).
pub const PLAIN_ENCODINGS: &str = "hvrlake.plainEncodings";

/// `columns`, marked with [`PLAIN_ENCODINGS`] when `plain`.
pub fn with_plain_encodings(columns: &SchemaRef, plain: bool) -> SchemaRef {
    if !plain {
        return columns.clone();
    }
    let mut meta = columns.metadata().clone();
    meta.insert(PLAIN_ENCODINGS.to_string(), "true".to_string());
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        columns.fields().clone(),
        meta,
    ))
}

/// zstd's level for every page: the level `write::writer_properties` asks of parquet-rs.
const ZSTD_LEVEL: i32 = 1;

/// Whether every column of `schema` is one this module encodes (flat, and of a type the
/// reader produces); a table with any other needs delta-rs's writer.
pub fn supported(schema: &SchemaRef) -> bool {
    schema.fields().iter().all(|f| {
        matches!(
            f.data_type(),
            DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Date32
                | DataType::Utf8
                | DataType::Binary
                | DataType::Decimal128(_, _)
                | DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
        )
    })
}

/// The smallest and largest non-null value of a column so far, as the column's physical
/// kind holds them (decimals as their unscaled integer, whatever their Parquet type).
#[derive(Clone, Debug, PartialEq)]
enum Bounds {
    None,
    Bool(bool, bool),
    Int(i64, i64),
    F32(f32, f32),
    F64(f64, f64),
    Dec(i128, i128),
    /// `None` once a value longer than [`STATS_MAX_BYTES`] was the minimum or maximum.
    Bytes(Option<(Vec<u8>, Vec<u8>)>),
}

impl Bounds {
    /// The bounds of an integer or decimal column (decimals unscaled).
    fn ints(&self) -> Option<(i128, i128)> {
        match *self {
            Bounds::Int(lo, hi) => Some((lo.into(), hi.into())),
            Bounds::Dec(lo, hi) => Some((lo, hi)),
            _ => None,
        }
    }

    fn merge(&mut self, other: &Bounds) {
        use Bounds::*;
        *self = match (&*self, other) {
            (None, o) => o.clone(),
            (s, None) => s.clone(),
            (Bool(a, b), Bool(c, d)) => Bool(*a && *c, *b || *d),
            (Int(a, b), Int(c, d)) => Int(*a.min(c), *b.max(d)),
            (F32(a, b), F32(c, d)) => F32(a.min(*c), b.max(*d)),
            (F64(a, b), F64(c, d)) => F64(a.min(*c), b.max(*d)),
            (Dec(a, b), Dec(c, d)) => Dec(*a.min(c), *b.max(d)),
            (Bytes(Some((a, b))), Bytes(Some((c, d)))) => {
                Bytes(Some((a.min(c).clone(), b.max(d).clone())))
            }
            (Bytes(_), Bytes(_)) => Bytes(Option::None),
            (s, o) => unreachable!("bounds of two kinds: {s:?} and {o:?}"),
        }
    }
}

/// One column chunk's worth of encoding state, reused from page to page.
struct Scratch {
    page: Vec<u8>,
    /// A page compressed, before it is copied out at its size.
    packed: Vec<u8>,
    ids: Vec<u32>,
    /// An integer page's non-null values, gathered for [`put_delta`].
    ints: Vec<i64>,
    zstd: zstd::bulk::Compressor<'static>,
}

/// Compresses `input` into `packed` (reused), then copies out only the compressed bytes: a
/// fresh buffer the size of each page would be mapped and zeroed anew every time.
fn compress(
    zstd: &mut zstd::bulk::Compressor<'static>,
    packed: &mut Vec<u8>,
    input: &[u8],
) -> Result<Bytes> {
    packed.clear();
    packed.reserve(zstd::zstd_safe::compress_bound(input.len()));
    zstd.compress_to_buffer(input, packed)
        .map_err(|e| Error::msg(format!("zstd: {e}")))?;
    Ok(Bytes::copy_from_slice(packed))
}

/// Whether a column's data pages are worth compressing, learnt from the pages before: a page
/// zstd shrinks by less than a 32nd is followed by pages stored as they are (in a zstd frame
/// of raw blocks, [`stored`]), first 4, then twice as many after each page that still does
/// not shrink, up to 32, so a column whose values do not compress (delta-packed random
/// integers and timestamps) costs zstd a page in 33 and one that starts to compress is
/// compressed again soon.
#[derive(Default)]
struct Squeeze {
    /// Pages still to store without trying.
    skip: u32,
    /// How many to store after the next page that does not shrink.
    run: u32,
}

impl Squeeze {
    fn page(
        &mut self,
        zstd: &mut zstd::bulk::Compressor<'static>,
        packed: &mut Vec<u8>,
        input: &[u8],
    ) -> Result<Bytes> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(stored(input));
        }
        let data = compress(zstd, packed, input)?;
        if data.len() + input.len() / 32 >= input.len() {
            self.run = (self.run * 2).clamp(4, 32);
            self.skip = self.run;
        } else {
            self.run = 0;
        }
        Ok(data)
    }
}

/// `input` as a zstd frame (RFC 8878) of raw blocks: what zstd itself writes for bytes it
/// cannot shrink, built without searching them. The frame is single-segment with its
/// content size in 4 bytes and no checksum; blocks are at most 128 KiB.
fn stored(input: &[u8]) -> Bytes {
    const BLOCK: usize = 128 << 10;
    let blocks = input.len().div_ceil(BLOCK).max(1);
    let mut out = Vec::with_capacity(input.len() + 9 + 3 * blocks);
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    out.push(0b1010_0000); // content size in 4 bytes, single segment
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    let mut rest = input;
    loop {
        let n = rest.len().min(BLOCK);
        let last = (n == rest.len()) as u32;
        // block type 0 (raw) in bits 1-2, its size from bit 3
        out.extend_from_slice(&(last | (n as u32) << 3).to_le_bytes()[..3]);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if last == 1 {
            break;
        }
    }
    Bytes::from(out)
}

/// Writes the definition levels of `parts` (one page, bit width 1) as a v1 page wants them:
/// their length, then one RLE run when nothing is NULL, or one bit-packed run that is the
/// validity bitmap.
fn put_levels(out: &mut Vec<u8>, parts: &[ArrayRef]) {
    let n: usize = parts.iter().map(|a| a.len()).sum();
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if parts.iter().all(|a| a.null_count() == 0) {
        put_varint(out, (n as u64) << 1);
        out.push(1);
    } else {
        let groups = n.div_ceil(8);
        put_varint(out, ((groups as u64) << 1) | 1);
        let mut bits = BooleanBufferBuilder::new(n);
        for a in parts {
            match a.nulls() {
                Some(valid) => bits.append_buffer(valid.inner()),
                None => bits.append_n(a.len(), true),
            }
        }
        out.extend_from_slice(&bits.as_slice()[..groups]);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Calls `f` with each non-null value of a text or binary array, in order.
fn each_text<'a>(a: &'a ArrayRef, mut f: impl FnMut(&'a [u8])) {
    let (offsets, data) = text_parts(a);
    each_valid(
        a,
        |i| f(&data[offsets[i] as usize..offsets[i + 1] as usize]),
    );
}

/// Calls `f` with the index of each non-null value of `a`, in order.
fn each_valid(a: &ArrayRef, f: impl FnMut(usize)) {
    match a.nulls().filter(|v| v.null_count() > 0) {
        None => (0..a.len()).for_each(f),
        Some(n) => n.valid_indices().for_each(f),
    }
}

/// The bytes from a text or binary array's first value to the end of its last.
fn text_run(a: &ArrayRef) -> &[u8] {
    let (offsets, data) = text_parts(a);
    &data[offsets[0] as usize..offsets[offsets.len() - 1] as usize]
}

/// A text or binary array's value offsets and bytes.
fn text_parts(a: &ArrayRef) -> (&[i32], &[u8]) {
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            (s.value_offsets(), s.value_data())
        }
        _ => {
            let b = a.as_binary::<i32>();
            (b.value_offsets(), b.value_data())
        }
    }
}

/// The smallest and largest of the byte strings it is shown.
#[derive(Default)]
struct TextBounds<'a>(Option<(&'a [u8], &'a [u8])>);

impl<'a> TextBounds<'a> {
    fn add(&mut self, v: &'a [u8]) {
        use std::cmp::Ordering::{Equal, Greater, Less};
        // The first bytes settle most comparisons without a call to memcmp.
        self.0 = Some(match self.0 {
            None => (v, v),
            Some((lo, hi)) => (
                match v.first().cmp(&lo.first()) {
                    Less => v,
                    Equal if v < lo => v,
                    _ => lo,
                },
                match v.first().cmp(&hi.first()) {
                    Greater => v,
                    Equal if v > hi => v,
                    _ => hi,
                },
            ),
        });
    }
}

impl From<TextBounds<'_>> for Bounds {
    fn from(b: TextBounds<'_>) -> Bounds {
        match b.0 {
            None => Bounds::None,
            Some((lo, hi)) if lo.len() <= STATS_MAX_BYTES && hi.len() <= STATS_MAX_BYTES => {
                Bounds::Bytes(Some((lo.to_vec(), hi.to_vec())))
            }
            Some(_) => Bounds::Bytes(None),
        }
    }
}

/// A text column chunk's dictionary: each distinct value once (PLAIN, as the dictionary
/// page holds them) and its number. Pages refer to it by number until it passes
/// [`DICT_MAX_BYTES`]; from then on the chunk's pages are PLAIN (as parquet-rs falls back).
#[derive(Default)]
struct Dict {
    ids: HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
    /// The numbers of values of up to 15 bytes, by [`short_key`]: a status or a code is
    /// looked up as one integer, not hashed and compared byte by byte.
    short: HashMap<u128, u32, foldhash::fast::RandomState>,
    plain: Vec<u8>,
    full: bool,
    /// Whether a page refers to it (then the chunk starts with a dictionary page).
    used: bool,
}

impl Dict {
    /// How many distinct values it holds.
    fn len(&self) -> usize {
        self.ids.len() + self.short.len()
    }
}

/// Value `data[start..end]` of up to 15 bytes as one integer: its bytes, and its length in
/// the top byte (so that no two values share a key); None for a longer value.
#[inline(always)]
fn short_key(data: &[u8], start: usize, end: usize) -> Option<u128> {
    let len = end - start;
    if len > 15 {
        return None;
    }
    let raw = match data.get(start..start + 16) {
        Some(w) => u128::from_le_bytes(w.try_into().expect("16 bytes")),
        None => {
            let mut b = [0u8; 16];
            b[..len].copy_from_slice(&data[start..end]);
            u128::from_le_bytes(b)
        }
    };
    Some(raw & ((1u128 << (8 * len)) - 1) | (len as u128) << 120)
}

/// Encodes `ids` (each below 2^`width`) as one bit-packed run of the RLE/bit-packing
/// hybrid, padded with zeros to a multiple of 8 values.
fn put_bit_packed(out: &mut Vec<u8>, ids: &[u32], width: u32) {
    let groups = ids.len().div_ceil(8);
    put_varint(out, ((groups as u64) << 1) | 1);
    let padding = std::iter::repeat_n(0, groups * 8 - ids.len());
    pack_bits(
        out,
        ids.iter().map(|&id| u64::from(id)).chain(padding),
        width,
    );
}

/// Appends `values` at `width` bits each, least significant bits first (Parquet's bit
/// packing), the last byte filled up with zeros.
fn pack_bits(out: &mut Vec<u8>, values: impl IntoIterator<Item = u64>, width: u32) {
    let (mut acc, mut bits) = (0u128, 0u32);
    for x in values {
        acc |= u128::from(x) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..bits.div_ceil(8) as usize]);
}

/// Values per block of DELTA_BINARY_PACKED, and per miniblock (each miniblock has its own
/// bit width): the sizes parquet-mr and parquet-rs write.
const DELTA_BLOCK: usize = 128;
const DELTA_MINI: usize = 32;

/// Zigzag: small magnitudes of either sign become small unsigned numbers.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends `values` DELTA_BINARY_PACKED: the header (block size, miniblocks per block, value
/// count, first value), then per block of [`DELTA_BLOCK`] differences their minimum and,
/// per miniblock, the differences less that minimum bit-packed at the width of its largest.
/// `wide` is whether the column is INT64; an INT32 column's values (sign-extended here) take
/// their differences in 32-bit arithmetic, as its readers add them back.
fn put_delta(out: &mut Vec<u8>, values: &[i64], wide: bool) {
    put_varint(out, DELTA_BLOCK as u64);
    put_varint(out, (DELTA_BLOCK / DELTA_MINI) as u64);
    put_varint(out, values.len() as u64);
    put_varint(out, zigzag(values.first().copied().unwrap_or(0)));
    let diff = |a: i64, b: i64| {
        if wide {
            b.wrapping_sub(a)
        } else {
            i64::from((b as i32).wrapping_sub(a as i32))
        }
    };
    let mut deltas = [0i64; DELTA_BLOCK];
    let mut rest = values;
    while rest.len() > 1 {
        let n = (rest.len() - 1).min(DELTA_BLOCK);
        for (d, w) in deltas.iter_mut().zip(rest.windows(2)).take(n) {
            *d = diff(w[0], w[1]);
        }
        rest = &rest[n..];
        let min = deltas[..n]
            .iter()
            .copied()
            .min()
            .expect("a block has a value");
        put_varint(out, zigzag(min));
        // Less the minimum every difference is non-negative; an INT32 column's fit 32 bits.
        let mut packed = [0u64; DELTA_BLOCK];
        for (p, &d) in packed.iter_mut().zip(&deltas[..n]) {
            *p = d.wrapping_sub(min) as u64;
        }
        let minis = n.div_ceil(DELTA_MINI);
        let mut widths = [0u32; DELTA_BLOCK / DELTA_MINI];
        for (w, mini) in widths.iter_mut().zip(packed.chunks(DELTA_MINI)).take(minis) {
            *w = 64 - mini.iter().fold(0, |a, &x| a | x).leading_zeros();
        }
        out.extend(widths.iter().map(|&w| w as u8));
        // The last miniblock is padded with zeros (`packed` past `n`); the ones after it
        // are not written at all. 32 values of any width fill whole bytes.
        for (mini, &w) in packed.chunks(DELTA_MINI).zip(&widths).take(minis) {
            pack_bits(out, mini.iter().copied(), w);
        }
    }
}

/// Gathers the non-null values of `parts` into `out` (cleared first) when `descr`'s column
/// is INT32 or INT64 in Parquet (integers, dates, timestamps, decimals of up to 18 digits),
/// and returns whether it is INT64; `None` for any other column.
fn gather_ints(parts: &[ArrayRef], descr: &ColumnDescPtr, out: &mut Vec<i64>) -> Option<bool> {
    fn gather<T: arrow::datatypes::ArrowPrimitiveType>(
        a: &ArrayRef,
        out: &mut Vec<i64>,
        to: impl Fn(T::Native) -> i64,
    ) {
        let v = a.as_primitive::<T>().values();
        match a.nulls().filter(|n| n.null_count() > 0) {
            None => out.extend(v.iter().map(|&x| to(x))),
            Some(n) => out.extend(n.valid_indices().map(|i| to(v[i]))),
        }
    }
    let wide = match descr.physical_type() {
        Physical::INT64 => true,
        Physical::INT32 => false,
        _ => return None,
    };
    out.clear();
    for a in parts {
        match a.data_type() {
            DataType::Int64 => gather::<Int64Type>(a, out, |x| x),
            DataType::Int32 => gather::<Int32Type>(a, out, i64::from),
            DataType::Int16 => gather::<Int16Type>(a, out, i64::from),
            DataType::Int8 => gather::<Int8Type>(a, out, i64::from),
            DataType::Date32 => gather::<Date32Type>(a, out, i64::from),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                gather::<TimestampMicrosecondType>(a, out, |x| x)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                gather::<TimestampNanosecondType>(a, out, |x| x)
            }
            // At most 18 digits when INT32 or INT64: the value fits.
            DataType::Decimal128(_, _) => gather::<Decimal128Type>(a, out, |x| x as i64),
            _ => return None,
        }
    }
    Some(wide)
}

/// Appends the non-null values of `a` PLAIN-encoded as `descr`'s physical type wants them,
/// and returns their bounds.
fn put_values(out: &mut Vec<u8>, a: &ArrayRef, descr: &ColumnDescPtr) -> Result<Bounds> {
    let nulls = a.nulls().filter(|v| v.null_count() > 0);
    macro_rules! ints {
        ($t:ty, $to:ty, $kind:ident) => {{
            let v = a.as_primitive::<$t>().values();
            let (mut lo, mut hi) = (<$to>::MAX, <$to>::MIN);
            let mut put = |x: $to| {
                lo = lo.min(x);
                hi = hi.max(x);
                out.extend_from_slice(&x.to_le_bytes());
            };
            match nulls {
                None => v.iter().for_each(|&x| put(x as $to)),
                Some(n) => n.valid_indices().for_each(|i| put(v[i] as $to)),
            }
            if lo > hi {
                Bounds::None
            } else {
                Bounds::$kind(lo as _, hi as _)
            }
        }};
    }
    macro_rules! floats {
        ($t:ty, $f:ty, $kind:ident) => {{
            let v = a.as_primitive::<$t>().values();
            let mut b: Option<($f, $f)> = None;
            let mut put = |x: $f| {
                out.extend_from_slice(&x.to_le_bytes());
                if !x.is_nan() {
                    b = Some(match b {
                        None => (x, x),
                        Some((lo, hi)) => {
                            (if x < lo { x } else { lo }, if x > hi { x } else { hi })
                        }
                    });
                }
            };
            match nulls {
                None => v.iter().for_each(|&x| put(x)),
                Some(n) => n.valid_indices().for_each(|i| put(v[i])),
            }
            // Parquet's rule for zeros: a minimum of zero is written -0.0, a maximum +0.0.
            match b {
                None => Bounds::None,
                Some((lo, hi)) => Bounds::$kind(
                    if lo == 0.0 { -0.0 } else { lo },
                    if hi == 0.0 { 0.0 } else { hi },
                ),
            }
        }};
    }
    let physical = descr.physical_type();
    Ok(match (a.data_type(), physical) {
        (DataType::Boolean, Physical::BOOLEAN) => put_bools(out, a, nulls),
        (DataType::Int8, Physical::INT32) => ints!(Int8Type, i32, Int),
        (DataType::Int16, Physical::INT32) => ints!(Int16Type, i32, Int),
        (DataType::Int32, Physical::INT32) => ints!(Int32Type, i32, Int),
        (DataType::Date32, Physical::INT32) => ints!(Date32Type, i32, Int),
        (DataType::Int64, Physical::INT64) => ints!(Int64Type, i64, Int),
        (DataType::Timestamp(TimeUnit::Microsecond, _), Physical::INT64) => {
            ints!(TimestampMicrosecondType, i64, Int)
        }
        (DataType::Timestamp(TimeUnit::Nanosecond, _), Physical::INT64) => {
            ints!(TimestampNanosecondType, i64, Int)
        }
        (DataType::Float32, Physical::FLOAT) => floats!(Float32Type, f32, F32),
        (DataType::Float64, Physical::DOUBLE) => floats!(Float64Type, f64, F64),
        (
            DataType::Decimal128(_, _),
            Physical::INT32 | Physical::INT64 | Physical::FIXED_LEN_BYTE_ARRAY,
        ) => put_decimal_column(out, a, descr, nulls),
        (DataType::Utf8 | DataType::Binary, Physical::BYTE_ARRAY) => {
            let mut bounds = TextBounds::default();
            each_text(a, |v| {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
                bounds.add(v);
            });
            bounds.into()
        }
        (t, p) => {
            return Err(Error::msg(format!(
                "column '{}': {t} cannot be encoded as Parquet {p}",
                descr.name()
            )));
        }
    })
}

/// Appends the non-null booleans of `a` bit-packed (PLAIN), and returns their bounds.
fn put_bools(out: &mut Vec<u8>, a: &ArrayRef, nulls: Option<&NullBuffer>) -> Bounds {
    let v = a.as_boolean().values();
    let (mut any_true, mut any_false) = (false, false);
    let mut byte = 0u8;
    let mut k = 0;
    let mut put = |x: bool| {
        any_true |= x;
        any_false |= !x;
        byte |= u8::from(x) << k;
        k += 1;
        if k == 8 {
            out.push(byte);
            byte = 0;
            k = 0;
        }
    };
    match nulls {
        None => v.iter().for_each(&mut put),
        Some(n) => n.valid_indices().for_each(|i| put(v.value(i))),
    }
    if k > 0 {
        out.push(byte);
    }
    if any_true || any_false {
        Bounds::Bool(!any_false, any_true)
    } else {
        Bounds::None
    }
}

/// Appends the non-null decimals of `a` as `descr`'s physical type wants them (INT32, INT64 or
/// FIXED_LEN_BYTE_ARRAY), and returns their bounds.
fn put_decimal_column(
    out: &mut Vec<u8>,
    a: &ArrayRef,
    descr: &ColumnDescPtr,
    nulls: Option<&NullBuffer>,
) -> Bounds {
    let physical = descr.physical_type();
    let v = a.as_primitive::<Decimal128Type>().values();
    let width = descr.type_length().max(0) as usize;
    // Each layout has its own loop, so that a value's bytes are a store of known size
    // (FIXED_LEN_BYTE_ARRAY narrower than 16 keeps the last `width` bytes).
    let (lo, hi) = match physical {
        Physical::INT32 => put_decimals(out, v, nulls, |o, x| {
            o.extend_from_slice(&(x as i32).to_le_bytes())
        }),
        Physical::INT64 => put_decimals(out, v, nulls, |o, x| {
            o.extend_from_slice(&(x as i64).to_le_bytes())
        }),
        _ if width == 16 => {
            put_decimals(out, v, nulls, |o, x| o.extend_from_slice(&x.to_be_bytes()))
        }
        _ => put_decimals(out, v, nulls, |o, x| {
            o.extend_from_slice(&x.to_be_bytes()[16 - width..])
        }),
    };
    if lo > hi {
        Bounds::None
    } else {
        Bounds::Dec(lo, hi)
    }
}

/// Appends the non-null values of `v` to `out` with `put_one`; their smallest and largest
/// (`i128::MAX, i128::MIN` when there is none).
fn put_decimals(
    out: &mut Vec<u8>,
    v: &[i128],
    nulls: Option<&NullBuffer>,
    put_one: impl Fn(&mut Vec<u8>, i128),
) -> (i128, i128) {
    let (mut lo, mut hi) = (i128::MAX, i128::MIN);
    out.reserve(16 * v.len());
    let mut put = |x: i128| {
        lo = lo.min(x);
        hi = hi.max(x);
        put_one(out, x);
    };
    match nulls {
        None => v.iter().for_each(|&x| put(x)),
        Some(n) => n.valid_indices().for_each(|i| put(v[i])),
    }
    (lo, hi)
}

/// The footer statistics of a column chunk with `bounds` and `nulls` NULLs.
fn chunk_statistics(descr: &ColumnDescPtr, bounds: &Bounds, nulls: u64) -> Statistics {
    let n = Some(nulls);
    match (descr.physical_type(), bounds) {
        (Physical::BOOLEAN, Bounds::Bool(lo, hi)) => {
            Statistics::boolean(Some(*lo), Some(*hi), None, n, false)
        }
        (Physical::BOOLEAN, _) => Statistics::boolean(None, None, None, n, false),
        (Physical::INT32, b) => {
            let (lo, hi) = b.ints().unzip();
            Statistics::int32(lo.map(|x| x as i32), hi.map(|x| x as i32), None, n, false)
        }
        (Physical::INT64, b) => {
            let (lo, hi) = b.ints().unzip();
            Statistics::int64(lo.map(|x| x as i64), hi.map(|x| x as i64), None, n, false)
        }
        (Physical::FLOAT, Bounds::F32(lo, hi)) => {
            Statistics::float(Some(*lo), Some(*hi), None, n, false)
        }
        (Physical::FLOAT, _) => Statistics::float(None, None, None, n, false),
        (Physical::DOUBLE, Bounds::F64(lo, hi)) => {
            Statistics::double(Some(*lo), Some(*hi), None, n, false)
        }
        (Physical::DOUBLE, _) => Statistics::double(None, None, None, n, false),
        (Physical::FIXED_LEN_BYTE_ARRAY, Bounds::Dec(lo, hi)) => {
            let width = descr.type_length() as usize;
            let be = |x: &i128| {
                FixedLenByteArray::from(ByteArray::from(x.to_be_bytes()[16 - width..].to_vec()))
            };
            Statistics::fixed_len_byte_array(Some(be(lo)), Some(be(hi)), None, n, false)
        }
        (Physical::FIXED_LEN_BYTE_ARRAY, _) => {
            Statistics::fixed_len_byte_array(None, None, None, n, false)
        }
        (_, Bounds::Bytes(Some((lo, hi)))) => Statistics::byte_array(
            Some(ByteArray::from(lo.clone())),
            Some(ByteArray::from(hi.clone())),
            None,
            n,
            false,
        ),
        _ => Statistics::byte_array(None, None, None, n, false),
    }
}

/// One column chunk of the row group being written: its pages so far, serialized.
struct Chunk {
    sink: TrackedWrite<Vec<u8>>,
    compressed: i64,
    uncompressed: i64,
    values: u64,
    bounds: Bounds,
    nulls: u64,
    /// Text columns: the dictionary pages refer to.
    dict: Option<Dict>,
    /// The encodings of its pages besides PLAIN, RLE (levels) and the dictionary's.
    delta_encodings: Vec<Encoding>,
    /// Where each data page starts in the chunk's data pages, and its first row: the
    /// offset index readers use to fetch only the pages they need.
    locations: Vec<PageLocation>,
}

impl Chunk {
    /// A chunk of `descr`'s column, its buffer reserved for `hint` bytes (what the
    /// previous row group's chunk took).
    fn new(descr: &ColumnDescPtr, hint: usize) -> Self {
        let text = descr.physical_type() == Physical::BYTE_ARRAY
            && matches!(descr.logical_type_ref(), Some(LogicalType::String));
        Chunk {
            sink: TrackedWrite::new(Vec::with_capacity(hint + hint / 8)),
            compressed: 0,
            uncompressed: 0,
            values: 0,
            bounds: Bounds::None,
            nulls: 0,
            dict: text.then(Dict::default),
            delta_encodings: Vec::new(),
            locations: Vec::new(),
        }
    }

    /// Appends the values of `parts` to `page` as numbers into the dictionary (bit width,
    /// then one bit-packed run); `false` (and `page` as it was) once the dictionary is full.
    fn put_ids(&mut self, page: &mut Vec<u8>, parts: &[ArrayRef], ids: &mut Vec<u32>) -> bool {
        let Some(dict) = self.dict.as_mut().filter(|d| !d.full) else {
            return false;
        };
        ids.clear();
        let mut bounds = TextBounds::default();
        for a in parts {
            let (offsets, data) = text_parts(a);
            each_valid(a, |i| {
                if dict.plain.len() > DICT_MAX_BYTES {
                    return; // this page goes PLAIN
                }
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                let key = short_key(data, start, end);
                let v = &data[start..end];
                let seen = match key {
                    Some(k) => dict.short.get(&k),
                    None => dict.ids.get(v),
                };
                let id = match seen {
                    Some(&id) => id,
                    None => {
                        // A value seen before is inside the bounds already: only new ones
                        // can move them.
                        bounds.add(v);
                        let id = dict.len() as u32;
                        match key {
                            Some(k) => dict.short.insert(k, id),
                            None => dict.ids.insert(v.to_vec(), id),
                        };
                        dict.plain
                            .extend_from_slice(&(v.len() as u32).to_le_bytes());
                        dict.plain.extend_from_slice(v);
                        id
                    }
                };
                ids.push(id);
            });
        }
        if dict.plain.len() > DICT_MAX_BYTES {
            dict.full = true;
            return false;
        }
        if ids.is_empty() {
            return false; // nothing but NULLs: a PLAIN page is only its levels
        }
        dict.used = true;
        let width = (32 - (dict.len().max(2) as u32 - 1).leading_zeros()).max(1);
        page.push(width as u8);
        put_bit_packed(page, ids, width);
        self.bounds.merge(&bounds.into());
        true
    }

    /// Notes that a page is encoded `e`, for the chunk's list of encodings.
    fn uses(&mut self, e: Encoding) {
        if !self.delta_encodings.contains(&e) {
            self.delta_encodings.push(e);
        }
    }

    /// Encodes `parts` (in order) as one data page of `descr`'s column, compressed. PLAIN
    /// values follow one another, so the parts are not copied into one array first (but
    /// for booleans, whose bits would not line up).
    fn page(
        &mut self,
        descr: &ColumnDescPtr,
        parts: &[ArrayRef],
        scratch: &mut Scratch,
        squeeze: &mut Squeeze,
        plain_encodings: bool,
    ) -> Result<()> {
        let (rows, nulls) = parts
            .iter()
            .fold((0, 0), |(r, n), a| (r + a.len(), n + a.null_count()));
        if descr.max_def_level() == 0 && nulls > 0 {
            return Err(Error::msg(format!(
                "column '{}' is not nullable but has NULLs",
                descr.name()
            )));
        }
        let page = &mut scratch.page;
        page.clear();
        if descr.max_def_level() > 0 {
            put_levels(page, parts);
        }
        let encoding = if self.put_ids(page, parts, &mut scratch.ids) {
            Encoding::RLE_DICTIONARY
        } else if !plain_encodings
            && let Some(wide) = gather_ints(parts, descr, &mut scratch.ints)
            && !scratch.ints.is_empty()
        {
            let ints = &scratch.ints;
            let (lo, hi) = ints
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            self.bounds.merge(
                &if matches!(parts[0].data_type(), DataType::Decimal128(_, _)) {
                    Bounds::Dec(lo.into(), hi.into())
                } else {
                    Bounds::Int(lo, hi)
                },
            );
            put_delta(page, ints, wide);
            self.uses(Encoding::DELTA_BINARY_PACKED);
            Encoding::DELTA_BINARY_PACKED
        } else if !plain_encodings && descr.physical_type() == Physical::BYTE_ARRAY && nulls < rows
        {
            // Text the dictionary does not take: the lengths packed as differences, then
            // the bytes one after another (zstd then sees only text).
            let lengths = &mut scratch.ints;
            lengths.clear();
            for a in parts {
                match a.nulls().filter(|n| n.null_count() > 0) {
                    None => {
                        lengths.extend(text_parts(a).0.windows(2).map(|w| (w[1] - w[0]) as i64))
                    }
                    Some(_) => each_text(a, |v| lengths.push(v.len() as i64)),
                }
            }
            put_delta(page, lengths, false);
            let mut bounds = TextBounds::default();
            let mut done = 0;
            for a in parts {
                // The values are one run of bytes in the array unless a NULL holds bytes.
                let run = text_run(a);
                let n = a.len() - a.null_count();
                let sum: i64 = lengths[done..done + n].iter().sum();
                done += n;
                if run.len() as i64 == sum {
                    page.extend_from_slice(run);
                    each_text(a, |v| bounds.add(v));
                } else {
                    each_text(a, |v| {
                        page.extend_from_slice(v);
                        bounds.add(v);
                    });
                }
            }
            self.bounds.merge(&bounds.into());
            self.uses(Encoding::DELTA_LENGTH_BYTE_ARRAY);
            Encoding::DELTA_LENGTH_BYTE_ARRAY
        } else {
            Encoding::PLAIN
        };
        if encoding == Encoding::PLAIN {
            if parts.len() > 1 && *parts[0].data_type() == DataType::Boolean {
                let arrays: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                let one = arrow::compute::concat(&arrays)?;
                self.bounds.merge(&put_values(page, &one, descr)?);
            } else {
                for a in parts {
                    self.bounds.merge(&put_values(page, a, descr)?);
                }
            }
        }
        let size = page.len();
        let data = squeeze.page(&mut scratch.zstd, &mut scratch.packed, &scratch.page)?;
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(
            Page::DataPage {
                buf: data,
                num_values: rows as u32,
                encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            size,
        ))?;
        self.locations.push(PageLocation {
            offset: spec.offset as i64,
            compressed_page_size: spec.compressed_size as i32,
            first_row_index: self.values as i64,
        });
        self.compressed += spec.compressed_size as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        self.nulls += nulls as u64;
        self.values += rows as u64;
        Ok(())
    }

    /// The chunk's bytes and what the row group writer needs to splice them: the
    /// dictionary page first (when a page refers to it), then the data pages.
    fn finish(
        mut self,
        descr: &ColumnDescPtr,
        scratch: &mut Scratch,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let pages = self.sink.into_inner()?;
        let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
        encodings.append(&mut self.delta_encodings);
        let (bytes, data_offset) = match self.dict.take().filter(|d| d.used) {
            None => (pages, 0),
            Some(dict) => {
                encodings.push(Encoding::RLE_DICTIONARY);
                let mut sink = TrackedWrite::new(Vec::with_capacity(pages.len() + (64 << 10)));
                let data = compress(&mut scratch.zstd, &mut scratch.packed, &dict.plain)?;
                let spec = SerializedPageWriter::new(&mut sink).write_page(CompressedPage::new(
                    Page::DictionaryPage {
                        buf: data,
                        num_values: dict.len() as u32,
                        encoding: Encoding::PLAIN,
                        is_sorted: false,
                    },
                    dict.plain.len(),
                ))?;
                self.compressed += spec.compressed_size as i64;
                self.uncompressed += spec.uncompressed_size as i64;
                let offset = spec.bytes_written as i64;
                sink.write_all(&pages)?;
                (sink.into_inner()?, offset)
            }
        };
        let bytes = Bytes::from(bytes);
        let metadata = ColumnChunkMetaData::builder(descr.clone())
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_encodings(encodings)
            .set_num_values(self.values as i64)
            .set_total_compressed_size(self.compressed)
            .set_total_uncompressed_size(self.uncompressed)
            .set_dictionary_page_offset((data_offset > 0).then_some(0))
            .set_data_page_offset(data_offset)
            .set_statistics(chunk_statistics(descr, &self.bounds, self.nulls))
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.values,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(OffsetIndexMetaData {
                page_locations: self
                    .locations
                    .into_iter()
                    .map(|l| PageLocation {
                        offset: l.offset + data_offset,
                        ..l
                    })
                    .collect(),
                unencoded_byte_array_data_bytes: None,
            }),
        };
        Ok((bytes, close))
    }
}

/// One data file being written: its Parquet writer (drained into the upload after each row
/// group), the row group being encoded, and the statistics gathered for its `Add`.
struct OpenFile {
    name: String,
    upload: Upload,
    parquet: SerializedFileWriter<Vec<u8>>,
    chunks: Vec<Chunk>,
    group_rows: usize,
    bounds: Vec<Bounds>,
    nulls: Vec<u64>,
    rows: u64,
    bytes: u64,
}

/// Where a data file's bytes go: the table's object store, or, for a table on a local disk,
/// a file written around the page cache ([`DirectFile`]).
enum Upload {
    Store(BufWriter),
    /// None only while a write runs on the blocking pool (or after one that panicked).
    Local(Option<DirectFile>),
}

impl Upload {
    /// Appends `data`; gives back its buffer, emptied, when it can be filled again.
    async fn put(&mut self, data: Vec<u8>) -> Result<Vec<u8>> {
        match self {
            Upload::Store(w) => {
                w.put(Bytes::from(data)).await?;
                Ok(Vec::new())
            }
            Upload::Local(slot) => {
                let mut file = slot.take().ok_or_else(lost)?;
                let (file, mut data, r) = tokio::task::spawn_blocking(move || {
                    let r = file.write(&data);
                    (file, data, r)
                })
                .await
                .map_err(|e| Error::msg(format!("writing a data file: {e}")))?;
                *slot = Some(file);
                r?;
                data.clear();
                Ok(data)
            }
        }
    }

    /// Completes the file (once complete, it is in place under its name).
    async fn shutdown(&mut self, name: &str) -> Result<()> {
        let failed =
            |e: std::io::Error| Error::from(e).context(format!("data file {name}: upload failed"));
        match self {
            Upload::Store(w) => w.shutdown().await.map_err(failed),
            Upload::Local(slot) => {
                let file = slot.take().ok_or_else(lost)?;
                tokio::task::spawn_blocking(move || file.finish())
                    .await
                    .map_err(|e| Error::msg(format!("writing a data file: {e}")))?
                    .map(|_| ())
                    .map_err(failed)
            }
        }
    }

    /// Abandons the file.
    async fn abort(&mut self) {
        match self {
            Upload::Store(w) => {
                let _ = w.abort().await;
            }
            Upload::Local(slot) => {
                if let Some(f) = slot.take() {
                    f.abort();
                }
            }
        }
    }
}

/// The error of an [`Upload::Local`] whose file was lost to a write that panicked.
fn lost() -> Error {
    Error::msg("a data file's earlier write failed")
}

/// Writes a table's data files from batches, as delta-rs's `DeltaWriter` would for an
/// unpartitioned table: row groups of [`ROW_GROUP_ROWS`] rows, a new file once one passes
/// `target_bytes`, and an `Add` with statistics for the first `indexed` columns of each.
/// Pages are encoded as their rows arrive, so the work keeps pace with the batches.
pub struct DataFileWriter {
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    /// `schema` as Parquet's, converted once, and its columns.
    parquet_schema: SchemaDescriptor,
    columns: Vec<ColumnDescPtr>,
    properties: Arc<WriterProperties>,
    indexed: usize,
    target_bytes: u64,
    /// Whether pages are only PLAIN or dictionary (no delta encodings).
    plain_encodings: bool,
    scratch: Scratch,
    /// Per column: whether its pages are worth compressing.
    squeeze: Vec<Squeeze>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    open: Option<OpenFile>,
    done: Vec<Add>,
    /// The table's directory when it is on a local disk: files go there directly.
    local: Option<std::path::PathBuf>,
}

impl DataFileWriter {
    /// A writer of files for `schema` (every column [`supported`]) into `store` (rooted at
    /// the table), with statistics on the first `indexed` columns.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        schema: SchemaRef,
        indexed: usize,
        target_bytes: u64,
    ) -> Result<Self> {
        // `APP version V (build B)`: the form parquet-mr (Spark) parses; a `created_by` it
        // cannot parse makes it ignore the text and decimal statistics.
        let mut properties = WriterProperties::builder()
            .set_created_by(format!(
                "hvrlake version {} (build parquet-rs)",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
        let parquet_schema = ArrowSchemaConverter::new().convert(&schema)?;
        let squeeze = parquet_schema.columns().iter().map(|_| Squeeze::default());
        let squeeze = squeeze.collect();
        Ok(DataFileWriter {
            squeeze,
            store,
            schema,
            columns: parquet_schema.columns().to_vec(),
            parquet_schema,
            properties: Arc::new(properties),
            indexed,
            target_bytes,
            plain_encodings: false,
            scratch: Scratch {
                page: Vec::with_capacity(1 << 20),
                packed: Vec::with_capacity(1 << 20),
                ids: Vec::with_capacity(PAGE_ROWS),
                ints: Vec::with_capacity(PAGE_ROWS),
                zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| Error::msg(format!("zstd: {e}")))?,
            },
            pending: Vec::new(),
            pending_rows: 0,
            open: None,
            done: Vec::new(),
            local: None,
        })
    }

    /// Writes only PLAIN and dictionary pages (`true`): INT32 and INT64 columns not
    /// DELTA_BINARY_PACKED, text not DELTA_LENGTH_BYTE_ARRAY, for readers that cannot decode
    /// those (Spark's vectorized reader before 3.3).
    pub fn plain_encodings(mut self, yes: bool) -> Self {
        self.plain_encodings = yes;
        self
    }

    /// Writes the files straight into `dir`, the table's directory on a local disk, around the
    /// page cache ([`DirectFile`]) instead of through the object store.
    pub fn local_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.local = dir;
        self
    }

    /// Takes `batch`; encodes a page whenever enough rows are waiting, and writes out each
    /// row group as it fills.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending.push(batch.clone());
        self.pending_rows += batch.num_rows();
        while self.pending_rows >= PAGE_ROWS {
            self.page(PAGE_ROWS).await?;
        }
        Ok(())
    }

    /// Writes what is waiting and finishes the open file; returns an `Add` for every file.
    /// On failure the files it wrote are deleted.
    pub async fn close(mut self) -> Result<Vec<Add>> {
        match self.finish().await {
            Ok(()) => Ok(self.done),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn finish(&mut self) -> Result<()> {
        while self.pending_rows > 0 {
            self.page(self.pending_rows.min(PAGE_ROWS)).await?;
        }
        self.end_group().await?;
        self.finish_file().await
    }

    /// Abandons the open file's upload and deletes the files finished so far.
    pub async fn abort(mut self) {
        if let Some(mut f) = self.open.take() {
            let _ = f.upload.abort().await;
        }
        for add in self.done.drain(..) {
            let _ = self.store.delete(&Path::from(add.path)).await;
        }
    }

    /// Encodes up to `rows` waiting rows (no more than the row group has room for) as one
    /// page of each column; ends the row group when it is full.
    async fn page(&mut self, rows: usize) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.start_file()?);
        }
        let f = self.open.as_mut().expect("a file is open");
        let rows = rows.min(ROW_GROUP_ROWS - f.group_rows);
        let parts = take(&mut self.pending, rows);
        self.pending_rows -= rows;
        for (i, (descr, chunk)) in self.columns.iter().zip(&mut f.chunks).enumerate() {
            let arrays: Vec<ArrayRef> = parts.iter().map(|b| b.column(i).clone()).collect();
            let squeeze = &mut self.squeeze[i];
            chunk.page(
                descr,
                &arrays,
                &mut self.scratch,
                squeeze,
                self.plain_encodings,
            )?;
        }
        f.group_rows += rows;
        if f.group_rows == ROW_GROUP_ROWS {
            self.end_group().await?;
        }
        Ok(())
    }

    /// Writes the row group encoded so far (if any) into the file and its bytes to the
    /// upload; finishes the file once it passes the target size.
    async fn end_group(&mut self) -> Result<()> {
        let Some(f) = self.open.as_mut().filter(|f| f.group_rows > 0) else {
            return Ok(());
        };
        let chunks = std::mem::take(&mut f.chunks);
        let mut hints = Vec::with_capacity(chunks.len());
        let mut rg = f.parquet.next_row_group()?;
        for (i, (descr, chunk)) in self.columns.iter().zip(chunks).enumerate() {
            f.bounds[i].merge(&chunk.bounds);
            f.nulls[i] += chunk.nulls;
            let (bytes, close) = chunk.finish(descr, &mut self.scratch)?;
            hints.push(bytes.len());
            rg.append_column(&bytes, close)?;
        }
        rg.close()?;
        f.chunks = self
            .columns
            .iter()
            .zip(hints)
            .map(|(d, hint)| Chunk::new(d, hint))
            .collect();
        f.rows += f.group_rows as u64;
        f.group_rows = 0;
        // The next row group will be about as large: its buffer is reserved at once.
        let out = std::mem::take(f.parquet.inner_mut());
        let n = out.len();
        f.bytes += n as u64;
        let mut back = f.upload.put(out).await?;
        back.reserve(n + n / 8);
        *f.parquet.inner_mut() = back;
        if f.bytes >= self.target_bytes {
            self.finish_file().await?;
        }
        Ok(())
    }

    fn start_file(&self) -> Result<OpenFile> {
        let name = format!(
            "part-{:05}-{}-c000.zstd.parquet",
            self.done.len(),
            uuid::Uuid::new_v4()
        );
        let n = self.columns.len();
        let upload = match &self.local {
            Some(dir) => {
                Upload::Local(Some(DirectFile::create(&dir.join(&name)).map_err(|e| {
                    Error::msg(format!("data file {name}: cannot create it: {e}"))
                })?))
            }
            None => Upload::Store(BufWriter::new(
                self.store.clone(),
                Path::from(name.as_str()),
            )),
        };
        Ok(OpenFile {
            upload,
            name,
            parquet: SerializedFileWriter::new(
                Vec::new(),
                self.parquet_schema.root_schema_ptr(),
                self.properties.clone(),
            )?,
            chunks: self.columns.iter().map(|d| Chunk::new(d, 0)).collect(),
            group_rows: 0,
            bounds: vec![Bounds::None; n],
            nulls: vec![0; n],
            rows: 0,
            bytes: 0,
        })
    }

    async fn finish_file(&mut self) -> Result<()> {
        let Some(mut f) = self.open.take() else {
            return Ok(());
        };
        let tail = f.parquet.into_inner()?;
        f.bytes += tail.len() as u64;
        f.upload.put(tail).await?;
        f.upload.shutdown(&f.name).await?;
        let stats = delta_stats(&self.schema, self.indexed, &f.bounds, &f.nulls, f.rows);
        self.done.push(Add {
            path: f.name,
            partition_values: HashMap::new(),
            size: f.bytes as i64,
            modification_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            data_change: true,
            stats: Some(stats.to_string()),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        });
        Ok(())
    }
}

/// Takes the first `rows` rows of `pending`, in order, as slices of its batches.
fn take(pending: &mut Vec<RecordBatch>, rows: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut need = rows;
    let mut used = 0;
    for b in pending.iter_mut() {
        if need == 0 {
            break;
        }
        if b.num_rows() <= need {
            need -= b.num_rows();
            out.push(b.clone());
            used += 1;
        } else {
            out.push(b.slice(0, need));
            *b = b.slice(need, b.num_rows() - need);
            need = 0;
        }
    }
    pending.drain(..used);
    out
}

/// A file's statistics as the Delta log holds them, written the way delta-rs writes them
/// from Parquet statistics (so a table reads the same whichever writer wrote a file):
/// numbers as JSON numbers (decimals as doubles), dates `YYYY-MM-DD`, timestamps cut to
/// milliseconds, no min/max for binary columns or for text past [`STATS_MAX_BYTES`].
fn delta_stats(
    schema: &SchemaRef,
    indexed: usize,
    bounds: &[Bounds],
    nulls: &[u64],
    rows: u64,
) -> Value {
    let (mut min, mut max, mut null_count) = (Map::new(), Map::new(), Map::new());
    for ((field, b), n) in schema.fields().iter().zip(bounds).zip(nulls).take(indexed) {
        if *field.data_type() == DataType::Binary {
            continue;
        }
        null_count.insert(field.name().clone(), Value::from(*n));
        let json = |lo: bool| -> Option<Value> {
            Some(match (field.data_type(), b) {
                (_, Bounds::Bool(a, z)) => Value::Bool(if lo { *a } else { *z }),
                (DataType::Date32, Bounds::Int(a, z)) => {
                    let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                        + chrono::Duration::days(if lo { *a } else { *z });
                    Value::from(d.format("%Y-%m-%d").to_string())
                }
                (DataType::Timestamp(unit, tz), Bounds::Int(a, z)) => {
                    let v = if lo { *a } else { *z };
                    let t = match unit {
                        TimeUnit::Nanosecond => chrono::DateTime::from_timestamp(
                            v.div_euclid(1_000_000_000),
                            v.rem_euclid(1_000_000_000) as u32,
                        ),
                        _ => chrono::DateTime::from_timestamp_micros(v),
                    }?
                    .naive_utc();
                    use chrono::Timelike;
                    let whole = t.nanosecond() == 0;
                    let format = match (tz.is_some(), whole) {
                        (true, true) => "%Y-%m-%dT%H:%M:%SZ",
                        (true, false) => "%Y-%m-%dT%H:%M:%S%.3fZ",
                        (false, true) => "%Y-%m-%d %H:%M:%S",
                        (false, false) => "%Y-%m-%d %H:%M:%S%.3f",
                    };
                    Value::from(t.format(format).to_string())
                }
                (_, Bounds::Int(a, z)) => Value::from(if lo { *a } else { *z }),
                (_, Bounds::F32(a, z)) => Value::from(if lo { *a } else { *z }),
                (_, Bounds::F64(a, z)) => Value::from(if lo { *a } else { *z }),
                (DataType::Decimal128(p, s), Bounds::Dec(a, z)) => {
                    decimal_stat(if lo { *a } else { *z }, *p, *s)
                }
                (_, Bounds::Bytes(Some((a, z)))) => {
                    Value::from(String::from_utf8(if lo { a } else { z }.clone()).ok()?)
                }
                _ => return None,
            })
        };
        if let (Some(lo), Some(hi)) = (json(true), json(false)) {
            min.insert(field.name().clone(), lo);
            max.insert(field.name().clone(), hi);
        }
    }
    let mut stats = Map::new();
    stats.insert("numRecords".into(), Value::from(rows));
    stats.insert("minValues".into(), Value::Object(min));
    stats.insert("maxValues".into(), Value::Object(max));
    stats.insert("nullCount".into(), Value::Object(null_count));
    Value::Object(stats)
}

/// A decimal's statistic as delta-rs writes it: the value as a double (an integer when the
/// scale is 0), stepped toward zero when rounding gave it more integer digits than allowed.
fn decimal_stat(unscaled: i128, precision: u8, scale: i8) -> Value {
    let scale = scale as i32;
    if scale == 0 && precision <= 18 {
        return Value::from(unscaled as i64);
    }
    let mut v = unscaled as f64 / 10f64.powi(scale);
    if precision > 18
        && v.is_normal()
        && (v.trunc() as i128).to_string().len() > (precision as i32 - scale) as usize
    {
        v = f64::from_bits(v.to_bits() - 1);
    }
    if scale == 0 {
        Value::from(v.round() as i64)
    } else {
        Value::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes zstd cannot shrink (an xorshift stream), `n` of them.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn dictionary_numbers_each_distinct_value_once_short_or_long() {
        use arrow::array::StringArray;
        use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type};
        let ty = Type::primitive_type_builder("s", Physical::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .unwrap();
        let descr = Arc::new(ColumnDescriptor::new(
            Arc::new(ty),
            1,
            0,
            ColumnPath::from("s"),
        ));
        // Short values that differ only in a trailing NUL or their length, values of 15, 16
        // and more bytes, and (last in each array) a short value too near the end of its
        // buffer for a 16-byte load.
        let first = [
            Some("a"),
            Some(""),
            Some("a\0"),
            None,
            Some("\0"),
            Some("fifteen bytes!!"),
            Some("sixteen bytes!!!"),
            Some("a value much longer than sixteen bytes"),
            Some("fifteen bytes!!"),
            Some("a"),
        ];
        let second = [
            Some("sixteen bytes!!!"),
            None,
            Some(""),
            Some("ab"),
            Some("a\0"),
        ];
        let parts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(first.to_vec())),
            Arc::new(StringArray::from(second.to_vec())),
        ];
        let mut chunk = Chunk::new(&descr, 0);
        let (mut page, mut ids) = (Vec::new(), Vec::new());
        assert!(chunk.put_ids(&mut page, &parts, &mut ids));
        let values: Vec<&str> = first.iter().chain(&second).flatten().copied().collect();
        assert_eq!(ids.len(), values.len());
        // The dictionary page: each distinct value once, in the order first seen.
        let dict = chunk.dict.as_ref().unwrap();
        let mut plain = &dict.plain[..];
        let mut entries = Vec::new();
        while !plain.is_empty() {
            let len = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
            entries.push(std::str::from_utf8(&plain[4..4 + len]).unwrap());
            plain = &plain[4 + len..];
        }
        let mut distinct: Vec<&str> = Vec::new();
        for v in &values {
            if !distinct.contains(v) {
                distinct.push(v);
            }
        }
        assert_eq!(entries, distinct);
        assert_eq!(dict.len(), distinct.len());
        for (v, id) in values.iter().zip(&ids) {
            assert_eq!(entries[*id as usize], *v);
        }
    }

    #[test]
    fn stored_pages_are_zstd_frames_any_decoder_reads() {
        for n in [0, 1, 1000, 128 << 10, (128 << 10) + 1, 300_000] {
            let input = noise(n);
            let frame = stored(&input);
            assert_eq!(frame.len(), n + 9 + 3 * n.div_ceil(128 << 10).max(1), "{n}");
            assert_eq!(zstd::stream::decode_all(&frame[..]).unwrap(), input, "{n}");
            let mut out = Vec::with_capacity(n);
            zstd::bulk::Decompressor::new()
                .unwrap()
                .decompress_to_buffer(&frame[..], &mut out)
                .unwrap();
            assert_eq!(out, input, "{n}");
        }
    }

    #[test]
    fn pages_that_do_not_shrink_are_stored_then_tried_again() {
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        let mut packed = Vec::new();
        let mut squeeze = Squeeze::default();
        let raw = noise(50_000);
        let is_stored = |b: &Bytes| b.len() == raw.len() + 12 && b[4] == 0b1010_0000;
        let mut tried = Vec::new();
        for _ in 0..60 {
            let page = squeeze.page(&mut zstd, &mut packed, &raw).unwrap();
            tried.push(!is_stored(&page));
        }
        // Tried at pages 0, 5, 14, 31, 64 ...: runs of 4, 8, 16, 32 stored between.
        let at: Vec<usize> = (0..60).filter(|&i| tried[i]).collect();
        assert_eq!(at, [0, 5, 14, 31]);
        // A page that shrinks is compressed, and so is the next one.
        let text = b"the same words again and again, ".repeat(2000);
        squeeze.skip = 0;
        for _ in 0..2 {
            let page = squeeze.page(&mut zstd, &mut packed, &text).unwrap();
            assert!(page.len() < text.len() / 10);
        }
        assert_eq!((squeeze.skip, squeeze.run), (0, 0));
        let page = squeeze.page(&mut zstd, &mut packed, &raw).unwrap();
        assert!(!is_stored(&page));
        assert_eq!(squeeze.skip, 4);
    }
}
