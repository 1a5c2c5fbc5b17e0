//! Filters shipped with a read of a remote partition, so its owner sends only the rows that
//! can pass (the asker applies them again: they are pushed down as `Inexact`).
//!
//! 1. At planning, a filter the scan does not read by (not a key or window bound) is shipped
//!    when it is built of columns, literals and functions that depend on their arguments only
//!    (never on the session: the owner evaluates it in a session of its own), and its SQL
//!    text parses back to the same expression over the table's columns; any other is not.
//! 2. The owner parses each text over the asker's schema and keeps the rows of its batch every
//!    one of them holds for (`NULL` does not hold, as in `WHERE`).
//! 3. A text the owner cannot parse or evaluate is skipped, never the rows: shipping saves
//!    bytes, the answer does not depend on it.

use std::sync::OnceLock;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::{and, filter_record_batch, prep_null_mask_filter};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::prelude::SessionContext;

/// Functions whose result depends on their arguments only, never on the session (its time
/// zone, say): an owner evaluates a filter in a session of its own.
const CONFIG_FREE: &[&str] = &[
    "abs",
    "btrim",
    "ceil",
    "character_length",
    "coalesce",
    "concat",
    "ends_with",
    "floor",
    "left",
    "lower",
    "ltrim",
    "nullif",
    "octet_length",
    "replace",
    "right",
    "round",
    "rtrim",
    "starts_with",
    "strpos",
    "substr",
    "trim",
    "upper",
];

/// The session filters are parsed and planned in (no tables: only functions are looked up).
fn parser() -> &'static SessionContext {
    static CONTEXT: OnceLock<SessionContext> = OnceLock::new();
    CONTEXT.get_or_init(SessionContext::new)
}

/// Whether `expr` is built of columns, literals and session-free functions only (module doc, 1).
fn plain(expr: &Expr) -> bool {
    let mut plain = true;
    let _ = expr.apply(|e| {
        let ok = match e {
            Expr::Column(_)
            | Expr::Literal(..)
            | Expr::BinaryExpr(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::Negative(_)
            | Expr::Between(_)
            | Expr::Like(_)
            | Expr::InList(_)
            | Expr::Cast(_)
            | Expr::TryCast(_) => true,
            Expr::ScalarFunction(f) => {
                f.func.signature().volatility == Volatility::Immutable
                    && CONFIG_FREE.contains(&f.func.name())
            }
            _ => false,
        };
        plain &= ok;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    plain
}

/// `expr` with its columns unqualified (the owner knows the table by its schema only).
fn unqualified(expr: &Expr) -> Option<Expr> {
    expr.clone()
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            other => Ok(Transformed::no(other)),
        })
        .ok()
        .map(|t| t.data)
}

/// The SQL text of `filter` to ship with reads of a table of `schema`, if it can be shipped
/// (module doc, 1).
pub(crate) fn shippable(filter: &Expr, schema: &SchemaRef) -> Option<String> {
    if !plain(filter) {
        return None;
    }
    let filter = unqualified(filter)?;
    let text = datafusion::sql::unparser::expr_to_sql(&filter)
        .ok()?
        .to_string();
    let columns = DFSchema::try_from(schema.as_ref().clone()).ok()?;
    // Only a text that means the same expression there as here.
    let parsed = parser().parse_sql_expr(&text, &columns).ok()?;
    (parsed == filter).then_some(text)
}

/// The rows of `batch` (in the table's whole schema) that every filter of `filters` holds
/// for; a filter that cannot be read or evaluated keeps every row (module doc, 2-3).
pub(crate) fn keep_passing(batch: RecordBatch, filters: &[String]) -> RecordBatch {
    if filters.is_empty() || batch.num_rows() == 0 {
        return batch;
    }
    let Ok(columns) = DFSchema::try_from(batch.schema().as_ref().clone()) else {
        return batch;
    };
    let mut mask: Option<BooleanArray> = None;
    for text in filters {
        let passing = parser()
            .parse_sql_expr(text, &columns)
            .and_then(|expr| parser().create_physical_expr(expr, &columns))
            .and_then(|physical| physical.evaluate(&batch))
            .and_then(|value| value.into_array(batch.num_rows()))
            .ok()
            .and_then(|array| array.as_any().downcast_ref::<BooleanArray>().cloned());
        let Some(passing) = passing else {
            tracing::debug!("a shipped filter was not applied: {text}");
            continue;
        };
        let passing = match passing.null_count() {
            0 => passing,
            _ => prep_null_mask_filter(&passing),
        };
        mask = Some(match mask {
            None => passing,
            Some(before) => and(&before, &passing).unwrap_or(before),
        });
    }
    match mask {
        Some(mask) => filter_record_batch(&batch, &mask).unwrap_or(batch),
        None => batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{cast, col, lit};
    use datafusion::prelude::{length, random, to_char};
    use std::sync::Arc;

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, true),
        ]))
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            table(),
            vec![
                Arc::new(StringArray::from(vec!["a", "bb", "ccc", "dddd"])),
                Arc::new(Int64Array::from(vec![Some(1), Some(5), None, Some(9)])),
            ],
        )
        .unwrap()
    }

    fn values(batch: &RecordBatch) -> Vec<Option<i64>> {
        let column = batch.column(1).as_any().downcast_ref::<Int64Array>();
        column.unwrap().iter().collect()
    }

    #[test]
    fn plain_filters_ship_and_keep_the_rows_they_hold_for() {
        let schema = table();
        let above = shippable(&col("value").gt(lit(3i64)), &schema).expect("ships");
        assert_eq!(
            values(&keep_passing(batch(), std::slice::from_ref(&above))),
            vec![Some(5), Some(9)]
        );
        let qualified = Expr::Column(Column::new(Some("counts"), "value")).lt(lit(9i64));
        let below = shippable(&qualified, &schema).expect("a qualified column ships");
        assert_eq!(
            values(&keep_passing(batch(), &[above, below])),
            vec![Some(5)]
        );
        let long = shippable(
            &cast(length(col("key")), DataType::Int64).gt_eq(lit(3i64)),
            &schema,
        );
        let long = long.expect("an immutable function ships");
        assert_eq!(values(&keep_passing(batch(), &[long])), vec![None, Some(9)]);
    }

    #[test]
    fn volatile_or_unreadable_filters_never_drop_rows() {
        let schema = table();
        assert!(
            shippable(&random().lt(lit(0.5)), &schema).is_none(),
            "random() differs there"
        );
        let this_year = to_char(col("key"), lit("%Y")).eq(lit("2026"));
        assert!(
            shippable(&this_year, &schema).is_none(),
            "not a session-free function"
        );
        for text in ["no_such_column > 1", "value >", "key + 1 > 0"] {
            assert_eq!(
                keep_passing(batch(), &[text.to_string()]).num_rows(),
                4,
                "{text}"
            );
        }
    }
}
