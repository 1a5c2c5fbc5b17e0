//! Why a SQL query failed, as a Postgres SQLSTATE: both endpoints send it (`psql` shows it,
//! drivers branch on it; HTTP errors carry it as `"sqlstate"`), and it is decided once, from
//! the kind of DataFusion's error rather than from its wording wherever the kind tells.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::error::EngineError;

/// A SQLSTATE class Eddy's queries fail with (Postgres' codes, appendix A of its manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// `42601`: the SQL does not parse.
    SyntaxError,
    /// `42P01`: no table (store) of that name.
    UndefinedTable,
    /// `42703`: no column of that name.
    UndefinedColumn,
    /// `42702`: a column name that more than one table has.
    AmbiguousColumn,
    /// `42701`: two columns of one name.
    DuplicateColumn,
    /// `42883`: no function of that name (or none for those argument types).
    UndefinedFunction,
    /// `42804`: values of types that do not go together.
    DatatypeMismatch,
    /// `42000`: another mistake in the query.
    InvalidQuery,
    /// `22012`: a division by zero.
    DivisionByZero,
    /// `22003`: a number out of its type's range.
    NumericOutOfRange,
    /// `22P02`: a value that does not convert to the type asked for.
    InvalidTextRepresentation,
    /// `22023`: a setting or argument of the wrong value.
    InvalidParameterValue,
    /// `22000`: another error in the data.
    DataException,
    /// `0A000`: SQL that DataFusion does not support.
    FeatureNotSupported,
    /// `25006`: a statement that would write (Eddy's SQL is read-only).
    ReadOnly,
    /// `55P02`: a `SET` of a setting a connection may not change (it would change the server).
    CantChangeRuntimeParam,
    /// `28000`: no credentials, or the wrong ones.
    InvalidAuthorization,
    /// `54000`: the query would read more rows than a scan may.
    ProgramLimitExceeded,
    /// `53000`: the query ran out of memory.
    InsufficientResources,
    /// `55000`: a partition is not available (moving, restoring, behind the position asked for).
    NotAvailable,
    /// `57014`: the query ran past its time limit.
    QueryCanceled,
    /// `XX000`: anything else.
    Internal,
}

impl SqlState {
    /// The five-character code.
    pub fn code(self) -> &'static str {
        match self {
            SqlState::SyntaxError => "42601",
            SqlState::UndefinedTable => "42P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::AmbiguousColumn => "42702",
            SqlState::DuplicateColumn => "42701",
            SqlState::UndefinedFunction => "42883",
            SqlState::DatatypeMismatch => "42804",
            SqlState::InvalidQuery => "42000",
            SqlState::DivisionByZero => "22012",
            SqlState::NumericOutOfRange => "22003",
            SqlState::InvalidTextRepresentation => "22P02",
            SqlState::InvalidParameterValue => "22023",
            SqlState::DataException => "22000",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::ReadOnly => "25006",
            SqlState::InvalidAuthorization => "28000",
            SqlState::CantChangeRuntimeParam => "55P02",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::InsufficientResources => "53000",
            SqlState::NotAvailable => "55000",
            SqlState::QueryCanceled => "57014",
            SqlState::Internal => "XX000",
        }
    }
}

impl SqlState {
    /// Every SQLSTATE here.
    const ALL: [SqlState; 22] = [
        SqlState::SyntaxError,
        SqlState::UndefinedTable,
        SqlState::UndefinedColumn,
        SqlState::AmbiguousColumn,
        SqlState::DuplicateColumn,
        SqlState::UndefinedFunction,
        SqlState::DatatypeMismatch,
        SqlState::InvalidQuery,
        SqlState::DivisionByZero,
        SqlState::NumericOutOfRange,
        SqlState::InvalidTextRepresentation,
        SqlState::InvalidParameterValue,
        SqlState::DataException,
        SqlState::FeatureNotSupported,
        SqlState::ReadOnly,
        SqlState::CantChangeRuntimeParam,
        SqlState::InvalidAuthorization,
        SqlState::ProgramLimitExceeded,
        SqlState::InsufficientResources,
        SqlState::NotAvailable,
        SqlState::QueryCanceled,
        SqlState::Internal,
    ];

    /// The SQLSTATE of `code` (as an owner sends it with a failed partition read).
    pub(crate) fn from_code(code: &str) -> Option<SqlState> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl EngineError {
    /// The SQLSTATE of a query's error: `None` for an error that is not about a query.
    pub fn sqlstate(&self) -> Option<SqlState> {
        match self {
            EngineError::Sql { sqlstate, .. } => Some(*sqlstate),
            EngineError::Query(_) => Some(SqlState::InvalidQuery),
            _ => None,
        }
    }
}

/// The SQLSTATE of an engine error met by a query.
pub(crate) fn of_engine(error: &EngineError) -> SqlState {
    error.sqlstate().unwrap_or(SqlState::Internal)
}

/// The SQLSTATE of an error of any of the kinds a query meets, boxed (as DataFusion, Arrow
/// and pgwire carry the errors of others).
pub(crate) fn of_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> SqlState {
    if let Some(engine) = error.downcast_ref::<EngineError>() {
        of_engine(engine)
    } else if let Some(datafusion) = error.downcast_ref::<DataFusionError>() {
        of_datafusion(datafusion)
    } else if let Some(arrow) = error.downcast_ref::<ArrowError>() {
        of_arrow(arrow)
    } else if error.is::<ParserError>() {
        // datafusion-postgres parses statements itself, before DataFusion plans them.
        SqlState::SyntaxError
    } else {
        SqlState::Internal
    }
}

/// The SQLSTATE of a DataFusion error (an engine error inside it keeps its own).
pub(crate) fn of_datafusion(error: &DataFusionError) -> SqlState {
    match error {
        DataFusionError::SQL(..) => SqlState::SyntaxError,
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlState::UndefinedColumn,
            SchemaError::AmbiguousReference { .. } => SqlState::AmbiguousColumn,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => SqlState::DuplicateColumn,
        },
        DataFusionError::ArrowError(arrow, _) => of_arrow(arrow),
        // Planning errors share one variant: their kind is only in their words.
        DataFusionError::Plan(message) => of_plan_message(message),
        DataFusionError::NotImplemented(_) => SqlState::FeatureNotSupported,
        DataFusionError::Configuration(_) => SqlState::InvalidParameterValue,
        DataFusionError::ResourcesExhausted(_) => SqlState::InsufficientResources,
        DataFusionError::Execution(message) => of_execution_message(message),
        DataFusionError::External(inner) => of_error(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            of_datafusion(inner)
        }
        DataFusionError::Shared(inner) => of_datafusion(inner),
        DataFusionError::Collection(errors) => {
            errors.first().map_or(SqlState::Internal, of_datafusion)
        }
        _ => SqlState::Internal,
    }
}

fn of_arrow(error: &ArrowError) -> SqlState {
    match error {
        ArrowError::DivideByZero => SqlState::DivisionByZero,
        ArrowError::ArithmeticOverflow(_) => SqlState::NumericOutOfRange,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => SqlState::InvalidTextRepresentation,
        ArrowError::InvalidArgumentError(_) | ArrowError::ComputeError(_) => {
            SqlState::DataException
        }
        ArrowError::ExternalError(inner) => of_error(inner.as_ref()),
        _ => SqlState::Internal,
    }
}

fn of_plan_message(message: &str) -> SqlState {
    let m = message.to_lowercase();
    // `SQLOptions` refuses DDL, DML and statements at planning (Eddy's SQL is read-only).
    if [
        "ddl not supported",
        "dml not supported",
        "statement not supported",
    ]
    .iter()
    .any(|refused| m.contains(refused))
    {
        SqlState::ReadOnly
    } else if m.contains("table") && m.contains("not found") {
        SqlState::UndefinedTable
    } else if m.contains("invalid function")
        || m.contains("no function matches")
        || (m.contains("function") && m.contains("not found"))
    {
        SqlState::UndefinedFunction
    } else if m.contains("coerc")
        || m.contains("cannot infer common")
        || m.contains("cannot be cast")
        || m.contains("type mismatch")
        || m.contains("unsupported data type")
        || m.contains("does not support")
    {
        SqlState::DatatypeMismatch
    } else {
        SqlState::InvalidQuery
    }
}

fn of_execution_message(message: &str) -> SqlState {
    let m = message.to_lowercase();
    if m.contains("divide by zero") || m.contains("division by zero") {
        SqlState::DivisionByZero
    } else if m.contains("overflow") {
        SqlState::NumericOutOfRange
    } else if m.contains("cast") || m.contains("parse") {
        SqlState::InvalidTextRepresentation
    } else {
        SqlState::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// The SQLSTATE DataFusion's own error for `sql` gets (planned and run, no stores).
    fn state_of(sql: &str) -> SqlState {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ctx = SessionContext::new();
            let error = match ctx.sql(sql).await {
                Err(e) => e,
                Ok(frame) => frame.collect().await.expect_err(sql),
            };
            of_datafusion(&error)
        })
    }

    #[test]
    fn each_kind_of_mistake_gets_its_sqlstate() {
        assert_eq!(state_of("SELEC 1"), SqlState::SyntaxError);
        assert_eq!(state_of("SELECT * FROM nope"), SqlState::UndefinedTable);
        assert_eq!(
            state_of("SELECT nope FROM (SELECT 1 AS a)"),
            SqlState::UndefinedColumn
        );
        assert_eq!(
            state_of("SELECT no_such_fn(1)"),
            SqlState::UndefinedFunction
        );
        assert_eq!(
            state_of("SELECT a + 'a' FROM (SELECT 1 AS a)"),
            SqlState::DatatypeMismatch
        );
        assert_eq!(
            state_of("SELECT CAST('x' AS INT)"),
            SqlState::InvalidTextRepresentation
        );
        assert_eq!(
            state_of("SELECT a / 0 FROM (SELECT 1 AS a)"),
            SqlState::DivisionByZero
        );
    }

    #[test]
    fn an_engine_error_inside_datafusion_keeps_its_sqlstate() {
        let limit = EngineError::Sql {
            sqlstate: SqlState::ProgramLimitExceeded,
            message: "too many rows".into(),
        };
        let wrapped = DataFusionError::Context(
            "scanning".into(),
            Box::new(DataFusionError::External(Box::new(limit))),
        );
        assert_eq!(of_datafusion(&wrapped), SqlState::ProgramLimitExceeded);
        assert_eq!(
            of_engine(&EngineError::Query("no such store".into())),
            SqlState::InvalidQuery
        );
        assert_eq!(SqlState::ProgramLimitExceeded.code(), "54000");
        for state in SqlState::ALL {
            assert_eq!(SqlState::from_code(state.code()), Some(state));
        }
    }
}
