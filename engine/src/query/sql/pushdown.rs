//! Which filters a store scan answers itself: `key = literal` and `key IN (literals)` become
//! point lookups, and comparisons and `BETWEEN` of a text key a bounded range scan (exact:
//! DataFusion does not filter again); bounds on `window_start` limit which windows are read
//! (inexact: DataFusion filters again). Everything else DataFusion filters.

use std::ops::Bound;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{Between, InList};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use serde_json::Value;

use crate::query::sql::rows::WINDOW_START;
use crate::serdes::SerdeKind;

/// The column a scalar key is read into.
pub(crate) const KEY: &str = "key";

/// Whether `expr` is the column itself (a cast of it compares something else: `CAST(key AS
/// BIGINT) = 7` matches `'07'` too).
fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(c) if c.name == name)
}

fn is_key(expr: &Expr) -> bool {
    is_column(expr, KEY)
}

/// `column op literal` (or `literal op column`, turned around), for the comparisons.
fn comparison<'a>(filter: &'a Expr, column: &str) -> Option<(Operator, &'a ScalarValue)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = filter else {
        return None;
    };
    let op = *op;
    if !matches!(
        op,
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
    ) {
        return None;
    }
    match (is_column(left, column), is_column(right, column)) {
        (true, false) => Some((op, literal(right)?)),
        (false, true) => Some((op.swap()?, literal(left)?)),
        _ => None,
    }
}

/// What a filter says of one column: both ends of a `BETWEEN`, or one comparison.
enum Bounds<'a> {
    Between(&'a ScalarValue, &'a ScalarValue),
    Compare(Operator, &'a ScalarValue),
}

fn bounds<'a>(filter: &'a Expr, column: &str) -> Option<Bounds<'a>> {
    if let Expr::Between(Between {
        expr,
        negated: false,
        low,
        high,
    }) = filter
    {
        if !is_column(expr, column) {
            return None;
        }
        return Some(Bounds::Between(literal(low)?, literal(high)?));
    }
    let (op, value) = comparison(filter, column)?;
    Some(Bounds::Compare(op, value))
}

/// Bounds on a text `key` that `filter` sets: `key < 'm'`, `key BETWEEN 'a' AND 'c'`, ….
pub(crate) fn key_range(filter: &Expr) -> Option<(Bound<String>, Bound<String>)> {
    let text = |v: &ScalarValue| match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    };
    Some(match bounds(filter, KEY)? {
        Bounds::Between(low, high) => (Bound::Included(text(low)?), Bound::Included(text(high)?)),
        Bounds::Compare(op, value) => {
            let value = text(value)?;
            match op {
                Operator::Gt => (Bound::Excluded(value), Bound::Unbounded),
                Operator::GtEq => (Bound::Included(value), Bound::Unbounded),
                Operator::Lt => (Bound::Unbounded, Bound::Excluded(value)),
                _ => (Bound::Unbounded, Bound::Included(value)),
            }
        }
    })
}

/// The window starts (ms, both ends inclusive) `filter` keeps, when it bounds `window_start`.
pub(crate) fn window_range(filter: &Expr) -> Option<(i64, i64)> {
    let ms = |v: &ScalarValue| match v {
        ScalarValue::TimestampMillisecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t.div_euclid(1_000)),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(t.div_euclid(1_000_000)),
        _ => None,
    };
    // Inclusive either way: the range may be wider than the filter, never narrower.
    Some(match bounds(filter, WINDOW_START)? {
        Bounds::Between(low, high) => (ms(low)?, ms(high)?),
        Bounds::Compare(Operator::Gt | Operator::GtEq, value) => (ms(value)?, i64::MAX),
        Bounds::Compare(_, value) => (i64::MIN, ms(value)?),
    })
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// The keys `filter` selects, as JSON values, when it is a key lookup (`None`: it is not; an
/// empty list: it matches no key, as `key = NULL`).
pub(crate) fn key_points(filter: &Expr, kind: SerdeKind) -> Option<Vec<Value>> {
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
            Some(to_json(value, kind)?.into_iter().collect())
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_key(expr) => {
            let values: Option<Vec<Option<Value>>> =
                list.iter().map(|v| to_json(literal(v)?, kind)).collect();
            Some(values?.into_iter().flatten().collect())
        }
        _ => None,
    }
}

/// A literal as the JSON value a key of `kind` decodes to: `Some(None)` for NULL (which equals
/// no key), `None` when the literal is not of the key's type (DataFusion compares those).
fn to_json(value: &ScalarValue, kind: SerdeKind) -> Option<Option<Value>> {
    if value.is_null() {
        return Some(None);
    }
    let json = match (kind, value) {
        (
            SerdeKind::Text,
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)),
        ) => Value::String(v.clone()),
        (SerdeKind::Integer, ScalarValue::Int8(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::Int16(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::Int32(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::Int64(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::UInt8(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::UInt16(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::UInt32(Some(v))) => (*v).into(),
        (SerdeKind::Integer, ScalarValue::UInt64(Some(v))) => (*v).into(),
        _ => return None,
    };
    Some(Some(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn comparisons_of_a_text_key_are_ranges_and_window_bounds_are_time_ranges() {
        use datafusion::logical_expr::Expr;
        assert_eq!(
            key_range(&col("key").gt(lit("b"))),
            Some((Bound::Excluded("b".into()), Bound::Unbounded))
        );
        assert_eq!(
            key_range(&lit("m").gt_eq(col("key"))),
            Some((Bound::Unbounded, Bound::Included("m".into())))
        );
        assert_eq!(
            key_range(&col("key").between(lit("a"), lit("c"))),
            Some((Bound::Included("a".into()), Bound::Included("c".into())))
        );
        assert_eq!(
            key_range(&col("key").gt(lit(3))),
            None,
            "numbers keep no byte order"
        );
        assert_eq!(key_range(&col("value").gt(lit("b"))), None);
        let at = |ms: i64| Expr::Literal(ScalarValue::TimestampMillisecond(Some(ms), None), None);
        assert_eq!(
            window_range(&col("window_start").gt_eq(at(5_000))),
            Some((5_000, i64::MAX))
        );
        assert_eq!(
            window_range(&col("window_start").lt(at(9_000))),
            Some((i64::MIN, 9_000))
        );
        assert_eq!(window_range(&col("window_start").eq(at(9_000))), None);
    }

    #[test]
    fn key_equality_and_in_lists_are_lookups_other_filters_are_not() {
        let text = SerdeKind::Text;
        assert_eq!(
            key_points(&col("key").eq(lit("a")), text),
            Some(vec![Value::from("a")])
        );
        assert_eq!(
            key_points(&lit(7i64).eq(col("key")), SerdeKind::Integer),
            Some(vec![Value::from(7)])
        );
        assert_eq!(
            key_points(&col("key").in_list(vec![lit("a"), lit("b")], false), text),
            Some(vec![Value::from("a"), Value::from("b")])
        );
        assert_eq!(
            key_points(&col("key").in_list(vec![lit("a")], true), text),
            None
        );
        assert_eq!(key_points(&col("key").gt(lit("a")), text), None);
        assert_eq!(key_points(&col("value").eq(lit(1)), text), None);
        assert_eq!(
            key_points(&col("key").eq(lit(ScalarValue::Utf8(None))), text),
            Some(vec![])
        );
        // A literal of another type, or a cast key, is DataFusion's to compare.
        assert_eq!(key_points(&col("key").eq(lit(7i64)), text), None);
        assert_eq!(
            key_points(&col("key").eq(lit(2.0)), SerdeKind::Integer),
            None
        );
        let cast_key = datafusion::logical_expr::cast(
            col("key"),
            datafusion::arrow::datatypes::DataType::Int64,
        );
        assert_eq!(
            key_points(&cast_key.eq(lit(7i64)), SerdeKind::Integer),
            None
        );
    }
}
