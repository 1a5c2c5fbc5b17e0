//! The HTTP query endpoint (axum), one per instance that asks for it:
//!
//! 1. `POST /query` with the body `{"sql": "SELECT …"}` runs the query over every partition
//!    ([`StateQueries::sql_async_with`]); `"min_position": [[topic, partition, offset], …]`
//!    (an earlier answer's `eddy-position`) asks for state at least that far, `"wait_ms"`
//!    bounds the wait for partitions that move and `"time_limit_ms"` the whole query (30 s by
//!    default, 60 s at most).
//! 2. The rows come back as a JSON array of objects, or as NDJSON (`Accept:
//!    application/x-ndjson`) or an Arrow IPC stream (`Accept:
//!    application/vnd.apache.arrow.stream`); the header `eddy-position` holds the position the
//!    rows reflect, as a JSON array of `[topic, partition, offset]`.
//! 3. A query that cannot be answered gets `400` with `{"error": "…", "sqlstate": "…"}` (the
//!    code Postgres would give, as the Postgres endpoint sends it); the server and the
//!    application go on.
//! 4. `POST /internal/partition` answers the other instances for the partitions held here
//!    (`remote.rs`).
//! 5. With a token ([`StateQueries::with_token`]) every request must carry `Authorization:
//!    Bearer <token>`; one without it gets `401`.
//! 6. `GET /stores` lists every store: its kind, the partitions held here and its columns
//!    (name, Arrow type, nullable) as SQL reads them.
//! 7. `GET /metrics` answers every metric of the process in Prometheus' text format; `GET /`
//!    is the web console, which reads `GET /console/status` (`crate::console`).
//! 8. Dropping the [`QueryServer`] (or [`QueryServer::close`]) stops it after the queries in
//!    flight.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::query::remote::{self, PartitionRequest, PARTITION_PATH, POSITION_HEADER};
use crate::query::serving::ServerThread;
use crate::query::sql::{keep_passing, to_batch, wants_value_json, KeyPredicate};
use crate::query::{of_engine, QueryOptions, SqlAnswer, SqlState, StateQueries};

const NDJSON: &str = "application/x-ndjson";
/// The longest `wait_ms` or `time_limit_ms` a query may ask for.
const MAX_WAIT_MS: u64 = 60_000;
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Up to this many point lookups of one key-value partition are read on the endpoint's own
/// thread.
const INLINE_POINTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    min_position: Vec<(String, i32, i64)>,
    wait_ms: Option<u64>,
    time_limit_ms: Option<u64>,
}

/// A running HTTP query endpoint.
#[derive(Debug)]
pub struct QueryServer(ServerThread);

impl QueryServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops after the queries in flight.
    pub fn close(self) {}
}

fn error_response(status: StatusCode, sqlstate: SqlState, message: String) -> Response {
    let body = serde_json::json!({ "error": message, "sqlstate": sqlstate.code() });
    (status, Json(body)).into_response()
}

/// `400` (or `status`) for a query that failed, with the SQLSTATE of why.
fn failed(status: StatusCode, error: &EngineError) -> Response {
    error_response(status, of_engine(error), error.to_string())
}

fn encode(answer: &SqlAnswer, accept: &str) -> Result<(Vec<u8>, &'static str)> {
    let fail = |e: datafusion::arrow::error::ArrowError| EngineError::Query(e.to_string());
    if accept.contains(ARROW_STREAM) {
        let ipc = remote::encode_batches(&answer.schema, &answer.batches)?;
        return Ok((ipc, ARROW_STREAM));
    }
    if accept.contains(NDJSON) {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
        for batch in &answer.batches {
            writer.write(batch).map_err(fail)?;
        }
        writer.finish().map_err(fail)?;
        return Ok((writer.into_inner(), NDJSON));
    }
    Ok((answer.to_json()?.into_bytes(), "application/json"))
}

/// `401` unless `headers` carry the token `queries` ask for (when they ask for one).
fn unauthorized(queries: &StateQueries, headers: &HeaderMap) -> Option<Response> {
    let token = queries.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // Compared in constant time: a mismatch's position must not show in the timing.
    let matches = given.is_some_and(|g| {
        g.len() == token.len()
            && g.iter()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    (!matches).then(|| {
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            SqlState::InvalidAuthorization,
            "this endpoint needs `Authorization: Bearer <token>`".to_string(),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    })
}

/// Lets a request through to its route only with the token (`unauthorized`).
async fn require_token(
    State(queries): State<StateQueries>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match unauthorized(&queries, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

async fn query(
    State(queries): State<StateQueries>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: QueryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("the body must be {{\"sql\": \"…\"}}: {e}");
            return error_response(
                StatusCode::BAD_REQUEST,
                SqlState::InvalidParameterValue,
                message,
            );
        }
    };
    let mut options = QueryOptions::default();
    for (topic, partition, offset) in request.min_position {
        options.min_position.insert((topic, partition), offset);
    }
    if let Some(ms) = request.wait_ms {
        // Bounded: a query in flight holds up the endpoint's shutdown.
        options.wait = std::time::Duration::from_millis(ms.min(MAX_WAIT_MS));
    }
    if let Some(ms) = request.time_limit_ms {
        options.time_limit = std::time::Duration::from_millis(ms.min(MAX_WAIT_MS));
    }
    let answer = match queries.sql_async_with(&request.sql, &options).await {
        Ok(a) => a,
        Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (body, content_type) = match encode(&answer, accept) {
        Ok(encoded) => encoded,
        Err(e) => return failed(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let position: Vec<(String, i32, i64)> = answer
        .position
        .iter()
        .map(|((t, p), o)| (t.clone(), *p, *o))
        .collect();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&serde_json::to_string(&position).unwrap_or_default()) {
        headers.insert(POSITION_HEADER, v);
    }
    response
}

/// Prometheus' scrape: every metric of the process (`crate::metrics`).
async fn metrics() -> Response {
    match crate::metrics::render_metrics() {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::METRICS_CONTENT_TYPE),
            );
            response
        }
        Err(e) => failed(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Every store with the partitions held here and its columns as SQL reads them.
async fn stores(State(queries): State<StateQueries>) -> Response {
    let mut listed = Vec::new();
    for store in queries.stores() {
        let schema = match queries.schema_async(&store.name).await {
            Ok(schema) => schema,
            Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, &e),
        };
        let columns: Vec<serde_json::Value> = schema
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect();
        let kind = match store.kind {
            eddy_state::StoreKind::KeyValue => "key-value",
            eddy_state::StoreKind::Window { .. } => "window",
            eddy_state::StoreKind::Session { .. } => "session",
        };
        listed.push(serde_json::json!({
            "name": store.name,
            "kind": kind,
            "partitions": store.partitions,
            "columns": columns,
        }));
    }
    Json(listed).into_response()
}

/// The web console (`crate::console`).
async fn console_page() -> Response {
    axum::response::Html(crate::console::PAGE).into_response()
}

async fn console_status(State(queries): State<StateQueries>) -> Response {
    Json(queries.console_status()).into_response()
}

/// Another instance asks for a partition held here (see `remote.rs`).
async fn partition(State(queries): State<StateQueries>, body: axum::body::Bytes) -> Response {
    let request: PartitionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = e.to_string();
            return error_response(
                StatusCode::BAD_REQUEST,
                SqlState::InvalidParameterValue,
                message,
            );
        }
    };
    let Some(source) = queries.source(&request.store) else {
        let message = format!("no store `{}` here", request.store);
        return error_response(StatusCode::BAD_REQUEST, SqlState::UndefinedTable, message);
    };
    // The asker's columns: rows are written for them only.
    let planned = match &request.schema {
        None => None,
        Some(ipc) => match remote::decode_batches(ipc) {
            Ok((schema, _)) => Some(schema),
            Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
        },
    };
    let value_json = planned
        .as_ref()
        .is_none_or(|s| wants_value_json(s, request.projection.as_ref()));
    // A few point lookups read in place: a hand-off to the blocking pool and back costs two
    // thread wake-ups, more than the reads, and on a busy machine each wake-up can wait.
    // Scans and ranges block for longer: off the endpoint's few runtime threads.
    // (In a key-value store only: a key of a window or session store may hold many rows.)
    let few_points = matches!(source.spec.kind, eddy_state::StoreKind::KeyValue)
        && matches!(&request.keys, KeyPredicate::Points(p) if p.len() <= INLINE_POINTS);
    let read_partition = {
        let (source, request) = (source.clone(), request.clone());
        move || {
            source.read_capped(
                request.partition,
                &request.keys,
                request.window,
                request.limit,
                value_json,
            )
        }
    };
    let read = if few_points {
        read_partition()
    } else {
        tokio::task::spawn_blocking(read_partition)
            .await
            .unwrap_or_else(|e| Err(EngineError::Query(format!("reading the partition: {e}"))))
    };
    let read = match read {
        Ok(Some(read)) => read,
        Ok(None) => {
            let message = format!("partition {} is not held here", request.partition);
            return error_response(StatusCode::CONFLICT, SqlState::NotAvailable, message);
        }
        Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
    };
    if !source.reached(&read.position, &request.min_position) {
        let message = format!(
            "partition {} is at {:?}, below the position asked for",
            request.partition, read.position
        );
        return error_response(StatusCode::CONFLICT, SqlState::NotAvailable, message);
    }
    let encoded = match &planned {
        None => serde_json::to_vec(&read.rows).map_err(|e| EngineError::Query(e.to_string())),
        Some(schema) => to_batch(schema, &read.rows).and_then(|batch| {
            let batch = keep_passing(batch, &request.filters);
            let batch = match &request.projection {
                Some(p) => batch
                    .project(p)
                    .map_err(|e| EngineError::Query(e.to_string()))?,
                None => batch,
            };
            remote::encode_batches(&batch.schema(), &[batch])
        }),
    };
    let body = match encoded {
        Ok(body) => body,
        Err(e) => return failed(StatusCode::BAD_REQUEST, &e),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let position = serde_json::to_string(&read.position).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&position) {
        response.headers_mut().insert(POSITION_HEADER, v);
    }
    response
}

impl StateQueries {
    /// Serves `POST /query` on `listen` (port 0 picks one; see [`QueryServer::local_addr`]).
    pub fn serve_http(&self, listen: SocketAddr) -> Result<QueryServer> {
        let router = Router::new()
            .route("/query", post(query))
            .route("/metrics", axum::routing::get(metrics))
            .route("/stores", axum::routing::get(stores))
            .route("/console/status", axum::routing::get(console_status))
            .route(PARTITION_PATH, post(partition))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                require_token,
            ))
            // The console's page holds no data (it asks `/console/status` with the token).
            .route("/", axum::routing::get(console_page))
            .with_state(self.clone());
        let serving = ServerThread::spawn(
            "eddy-query-http",
            "application.server",
            listen,
            |listener, stopped| async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("query endpoint stopped: {e}");
                }
            },
        )?;
        Ok(QueryServer(serving))
    }
}
