//! Serdes: how keys and values become bytes for topics and stores, and back.
//!
//! ```
//! use eddy_engine::{Serde, Serdes};
//! let serde = Serdes::i64();
//! let bytes = serde.serialize(&-3).unwrap();
//! assert_eq!(serde.deserialize(&bytes).unwrap(), -3);
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SerdeError;

/// Turns `T` into bytes and back. Kafka's null (no bytes at all) goes through the `_nullable`
/// methods, which only [`Serdes::nullable`] maps to a value.
pub trait Serde<T>: Send + Sync {
    /// The bytes of `value`.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError>;
    /// The value of `bytes`; bad bytes are an error, never a panic.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;
    /// The bytes of `value`, where `None` is Kafka's null.
    fn serialize_nullable(&self, value: &T) -> Result<Option<Vec<u8>>, SerdeError> {
        self.serialize(value).map(Some)
    }
    /// The value of possibly-null bytes.
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        match bytes {
            Some(b) => self.deserialize(b),
            None => Err(SerdeError::Null),
        }
    }
    /// What kind of value it encodes, as far as SQL needs to know before it sees one.
    fn kind(&self) -> SerdeKind {
        SerdeKind::Other
    }
}

/// The shape of the values a serde encodes (the column type SQL gives a store that is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerdeKind {
    Text,
    Integer,
    Bytes,
    /// Anything else (structures, through JSON or bincode).
    Other,
}

/// A shared serde.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// Constructors of the built-in serdes.
#[derive(Debug)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings, as the bytes themselves (so keys sort as strings).
    pub fn string() -> SerdeRef<String> {
        Arc::new(StringSerde)
    }
    /// Raw bytes.
    pub fn bytes() -> SerdeRef<Vec<u8>> {
        Arc::new(BytesSerde)
    }
    /// Big-endian `i64` (Kafka's `LongSerde`).
    pub fn i64() -> SerdeRef<i64> {
        Arc::new(I64Serde)
    }
    /// Big-endian `i32` (Kafka's `IntegerSerde`).
    pub fn i32() -> SerdeRef<i32> {
        Arc::new(I32Serde)
    }
    /// Big-endian `u64`.
    pub fn u64() -> SerdeRef<u64> {
        Arc::new(U64Serde)
    }
    /// JSON through `serde_json`, for any serde type.
    pub fn json<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> SerdeRef<T> {
        Arc::new(JsonSerde(PhantomData))
    }
    /// bincode 2 (standard configuration), for internal values: compact and fast.
    pub fn bincode<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> SerdeRef<T> {
        Arc::new(BincodeSerde(PhantomData))
    }
    /// The serde Eddy uses where none was given: the plain serdes for strings, bytes and
    /// integers (so that string keys sort as strings in stores), bincode for everything else.
    pub fn default_for<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> SerdeRef<T> {
        use std::any::{Any, TypeId};
        let t = TypeId::of::<T>();
        let plain: Option<Box<dyn Any>> = if t == TypeId::of::<String>() {
            Some(Box::new(Self::string()))
        } else if t == TypeId::of::<Vec<u8>>() {
            Some(Box::new(Self::bytes()))
        } else if t == TypeId::of::<i64>() {
            Some(Box::new(Self::i64()))
        } else if t == TypeId::of::<i32>() {
            Some(Box::new(Self::i32()))
        } else if t == TypeId::of::<u64>() {
            Some(Box::new(Self::u64()))
        } else {
            None
        };
        plain
            .and_then(|b| b.downcast::<SerdeRef<T>>().ok())
            .map(|b| *b)
            .unwrap_or_else(Self::bincode::<T>)
    }
    /// Windowed keys: the inner key's bytes, then window start and end as big-endian `i64`.
    pub fn windowed<K: Send + Sync + 'static>(
        inner: SerdeRef<K>,
    ) -> SerdeRef<crate::record::Windowed<K>> {
        Arc::new(WindowedSerde(inner))
    }
    /// `Option<T>` where `None` is Kafka's null (a tombstone).
    pub fn nullable<T: Send + Sync + 'static>(inner: SerdeRef<T>) -> SerdeRef<Option<T>> {
        Arc::new(NullableSerde(inner))
    }
    /// A table update of a re-grouped table, as its repartition topic carries it:
    /// `[flags: bit 0 old, bit 1 new][old length: 4 when old][old][new]`.
    pub(crate) fn change<T: Send + Sync + 'static>(
        inner: SerdeRef<T>,
    ) -> SerdeRef<crate::record::Change<T>> {
        Arc::new(ChangeSerde(inner))
    }
    /// A pair, `[first length: 4][first][second]`.
    pub(crate) fn pair<A: Send + Sync + 'static, B: Send + Sync + 'static>(
        first: SerdeRef<A>,
        second: SerdeRef<B>,
    ) -> SerdeRef<(A, B)> {
        Arc::new(PairSerde(first, second))
    }
}

/// Splits `[length: 4][head][tail]`.
fn split_prefixed<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), SerdeError> {
    let bad = || SerdeError::Invalid {
        format: what,
        reason: format!("{} bytes do not hold a length-prefixed part", bytes.len()),
    };
    let len: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let end = (u32::from_be_bytes(len) as usize)
        .checked_add(4)
        .ok_or_else(bad)?;
    let head = bytes.get(4..end).ok_or_else(bad)?;
    let tail = bytes.get(end..).ok_or_else(bad)?;
    Ok((head, tail))
}

fn prefixed(head: Vec<u8>, tail: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + head.len() + tail.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&tail);
    out
}

struct ChangeSerde<T>(SerdeRef<T>);
impl<T> Serde<crate::record::Change<T>> for ChangeSerde<T> {
    fn serialize(&self, value: &crate::record::Change<T>) -> Result<Vec<u8>, SerdeError> {
        let flags = u8::from(value.old.is_some()) | (u8::from(value.new.is_some()) << 1);
        let mut out = vec![flags];
        match (&value.old, &value.new) {
            (Some(old), Some(new)) => {
                out.extend(prefixed(self.0.serialize(old)?, self.0.serialize(new)?))
            }
            (Some(old), None) => out.extend(self.0.serialize(old)?),
            (None, Some(new)) => out.extend(self.0.serialize(new)?),
            (None, None) => {}
        }
        Ok(out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<crate::record::Change<T>, SerdeError> {
        let Some((&flags, rest)) = bytes.split_first() else {
            return Err(SerdeError::Invalid {
                format: "table change",
                reason: "no flags byte".into(),
            });
        };
        if flags > 3 {
            return Err(SerdeError::Invalid {
                format: "table change",
                reason: format!("unknown flags {flags:#04x}"),
            });
        }
        let (old, new) = match (flags & 1 != 0, flags & 2 != 0) {
            (true, true) => {
                let (old, new) = split_prefixed(rest, "table change")?;
                (
                    Some(self.0.deserialize(old)?),
                    Some(self.0.deserialize(new)?),
                )
            }
            (true, false) => (Some(self.0.deserialize(rest)?), None),
            (false, true) => (None, Some(self.0.deserialize(rest)?)),
            (false, false) => (None, None),
        };
        Ok(crate::record::Change { old, new })
    }
}

struct PairSerde<A, B>(SerdeRef<A>, SerdeRef<B>);
impl<A, B> Serde<(A, B)> for PairSerde<A, B> {
    fn serialize(&self, value: &(A, B)) -> Result<Vec<u8>, SerdeError> {
        Ok(prefixed(
            self.0.serialize(&value.0)?,
            self.1.serialize(&value.1)?,
        ))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<(A, B), SerdeError> {
        let (first, second) = split_prefixed(bytes, "pair")?;
        Ok((self.0.deserialize(first)?, self.1.deserialize(second)?))
    }
}

struct StringSerde;
impl Serde<String> for StringSerde {
    fn kind(&self) -> SerdeKind {
        SerdeKind::Text
    }
    fn serialize(&self, value: &String) -> Result<Vec<u8>, SerdeError> {
        Ok(value.as_bytes().to_vec())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| SerdeError::Invalid {
            format: "utf-8",
            reason: e.to_string(),
        })
    }
}

struct BytesSerde;
impl Serde<Vec<u8>> for BytesSerde {
    fn kind(&self) -> SerdeKind {
        SerdeKind::Bytes
    }
    fn serialize(&self, value: &Vec<u8>) -> Result<Vec<u8>, SerdeError> {
        Ok(value.clone())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

macro_rules! be_int_serde {
    ($name:ident, $t:ty, $n:expr, $label:expr) => {
        struct $name;
        impl Serde<$t> for $name {
            fn kind(&self) -> SerdeKind {
                SerdeKind::Integer
            }
            fn serialize(&self, value: &$t) -> Result<Vec<u8>, SerdeError> {
                Ok(value.to_be_bytes().to_vec())
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$t, SerdeError> {
                let arr: [u8; $n] = bytes.try_into().map_err(|_| SerdeError::Invalid {
                    format: $label,
                    reason: format!("expected {} bytes, got {}", $n, bytes.len()),
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
    };
}
be_int_serde!(I64Serde, i64, 8, "i64");
be_int_serde!(I32Serde, i32, 4, "i32");
be_int_serde!(U64Serde, u64, 8, "u64");

struct JsonSerde<T>(PhantomData<fn() -> T>);
impl<T: Serialize + DeserializeOwned> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        serde_json::to_vec(value).map_err(|e| SerdeError::Invalid {
            format: "json",
            reason: e.to_string(),
        })
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError::Invalid {
            format: "json",
            reason: e.to_string(),
        })
    }
}

struct BincodeSerde<T>(PhantomData<fn() -> T>);
impl<T: Serialize + DeserializeOwned> Serde<T> for BincodeSerde<T> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
            SerdeError::Invalid {
                format: "bincode",
                reason: e.to_string(),
            }
        })
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| SerdeError::Invalid {
            format: "bincode",
            reason: e.to_string(),
        })?;
        if read != bytes.len() {
            return Err(SerdeError::Invalid {
                format: "bincode",
                reason: format!("{} trailing bytes", bytes.len() - read),
            });
        }
        Ok(value)
    }
}

struct NullableSerde<T>(SerdeRef<T>);
impl<T> Serde<Option<T>> for NullableSerde<T> {
    fn kind(&self) -> SerdeKind {
        self.0.kind()
    }
    fn serialize(&self, value: &Option<T>) -> Result<Vec<u8>, SerdeError> {
        match value {
            Some(v) => self.0.serialize(v),
            None => Err(SerdeError::Null),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn serialize_nullable(&self, value: &Option<T>) -> Result<Option<Vec<u8>>, SerdeError> {
        value.as_ref().map(|v| self.0.serialize(v)).transpose()
    }
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|b| self.0.deserialize(b)).transpose()
    }
}

struct WindowedSerde<K>(SerdeRef<K>);
impl<K> Serde<crate::record::Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, value: &crate::record::Windowed<K>) -> Result<Vec<u8>, SerdeError> {
        let mut out = self.0.serialize(&value.key)?;
        out.extend_from_slice(&value.start.to_be_bytes());
        out.extend_from_slice(&value.end.to_be_bytes());
        Ok(out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<crate::record::Windowed<K>, SerdeError> {
        if bytes.len() < 16 {
            return Err(SerdeError::Invalid {
                format: "windowed key",
                reason: format!("{} bytes is shorter than the two window times", bytes.len()),
            });
        }
        let (key, times) = bytes.split_at(bytes.len() - 16);
        let start = i64::from_be_bytes(times[..8].try_into().unwrap_or([0; 8]));
        let end = i64::from_be_bytes(times[8..].try_into().unwrap_or([0; 8]));
        Ok(crate::record::Windowed {
            key: self.0.deserialize(key)?,
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Event {
        id: String,
        n: u32,
    }

    #[test]
    fn round_trips() {
        let s = Serdes::string();
        assert_eq!(
            s.deserialize(&s.serialize(&"héllo".into()).unwrap())
                .unwrap(),
            "héllo"
        );
        let j = Serdes::json::<Event>();
        let e = Event {
            id: "a".into(),
            n: 3,
        };
        assert_eq!(j.deserialize(&j.serialize(&e).unwrap()).unwrap(), e);
        let b = Serdes::bincode::<Event>();
        assert_eq!(b.deserialize(&b.serialize(&e).unwrap()).unwrap(), e);
        assert_eq!(Serdes::i32().serialize(&1).unwrap(), vec![0, 0, 0, 1]);
    }

    #[test]
    fn windowed_keys_round_trip() {
        let s = Serdes::windowed(Serdes::string());
        let w = crate::record::Windowed {
            key: "k".to_string(),
            start: 5,
            end: 10,
        };
        assert_eq!(s.deserialize(&s.serialize(&w).unwrap()).unwrap(), w);
        assert!(s.deserialize(b"short").is_err());
    }

    #[test]
    fn defaults_are_plain_for_strings_and_integers() {
        assert_eq!(
            Serdes::default_for::<String>()
                .serialize(&"ab".into())
                .unwrap(),
            b"ab"
        );
        assert_eq!(
            Serdes::default_for::<i64>().serialize(&1).unwrap(),
            1i64.to_be_bytes()
        );
        let e = Event {
            id: "a".into(),
            n: 1,
        };
        let d = Serdes::default_for::<Event>();
        assert_eq!(d.deserialize(&d.serialize(&e).unwrap()).unwrap(), e);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(Serdes::string().deserialize(&[0xff, 0xfe]).is_err());
        assert!(Serdes::json::<Event>().deserialize(b"{not json").is_err());
        assert!(Serdes::i64().deserialize(&[1, 2, 3]).is_err());
        assert!(Serdes::bincode::<Event>().deserialize(&[200]).is_err());
        assert_eq!(
            Serdes::string().deserialize_nullable(None),
            Err(SerdeError::Null)
        );
    }

    #[test]
    fn big_endian_integers_sort_as_bytes_for_non_negative_values() {
        let s = Serdes::u64();
        assert!(s.serialize(&2).unwrap() < s.serialize(&256).unwrap());
    }

    #[test]
    fn changes_and_pairs_round_trip_and_reject_garbage() {
        use crate::record::Change;
        let s = Serdes::change(Serdes::string());
        for c in [
            Change {
                old: Some("a".to_string()),
                new: Some("bc".to_string()),
            },
            Change {
                old: Some("a".to_string()),
                new: None,
            },
            Change {
                old: None,
                new: Some("bc".to_string()),
            },
        ] {
            assert_eq!(s.deserialize(&s.serialize(&c).unwrap()).unwrap(), c);
        }
        assert!(s.deserialize(b"").is_err());
        assert!(s.deserialize(&[4]).is_err(), "unknown flags");
        assert!(s.deserialize(&[3, 0, 0, 0, 9, b'x']).is_err());
        let p = Serdes::pair(Serdes::string(), Serdes::i64());
        let v = ("k".to_string(), 7);
        assert_eq!(p.deserialize(&p.serialize(&v).unwrap()).unwrap(), v);
        assert!(p.deserialize(&[0, 0]).is_err());
    }

    #[test]
    fn nullable_maps_null_to_none() {
        let s = Serdes::nullable(Serdes::string());
        assert_eq!(s.deserialize_nullable(None).unwrap(), None);
        assert_eq!(s.serialize_nullable(&None).unwrap(), None);
        assert_eq!(
            s.serialize_nullable(&Some("x".into())).unwrap(),
            Some(b"x".to_vec())
        );
    }
}
