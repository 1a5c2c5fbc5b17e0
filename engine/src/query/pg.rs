//! The Postgres wire protocol endpoint (pgwire through `datafusion-postgres`): `psql` and any
//! Postgres driver query the stores with the same SQL as `POST /query`.
//!
//! 1. A client connects; with a password configured it must send it (cleartext: keep the
//!    endpoint on loopback or behind TLS termination), otherwise any user name is let in.
//! 2. Simple and extended (prepared) queries are planned by DataFusion over the stores and a
//!    `pg_catalog` emulation, so `\d` and `\d store` work; columns get the Postgres types of
//!    their Arrow types.
//! 3. Only reads run: a statement other than a query, `EXPLAIN`, `SHOW`, a transaction or
//!    cursor statement, or a `SET` of a connection's own setting is refused with SQLSTATE
//!    `25006` (read only), and DataFusion's errors get the SQLSTATE of their kind
//!    (`sqlstate.rs`: `42601` syntax, `42P01` unknown table, `42703` unknown column, `42883`
//!    unknown function, `22P02` a value that does not convert, …). The connection stays
//!    usable after an error.
//! 4. Every statement has a time limit: the connection's `statement_timeout`, 30 s by
//!    default (`pg_time_limit.rs`); past it the statement fails with `57014`.
//! 5. Each connection has its own session: `SHOW eddy.position` gives the position its last
//!    statement read at, and `SET eddy.min_position = '…'` bounds its next ones
//!    (`pg_position.rs`).
//! 6. Dropping the [`PgServer`] (or [`PgServer::close`]) stops accepting, lets the statements
//!    running finish (30 s at most), then closes the connections.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::{EngineError, Result};
use crate::query::pg_position::PositionHook;
use crate::query::pg_time_limit::{InFlight, TimeLimited};
use crate::query::serving::ServerThread;
use crate::query::sql::{QueryScope, DEFAULT_TIME_LIMIT};
use crate::query::{of_error, SqlState, StateQueries};

/// The settings a connection may change for itself (the others would change the server).
const SESSION_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "client_encoding",
];

fn refused(sqlstate: SqlState, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        sqlstate.code().to_string(),
        message,
    )))
}

/// Why `statement` may not run, if it may not.
fn read_only_violation(statement: &Statement) -> Option<PgWireError> {
    match statement {
        Statement::Query(query) if selects_into(query) => Some(refused(
            SqlState::ReadOnly,
            format!("Eddy's SQL is read-only: `{statement}` would create a table"),
        )),
        Statement::Query(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => None,
        Statement::Explain { statement, .. } => read_only_violation(statement),
        Statement::Set(Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            ..
        }) if SESSION_SETTINGS.contains(&variable.to_string().to_lowercase().as_str()) => None,
        Statement::Set(Set::SetTimeZone { local: false, .. }) => None,
        Statement::Set(_) => Some(refused(
            SqlState::CantChangeRuntimeParam,
            format!("`{statement}` would change the server: only a connection's own settings can be SET ({})", SESSION_SETTINGS.join(", ")),
        )),
        other => Some(refused(
            SqlState::ReadOnly,
            format!("Eddy's SQL is read-only: `{other}` is not a query"),
        )),
    }
}

/// Whether `query` is a `SELECT … INTO` (which creates a table).
fn selects_into(query: &datafusion::sql::sqlparser::ast::Query) -> bool {
    use datafusion::sql::sqlparser::ast::SetExpr;
    fn body_into(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => select.into.is_some(),
            SetExpr::Query(q) => body_into(&q.body),
            SetExpr::SetOperation { left, right, .. } => body_into(left) || body_into(right),
            _ => false,
        }
    }
    body_into(&query.body)
}

/// Refuses every statement that is not a read, before the other hooks or DataFusion see it.
struct ReadOnlyHook;

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        read_only_violation(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        read_only_violation(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        read_only_violation(statement).map(Err)
    }
}

/// Gives DataFusion's errors (which pgwire would send as internal errors) their SQLSTATE.
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            *error = refused(of_error(inner.as_ref()), inner.to_string());
        }
    }
}

/// The configured password, for cleartext authentication.
#[derive(Debug)]
struct SharedPassword(String);

#[async_trait]
impl AuthSource for SharedPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

struct Trust;

impl NoopStartupHandler for Trust {}

/// No authentication, or a password.
struct Startup {
    password:
        Option<CleartextPasswordAuthStartupHandler<SharedPassword, DefaultServerParameterProvider>>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.password {
            Some(handler) => handler.on_startup(client, message).await,
            None => Trust.on_startup(client, message).await,
        }
    }
}

struct Handlers {
    service: Arc<TimeLimited>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.service)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.service)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }
}

/// A running Postgres wire endpoint.
#[derive(Debug)]
pub struct PgServer(ServerThread);

impl PgServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting, waits for the statements running, and closes the connections.
    pub fn close(self) {}
}

impl StateQueries {
    /// Serves the Postgres wire protocol on `listen` (port 0 picks one), with `password`
    /// required of every client when given.
    pub fn serve_pg(&self, listen: SocketAddr, password: Option<String>) -> Result<PgServer> {
        let config_error = |reason: String| EngineError::Config {
            key: "pg".into(),
            reason,
        };
        let base = self.session(None)?;
        let queries = self.clone();
        setup_pg_catalog(
            &base,
            "datafusion",
            datafusion_postgres::auth::AuthManager::default(),
        )
        .map_err(|e| config_error(format!("setting up pg_catalog: {e}")))?;
        let startup = Arc::new(Startup {
            password: password.map(|p| {
                CleartextPasswordAuthStartupHandler::new(
                    SharedPassword(p),
                    DefaultServerParameterProvider::default(),
                )
            }),
        });
        let in_flight = Arc::new(InFlight::default());
        let statements = Arc::clone(&in_flight);
        // Each connection its own session over the same catalogs, so its settings and
        // positions are its own (`pg_position.rs`).
        let connection_handlers = move || {
            let scope = Arc::new(QueryScope::default());
            // Not a new default catalog: it would replace the shared one (the stores).
            let config = base
                .copied_config()
                .with_create_default_catalog_and_schema(false)
                .with_extension(Arc::clone(&scope));
            let state = SessionStateBuilder::new_from_existing(base.state())
                .with_config(config)
                .build();
            let hooks: Vec<Arc<dyn QueryHook>> = vec![
                Arc::new(PositionHook::new(Arc::clone(&scope), queries.clone())),
                Arc::new(ReadOnlyHook),
                Arc::new(CursorStatementHook),
                Arc::new(SetShowHook),
                Arc::new(TransactionStatementHook),
            ];
            Arc::new(Handlers {
                service: Arc::new(TimeLimited {
                    service: Arc::new(DfSessionService::new_with_hooks(
                        Arc::new(SessionContext::new_with_state(state)),
                        hooks,
                    )),
                    in_flight: Arc::clone(&in_flight),
                    scope,
                }),
                startup: Arc::clone(&startup),
            })
        };
        let serving = ServerThread::spawn(
            "eddy-query-pg",
            "pg",
            listen,
            |listener, mut stopped| async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => {
                                let handlers = connection_handlers();
                                connections.spawn(async move {
                                    let served = pgwire::tokio::process_socket(socket, None, handlers).await;
                                    if let Err(e) = served {
                                        tracing::debug!("postgres connection: {e}");
                                    }
                                });
                            }
                            Err(e) => tracing::warn!("postgres endpoint accept: {e}"),
                        },
                    }
                }
                // The statements running finish (each within its time limit, the wait
                // within the default one), then the connections close.
                let deadline = tokio::time::Instant::now() + DEFAULT_TIME_LIMIT;
                while !statements.idle() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                connections.abort_all();
            },
        )?;
        Ok(PgServer(serving))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    /// `sql`'s first statement, as the Postgres endpoint parses it.
    pub(crate) fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_reads_and_a_connections_own_settings_pass() {
        for ok in [
            "SELECT 1",
            "EXPLAIN SELECT 1",
            "SHOW search_path",
            "BEGIN",
            "COMMIT",
            "SET statement_timeout = 1000",
            "SET TIME ZONE 'UTC'",
        ] {
            assert!(read_only_violation(&parse(ok)).is_none(), "{ok}");
        }
        for (bad, state) in [
            ("DROP TABLE x", SqlState::ReadOnly),
            ("CREATE TABLE x (a INT)", SqlState::ReadOnly),
            ("INSERT INTO x VALUES (1)", SqlState::ReadOnly),
            ("DELETE FROM x", SqlState::ReadOnly),
            ("COPY x TO '/tmp/x'", SqlState::ReadOnly),
            ("EXPLAIN DELETE FROM x", SqlState::ReadOnly),
            ("SELECT 1 INTO t", SqlState::ReadOnly),
            (
                "SET datafusion.execution.batch_size = 1",
                SqlState::CantChangeRuntimeParam,
            ),
        ] {
            match read_only_violation(&parse(bad)) {
                Some(PgWireError::UserError(info)) => assert_eq!(info.code, state.code(), "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
