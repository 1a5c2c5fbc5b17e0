//! A time limit on every Postgres statement, as the HTTP endpoint has: DataFusion plans a
//! query before its rows are asked for and computes them while they stream, so the limit
//! covers both.
//!
//! 1. A statement's limit is the connection's `statement_timeout` when it set one above 0
//!    (`SET statement_timeout = 5000`), [`crate::query::sql::DEFAULT_TIME_LIMIT`] otherwise.
//! 2. Planning runs under that deadline; so does each row of the answer.
//! 3. Past the deadline the statement fails with SQLSTATE `57014`, as Postgres cancels one;
//!    dropping the stream stops DataFusion's work, and the connection stays usable.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion_postgres::pgwire;
use datafusion_postgres::DfSessionService;
use futures::{Sink, StreamExt};
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{Response, SendableRowStream};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tokio::time::Instant;

use crate::query::sql::DEFAULT_TIME_LIMIT;

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

/// `rows`, ending with the time-limit error at `deadline`.
fn rows_until(rows: SendableRowStream, deadline: Instant, limit: Duration) -> SendableRowStream {
    Box::pin(futures::stream::unfold(
        Some(rows),
        move |rows| async move {
            let mut rows = rows?;
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Ok(Some(row)) => Some((row, Some(rows))),
                Ok(None) => None,
                Err(_) => Some((Err(past(limit)), None)),
            }
        },
    ))
}

fn limit_response(response: Response, deadline: Instant, limit: Duration) -> Response {
    match response {
        Response::Query(mut query) => {
            let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
            query.data_rows = rows_until(rows, deadline, limit);
            Response::Query(query)
        }
        other => other,
    }
}

/// DataFusion's Postgres handlers with a time limit on every statement.
pub(crate) struct TimeLimited(pub Arc<DfSessionService>);

#[async_trait]
impl SimpleQueryHandler for TimeLimited {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let limit = limit_of(client.metadata());
        let deadline = Instant::now() + limit;
        let responses = tokio::time::timeout_at(
            deadline,
            SimpleQueryHandler::do_query(&*self.0, client, query),
        )
        .await
        .map_err(|_| past(limit))??;
        Ok(responses
            .into_iter()
            .map(|r| limit_response(r, deadline, limit))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for TimeLimited {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = <DfSessionService as ExtendedQueryHandler>::QueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.0.query_parser()
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
        let limit = limit_of(client.metadata());
        let deadline = Instant::now() + limit;
        let response = tokio::time::timeout_at(
            deadline,
            ExtendedQueryHandler::do_query(&*self.0, client, portal, max_rows),
        )
        .await
        .map_err(|_| past(limit))??;
        Ok(limit_response(response, deadline, limit))
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
