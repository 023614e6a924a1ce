//! The change batch every stage shares: the operations HVR writes and the order in which they
//! apply (the `hvr_op` codes and the sortable encoding of `hvr_integ_seq`), and the net
//! changes coalescing hands to a table mode. Used by the readers, coalescing and the modes.

/// Name of the normalized operation column in the change stream.
pub const OP: &str = "__hvr_op";
/// Name of the sortable order column in the change stream (seq, then file, piece, row).
pub const ORDER: &str = "__hvr_order";

/// The net change per key of one cycle.
#[cfg(feature = "lake")]
#[derive(Clone)]
pub struct NetChanges {
    /// Data columns plus the op column: `Op::Upsert` rows carry the new row, other rows
    /// (deletes) carry the key to remove.
    pub batches: Vec<arrow::array::RecordBatch>,
    /// Whether a truncate came before these changes: the table is emptied first.
    pub truncated: bool,
}

#[cfg(feature = "lake")]
/// A column by its exact name (no SQL parsing: names may have dots or capitals).
pub fn column(name: &str) -> datafusion::prelude::Expr {
    datafusion::prelude::Expr::Column(datafusion::common::Column::new_unqualified(name))
}

/// What a change does to its key, after normalizing HVR's codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum Op {
    /// Remove the key (0, 3 old key, 10, soft-delete flag 1).
    Delete = 0,
    /// Insert or replace the row (1, 2, 11, 12).
    Upsert = 1,
    /// Before-image of a non-key update (4): ignored when applying.
    BeforeImage = 4,
    /// Empty the table at this point (5).
    Truncate = 5,
    /// Delete every row matching the key columns present (8, SAP partial key).
    PartialDelete = 8,
}

impl Op {
    /// Maps an `hvr_op` value to its meaning; `None` for codes hvrlake does not apply.
    pub fn from_hvr(code: i64) -> Option<Op> {
        Some(match code {
            0 | 3 | 10 => Op::Delete,
            1 | 2 | 11 | 12 => Op::Upsert,
            4 => Op::BeforeImage,
            5 => Op::Truncate,
            8 => Op::PartialDelete,
            _ => return None,
        })
    }

    /// Whether the key columns of such a change may be NULL.
    pub fn allows_null_key(self) -> bool {
        matches!(self, Op::Truncate | Op::PartialDelete)
    }
}

/// Appends the sortable form of an `hvr_integ_seq` value to `out`: each `|`-separated hex
/// part as (1, digit count, digits without leading zeros, lower case), then a 0 terminator,
/// so byte order equals the order of the parts compared as a tuple of hex numbers and a
/// shorter tuple sorts before its extensions. Returns false when the text is not hex.
pub fn encode_seq(text: &[u8], out: &mut Vec<u8>) -> bool {
    for part in text.split(|&b| b == b'|') {
        let start = part.iter().position(|&b| b != b'0').unwrap_or(part.len());
        let digits = &part[start..];
        if part.is_empty() || digits.len() > 255 {
            return false;
        }
        out.push(1);
        out.push(digits.len() as u8);
        // `| 0x20` keeps a digit and lower-cases A-F; both passes run without a branch per
        // byte (an integrate decodes one of these per change).
        out.extend(digits.iter().map(|&b| b | 0x20));
        let hex = digits.iter().fold(true, |ok, &b| {
            ok & (b.is_ascii_digit() | (b'a'..=b'f').contains(&(b | 0x20)))
        });
        if !hex {
            return false;
        }
    }
    out.push(0);
    true
}

/// Where the key columns `keys` sit in `schema`, and their types.
pub fn key_columns(
    schema: &arrow::datatypes::Schema,
    keys: &[String],
) -> Result<(Vec<usize>, Vec<arrow::datatypes::DataType>), arrow::error::ArrowError> {
    let idx: Vec<usize> = keys
        .iter()
        .map(|k| schema.index_of(k))
        .collect::<Result<_, _>>()?;
    let types = idx
        .iter()
        .map(|&i| schema.field(i).data_type().clone())
        .collect();
    Ok((idx, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        assert!(encode_seq(s.as_bytes(), &mut v), "{s}");
        v
    }

    #[test]
    fn seq_orders_as_a_tuple_of_hex_numbers() {
        let ordered = [
            "0",
            "1",
            "0002",
            "A",
            "0f",
            "10",
            "10|0",
            "10|1",
            "10|FF",
            "11",
            "1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
        ];
        for w in ordered.windows(2) {
            assert!(enc(w[0]) < enc(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(enc("00A|1"), enc("a|01"));
        let mut v = Vec::new();
        assert!(!encode_seq(b"12g", &mut v));
        assert!(!encode_seq(b"1||2", &mut v));
        for b in 0..=255u8 {
            let hex = encode_seq(&[b'1', b], &mut v);
            assert_eq!(hex, b.is_ascii_hexdigit(), "byte {b:#04x}");
            if hex {
                assert_eq!(
                    enc(&format!("1{}", b as char)),
                    enc(&format!("1{}", (b as char).to_ascii_lowercase()))
                );
            }
        }
    }

    #[test]
    fn ops_map_as_the_contract_says() {
        assert_eq!(Op::from_hvr(3), Some(Op::Delete));
        assert_eq!(Op::from_hvr(12), Some(Op::Upsert));
        assert_eq!(Op::from_hvr(10), Some(Op::Delete));
        assert_eq!(Op::from_hvr(22), None);
        assert_eq!(Op::from_hvr(-1), None);
    }
}
