//! A store's keys and values as JSON, the common form the SQL layer reads every store in,
//! whatever its serdes: bytes are decoded with the store's own serde and re-encoded with
//! `serde_json`, and a key given in SQL goes the other way.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SerdeError;
use crate::query::sql::declared::{self, Columns};
use crate::serdes::{SerdeKind, SerdeRef};

type ToJson = Arc<dyn Fn(&[u8]) -> Result<serde_json::Value, SerdeError> + Send + Sync>;
type FromJson = Arc<dyn Fn(&serde_json::Value) -> Result<Vec<u8>, SerdeError> + Send + Sync>;

/// How one store's keys and values turn into JSON and back.
#[derive(Clone)]
pub(crate) struct StoreJson {
    pub key_to_json: ToJson,
    pub key_from_json: FromJson,
    pub value_to_json: ToJson,
    /// What the key and value serdes encode: the columns' types while no row tells.
    pub key_kind: SerdeKind,
    pub value_kind: SerdeKind,
    /// The key's and the value's columns as their types declare them (`None`: not traced).
    pub key_columns: Option<Columns>,
    pub value_columns: Option<Columns>,
}

fn invalid(e: serde_json::Error) -> SerdeError {
    SerdeError::Invalid {
        format: "json",
        reason: e.to_string(),
    }
}

fn to_json<T: Serialize + 'static>(serde: SerdeRef<T>) -> ToJson {
    Arc::new(move |bytes| serde_json::to_value(serde.deserialize(bytes)?).map_err(invalid))
}

impl StoreJson {
    pub fn new<K, V>(key: &SerdeRef<K>, value: &SerdeRef<V>) -> Self
    where
        K: Serialize + DeserializeOwned + 'static,
        V: Serialize + DeserializeOwned + 'static,
    {
        let key_serde = Arc::clone(key);
        Self {
            key_to_json: to_json(Arc::clone(key)),
            key_from_json: Arc::new(move |json| {
                let key: K = serde_json::from_value(json.clone()).map_err(invalid)?;
                key_serde.serialize(&key)
            }),
            value_to_json: to_json(Arc::clone(value)),
            key_kind: key.kind(),
            value_kind: value.kind(),
            key_columns: declared::columns_of::<K>(),
            value_columns: declared::columns_of::<V>(),
        }
    }

    /// Takes the values' columns from `T` (a traceable mirror of their JSON); `false` if `T`
    /// cannot be traced either.
    pub fn declare_value_columns<T: DeserializeOwned>(&mut self) -> bool {
        self.value_columns = declared::columns_of::<T>();
        self.value_columns.is_some()
    }

    /// The key's and the value's declared columns, when both are declared.
    pub fn declared(&self) -> Option<(&Columns, &Columns)> {
        self.key_columns.as_ref().zip(self.value_columns.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serdes;

    #[test]
    fn keys_and_values_go_to_json_and_keys_come_back() {
        #[derive(Serialize, serde::Deserialize)]
        struct Stats {
            count: i64,
            best: f64,
        }
        let json = StoreJson::new(&Serdes::string(), &Serdes::bincode::<Stats>());
        let bytes = Serdes::bincode::<Stats>()
            .serialize(&Stats {
                count: 3,
                best: 0.5,
            })
            .unwrap();
        assert_eq!(
            (json.value_to_json)(&bytes).unwrap(),
            serde_json::json!({"count": 3, "best": 0.5})
        );
        assert_eq!(
            (json.key_to_json)(b"quiz-1").unwrap(),
            serde_json::json!("quiz-1")
        );
        assert_eq!(
            (json.key_from_json)(&serde_json::json!("quiz-1")).unwrap(),
            b"quiz-1"
        );
        assert!((json.key_from_json)(&serde_json::json!(7)).is_err());
        assert!(
            (json.value_to_json)(b"\xff").is_err(),
            "bad bytes: an error"
        );
    }
}
