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
    let (neg, d) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &b in d {
        let x = b.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(x as i64)?
        } else {
            n.checked_add(x as i64)?
        };
    }
    Some(n)
}

/// Parses a decimal literal (also `1e3` forms) into an integer scaled by `scale`; `None`
/// when it is not a number, has more fraction digits than `scale` allows, or overflows `precision`.
pub fn parse_decimal(v: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let (neg, d) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
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

fn digits(v: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &b in v {
        let x = b.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        n = n * 10 + x as u32;
    }
    Some(n)
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
    let y = digits(&v[0..4])? as i64;
    let m = digits(&v[5..7])?;
    let d = digits(&v[8..10])?;
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
        if y != self.year {
            for (mm, start) in self.month_starts.iter_mut().enumerate().skip(1) {
                *start = days_from_civil(y, mm as u32, 1) as i32;
            }
            self.year = y;
        }
        Some(self.month_starts[m as usize] + d as i32 - 1)
    }

    #[inline]
    pub fn timestamp_micros(&mut self, v: &[u8]) -> Option<i64> {
        timestamp_micros(v, |d| self.date(d))
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
    let h = digits(&v[11..13])?;
    let mi = digits(&v[14..16])?;
    let s = digits(&v[17..19])?;
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
        let mut f = digits(frac)? as i64;
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
    Some(((days * 24 + h as i64) * 60 + mi as i64) * 60_000_000 + s as i64 * 1_000_000 + micros)
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
