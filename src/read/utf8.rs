//! UTF-8 validation of CSV text. The text values of a block of rows are checked at once by
//! simdutf8 (AVX2 or SSE4.2, chosen at run time) right after they are decoded, so numbers,
//! dates and other ASCII-only columns are never scanned for it. Only text it rejects is
//! walked again to find where: runs of ASCII skipped 32 bytes at a time (SSE2, which every
//! x86_64 has), each other character checked against the table of well-formed byte
//! sequences (Unicode 15, table 3-7). HVR's CSV is mostly ASCII with a few characters
//! elsewhere, which is where `std::str::from_utf8` leaves its fast path on every one.

/// `Ok` when `s` is UTF-8, else the offset where the first ill-formed sequence starts (what
/// `std::str::Utf8Error::valid_up_to` gives).
pub fn validate(s: &[u8]) -> Result<(), usize> {
    match simdutf8::basic::from_utf8(s) {
        Ok(_) => Ok(()),
        Err(_) => first_invalid(s),
    }
}

/// [`validate`] by walking `s` a character at a time.
fn first_invalid(s: &[u8]) -> Result<(), usize> {
    let n = s.len();
    let mut i = 0;
    while i < n {
        i = skip_ascii(s, i);
        if i >= n {
            break;
        }
        match width(&s[i..]) {
            Some(w) => i += w,
            None => return Err(i),
        }
    }
    Ok(())
}

/// The first offset from `i` on that holds a byte of 0x80 or above, or `s.len()`.
#[inline]
fn skip_ascii(s: &[u8], mut i: usize) -> usize {
    let n = s.len();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
        while i + 32 <= n {
            // SAFETY: SSE2 is part of x86_64; the two unaligned loads read s[i..i + 32],
            // which is in bounds.
            let (a, b) = unsafe {
                let p = s.as_ptr().add(i);
                let a = _mm_loadu_si128(p as *const __m128i);
                let b = _mm_loadu_si128(p.add(16) as *const __m128i);
                if _mm_movemask_epi8(_mm_or_si128(a, b)) == 0 {
                    i += 32;
                    continue;
                }
                (_mm_movemask_epi8(a) as u32, _mm_movemask_epi8(b) as u32)
            };
            let m = a | (b << 16);
            return i + m.trailing_zeros() as usize;
        }
    }
    while i < n && s[i] < 0x80 {
        i += 1;
    }
    i
}

/// The length of the well-formed character `s` starts with (its first byte is not ASCII),
/// or None.
#[inline]
fn width(s: &[u8]) -> Option<usize> {
    let cont = |k: usize| s.get(k).is_some_and(|&b| b & 0xC0 == 0x80);
    let second = |lo: u8, hi: u8| s.get(1).is_some_and(|&b| (lo..=hi).contains(&b));
    let ok = match s[0] {
        0xC2..=0xDF => return cont(1).then_some(2),
        0xE0 => second(0xA0, 0xBF) && cont(2),
        0xE1..=0xEC | 0xEE..=0xEF => cont(1) && cont(2),
        0xED => second(0x80, 0x9F) && cont(2),
        0xF0 => return (second(0x90, 0xBF) && cont(2) && cont(3)).then_some(4),
        0xF1..=0xF3 => return (cont(1) && cont(2) && cont(3)).then_some(4),
        0xF4 => return (second(0x80, 0x8F) && cont(2) && cont(3)).then_some(4),
        _ => false,
    };
    ok.then_some(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_says(s: &[u8]) -> Result<(), usize> {
        std::str::from_utf8(s)
            .map(|_| ())
            .map_err(|e| e.valid_up_to())
    }

    #[test]
    fn agrees_with_std_on_every_short_sequence() {
        // Every sequence of up to 3 bytes from a set that covers each boundary of the table,
        // behind ASCII runs that put it on either side of a 32-byte block.
        let bytes = [
            0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
            0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ];
        let mut seqs: Vec<Vec<u8>> = vec![vec![]];
        for len in 1..=4 {
            let mut next = Vec::new();
            for s in seqs.iter().filter(|s| s.len() == len - 1) {
                for &b in &bytes {
                    let mut t = s.clone();
                    t.push(b);
                    next.push(t);
                }
            }
            seqs.extend(next);
        }
        let mut checked = 0;
        for seq in &seqs {
            for pad in [0usize, 31, 33] {
                let mut s = vec![b'a'; pad];
                s.extend_from_slice(seq);
                assert_eq!(validate(&s), std_says(&s), "{s:x?}");
                assert_eq!(first_invalid(&s), std_says(&s), "{s:x?}");
                s.extend_from_slice(&[b'z'; 40]);
                assert_eq!(validate(&s), std_says(&s), "{s:x?}");
                assert_eq!(first_invalid(&s), std_says(&s), "{s:x?}");
                checked += 2;
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn agrees_with_std_on_random_text() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words = ["plain ascii text, ", "Müller ", "東京 ", "😀", "naïve "];
        for round in 0..2000 {
            let mut s = Vec::new();
            for _ in 0..(next() % 40) {
                s.extend_from_slice(words[(next() % 5) as usize].as_bytes());
            }
            assert_eq!(validate(&s), Ok(()));
            assert_eq!(first_invalid(&s), Ok(()));
            // Break it in one place, sometimes.
            if round % 2 == 1 && !s.is_empty() {
                let at = (next() % s.len() as u64) as usize;
                s[at] = (next() & 0xFF) as u8;
            }
            assert_eq!(validate(&s), std_says(&s), "{s:x?}");
            assert_eq!(first_invalid(&s), std_says(&s), "{s:x?}");
        }
    }
}
