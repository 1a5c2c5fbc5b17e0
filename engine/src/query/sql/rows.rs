//! A store's entries as rows of JSON objects, and those rows as Arrow record batches: the
//! columns are the key (`key`, or a JSON key's fields), `window_start` for window stores (and
//! `window_end` where the windows have a size; a session's bounds for session stores), the
//! value (`value`, or a JSON object's fields), the value as JSON text (`value_json`) and
//! `partition`. The schema is inferred from a sample of the rows.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::query::sql::declared::Columns;
use crate::query::StoreJson;
use crate::serdes::SerdeKind;

/// The columns every table has beside the key's and the value's.
pub(crate) const VALUE_JSON: &str = "value_json";
pub(crate) const PARTITION: &str = "partition";
pub(crate) const WINDOW_START: &str = "window_start";
pub(crate) const WINDOW_END: &str = "window_end";

/// The columns Eddy adds: a key or value field of one of these names is renamed
/// (`key_…`, `value_…`).
const FIXED: [&str; 4] = [VALUE_JSON, PARTITION, WINDOW_START, WINDOW_END];

/// The column names of an entry whose key has the fields `key` (`None`: a scalar key, the
/// column `key`) and whose value has the fields `value` (`None`: the column `value`): each
/// field's own name unless a column before it or one of Eddy's columns has it, then prefixed
/// (`key_…`, `value_…`) until it is unique. Rows and declared columns are named by this one
/// rule.
pub(crate) fn column_names<'a>(
    key: Option<impl Iterator<Item = &'a str>>,
    value: Option<impl Iterator<Item = &'a str>>,
) -> (Vec<String>, Vec<String>) {
    let mut used: Vec<String> = Vec::new();
    let mut unique = |name: &str, prefix: &str| {
        let mut name = name.to_string();
        while used.contains(&name) || FIXED.contains(&name.as_str()) {
            name = format!("{prefix}{name}");
        }
        used.push(name.clone());
        name
    };
    let keys = match key {
        Some(fields) => fields.map(|n| unique(n, "key_")).collect(),
        None => vec![unique("key", "key_")],
    };
    let values = match value {
        Some(fields) => fields.map(|n| unique(n, "value_")).collect(),
        None => vec![unique("value", "value_")],
    };
    (keys, values)
}

/// Whether an entry's fields are its columns' names as they are (no clash): the common case,
/// which needs no renaming.
fn plainly_named(key: Option<&serde_json::Map<String, Value>>, value: &Value) -> bool {
    let key_ok = key.is_none_or(|k| k.keys().all(|n| !FIXED.contains(&n.as_str())));
    let clashes = |n: &str| {
        FIXED.contains(&n)
            || match key {
                Some(k) => k.contains_key(n),
                None => n == "key",
            }
    };
    let value_ok = match value {
        Value::Object(v) => v.keys().all(|n| !clashes(n)),
        _ => key.is_none_or(|k| !k.contains_key("value")),
    };
    key_ok && value_ok
}

/// One entry of a store, decoded.
pub(crate) struct Entry {
    pub key: Value,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub value: Value,
    pub partition: i32,
}

impl Entry {
    /// The entry from its bytes.
    pub fn decode(
        json: &StoreJson,
        store: &str,
        key: &[u8],
        window_start: Option<i64>,
        window_end: Option<i64>,
        value: &[u8],
        partition: i32,
    ) -> Result<Self> {
        let corrupt = |e: crate::error::SerdeError| {
            EngineError::State(eddy_state::StateError::Corrupted {
                store: store.to_string(),
                reason: e.to_string(),
            })
        };
        Ok(Self {
            key: (json.key_to_json)(key).map_err(corrupt)?,
            window_start,
            window_end,
            value: (json.value_to_json)(value).map_err(corrupt)?,
            partition,
        })
    }

    /// The entry as a row: one JSON object with a field per column, `value_json` only when
    /// `with_value_json` (writing it is a good part of a scan's cost).
    pub fn into_row(self, with_value_json: bool) -> Row {
        Row {
            entry: self,
            with_value_json,
        }
    }
}

/// An entry as one row, serialized as a JSON object with a field per column straight from
/// the decoded entry (no object is built per row): the key (`key`, or a JSON key's fields),
/// `window_start` and `window_end` where there are windows, the value (`value`, or a JSON
/// object's fields), `value_json` and `partition`.
pub(crate) struct Row {
    entry: Entry,
    with_value_json: bool,
}

impl Row {
    /// The row as a JSON object (for inferring columns from a sample).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let e = &self.entry;
        let mut row = s.serialize_map(None)?;
        let key_fields = e.key.as_object();
        let value_fields = e.value.as_object();
        // Renamed columns only where a name clashes (`column_names`).
        let renamed = (!plainly_named(key_fields, &e.value)).then(|| {
            column_names(
                key_fields.map(|k| k.keys().map(String::as_str)),
                value_fields.map(|v| v.keys().map(String::as_str)),
            )
        });
        let key_name = |i: usize, name: &'_ str| -> String {
            renamed
                .as_ref()
                .map_or_else(|| name.to_string(), |(k, _)| k[i].clone())
        };
        match key_fields {
            Some(fields) => {
                for (i, (name, v)) in fields.iter().enumerate() {
                    match &renamed {
                        None => row.serialize_entry(name, v)?,
                        Some(_) => row.serialize_entry(&key_name(i, name), v)?,
                    }
                }
            }
            None => row.serialize_entry(&key_name(0, "key"), &e.key)?,
        }
        if let Some(start) = e.window_start {
            row.serialize_entry(WINDOW_START, &start)?;
        }
        if let Some(end) = e.window_end {
            row.serialize_entry(WINDOW_END, &end)?;
        }
        let value_name = |i: usize, name: &'_ str| -> String {
            renamed
                .as_ref()
                .map_or_else(|| name.to_string(), |(_, v)| v[i].clone())
        };
        match value_fields {
            Some(fields) => {
                for (i, (name, v)) in fields.iter().enumerate() {
                    match &renamed {
                        None => row.serialize_entry(name, v)?,
                        Some(_) => row.serialize_entry(&value_name(i, name), v)?,
                    }
                }
            }
            None => row.serialize_entry(&value_name(0, "value"), &e.value)?,
        }
        if self.with_value_json {
            row.serialize_entry(VALUE_JSON, &e.value.to_string())?;
        }
        row.serialize_entry(PARTITION, &e.partition)?;
        row.end()
    }
}

/// The schema of rows like `sample`: their fields in the order a [`Row`] writes them,
/// typed as inferred from the sample, with the fixed columns' own types; an empty sample gives
/// `key` and `value` the types their serdes encode.
pub(crate) fn infer_schema(
    sample: &[Value],
    windowed: bool,
    window_end: bool,
    scalar_key: bool,
    json: &StoreJson,
) -> Result<SchemaRef> {
    let inferred = infer_json_schema_from_iterator(sample.iter().map(Ok))
        .map_err(|e| EngineError::Query(format!("inferring a schema: {e}")))?;
    let mut names: Vec<String> = sample
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for f in inferred.fields() {
        if !names.contains(f.name()) {
            // A field the first row lacks goes before the fixed columns at the end.
            let at = names
                .iter()
                .position(|n| n == VALUE_JSON)
                .unwrap_or(names.len());
            names.insert(at, f.name().clone());
        }
    }
    if sample.is_empty() {
        if scalar_key {
            names.push("key".into());
        }
        if windowed {
            names.push(WINDOW_START.into());
            if window_end {
                names.push(WINDOW_END.into());
            }
        }
        // A JSON value of a type that was not traced may be an object (a column per field):
        // with no row to tell, it has only `value_json` (a topology can declare the columns:
        // `StreamsBuilder::declare_value_columns`).
        if json.value_kind != SerdeKind::Other {
            names.push("value".into());
        }
        names.extend([VALUE_JSON.to_string(), PARTITION.to_string()]);
    }
    let fields: Vec<Field> = names
        .iter()
        .map(|name| match name.as_str() {
            WINDOW_START | WINDOW_END => Field::new(
                name.as_str(),
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            VALUE_JSON => Field::new(VALUE_JSON, DataType::Utf8, true),
            PARTITION => Field::new(PARTITION, DataType::Int32, false),
            other => match inferred.field_with_name(other) {
                Ok(f) => f.clone(),
                Err(_) if other == "key" => Field::new("key", column_type(json.key_kind), true),
                Err(_) => Field::new(other, column_type(json.value_kind), true),
            },
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

fn column_type(kind: SerdeKind) -> DataType {
    match kind {
        SerdeKind::Integer => DataType::Int64,
        SerdeKind::Bytes => DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
        SerdeKind::Text | SerdeKind::Other => DataType::Utf8,
    }
}

/// Whether `rows` fit `schema`: each decodes into it and has no field it lacks (a field the
/// declared columns leave out, which inference would show).
pub(crate) fn fits(schema: &SchemaRef, rows: &[Value]) -> bool {
    let known = |name: &String| schema.field_with_name(name).is_ok();
    rows.iter()
        .all(|row| row.as_object().is_some_and(|o| o.keys().all(known)))
        && to_batch(schema, rows).is_ok()
}

/// Whether a scan that keeps `projection` of `schema` reads `value_json`.
pub(crate) fn wants_value_json(schema: &Schema, projection: Option<&Vec<usize>>) -> bool {
    schema
        .index_of(VALUE_JSON)
        .is_ok_and(|i| projection.is_none_or(|p| p.contains(&i)))
}

/// `rows` (JSON objects, or [`Row`]s) as one batch of `schema`.
pub(crate) fn to_batch<T: serde::Serialize>(schema: &SchemaRef, rows: &[T]) -> Result<RecordBatch> {
    let fail = |e: datafusion::arrow::error::ArrowError| {
        EngineError::Query(format!("a row does not fit the table's columns: {e}"))
    };
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(rows.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(fail)?;
    decoder.serialize(rows).map_err(fail)?;
    Ok(decoder
        .flush()
        .map_err(fail)?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
}

/// The schema of a store whose key and value types declare their columns
/// (`declared.rs`), in the order [`Entry::row`] writes them.
pub(crate) fn declared_schema(
    key: &Columns,
    value: &Columns,
    windowed: bool,
    window_end: bool,
) -> SchemaRef {
    fn names(c: &Columns) -> Option<impl Iterator<Item = &str>> {
        match c {
            Columns::Fields(fields) => Some(fields.iter().map(|f| f.name().as_str())),
            Columns::Scalar(_) => None,
        }
    }
    let (key_names, value_names) = column_names(names(key), names(value));
    let typed = |c: &Columns, names: Vec<String>| -> Vec<Field> {
        match c {
            Columns::Fields(fields) => fields
                .iter()
                .zip(names)
                .map(|(f, n)| f.clone().with_name(n))
                .collect(),
            Columns::Scalar(t) => names
                .into_iter()
                .map(|n| Field::new(n, t.clone(), true))
                .collect(),
        }
    };
    let mut fields = typed(key, key_names);
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    if windowed {
        fields.push(Field::new(WINDOW_START, time.clone(), true));
        if window_end {
            fields.push(Field::new(WINDOW_END, time, true));
        }
    }
    fields.extend(typed(value, value_names));
    fields.push(Field::new(VALUE_JSON, DataType::Utf8, true));
    fields.push(Field::new(PARTITION, DataType::Int32, false));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(value: Value) -> Entry {
        Entry {
            key: json!("k"),
            window_start: None,
            window_end: None,
            value,
            partition: 2,
        }
    }

    #[test]
    fn fields_named_like_fixed_columns_are_renamed_alike_in_rows_and_declared_columns() {
        let value = Columns::Fields(vec![
            Field::new("partition", DataType::Int64, true),
            Field::new("key", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let schema = declared_schema(&Columns::Scalar(DataType::Utf8), &value, false, false);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "value_partition",
                "value_key",
                "n",
                "value_json",
                "partition"
            ]
        );
        let row = entry(json!({"partition": 7, "key": "inner", "n": 1}))
            .into_row(true)
            .to_value();
        assert_eq!(row["value_partition"], 7);
        assert_eq!(row["partition"], 2);
        assert!(fits(&schema, &[row]));
    }

    #[test]
    fn rows_with_a_field_the_declared_columns_lack_do_not_fit() {
        let value = Columns::Fields(vec![Field::new("n", DataType::Int64, true)]);
        let schema = declared_schema(&Columns::Scalar(DataType::Utf8), &value, false, false);
        assert!(fits(
            &schema,
            &[entry(json!({"n": 1})).into_row(false).to_value()]
        ));
        assert!(!fits(
            &schema,
            &[entry(json!({"n": 1, "extra": 2})).into_row(true).to_value()]
        ));
        assert!(!fits(
            &schema,
            &[entry(json!({"n": "text"})).into_row(true).to_value()]
        ));
    }

    #[test]
    fn a_row_has_a_column_per_key_and_value_field_with_clashes_renamed() {
        let row = Entry {
            key: json!({"user": "u", "partition": 1}),
            window_start: Some(5),
            window_end: Some(9),
            value: json!({"user": "x", "n": 2}),
            partition: 3,
        }
        .into_row(true)
        .to_value();
        let want = json!({
            "user": "u", "key_partition": 1, "window_start": 5, "window_end": 9,
            "value_user": "x", "n": 2, "value_json": "{\"user\":\"x\",\"n\":2}", "partition": 3
        });
        assert_eq!(row, want);
        let names: Vec<&String> = row.as_object().unwrap().keys().collect();
        let want_names: Vec<&String> = want.as_object().unwrap().keys().collect();
        assert_eq!(
            names, want_names,
            "in the order the columns are inferred in"
        );
    }

    #[test]
    fn names_made_unique_by_renaming_stay_unique_and_match_the_declared_columns() {
        let cases = [
            (json!("k"), json!({"key": 1, "value_key": 2})),
            (json!({"partition": 1, "key_partition": 2}), json!({"n": 3})),
            (json!({"value": 1}), json!(7)),
        ];
        for (key, value) in cases {
            let row = Entry {
                key: key.clone(),
                window_start: None,
                window_end: None,
                value: value.clone(),
                partition: 0,
            }
            .into_row(false)
            .to_value();
            let columns = |v: &Value| match v.as_object() {
                Some(o) => Columns::Fields(
                    o.keys()
                        .map(|n| Field::new(n.as_str(), DataType::Int64, true))
                        .collect(),
                ),
                None => Columns::Scalar(DataType::Int64),
            };
            let schema = declared_schema(&columns(&key), &columns(&value), false, false);
            let declared: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| *n != PARTITION && *n != VALUE_JSON)
                .collect();
            let written: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|n| *n != PARTITION)
                .collect();
            let fields = |v: &Value| v.as_object().map_or(1, |o| o.len());
            assert_eq!(
                written.len(),
                fields(&key) + fields(&value),
                "{key} {value}: {row}"
            );
            assert_eq!(declared, written, "{key} {value}");
        }
    }
}
