//! Which filters a store scan answers itself: `key = literal` and `key IN (literals)` become
//! point lookups (exact: DataFusion does not filter again); everything else DataFusion filters.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use serde_json::Value;

/// The column a scalar key is read into.
pub(crate) const KEY: &str = "key";

fn is_key(expr: &Expr) -> bool {
    match expr {
        Expr::Column(c) => c.name == KEY,
        Expr::Cast(c) => is_key(&c.expr),
        Expr::TryCast(c) => is_key(&c.expr),
        _ => false,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The keys `filter` selects, as JSON values, when it is a key lookup (`None`: it is not; an
/// empty list: it matches no key, as `key = NULL`).
pub(crate) fn key_points(filter: &Expr) -> Option<Vec<Value>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let value = match (is_key(left), is_key(right)) {
                (true, _) => literal(right)?,
                (_, true) => literal(left)?,
                _ => return None,
            };
            Some(to_json(value).into_iter().collect())
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_key(expr) => {
            let values: Option<Vec<&ScalarValue>> = list.iter().map(literal).collect();
            Some(values?.into_iter().filter_map(to_json).collect())
        }
        _ => None,
    }
}

/// A literal as the JSON value a key decodes to (`None` for NULL, which equals no key).
fn to_json(value: &ScalarValue) -> Option<Value> {
    Some(match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            Value::String(v.clone()?)
        }
        ScalarValue::Int8(v) => (*v)?.into(),
        ScalarValue::Int16(v) => (*v)?.into(),
        ScalarValue::Int32(v) => (*v)?.into(),
        ScalarValue::Int64(v) => (*v)?.into(),
        ScalarValue::UInt8(v) => (*v)?.into(),
        ScalarValue::UInt16(v) => (*v)?.into(),
        ScalarValue::UInt32(v) => (*v)?.into(),
        ScalarValue::UInt64(v) => (*v)?.into(),
        ScalarValue::Boolean(v) => (*v)?.into(),
        ScalarValue::Float64(v) => serde_json::Number::from_f64((*v)?)?.into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn key_equality_and_in_lists_are_lookups_other_filters_are_not() {
        assert_eq!(
            key_points(&col("key").eq(lit("a"))),
            Some(vec![Value::from("a")])
        );
        assert_eq!(
            key_points(&lit(7i64).eq(col("key"))),
            Some(vec![Value::from(7)])
        );
        assert_eq!(
            key_points(&col("key").in_list(vec![lit("a"), lit("b")], false)),
            Some(vec![Value::from("a"), Value::from("b")])
        );
        assert_eq!(key_points(&col("key").in_list(vec![lit("a")], true)), None);
        assert_eq!(key_points(&col("key").gt(lit("a"))), None);
        assert_eq!(key_points(&col("value").eq(lit(1))), None);
        assert_eq!(
            key_points(&col("key").eq(lit(ScalarValue::Utf8(None)))),
            Some(vec![])
        );
    }
}
