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

/// A key field's column name.
fn key_column(name: String) -> String {
    if FIXED.contains(&name.as_str()) {
        format!("key_{name}")
    } else {
        name
    }
}

/// A value field's column name, beside the key's columns `taken`.
fn value_column(name: String, taken: impl Fn(&str) -> bool) -> String {
    if taken(&name) || FIXED.contains(&name.as_str()) {
        format!("value_{name}")
    } else {
        name
    }
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
        match key_fields {
            Some(fields) => {
                for (name, v) in fields {
                    if FIXED.contains(&name.as_str()) {
                        row.serialize_entry(&key_column(name.clone()), v)?;
                    } else {
                        row.serialize_entry(name, v)?;
                    }
                }
            }
            None => row.serialize_entry("key", &e.key)?,
        }
        if let Some(start) = e.window_start {
            row.serialize_entry(WINDOW_START, &start)?;
        }
        if let Some(end) = e.window_end {
            row.serialize_entry(WINDOW_END, &end)?;
        }
        // A value field named like a key column keeps both.
        let taken = |n: &str| match key_fields {
            Some(fields) => fields.keys().any(|k| key_column(k.clone()) == n),
            None => n == "key",
        };
        match &e.value {
            Value::Object(fields) => {
                for (name, v) in fields {
                    if taken(name) || FIXED.contains(&name.as_str()) {
                        row.serialize_entry(&value_column(name.clone(), taken), v)?;
                    } else {
                        row.serialize_entry(name, v)?;
                    }
                }
            }
            other => row.serialize_entry("value", other)?,
        }
        if self.with_value_json {
            row.serialize_entry(VALUE_JSON, &e.value.to_string())?;
        }
        row.serialize_entry(PARTITION, &e.partition)?;
        row.end()
    }
}

/// The schema of rows like `sample`: their fields in the order [`Entry::row`] writes them,
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
    let mut fields: Vec<Field> = match key {
        Columns::Fields(fields) => fields
            .iter()
            .map(|f| f.clone().with_name(key_column(f.name().clone())))
            .collect(),
        Columns::Scalar(t) => vec![Field::new("key", t.clone(), true)],
    };
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    if windowed {
        fields.push(Field::new(WINDOW_START, time.clone(), true));
        if window_end {
            fields.push(Field::new(WINDOW_END, time, true));
        }
    }
    match value {
        Columns::Fields(value_fields) => {
            let key_names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
            for f in value_fields {
                // As `Entry::into_row` names it.
                let name = value_column(f.name().clone(), |n| key_names.iter().any(|k| k == n));
                fields.push(f.clone().with_name(name));
            }
        }
        Columns::Scalar(t) => fields.push(Field::new("value", t.clone(), true)),
    }
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
}
