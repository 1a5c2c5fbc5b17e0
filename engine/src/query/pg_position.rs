//! Positions over the Postgres endpoint, as `POST /query` has them in `eddy-position` and
//! `min_position`: a connection's statements share one [`QueryScope`].
//!
//! 1. Every statement that reads (a query, `EXPLAIN`, a cursor's `DECLARE`) starts the scope
//!    again, so its scans record the position (input offsets) they read at; settings and
//!    `BEGIN`/`COMMIT` keep the position of the statement before, and a `FETCH` takes its
//!    cursor's (the rows it sends were read by the `DECLARE`'s scans).
//! 2. `SHOW eddy.position` answers the position of the connection's last statement as
//!    `[[topic, partition, offset], …]` (the same JSON as HTTP's `eddy-position`), once its
//!    rows were read (a later message than the statement's); `[]` when it failed.
//! 3. `SET eddy.min_position = '[[topic, partition, offset], …]'` makes every later statement
//!    of the connection wait for state at least that far (read-your-writes), failing with
//!    `55000` past the wait; `SET eddy.min_position = ''` or `RESET eddy.min_position` drops
//!    the bound, and `SHOW eddy.min_position` shows it. A malformed value, or one naming a
//!    topic or partition no store's position counts, is `22023`.
//!
//! Connections never see each other's positions or bounds: each has its own session.
//!
//! Unlike `POST /query`, a statement whose stores count none of the bound's topics is not
//! refused: the bound belongs to the connection, and it applies to the statements that read
//! what it names. A `SET` in a query string that then fails stays set (Postgres would roll it
//! back with the string's implicit transaction): send the `SET` on its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ParamValues, ToDFSchema};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{CloseCursor, Expr, Reset, Set, Statement, Value};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use datafusion_postgres::QueryHook;
use parking_lot::Mutex;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::query::sql::{QueryScope, StatementReads};
use crate::query::{SqlState, StateQueries};

/// The last statement's position.
const POSITION: &str = "eddy.position";
/// The bound on the connection's statements.
const MIN_POSITION: &str = "eddy.min_position";

/// What a statement asks of the connection's positions.
#[derive(Debug, PartialEq)]
enum PositionStatement {
    Show(&'static str),
    /// The new bound: the setting's text (empty: none).
    Set(String),
}

fn setting_name(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(".").to_lowercase()
}

/// `statement` as one of the position statements, if it is one.
fn position_statement(statement: &Statement) -> Option<PositionStatement> {
    match statement {
        Statement::ShowVariable { variable } => {
            match setting_name(variable.iter().map(|i| i.value.clone())).as_str() {
                POSITION => Some(PositionStatement::Show(POSITION)),
                MIN_POSITION => Some(PositionStatement::Show(MIN_POSITION)),
                _ => None,
            }
        }
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) if variable.to_string().to_lowercase() == MIN_POSITION => {
            let text = match values.as_slice() {
                [Expr::Value(v)] => match &v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            Some(PositionStatement::Set(text))
        }
        Statement::Reset(reset) => match &reset.reset {
            Reset::ConfigurationParameter(name)
                if name.to_string().to_lowercase() == MIN_POSITION =>
            {
                Some(PositionStatement::Set(String::new()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn to_json(position: &BTreeMap<(String, i32), i64>) -> String {
    let triples: Vec<(&str, i32, i64)> = position
        .iter()
        .map(|((t, p), o)| (t.as_str(), *p, *o))
        .collect();
    serde_json::to_string(&triples).unwrap_or_else(|_| "[]".to_string())
}

/// The bound a `SET eddy.min_position` gives (module doc, 3).
fn parse_bound(text: &str) -> PgWireResult<BTreeMap<(String, i32), i64>> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let triples: Vec<(String, i32, i64)> = serde_json::from_str(text).map_err(|e| {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            SqlState::InvalidParameterValue.code().to_string(),
            format!(
                "{MIN_POSITION} must be a JSON array of [topic, partition, offset], as \
                 `SHOW {POSITION}` gives it: {e}"
            ),
        )))
    })?;
    Ok(triples.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

/// A one-row answer of `name` whose value is computed when the row is sent: a statement's
/// answer streams after every statement of its query string was planned, so a
/// `SHOW eddy.position` after a `SELECT` in one string must wait for the SELECT's rows.
fn one_value(
    name: &str,
    value: impl FnOnce() -> String + Send + 'static,
) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::VARCHAR,
        FieldFormat::Text,
    )]);
    let encoding = Arc::clone(&fields);
    let rows = futures::stream::once(async move {
        let mut encoder = DataRowEncoder::new(encoding);
        encoder.encode_field(&Some(value()))?;
        Ok(encoder.take_row())
    });
    Ok(Response::Query(QueryResponse::new(fields, Box::pin(rows))))
}

/// Answers the position statements of one connection and starts its scope at every
/// statement that reads; the first of the connection's hooks.
pub(crate) struct PositionHook {
    scope: Arc<QueryScope>,
    queries: StateQueries,
    /// The reads of each cursor declared, the last statement's again at its `FETCH` (its
    /// rows stream then, from the `DECLARE`'s scans).
    cursors: Mutex<HashMap<String, Arc<StatementReads>>>,
}

impl PositionHook {
    pub fn new(scope: Arc<QueryScope>, queries: StateQueries) -> Self {
        Self {
            scope,
            queries,
            cursors: Mutex::default(),
        }
    }

    fn respond(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        match position_statement(statement) {
            Some(PositionStatement::Show(POSITION)) => {
                // The statement before this one, whose rows are sent before this answer.
                let reads = self.scope.last_reads();
                Some(one_value(POSITION, move || to_json(&reads.positions())))
            }
            Some(PositionStatement::Show(_)) => {
                let bound = to_json(&self.scope.min_position());
                Some(one_value(MIN_POSITION, move || bound))
            }
            Some(PositionStatement::Set(text)) => Some(parse_bound(&text).and_then(|bound| {
                // A bound no scan checks would pass silently.
                if let Some((topic, partition)) = self.queries.unreflected(&bound) {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".to_string(),
                        SqlState::InvalidParameterValue.code().to_string(),
                        format!(
                            "{MIN_POSITION} names partition {partition} of `{topic}`, which \
                             no store's position counts"
                        ),
                    ))));
                }
                self.scope.set_min_position(bound);
                Ok(Response::Execution(Tag::new(match statement {
                    Statement::Reset(_) => "RESET",
                    _ => "SET",
                })))
            })),
            // A statement that reads starts the scope again; a setting or a transaction's
            // bounds keep the position of the statement before, and a cursor's FETCH takes
            // its cursor's.
            None => {
                match statement {
                    Statement::Query(_) | Statement::Explain { .. } => self.scope.restart(),
                    Statement::Declare { stmts } => {
                        self.scope.restart();
                        let mut cursors = self.cursors.lock();
                        for name in stmts.iter().filter_map(|d| d.names.first()) {
                            cursors.insert(name.value.clone(), self.scope.last_reads());
                        }
                    }
                    Statement::Fetch { name, .. } => {
                        if let Some(reads) = self.cursors.lock().get(&name.value) {
                            self.scope.resume(Arc::clone(reads));
                        }
                    }
                    Statement::Close { cursor } => match cursor {
                        CloseCursor::All => self.cursors.lock().clear(),
                        CloseCursor::Specific { name } => {
                            self.cursors.lock().remove(&name.value);
                        }
                    },
                    _ => {}
                }
                None
            }
        }
    }
}

#[async_trait]
impl QueryHook for PositionHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.respond(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // The plan only describes the answer's columns; `handle_extended_query` answers.
        let columns = match position_statement(statement)? {
            PositionStatement::Show(name) => vec![Field::new(name, DataType::Utf8, false)],
            PositionStatement::Set(_) => Vec::new(),
        };
        let plan = Arc::new(Schema::new(columns))
            .to_dfschema()
            .map(|schema| {
                LogicalPlan::EmptyRelation(EmptyRelation {
                    produce_one_row: true,
                    schema: Arc::new(schema),
                })
            })
            .map_err(|e| PgWireError::ApiError(Box::new(e)));
        Some(plan)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.respond(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::pg::tests::parse;

    #[test]
    fn the_position_statements_are_recognised_and_others_are_not() {
        assert_eq!(
            position_statement(&parse("SHOW eddy.position")),
            Some(PositionStatement::Show(POSITION))
        );
        assert_eq!(
            position_statement(&parse("show EDDY.MIN_POSITION")),
            Some(PositionStatement::Show(MIN_POSITION))
        );
        assert_eq!(
            position_statement(&parse("SET eddy.min_position = '[[\"t\", 0, 5]]'")),
            Some(PositionStatement::Set("[[\"t\", 0, 5]]".into()))
        );
        assert_eq!(
            position_statement(&parse("RESET eddy.min_position")),
            Some(PositionStatement::Set(String::new()))
        );
        for other in ["SHOW search_path", "SELECT 1", "SET statement_timeout = 5"] {
            assert_eq!(position_statement(&parse(other)), None, "{other}");
        }
    }

    #[test]
    fn a_bound_is_the_json_a_position_is_shown_as() {
        let bound = parse_bound("[[\"orders\", 1, 42], [\"orders\", 0, 7]]").unwrap();
        assert_eq!(to_json(&bound), "[[\"orders\",0,7],[\"orders\",1,42]]");
        assert_eq!(parse_bound(&to_json(&bound)).unwrap(), bound);
        assert!(parse_bound(" ").unwrap().is_empty());
        match parse_bound("orders:1:42") {
            Err(PgWireError::UserError(info)) => assert_eq!(info.code, "22023"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_statement_restarts_the_scope_and_a_show_does_not() {
        let scope = Arc::new(QueryScope::default());
        let no_stores = StateQueries::merged(Vec::new()).unwrap();
        let hook = PositionHook::new(Arc::clone(&scope), no_stores);
        scope
            .statement()
            .note(0, BTreeMap::from([("orders".to_string(), 9)]));
        assert!(hook.respond(&parse("SHOW eddy.position")).is_some());
        assert_eq!(scope.positions().len(), 1, "SHOW keeps the last position");
        assert!(hook.respond(&parse("SELECT 1")).is_none());
        assert!(scope.positions().is_empty(), "a statement starts again");
        for kept in ["SET statement_timeout = 5", "COMMIT", "SHOW search_path"] {
            scope
                .statement()
                .note(0, BTreeMap::from([("orders".to_string(), 9)]));
            assert!(hook.respond(&parse(kept)).is_none());
            assert_eq!(scope.positions().len(), 1, "{kept} keeps the last position");
        }
        // No store here counts `orders`: a bound on it would pass silently.
        match hook.respond(&parse("SET eddy.min_position = '[[\"orders\", 0, 3]]'")) {
            Some(Err(PgWireError::UserError(info))) => assert_eq!(info.code, "22023"),
            other => panic!("{other:?}"),
        }
        assert!(scope.min_position().is_empty());
        scope.set_min_position(BTreeMap::from([(("orders".to_string(), 0), 3)]));
        assert!(!scope.min_position().is_empty());
        assert!(hook.respond(&parse("RESET eddy.min_position")).is_some());
        assert!(scope.min_position().is_empty());
    }
}
