//! Where Kafka's default partitioner puts a key: murmur2 of its bytes, as the Java client,
//! librdkafka's `murmur2_random` (Eddy's sinks and repartition topics) and Kafka Streams'
//! `queryMetadataForKey` compute it.

/// Kafka's `Utils.murmur2` (the Java client's and librdkafka's `murmur2` partitioner).
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` that Kafka's default partitioner writes `key` (its bytes) to:
/// where a keyed record lands unless its producer partitions otherwise.
///
/// ```
/// assert_eq!(eddy_engine::default_partition(b"21", 3), 0);
/// ```
pub fn default_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_as_kafkas_default_partitioner_does() {
        // Values of the Java client's Utils.murmur2 (its unit tests and a 3-partition topic).
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        for key in [&b"quiz-1"[..], b"", b"x"] {
            assert!((0..3).contains(&default_partition(key, 3)));
        }
    }
}
