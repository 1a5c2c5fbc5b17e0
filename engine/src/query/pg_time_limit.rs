//! A time limit on every Postgres statement, as the HTTP endpoint has: DataFusion plans a
//! query before its rows are asked for and computes them while they stream, so the limit
//! covers the whole handling of a message, rows included.
//!
//! 1. A statement's limit is the connection's `statement_timeout` when it set one above 0
//!    (`SET statement_timeout = 5000`), [`crate::query::sql::DEFAULT_TIME_LIMIT`] otherwise.
//! 2. Each simple `Query` message and each `Execute` runs under it, as Postgres times each
//!    message: a portal read in batches (`Execute` with a row count) gets the limit per
//!    batch, and the client's pauses between batches do not count.
//! 3. Past it the statement fails with SQLSTATE `57014`, as Postgres cancels one; the work is
//!    dropped (which stops DataFusion's), and the connection stays usable.
//! 4. A message that fails (past its limit, or any error) marks the statement it started as
//!    failed, so `SHOW eddy.position` does not report a position for rows never sent whole
//!    (`pg_position.rs`).

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion_postgres::pgwire;
use datafusion_postgres::DfSessionService;
use futures::Sink;
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;

use crate::query::sql::{QueryScope, DEFAULT_TIME_LIMIT};

/// Where `datafusion-postgres` keeps a connection's `statement_timeout`, in milliseconds.
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// The limit of a statement on a connection whose settings are `metadata` (module doc, 1).
fn limit_of(metadata: &std::collections::HashMap<String, String>) -> Duration {
    metadata
        .get(STATEMENT_TIMEOUT_KEY)
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_TIME_LIMIT, Duration::from_millis)
}

fn past(limit: Duration) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(),
        format!(
            "canceling statement: it ran past its time limit of {} ms (statement_timeout); \
             narrow it (a key, a LIMIT)",
            limit.as_millis()
        ),
    )))
}

/// The statements running on an endpoint's connections, which its shutdown waits for.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

impl InFlight {
    /// A statement starts; it ends when the guard drops.
    fn start(self: &Arc<Self>) -> StatementGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        StatementGuard(Arc::clone(self))
    }

    /// Whether no statement is running.
    pub fn idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

struct StatementGuard(Arc<InFlight>);

impl Drop for StatementGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// DataFusion's Postgres handlers with a time limit on every statement, counted in flight,
/// for one connection (whose scope a failed statement is marked in).
pub(crate) struct TimeLimited {
    pub service: Arc<DfSessionService>,
    pub in_flight: Arc<InFlight>,
    pub scope: Arc<QueryScope>,
}

impl TimeLimited {
    /// Runs one message's `handling` under `limit` (module doc, 3 and 4).
    async fn limited(
        &self,
        limit: Duration,
        handling: impl std::future::Future<Output = PgWireResult<()>>,
    ) -> PgWireResult<()> {
        let _running = self.in_flight.start();
        let before = self.scope.last_reads();
        let handled = tokio::time::timeout(limit, handling)
            .await
            .map_err(|_| past(limit))
            .and_then(|handled| handled);
        if handled.is_err() {
            // Only a statement this message started (a failed SET keeps the one before).
            let last = self.scope.last_reads();
            if !Arc::ptr_eq(&before, &last) {
                last.fail();
            }
        }
        handled
    }
}

#[async_trait]
impl SimpleQueryHandler for TimeLimited {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let limit = limit_of(client.metadata());
        self.limited(limit, self._on_query(client, query)).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        SimpleQueryHandler::do_query(&*self.service, client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for TimeLimited {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.service.query_parser()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let limit = limit_of(client.metadata());
        self.limited(limit, self._on_execute(client, message)).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ExtendedQueryHandler::do_query(&*self.service, client, portal, max_rows).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connections_statement_timeout_is_its_limit_and_the_default_otherwise() {
        let mut metadata = std::collections::HashMap::new();
        assert_eq!(limit_of(&metadata), DEFAULT_TIME_LIMIT);
        metadata.insert(STATEMENT_TIMEOUT_KEY.to_string(), "1500".to_string());
        assert_eq!(limit_of(&metadata), Duration::from_millis(1500));
        metadata.insert(STATEMENT_TIMEOUT_KEY.to_string(), "0".to_string());
        assert_eq!(
            limit_of(&metadata),
            DEFAULT_TIME_LIMIT,
            "0: no limit of its own"
        );
    }
}
