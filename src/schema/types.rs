//! Column types: the types a table can declare, inference over text values for a new table,
//! and the fast text-to-value parsers used by the CSV decoder.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

/// A type a user may declare for a column of a new table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredType {
    /// 64-bit integer (Delta `long`).
    Int64,
    /// 32-bit integer (Delta `integer`).
    Int32,
    /// Double precision float.
    Float64,
    /// Decimal with precision and scale.
    Decimal(u8, i8),
    /// UTF-8 text.
    String,
    /// Boolean.
    Boolean,
    /// Calendar date.
    Date,
    /// Timestamp in microseconds, stored as UTC.
    Timestamp,
    /// Bytes (hex in CSV).
    Binary,
}

impl DeclaredType {
    /// Parses names such as `int64`, `decimal(10,2)`, `timestamp`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "int64" | "bigint" | "long" => DeclaredType::Int64,
            "int32" | "int" | "integer" => DeclaredType::Int32,
            "float64" | "double" | "float" => DeclaredType::Float64,
            "string" | "text" | "varchar" => DeclaredType::String,
            "boolean" | "bool" => DeclaredType::Boolean,
            "date" => DeclaredType::Date,
            "timestamp" | "datetime" => DeclaredType::Timestamp,
            "binary" | "bytes" => DeclaredType::Binary,
            _ => {
                let inner = l
                    .strip_prefix("decimal(")
                    .or_else(|| l.strip_prefix("numeric("))
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("unknown type '{s}'"))?;
                let (p, sc) = inner.split_once(',').unwrap_or((inner, "0"));
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad precision in '{s}'"))?;
                let sc: i8 = sc
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad scale in '{s}'"))?;
                if !(1..=38).contains(&p) || sc < 0 || sc as u8 > p {
                    return Err(format!(
                        "'{s}' needs 1 <= precision <= 38 and 0 <= scale <= precision"
                    ));
                }
                DeclaredType::Decimal(p, sc)
            }
        })
    }

    /// The Arrow type a column of this type is decoded into.
    pub fn arrow(self) -> DataType {
        match self {
            DeclaredType::Int64 => DataType::Int64,
            DeclaredType::Int32 => DataType::Int32,
            DeclaredType::Float64 => DataType::Float64,
            DeclaredType::Decimal(p, s) => DataType::Decimal128(p, s),
            DeclaredType::String => DataType::Utf8,
            DeclaredType::Boolean => DataType::Boolean,
            DeclaredType::Date => DataType::Date32,
            DeclaredType::Timestamp => utc_micros(),
            DeclaredType::Binary => DataType::Binary,
        }
    }
}

/// The Arrow type of a Delta `timestamp`: microseconds, UTC.
pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// How a refresh that guessed its types from a sample makes sure every value keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing to check: the type is declared or the table's, or no value can change it (text,
    /// dates and timestamps, which decode with the very parsers inference uses).
    Settled,
    /// A guessed integer, decimal or boolean: decoded by inference's own rules ([`keeps_int`]), so
    /// a value that decodes keeps the guess and one that does not fails the read.
    Strict,
    /// Every value goes through [`Inference::add`] as it is decoded (a guess made from no
    /// values, a float).
    Infer,
}

/// Whether value `v` (which parses as a `bigint`) leaves a column that inference typed
/// `bigint` from other values at `bigint`: what [`Check::Strict`] decoding requires on top of
/// the parsing. [`keeps_decimal`] and [`keeps_bool`] are the same for the other types it
/// covers.
#[inline(always)]
pub fn keeps_int(v: &[u8]) -> bool {
    matches!(decimal_shape(v), Some((_, 0)))
}

/// [`keeps_int`] for `decimal(38, scale)`.
#[inline(always)]
pub fn keeps_decimal(v: &[u8], scale: i8) -> bool {
    decimal_shape(v)
        .is_some_and(|(d, sc)| sc as i32 <= scale as i32 && d as i32 + scale as i32 <= 38)
}

/// [`keeps_int`] for `boolean`.
#[inline(always)]
pub fn keeps_bool(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"true") || v.eq_ignore_ascii_case(b"false")
}

/// Whether inference's guess `ty` can be checked by [`Check::Strict`] decoding.
pub fn strict_checkable(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Int64 | DataType::Decimal128(38, _) | DataType::Boolean
    )
}

/// What the values of one column seen so far allow it to be; merged across chunks.
#[derive(Clone, Debug)]
pub struct Inference {
    seen: u64,
    int: bool,
    decimal: bool,
    float: bool,
    boolean: bool,
    date: bool,
    timestamp: bool,
    max_int_digits: u8,
    max_scale: u8,
}

impl Default for Inference {
    fn default() -> Self {
        Inference {
            seen: 0,
            int: true,
            decimal: true,
            float: true,
            boolean: true,
            date: true,
            timestamp: true,
            max_int_digits: 0,
            max_scale: 0,
        }
    }
}

impl Inference {
    /// Records one non-NULL text value.
    pub fn add(&mut self, v: &[u8]) {
        self.seen += 1;
        if self.int || self.decimal {
            match decimal_shape(v) {
                Some((int_digits, scale)) => {
                    self.max_int_digits = self.max_int_digits.max(int_digits);
                    self.max_scale = self.max_scale.max(scale);
                    if scale > 0 || parse_i64(v).is_none() {
                        self.int = false;
                    }
                }
                None => {
                    self.int = false;
                    self.decimal = false;
                }
            }
        }
        if self.float && !(self.int || self.decimal) {
            let unsigned = v
                .strip_prefix(b"-")
                .or_else(|| v.strip_prefix(b"+"))
                .unwrap_or(v);
            let leading_zero =
                unsigned.len() > 1 && unsigned[0] == b'0' && unsigned[1].is_ascii_digit();
            self.float = !leading_zero
                && v.iter().any(|b| b.is_ascii_digit())
                && std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_some();
        }
        if self.boolean {
            self.boolean = v.eq_ignore_ascii_case(b"true") || v.eq_ignore_ascii_case(b"false");
        }
        if self.date || self.timestamp {
            let is_date = self.date && parse_date(v).is_some();
            // parse_timestamp_micros takes a plain date too.
            let is_ts = is_date || (self.timestamp && parse_timestamp_micros(v).is_some());
            self.date &= is_date;
            self.timestamp &= is_ts;
        }
    }

    /// How many non-NULL values were recorded.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Combines what two disjoint sets of values allow.
    pub fn merge(&mut self, o: &Inference) {
        self.seen += o.seen;
        self.int &= o.int;
        self.decimal &= o.decimal;
        self.float &= o.float;
        self.boolean &= o.boolean;
        self.date &= o.date;
        self.timestamp &= o.timestamp;
        self.max_int_digits = self.max_int_digits.max(o.max_int_digits);
        self.max_scale = self.max_scale.max(o.max_scale);
    }

    /// The type an existing column of type `existing` widens to so that the values seen fit,
    /// when Delta's type widening rules allow it: an integer to a long, to a decimal with at
    /// least 10 integer digits (20 for a long), or (not a long) to a double; a decimal to a
    /// wider decimal (no fewer integer digits, no smaller scale, precision up to 38); a float to
    /// a double. None when the values fit already, or no allowed type holds them (text in a
    /// number column, a timestamp in a date column: the decode error stands).
    pub fn widening(&self, existing: &DataType) -> Option<DataType> {
        if self.seen == 0 {
            return None;
        }
        let ints = self.max_int_digits as u32;
        let scale = self.max_scale as u32;
        let decimal = |min_int: u32, min_scale: u32| {
            let s = scale.max(min_scale);
            let p = ints.max(min_int) + s;
            (self.decimal && p <= 38).then_some(DataType::Decimal128(p as u8, s as i8))
        };
        match existing {
            DataType::Int8 | DataType::Int16 | DataType::Int32 => {
                let fits = match existing {
                    DataType::Int8 => ints < 3,
                    DataType::Int16 => ints < 5,
                    _ => ints < 10,
                };
                if self.int && fits {
                    None
                } else if self.int {
                    Some(DataType::Int64)
                } else {
                    decimal(10, 0).or_else(|| self.float.then_some(DataType::Float64))
                }
            }
            // A long to a double loses digits: Delta does not allow it.
            DataType::Int64 if !self.int => decimal(20, 0),
            DataType::Decimal128(p, s) => {
                let (p, s) = (*p as u32, (*s).max(0) as u32);
                let fits = self.decimal && ints <= p - s && scale <= s;
                if fits { None } else { decimal(p - s, s) }
            }
            DataType::Float32 if self.int || self.decimal || self.float => Some(DataType::Float64),
            _ => None,
        }
    }

    /// The narrowest type every value fits; text when nothing else does or nothing was seen.
    pub fn result(&self) -> DeclaredType {
        if self.seen == 0 {
            return DeclaredType::String;
        }
        if self.boolean {
            DeclaredType::Boolean
        } else if self.int {
            DeclaredType::Int64
        } else if self.decimal && self.max_int_digits as u32 + self.max_scale as u32 <= 38 {
            // Room for larger values in later cycles: full precision, the scale seen.
            DeclaredType::Decimal(38, self.max_scale as i8)
        } else if self.float || self.decimal {
            DeclaredType::Float64
        } else if self.date {
            DeclaredType::Date
        } else if self.timestamp {
            DeclaredType::Timestamp
        } else {
            DeclaredType::String
        }
    }
}

/// For a plain decimal literal (`-12.50`), its integer digit count and scale. Numbers with
/// a leading zero (`007`) are identifiers, not numbers, and give `None`.
#[inline]
fn decimal_shape(v: &[u8]) -> Option<(u8, u8)> {
    let digits = match v.first() {
        Some(b'-' | b'+') => &v[1..],
        _ => v,
    };
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(p) => (&digits[..p], &digits[p + 1..]),
        None => (digits, &digits[..0]),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) || !frac.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    if int.len() > 1 && int[0] == b'0' {
        return None;
    }
    if digits.len() > int.len() && frac.is_empty() {
        return None; // "12."
    }
    let int_digits = if int == b"0" { 0 } else { int.len() };
    Some((int_digits.min(255) as u8, frac.len().min(255) as u8))
}

/// Parses a decimal integer.
pub fn parse_i64(v: &[u8]) -> Option<i64> {
    let (neg, d) = unsigned(v);
    signed(neg, digits_u64(d)?)
}

/// Parses a decimal literal (also `1e3` forms) into an integer scaled by `scale`; `None`
/// when it is not a number, has more fraction digits than `scale` allows, or overflows `precision`.
pub fn parse_decimal(v: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (neg, d) = unsigned(v);
    if d.len() <= 19 {
        // The common case (up to 18 digits, no exponent): one pass, u64 digits, powers of ten
        // from a table. Anything else takes the general path below.
        if let Some(n) = short_decimal(d, precision, scale) {
            return Some(if neg { -n } else { n });
        }
    }
    let (mant, exp) = match d.iter().position(|&b| b == b'e' || b == b'E') {
        Some(p) => (
            &d[..p],
            std::str::from_utf8(&d[p + 1..]).ok()?.parse::<i32>().ok()?,
        ),
        None => (d, 0),
    };
    // Digits gather in a u64 (18 at a time, which always fits) and move to the i128 only
    // every 18 digits: 128-bit multiplies per digit cost more than the rest of the parse.
    let mut n: i128 = 0;
    let mut chunk: u64 = 0;
    let mut chunk_digits = 0u32;
    let mut frac_digits: i32 = 0;
    let mut seen_dot = false;
    let mut any = false;
    for &b in mant {
        if b == b'.' {
            if seen_dot {
                return None;
            }
            seen_dot = true;
            continue;
        }
        let x = b.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        any = true;
        chunk = chunk * 10 + x as u64;
        chunk_digits += 1;
        if chunk_digits == 18 {
            n = n.checked_mul(10i128.pow(18))?.checked_add(chunk as i128)?;
            chunk = 0;
            chunk_digits = 0;
        }
        if seen_dot {
            frac_digits += 1;
        }
    }
    if chunk_digits > 0 {
        n = n
            .checked_mul(10i128.pow(chunk_digits))?
            .checked_add(chunk as i128)?;
    }
    if !any {
        return None;
    }
    let shift = scale as i32 - frac_digits + exp;
    if shift >= 0 {
        for _ in 0..shift {
            n = n.checked_mul(10)?;
        }
    } else {
        for _ in 0..(-shift) {
            if n % 10 != 0 {
                return None; // would lose digits
            }
            n /= 10;
        }
    }
    if n >= 10i128.pow(precision as u32) {
        return None;
    }
    Some(if neg { -n } else { n })
}

/// Powers of ten that fit an i128 decimal of up to 38 digits.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// [`parse_decimal`]'s fast path for an unsigned plain decimal of at most 18 digits and one
/// dot; None when `d` is anything else (the general path then decides).
#[inline]
fn short_decimal(d: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let mut n: u64 = 0;
    let mut digits = 0u32;
    let mut dot: Option<usize> = None;
    for (i, &b) in d.iter().enumerate() {
        let x = b.wrapping_sub(b'0');
        if x <= 9 {
            n = n * 10 + x as u64;
            digits += 1;
        } else if b == b'.' && dot.is_none() {
            dot = Some(i);
        } else {
            return None;
        }
    }
    if digits == 0 || digits > 18 || scale < 0 || precision > 38 {
        return None;
    }
    let frac = dot.map_or(0, |p| (d.len() - p - 1) as i32);
    let shift = scale as i32 - frac;
    let n = n as i128;
    let n = if shift >= 0 {
        n.checked_mul(*POW10.get(shift as usize)?)?
    } else {
        let p = *POW10.get((-shift) as usize)?;
        if n % p != 0 {
            return None; // would lose digits: the general path says so
        }
        n / p
    };
    (n < POW10[precision as usize]).then_some(n)
}

/// `v` without its sign, and whether it was `-`.
#[inline(always)]
fn unsigned(v: &[u8]) -> (bool, &[u8]) {
    match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    }
}

/// A one in every byte lane of a u64: eight bytes of text compared at once.
const ONES: u64 = 0x0101_0101_0101_0101;

/// Eight ASCII digits (the first in the low byte, as loaded from text) as their number;
/// None unless all eight are digits.
#[inline(always)]
fn eight_digits(chunk: u64) -> Option<u64> {
    eight_digits_xored(chunk ^ (ONES * b'0' as u64))
}

/// [`eight_digits`] of lanes already XORed with `'0'` (a digit lane holds its value).
#[inline(always)]
fn eight_digits_xored(t: u64) -> Option<u64> {
    // A lane is a digit when it is at most 9 after the XOR: adding 0x76 sets its top bit
    // otherwise (or the lane had it already).
    if (t.wrapping_add(ONES * 0x76) | t) & (ONES * 0x80) != 0 {
        return None;
    }
    let t = (t * 10 + (t >> 8)) & 0x00FF_00FF_00FF_00FF;
    let t = (t * 100 + (t >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((t * 10_000 + (t >> 32)) & 0xFFFF_FFFF)
}

/// 1 to 19 ASCII digits (19 always fit a u64) as their number; None for anything else.
#[inline(always)]
fn digits_u64(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    let mut rest = d;
    while let Some((head, tail)) = rest.split_first_chunk::<8>() {
        n = n * 100_000_000 + eight_digits(u64::from_le_bytes(*head))?;
        rest = tail;
    }
    let mut bad = false;
    for &b in rest {
        let x = b.wrapping_sub(b'0');
        bad |= x > 9;
        n = n.wrapping_mul(10).wrapping_add(x as u64);
    }
    (!bad).then_some(n)
}

/// `n` with its sign, when it fits an i64.
#[inline(always)]
fn signed(neg: bool, n: u64) -> Option<i64> {
    if neg {
        (n <= 1 << 63).then(|| (n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

/// [`parse_i64`] for a value that must also keep a column inferred `bigint` at `bigint`
/// ([`keeps_int`]): both in one pass.
#[inline]
pub fn parse_i64_kept(v: &[u8]) -> Option<i64> {
    let (neg, d) = unsigned(v);
    if d.len() > 1 && d[0] == b'0' {
        return None;
    }
    signed(neg, digits_u64(d)?)
}

/// [`parse_decimal`] for a value that must also keep a column inferred `decimal(38, scale)`
/// at that type ([`keeps_decimal`]): both in one pass for up to 18 digits.
#[inline]
pub fn parse_decimal_kept(v: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (neg, d) = unsigned(v);
    if d.len() <= 19 && (0..=38).contains(&scale) && precision <= 38 {
        let (int, frac) = match d.iter().position(|&b| b == b'.') {
            Some(p) => (&d[..p], Some(&d[p + 1..])),
            None => (d, None),
        };
        let i = digits_u64(int)?;
        if int.len() > 1 && int[0] == b'0' {
            return None;
        }
        let (f, flen) = match frac {
            Some(f) => (digits_u64(f)?, f.len()),
            None => (0, 0),
        };
        let int_digits = if int == b"0" { 0 } else { int.len() };
        if flen > scale as usize || int_digits + scale as usize > 38 {
            return None;
        }
        if int.len() + flen <= 18 {
            let n = (i * POW10[flen] as u64 + f) as i128 * POW10[scale as usize - flen];
            return (n < POW10[precision as usize]).then_some(if neg { -n } else { n });
        }
        return parse_decimal(v, precision, scale);
    }
    keeps_decimal(v, scale)
        .then(|| parse_decimal(v, precision, scale))
        .flatten()
}

/// Parses `true/false/1/0/t/f/y/n/yes/no`, any case.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    // The spellings a database writes, before the case-insensitive list.
    match v {
        b"true" | b"1" => return Some(true),
        b"false" | b"0" => return Some(false),
        _ => {}
    }
    const TRUE: [&[u8]; 5] = [b"true", b"1", b"t", b"y", b"yes"];
    const FALSE: [&[u8]; 5] = [b"false", b"0", b"f", b"n", b"no"];
    if TRUE.iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The year, month and day of a valid `YYYY-MM-DD`.
#[inline]
fn date_parts(v: &[u8]) -> Option<(i64, u32, u32)> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let y = digits_u64(&v[0..4])? as i64;
    let m = digits_u64(&v[5..7])? as u32;
    let d = digits_u64(&v[8..10])? as u32;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(v: &[u8]) -> Option<i32> {
    date_parts(v).map(|(y, m, d)| days_from_civil(y, m, d) as i32)
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}]` (or a bare date) into microseconds since the
/// epoch; digits past microseconds must be zero so no precision is lost silently.
pub fn parse_timestamp_micros(v: &[u8]) -> Option<i64> {
    timestamp_micros(v, parse_date)
}

/// [`parse_date`] and [`parse_timestamp_micros`] for a column of values: the same rules, with
/// the first day of each month of the last year seen remembered, since a column's dates
/// mostly fall in a few years.
pub struct Days {
    year: i64,
    month_starts: [i32; 13],
}

impl Default for Days {
    fn default() -> Self {
        Days {
            year: i64::MIN,
            month_starts: [0; 13],
        }
    }
}

impl Days {
    #[inline]
    pub fn date(&mut self, v: &[u8]) -> Option<i32> {
        let (y, m, d) = date_parts(v)?;
        Some(self.month_start(y, m) + d as i32 - 1)
    }

    /// Days since the epoch of the first of month `m` (1 to 12) of year `y`.
    #[inline(always)]
    fn month_start(&mut self, y: i64, m: u32) -> i32 {
        if y != self.year {
            for (mm, start) in self.month_starts.iter_mut().enumerate().skip(1) {
                *start = days_from_civil(y, mm as u32, 1) as i32;
            }
            self.year = y;
        }
        self.month_starts[m as usize]
    }

    #[inline]
    pub fn timestamp_micros(&mut self, v: &[u8]) -> Option<i64> {
        if let Some(t) = self.usual_timestamp(v) {
            return Some(t);
        }
        timestamp_micros(v, |d| self.date(d))
    }

    /// [`Days::timestamp_micros`] of the usual `YYYY-MM-DD HH:MM:SS[.ffffff]` (a space or a
    /// `T`, no zone, up to six fraction digits), its digits checked eight at a time; None for
    /// any other text, valid or not, which the general parser then takes.
    #[inline(always)]
    fn usual_timestamp(&mut self, v: &[u8]) -> Option<i64> {
        let (Some(a), Some(b)) = (v.first_chunk::<8>(), v.get(8..16)) else {
            return None;
        };
        if v.len() < 19 || v.len() == 20 || v.len() > 26 {
            return None;
        }
        let a = u64::from_le_bytes(*a) ^ (ONES * b'0' as u64);
        let b = u64::from_le_bytes(b.try_into().ok()?) ^ (ONES * b'0' as u64);
        // "YYYY-MM-" and "DD HH:MM" after the XOR: digits in the lanes of DIGITS_A and
        // DIGITS_B; in the others '-' ^ '0' (0x1d), ' ' or 'T' ^ '0' (0x10, 0x64) and
        // ':' ^ '0' (0x0a).
        const DIGITS_A: u64 = 0x00FF_FF00_FFFF_FFFF;
        const DIGITS_B: u64 = 0xFFFF_00FF_FF00_FFFF;
        const SEPS_A: u64 = (0x1D << 56) | (0x1D << 32);
        let sep_b = b & !DIGITS_B;
        if a & !DIGITS_A != SEPS_A
            || (sep_b != (0x0A << 40) | (0x10 << 16) && sep_b != (0x0A << 40) | (0x64 << 16))
        {
            return None;
        }
        let (a, b) = (a & DIGITS_A, b & DIGITS_B);
        if (a.wrapping_add(ONES * 0x76) | a | b.wrapping_add(ONES * 0x76) | b) & (ONES * 0x80) != 0
        {
            return None;
        }
        // Each lane: ten times its digit plus the next lane's.
        let (a, b) = (a * 10 + (a >> 8), b * 10 + (b >> 8));
        let lane = |x: u64, i: u32| (x >> (8 * i)) as u32 & 0xFF;
        let (y, m, d) = (lane(a, 0) * 100 + lane(a, 2), lane(a, 5), lane(b, 0));
        let (h, mi) = (lane(b, 3), lane(b, 6));
        let (s1, s0) = (v[17].wrapping_sub(b'0'), v[18].wrapping_sub(b'0'));
        if v[16] != b':' || s1 > 9 || s0 > 9 {
            return None;
        }
        let s = s1 as u32 * 10 + s0 as u32;
        if !(1..=12).contains(&m) || d == 0 || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let y = y as i64;
        if d > 28 && d > days_in_month(y, m) {
            return None;
        }
        let mut micros = 0;
        if v.len() == 26 {
            let c = u64::from_le_bytes(v[18..26].try_into().ok()?) ^ (ONES * b'0' as u64);
            if c & 0xFF00 != 0x1E00 {
                return None;
            }
            micros = eight_digits_xored(c & !0xFFFF)? as u32;
        } else if v.len() > 19 {
            if v[19] != b'.' {
                return None;
            }
            let frac = &v[20..];
            micros = digits_u64(frac)? as u32 * [1, 100_000, 10_000, 1_000, 100, 10, 1][frac.len()];
        }
        let days = (self.month_start(y, m) + d as i32 - 1) as i64;
        Some(since_epoch(
            days,
            h as i64,
            mi as i64,
            s as i64,
            micros as i64,
        ))
    }
}

#[inline]
fn timestamp_micros(v: &[u8], mut date: impl FnMut(&[u8]) -> Option<i32>) -> Option<i64> {
    if v.len() == 10 {
        return date(v).map(|d| d as i64 * 86_400_000_000);
    }
    if v.len() < 19 || !(v[10] == b' ' || v[10] == b'T') || v[13] != b':' || v[16] != b':' {
        return None;
    }
    let days = date(&v[..10])? as i64;
    let h = digits_u64(&v[11..13])?;
    let mi = digits_u64(&v[14..16])?;
    let s = digits_u64(&v[17..19])?;
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut micros: i64 = 0;
    let rest = &v[19..];
    let rest = match rest.last() {
        Some(b'Z') => &rest[..rest.len() - 1],
        _ => rest,
    };
    if !rest.is_empty() {
        if rest[0] != b'.' || rest.len() < 2 || rest.len() > 10 {
            return None;
        }
        let frac = &rest[1..];
        let mut f = digits_u64(frac)? as i64;
        let mut n = frac.len();
        while n > 6 {
            if f % 10 != 0 {
                return None;
            }
            f /= 10;
            n -= 1;
        }
        while n < 6 {
            f *= 10;
            n += 1;
        }
        micros = f;
    }
    Some(since_epoch(days, h as i64, mi as i64, s as i64, micros))
}

/// Microseconds since the epoch of a day (days since the epoch) and a time of day.
#[inline(always)]
fn since_epoch(days: i64, h: i64, mi: i64, s: i64, micros: i64) -> i64 {
    ((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000 + micros
}

/// Decodes hex text (optionally `0x`-prefixed) into bytes.
pub fn parse_hex(v: &[u8]) -> Option<Vec<u8>> {
    let v = v
        .strip_prefix(b"0x")
        .or_else(|| v.strip_prefix(b"0X"))
        .unwrap_or(v);
    if !v.len().is_multiple_of(2) {
        return None;
    }
    let nib = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    v.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// A short human name of an Arrow type, as a user would declare it.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int8 => "int8".into(),
        DataType::Float64 => "float64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_month_starts_give_the_same_days() {
        // Every day of years around leap and century rules, in an order that changes year
        // often, plus invalid dates and timestamps: the column parser agrees with the plain one.
        let mut days = Days::default();
        let mut checked = 0;
        for y in [
            1600, 1899, 1900, 1969, 1970, 2000, 2024, 2026, 2100, 9999, 0,
        ] {
            for m in 0..=13 {
                for d in 0..=32 {
                    for year in [y, 2026] {
                        let v = format!("{year:04}-{m:02}-{d:02}");
                        assert_eq!(days.date(v.as_bytes()), parse_date(v.as_bytes()), "{v}");
                        let t = format!("{v} 23:59:58.123456");
                        assert_eq!(
                            days.timestamp_micros(t.as_bytes()),
                            parse_timestamp_micros(t.as_bytes()),
                            "{t}"
                        );
                        checked += usize::from(parse_date(v.as_bytes()).is_some());
                    }
                }
            }
        }
        assert!(checked > 7000, "{checked}");
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(days.date(b"2000-03-01"), Some(11017));
        assert_eq!(days.date(b"2000-02-30"), None);
    }

    /// Text for the fused parsers to disagree on: short runs of digits, signs, dots and
    /// other bytes, and timestamps with one byte replaced or cut.
    fn mutated(seed: &mut u64, templates: &[&str]) -> String {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let t = templates[next() as usize % templates.len()].as_bytes();
        let mut v = t.to_vec();
        for _ in 0..next() % 3 {
            match next() % 4 {
                0 if !v.is_empty() => {
                    let i = next() as usize % v.len();
                    v[i] = b"0123456789-+.: TZe/"[next() as usize % 19];
                }
                1 if !v.is_empty() => v.truncate(next() as usize % v.len()),
                2 => v.push(b"0123456789.Z"[next() as usize % 12]),
                _ => {
                    let i = next() as usize % (v.len() + 1);
                    v.insert(i, b"0123456789"[next() as usize % 10]);
                }
            }
        }
        String::from_utf8(v).expect("ASCII")
    }

    #[test]
    fn one_pass_parsers_agree_with_the_two_step_rules() {
        let reference_i64 = |v: &[u8]| {
            let d = v
                .strip_prefix(b"-")
                .or_else(|| v.strip_prefix(b"+"))
                .unwrap_or(v);
            (!d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                .flatten()
        };
        let numbers = [
            "0",
            "7",
            "-0",
            "+12",
            "007",
            "123456",
            "1234567",
            "12345678",
            "123456789",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "18446744073709551615",
            "99999999999999999999",
            "92601.45",
            "-262.00",
            "0.5",
            "00.5",
            "1.",
            ".5",
            "123456789012345678.9",
            "12345678901234567.89",
        ];
        let stamps = [
            "2026-04-20 12:25:45.636943",
            "2024-02-29T23:59:60.1",
            "2023-02-29 00:00:00",
            "2026-12-31 23:59:59",
            "0000-01-01 00:00:00.000001",
            "2026-07-21 22:12:58.000585Z",
            "2026-06-17 12:27:02.39885200",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let (mut ints, mut decimals, mut times) = (0, 0, 0);
        let mut days = Days::default();
        for _ in 0..200_000 {
            let v = mutated(&mut seed, &numbers);
            let v = v.as_bytes();
            assert_eq!(
                parse_i64(v),
                reference_i64(v),
                "{}",
                String::from_utf8_lossy(v)
            );
            let kept = parse_i64_kept(v);
            assert_eq!(kept, keeps_int(v).then(|| parse_i64(v)).flatten(), "{v:?}");
            ints += usize::from(kept.is_some());
            for (p, s) in [(38u8, 2i8), (38, 0), (18, 2), (38, 6), (7, 2)] {
                let kept = parse_decimal_kept(v, p, s);
                let two_step = keeps_decimal(v, s)
                    .then(|| parse_decimal(v, p, s))
                    .flatten();
                assert_eq!(
                    kept,
                    two_step,
                    "{} as decimal({p},{s})",
                    String::from_utf8_lossy(v)
                );
                decimals += usize::from(kept.is_some());
            }
            let t = mutated(&mut seed, &stamps);
            let got = days.timestamp_micros(t.as_bytes());
            assert_eq!(got, parse_timestamp_micros(t.as_bytes()), "{t}");
            times += usize::from(got.is_some());
        }
        // Both outcomes were seen often, so neither side of a rule went untested.
        assert!((20_000..180_000).contains(&ints), "{ints}");
        assert!((50_000..900_000).contains(&decimals), "{decimals}");
        assert!((20_000..180_000).contains(&times), "{times}");
    }

    #[test]
    fn widening_follows_the_delta_rules() {
        let seen = |vals: &[&str]| {
            let mut i = Inference::default();
            for v in vals {
                i.add(v.as_bytes());
            }
            i
        };
        let w = |vals: &[&str], t: DataType| seen(vals).widening(&t);
        // Values that fit: no change.
        assert_eq!(w(&["5", "-7"], DataType::Int32), None);
        assert_eq!(w(&["1.5"], DataType::Decimal128(10, 2)), None);
        // Integers: to a long, to a decimal with room for every integer, to a double.
        assert_eq!(w(&["12345678901"], DataType::Int32), Some(DataType::Int64));
        assert_eq!(
            w(&["1.25"], DataType::Int32),
            Some(DataType::Decimal128(12, 2))
        );
        assert_eq!(
            w(&["12.5"], DataType::Int64),
            Some(DataType::Decimal128(21, 1))
        );
        assert_eq!(w(&["1e300"], DataType::Int32), Some(DataType::Float64));
        // A long never becomes a double (it would lose digits).
        assert_eq!(w(&["1e300"], DataType::Int64), None);
        // Decimals keep their integer digits and grow the scale, up to 38 digits.
        assert_eq!(
            w(&["1.125"], DataType::Decimal128(10, 2)),
            Some(DataType::Decimal128(11, 3))
        );
        assert_eq!(
            w(&["123456789012"], DataType::Decimal128(10, 2)),
            Some(DataType::Decimal128(14, 2))
        );
        assert_eq!(w(&["1.125"], DataType::Decimal128(38, 2)), None);
        // Text, or a timestamp in a date column: nothing Delta allows.
        assert_eq!(w(&["lots"], DataType::Int64), None);
        assert_eq!(w(&["2026-01-01 10:00:00"], DataType::Date32), None);
        assert_eq!(w(&["1.5"], DataType::Float32), Some(DataType::Float64));
    }

    #[test]
    fn inference_picks_the_narrowest_type() {
        let infer = |vals: &[&str]| {
            let mut i = Inference::default();
            vals.iter().for_each(|v| i.add(v.as_bytes()));
            i.result()
        };
        assert_eq!(infer(&["1", "-22", "300"]), DeclaredType::Int64);
        assert_eq!(infer(&["1", "2.50"]), DeclaredType::Decimal(38, 2));
        assert_eq!(infer(&["1e3", "2"]), DeclaredType::Float64);
        assert_eq!(infer(&["007", "1"]), DeclaredType::String);
        assert_eq!(infer(&["true", "FALSE"]), DeclaredType::Boolean);
        assert_eq!(infer(&["2026-11-22", "2026-01-01"]), DeclaredType::Date);
        assert_eq!(
            infer(&["2026-11-22", "2026-01-01 10:00:00.5"]),
            DeclaredType::Timestamp
        );
        assert_eq!(infer(&["2026-02-30"]), DeclaredType::String);
        assert_eq!(infer(&[]), DeclaredType::String);
    }

    /// parse_decimal as first written: one 128-bit multiply per digit.
    fn decimal_reference(v: &[u8], precision: u8, scale: i8) -> Option<i128> {
        let (neg, d) = match v.first()? {
            b'-' => (true, &v[1..]),
            b'+' => (false, &v[1..]),
            _ => (false, v),
        };
        let (mant, exp) = match d.iter().position(|&b| b == b'e' || b == b'E') {
            Some(p) => (
                &d[..p],
                std::str::from_utf8(&d[p + 1..]).ok()?.parse::<i32>().ok()?,
            ),
            None => (d, 0),
        };
        let (mut n, mut frac, mut dot, mut any) = (0i128, 0i32, false, false);
        for &b in mant {
            if b == b'.' {
                if dot {
                    return None;
                }
                dot = true;
                continue;
            }
            let x = b.wrapping_sub(b'0');
            if x > 9 {
                return None;
            }
            any = true;
            n = n.checked_mul(10)?.checked_add(x as i128)?;
            frac += dot as i32;
        }
        if !any {
            return None;
        }
        let shift = scale as i32 - frac + exp;
        for _ in 0..shift.max(0) {
            n = n.checked_mul(10)?;
        }
        for _ in 0..(-shift).max(0) {
            if n % 10 != 0 {
                return None;
            }
            n /= 10;
        }
        if n >= 10i128.pow(precision as u32) {
            return None;
        }
        Some(if neg { -n } else { n })
    }

    #[test]
    fn decimal_parser_matches_the_digit_by_digit_one() {
        let mut cases: Vec<String> = vec![
            "0".into(),
            "-0.00".into(),
            "12.5".into(),
            "1e3".into(),
            "1.5E-1".into(),
            "..1".into(),
            "".into(),
            "-".into(),
            "1.2.3".into(),
            "12a".into(),
        ];
        for len in 1usize..=45 {
            let digits: String = (0..len)
                .map(|i| char::from(b'1' + (i * 7 % 9) as u8))
                .collect();
            cases.push(digits.clone());
            cases.push(format!("-{digits}"));
            for dot in [1, len / 2, len.saturating_sub(1)] {
                if dot > 0 && dot < len {
                    cases.push(format!("{}.{}", &digits[..dot], &digits[dot..]));
                }
            }
            cases.push("9".repeat(len));
            cases.push(format!("{}.{}", "9".repeat(len), "0".repeat(len % 5)));
        }
        for c in &cases {
            for (p, sc) in [(38u8, 0i8), (38, 2), (38, 10), (18, 2), (10, 4)] {
                assert_eq!(
                    parse_decimal(c.as_bytes(), p, sc),
                    decimal_reference(c.as_bytes(), p, sc),
                    "{c} as decimal({p},{sc})"
                );
            }
        }
        assert_eq!(parse_bool(b"TRUE"), Some(true));
        assert_eq!(parse_bool(b"No"), Some(false));
        assert_eq!(parse_bool(b"2"), None);
    }

    #[test]
    fn parsers_reject_what_does_not_fit() {
        assert_eq!(parse_decimal(b"12.5", 10, 2), Some(1250));
        assert_eq!(parse_decimal(b"-0.01", 10, 2), Some(-1));
        assert_eq!(parse_decimal(b"1.234", 10, 2), None);
        assert_eq!(parse_decimal(b"1.230", 10, 2), Some(123));
        assert_eq!(parse_decimal(b"123456789", 5, 0), None);
        assert_eq!(parse_decimal(b"1e2", 5, 1), Some(1000));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(
            parse_timestamp_micros(b"1970-01-01 00:00:01.000001"),
            Some(1_000_001)
        );
        assert_eq!(
            parse_timestamp_micros(b"2000-03-01 00:00:00"),
            Some(951_868_800_000_000)
        );
        assert_eq!(parse_timestamp_micros(b"1970-01-01 00:00:00.0000001"), None);
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_hex(b"0aFF"), Some(vec![10, 255]));
    }
}
