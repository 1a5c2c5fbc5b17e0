//! A store's columns as its key and value types declare them: the types' serde formats are
//! traced once when the topology is built (`serde-reflection`) and turned into Arrow fields, so
//! a table has its columns before its store has a row, and a query does not sample rows to
//! learn them.
//!
//! A type whose format cannot be traced (a hand-written `Deserialize` that validates, an
//! untagged enum, a flattened struct) or whose top level is a map declares nothing; the table
//! then infers its columns from a sample (`rows::infer_schema`). A field of a type Arrow cannot
//! hold as JSON decodes it (a map, a tuple, an enum with data) is left out; `value_json` still
//! carries it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, Registry, Samples, Tracer, TracerConfig, VariantFormat,
};

/// How deep nested types are followed (a recursive type stops here).
const MAX_DEPTH: usize = 8;

/// The columns one side of an entry (its key or its value) gives a table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Columns {
    /// A struct: a column per field.
    Fields(Vec<Field>),
    /// Anything else: one column (`key` or `value`) of this type.
    Scalar(DataType),
}

/// The columns `T` declares, if its format can be traced.
pub(crate) fn columns_of<T: DeserializeOwned>() -> Option<Columns> {
    // As JSON writes it (a timestamp or an id type may write text only when human-readable).
    let mut tracer = Tracer::new(TracerConfig::default().is_human_readable(true));
    let samples = Samples::new();
    // serde-reflection counts an enum nested in `T` incomplete after the trace (it wants
    // every variant's index, which JSON does not use): see `container` for what that means.
    let (format, _) = tracer.trace_type::<T>(&samples).ok()?;
    let registry = tracer.registry_unchecked();
    match resolve(&format, &registry, 0)? {
        Resolved::Struct(fields) => Some(Columns::Fields(fields)),
        Resolved::Type(t) => Some(Columns::Scalar(t)),
    }
}

enum Resolved {
    Struct(Vec<Field>),
    Type(DataType),
}

impl Resolved {
    fn data_type(self) -> DataType {
        match self {
            Resolved::Struct(fields) => DataType::Struct(fields.into()),
            Resolved::Type(t) => t,
        }
    }
}

fn resolve(format: &Format, registry: &Registry, depth: usize) -> Option<Resolved> {
    if depth > MAX_DEPTH {
        return None;
    }
    let t = match format {
        Format::Bool => DataType::Boolean,
        Format::I8 | Format::I16 | Format::I32 | Format::I64 => DataType::Int64,
        Format::U8 | Format::U16 | Format::U32 => DataType::Int64,
        Format::U64 => DataType::UInt64,
        Format::F32 | Format::F64 => DataType::Float64,
        Format::Char | Format::Str => DataType::Utf8,
        // serde_json writes bytes as an array of numbers.
        Format::Bytes => list_of(DataType::Int64),
        Format::Option(inner) => return resolve(inner, registry, depth + 1),
        Format::Seq(inner) | Format::TupleArray { content: inner, .. } => {
            list_of(resolve(inner, registry, depth + 1)?.data_type())
        }
        Format::TypeName(name) => return container(registry.get(name)?, registry, depth + 1),
        Format::Variable(_)
        | Format::Unit
        | Format::I128
        | Format::U128
        | Format::Map { .. }
        | Format::Tuple(_) => return None,
    };
    Some(Resolved::Type(t))
}

fn container(format: &ContainerFormat, registry: &Registry, depth: usize) -> Option<Resolved> {
    match format {
        ContainerFormat::NewTypeStruct(inner) => resolve(inner, registry, depth),
        ContainerFormat::Struct(fields) => Some(Resolved::Struct(
            fields
                .iter()
                .filter_map(|f| {
                    let t = resolve(&f.value, registry, depth)?.data_type();
                    Some(Field::new(f.name.as_str(), t, true))
                })
                .collect(),
        )),
        // Unit variants are written as their names. (A trace sees only the first variant of
        // an enum nested in a struct: one with data in a later variant is declared as text,
        // and the first row that holds such a variant sends the table back to inference.)
        ContainerFormat::Enum(variants)
            if variants
                .values()
                .all(|v| matches!(v.value, VariantFormat::Unit)) =>
        {
            Some(Resolved::Type(DataType::Utf8))
        }
        ContainerFormat::Enum(_)
        | ContainerFormat::UnitStruct
        | ContainerFormat::TupleStruct(_) => None,
    }
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Status {
        Open,
        Closed,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    enum Change {
        Moved(i64),
        Added,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    struct Inner {
        score: f64,
    }

    #[allow(dead_code)]
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Stats {
        attempt_count: u32,
        best: Option<f64>,
        user_ids: Vec<String>,
        status: Status,
        inner: Inner,
        by_user: std::collections::HashMap<String, i64>,
        change: Change,
    }

    #[test]
    fn a_struct_declares_a_column_per_field_that_arrow_can_hold() {
        let Some(Columns::Fields(fields)) = columns_of::<Stats>() else {
            panic!("Stats declares fields");
        };
        let got: Vec<(&str, &DataType)> = fields
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("attemptCount", &DataType::Int64),
                ("best", &DataType::Float64),
                ("userIds", &list_of(DataType::Utf8)),
                ("status", &DataType::Utf8),
                (
                    "inner",
                    &DataType::Struct(vec![Field::new("score", DataType::Float64, true)].into())
                ),
            ],
            "the map `byUser` and the enum with data `change` are left out"
        );
    }

    #[test]
    fn scalars_declare_one_column_and_maps_declare_nothing() {
        assert_eq!(
            columns_of::<String>(),
            Some(Columns::Scalar(DataType::Utf8))
        );
        assert_eq!(columns_of::<i64>(), Some(Columns::Scalar(DataType::Int64)));
        assert_eq!(columns_of::<std::collections::HashMap<String, i64>>(), None);
        #[derive(Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Either {
            A(i64),
            B(String),
        }
        assert_eq!(columns_of::<Either>(), None, "untagged: not traceable");
    }
}
