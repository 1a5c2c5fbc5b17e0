//! The HTTP query endpoint (axum), one per instance that asks for it:
//!
//! 1. `POST /query` with the body `{"sql": "SELECT …"}` runs the query over this instance's
//!    state ([`StateQueries::sql_async`]).
//! 2. The rows come back as a JSON array of objects, or as NDJSON (`Accept:
//!    application/x-ndjson`) or an Arrow IPC stream (`Accept:
//!    application/vnd.apache.arrow.stream`); the header `eddy-position` holds the position the
//!    rows reflect, as a JSON array of `[topic, partition, offset]`.
//! 3. A query that cannot be answered gets `400` with `{"error": "…"}`; the server and the
//!    application go on.
//! 4. Dropping the [`QueryServer`] (or [`QueryServer::close`]) stops it after the queries in
//!    flight.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::query::{SqlAnswer, StateQueries};

const NDJSON: &str = "application/x-ndjson";
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
}

/// A running HTTP query endpoint.
#[derive(Debug)]
pub struct QueryServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl QueryServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops after the queries in flight.
    pub fn close(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for QueryServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn encode(answer: &SqlAnswer, accept: &str) -> Result<(Vec<u8>, &'static str)> {
    let fail = |e: datafusion::arrow::error::ArrowError| EngineError::Query(e.to_string());
    if accept.contains(ARROW_STREAM) {
        let mut writer =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &answer.schema)
                .map_err(fail)?;
        for batch in &answer.batches {
            writer.write(batch).map_err(fail)?;
        }
        writer.finish().map_err(fail)?;
        return Ok((writer.into_inner().map_err(fail)?, ARROW_STREAM));
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

async fn query(
    State(queries): State<StateQueries>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: QueryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("the body must be {{\"sql\": \"…\"}}: {e}");
            return error_response(StatusCode::BAD_REQUEST, message);
        }
    };
    let answer = match queries.sql_async(&request.sql).await {
        Ok(a) => a,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (body, content_type) = match encode(&answer, accept) {
        Ok(encoded) => encoded,
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
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
        headers.insert("eddy-position", v);
    }
    response
}

impl StateQueries {
    /// Serves `POST /query` on `listen` (port 0 picks one; see [`QueryServer::local_addr`]).
    pub fn serve_http(&self, listen: SocketAddr) -> Result<QueryServer> {
        let config_error = |reason: String| EngineError::Config {
            key: "application.server".into(),
            reason,
        };
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| config_error(format!("cannot listen on {listen}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| config_error(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| config_error(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new()
            .route("/query", post(query))
            .with_state(self.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-query-http")
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the query runtime: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("eddy-query-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("query endpoint: {e}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("query endpoint stopped: {e}");
                    }
                });
            })
            .map_err(|e| config_error(e.to_string()))?;
        Ok(QueryServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}
