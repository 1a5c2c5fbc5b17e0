//! Byte encodings that keep range scans ordered: segment ids and timestamps as order-preserving
//! big-endian integers, and keys length-prefixed so that one key is never a prefix of another's
//! entries.

use crate::error::{Result, StateError};

/// Order-preserving bytes of a signed timestamp: the sign bit is flipped so that negative
/// timestamps sort before positive ones.
pub fn encode_timestamp(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`encode_timestamp`].
pub fn decode_timestamp(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The order of a window store's entries within a segment.
///
/// Key order serves lookups of one key's windows (joins, sliding windows' records, queries by
/// key); time order serves emit-on-close, whose every read is "the windows that start in this
/// range" (Kafka Streams' time-ordered store of KIP-825). Both hold the same parts and are the
/// same length, so a store's changelog records are in the layout of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyOrder {
    /// `[segment:8][key length:4][key][time a:8][time b:8]`.
    #[default]
    KeyFirst,
    /// `[segment:8][time a:8][key length:4][key][time b:8]`.
    TimeFirst,
}

/// `[segment:8][key length:4][key][time a:8][time b:8]`, the layout of window and session keys.
/// Window keys use (start, sequence number); session keys use (end, start).
pub(crate) fn encode_segmented(segment: i64, key: &[u8], a: i64, b: i64) -> Vec<u8> {
    encode_ordered(KeyOrder::KeyFirst, segment, key, a, b)
}

/// A segmented key in either [`KeyOrder`].
pub(crate) fn encode_ordered(order: KeyOrder, segment: i64, key: &[u8], a: i64, b: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + key.len());
    out.extend_from_slice(&encode_timestamp(segment));
    match order {
        KeyOrder::KeyFirst => {
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&encode_timestamp(a));
        }
        KeyOrder::TimeFirst => {
            out.extend_from_slice(&encode_timestamp(a));
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
        }
    }
    out.extend_from_slice(&encode_timestamp(b));
    out
}

/// `[segment:8][key length:4][key]`: the prefix of every entry of `key` in `segment`.
pub(crate) fn segment_key_prefix(segment: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.len());
    out.extend_from_slice(&encode_timestamp(segment));
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The decoded parts of a segmented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentedKey {
    pub segment: i64,
    pub key: Vec<u8>,
    pub a: i64,
    pub b: i64,
}

pub(crate) fn decode_segmented(store: &str, raw: &[u8]) -> Result<SegmentedKey> {
    decode_ordered(KeyOrder::KeyFirst, store, raw)
}

/// The inverse of [`encode_ordered`].
pub(crate) fn decode_ordered(order: KeyOrder, store: &str, raw: &[u8]) -> Result<SegmentedKey> {
    if order == KeyOrder::TimeFirst {
        return decode_time_first(store, raw);
    }
    let corrupt = || StateError::Corrupted {
        store: store.to_string(),
        reason: format!("segmented key of {} bytes does not decode", raw.len()),
    };
    if raw.len() < 28 {
        return Err(corrupt());
    }
    let segment = decode_timestamp(raw[0..8].try_into().map_err(|_| corrupt())?);
    let len = u32::from_be_bytes(raw[8..12].try_into().map_err(|_| corrupt())?) as usize;
    if raw.len() != 28 + len {
        return Err(corrupt());
    }
    let key = raw[12..12 + len].to_vec();
    let a = decode_timestamp(raw[12 + len..20 + len].try_into().map_err(|_| corrupt())?);
    let b = decode_timestamp(raw[20 + len..28 + len].try_into().map_err(|_| corrupt())?);
    Ok(SegmentedKey { segment, key, a, b })
}

fn decode_time_first(store: &str, raw: &[u8]) -> Result<SegmentedKey> {
    let corrupt = || StateError::Corrupted {
        store: store.to_string(),
        reason: format!(
            "time-ordered key of {} bytes does not decode (an emit-on-close store written by \
             Eddy before time-ordered stores must be reset with its changelog)",
            raw.len()
        ),
    };
    let word = |at: usize| -> Result<[u8; 8]> {
        raw.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)
    };
    if raw.len() < 28 {
        return Err(corrupt());
    }
    let segment = decode_timestamp(word(0)?);
    let a = decode_timestamp(word(8)?);
    let len = u32::from_be_bytes(raw[16..20].try_into().map_err(|_| corrupt())?) as usize;
    if raw.len() != 28 + len {
        return Err(corrupt());
    }
    let key = raw[20..20 + len].to_vec();
    let b = decode_timestamp(word(20 + len)?);
    Ok(SegmentedKey { segment, key, a, b })
}

/// `[segment:8][time a:8]`: the prefix of every time-ordered entry at `a` in `segment`.
pub(crate) fn segment_time_prefix(segment: i64, a: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&encode_timestamp(segment));
    out[8..].copy_from_slice(&encode_timestamp(a));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_like_integers() {
        let values = [i64::MIN, -5, -1, 0, 1, 1000, i64::MAX];
        for pair in values.windows(2) {
            assert!(encode_timestamp(pair[0]) < encode_timestamp(pair[1]));
            assert_eq!(decode_timestamp(encode_timestamp(pair[0])), pair[0]);
        }
    }

    #[test]
    fn segmented_keys_round_trip_and_reject_garbage() {
        let raw = encode_segmented(3, b"user-1", 60_000, 7);
        let parsed = decode_segmented("s", &raw).unwrap();
        assert_eq!(
            parsed,
            SegmentedKey {
                segment: 3,
                key: b"user-1".to_vec(),
                a: 60_000,
                b: 7
            }
        );
        assert!(decode_segmented("s", &raw[..raw.len() - 1]).is_err());
        assert!(decode_segmented("s", b"short").is_err());
    }

    #[test]
    fn time_first_keys_round_trip_and_sort_by_time_before_key() {
        let raw = encode_ordered(KeyOrder::TimeFirst, 3, b"user-1", 60_000, 7);
        let parsed = decode_ordered(KeyOrder::TimeFirst, "s", &raw).unwrap();
        assert_eq!((parsed.segment, parsed.a, parsed.b), (3, 60_000, 7));
        assert_eq!(parsed.key, b"user-1");
        let later_small_key = encode_ordered(KeyOrder::TimeFirst, 3, b"a", 61_000, 0);
        let earlier_big_key = encode_ordered(KeyOrder::TimeFirst, 3, b"zzzz", 60_000, 0);
        assert!(earlier_big_key < later_small_key);
        assert!(raw.starts_with(&segment_time_prefix(3, 60_000)));
        assert!(decode_ordered(KeyOrder::TimeFirst, "s", &raw[..raw.len() - 1]).is_err());
        assert!(decode_ordered(KeyOrder::TimeFirst, "s", &[0u8; 27]).is_err());
    }

    #[test]
    fn a_key_never_interleaves_with_a_longer_key() {
        let short = encode_segmented(0, b"a", i64::MAX, 0);
        let long = encode_segmented(0, b"a\xff", i64::MIN, 0);
        assert!(short < long);
    }
}
