//! Reading a store partition that another instance holds, over HTTP:
//!
//! 1. The asker sends `POST /internal/partition` to an owner from the directory with the
//!    store, the partition, the keys wanted (if any), a row limit, the minimum position, the
//!    filters it ships (`sql/shipped_filter.rs`), and the table's schema and projection as it
//!    planned them.
//! 2. The owner reads the partition as of one commit and answers its rows as an Arrow IPC
//!    stream in that schema (or, when no schema was sent, as JSON rows for a schema sample),
//!    with the position in the `eddy-position` header.
//! 3. `409` means "not here" (the partition moved, is restoring, or is behind the minimum
//!    position): the asker tries the next owner, then asks the directory again, until its
//!    deadline; any other failure fails the query.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::query::SqlState;

/// The path owners answer on.
pub(crate) const PARTITION_PATH: &str = "/internal/partition";
/// The header that carries a partition's position (`{topic: next offset}`).
pub(crate) const POSITION_HEADER: &str = "eddy-position";

/// One partition asked of its owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartitionRequest {
    pub store: String,
    pub partition: i32,
    /// The keys wanted.
    pub keys: crate::query::sql::KeyPredicate,
    /// The window starts wanted (both ends inclusive).
    pub window: (i64, i64),
    /// Filters to apply before answering, as SQL over the asker's schema (`shipped_filter.rs`).
    #[serde(default)]
    pub filters: Vec<String>,
    pub limit: Option<usize>,
    /// The asker's table schema (an Arrow IPC stream without batches); `None`: JSON rows.
    pub schema: Option<Vec<u8>>,
    pub projection: Option<Vec<usize>>,
    /// Input topic → the offset the partition's state must have reached.
    pub min_position: BTreeMap<String, i64>,
}

/// Why an owner did not answer.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// Not there (moved, restoring, unreachable, behind): ask elsewhere or again.
    Retry(String),
    /// The query itself failed there.
    Fail(EngineError),
}

/// What an owner answered.
pub(crate) enum PartitionAnswer {
    Batch(RecordBatch),
    Rows(Vec<Value>),
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default()
    })
}

fn arrow_error(e: datafusion::arrow::error::ArrowError) -> EngineError {
    EngineError::Query(format!("encoding Arrow IPC: {e}"))
}

/// `schema` as an Arrow IPC stream without batches.
pub(crate) fn encode_schema(schema: &SchemaRef) -> Result<Vec<u8>> {
    encode_batches(schema, &[])
}

/// `batches` as an Arrow IPC stream.
pub(crate) fn encode_batches(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(arrow_error)?;
    for batch in batches {
        writer.write(batch).map_err(arrow_error)?;
    }
    writer.finish().map_err(arrow_error)?;
    writer.into_inner().map_err(arrow_error)
}

/// The schema and batches of an Arrow IPC stream.
pub(crate) fn decode_batches(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(arrow_error)?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow_error)?;
    Ok((schema, batches))
}

/// Asks `server` for one partition.
pub(crate) async fn fetch(
    server: &str,
    request: &PartitionRequest,
    token: Option<&str>,
) -> std::result::Result<(PartitionAnswer, BTreeMap<String, i64>), RemoteError> {
    let url = format!("http://{server}{PARTITION_PATH}");
    let mut post = client().post(&url);
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    let response = post
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(request)
                .map_err(|e| RemoteError::Fail(EngineError::Query(e.to_string())))?,
        )
        .send()
        .await
        .map_err(|e| RemoteError::Retry(format!("{server} unreachable: {e}")))?;
    let status = response.status();
    let position: Option<BTreeMap<String, i64>> = response
        .headers()
        .get(POSITION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok());
    let body = response
        .bytes()
        .await
        .map_err(|e| RemoteError::Retry(format!("{server} stopped answering: {e}")))?;
    let error: Option<Value> = serde_json::from_slice(&body).ok();
    let message = || {
        error
            .as_ref()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
    };
    let position = match status.as_u16() {
        // Rows without the commit they reflect would drop out of the answer's position.
        200 => position.ok_or_else(|| {
            RemoteError::Retry(format!(
                "{server} answered partition {} without its position",
                request.partition
            ))
        })?,
        409 => return Err(RemoteError::Retry(format!("{server}: {}", message()))),
        _ => {
            // The owner's SQLSTATE (a scan past its cap there is one here too).
            let sqlstate = error
                .as_ref()
                .and_then(|v| v.get("sqlstate").and_then(Value::as_str))
                .and_then(SqlState::from_code)
                .unwrap_or(SqlState::Internal);
            // An owner that is failing or restarting (5xx), or that does not have the
            // partition ready: ask the next owner, or again.
            if status.is_server_error() || sqlstate == SqlState::NotAvailable {
                return Err(RemoteError::Retry(format!("{server}: {}", message())));
            }
            return Err(RemoteError::Fail(EngineError::Sql {
                sqlstate,
                message: format!(
                    "{server} could not read partition {} of `{}`: {}",
                    request.partition,
                    request.store,
                    message()
                ),
            }));
        }
    };
    let answer = if request.schema.is_some() {
        // Decoded once; an owner writes one batch, so nothing is copied then.
        let (schema, mut batches) = decode_batches(&body).map_err(RemoteError::Fail)?;
        let batch = match batches.len() {
            1 => batches.remove(0),
            _ => datafusion::arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| RemoteError::Fail(arrow_error(e)))?,
        };
        PartitionAnswer::Batch(batch)
    } else {
        PartitionAnswer::Rows(
            serde_json::from_slice(&body)
                .map_err(|e| RemoteError::Fail(EngineError::Query(format!("{server}: {e}"))))?,
        )
    };
    Ok((answer, position))
}

/// Whether `position` (a partition's input topic → next offset) has reached `bound` on every
/// topic of `inputs` it names; a topic the partition has not committed yet has not.
pub(crate) fn reached(
    position: &BTreeMap<String, i64>,
    bound: &BTreeMap<String, i64>,
    inputs: &[String],
) -> bool {
    bound
        .iter()
        .filter(|(topic, _)| inputs.contains(topic))
        .all(|(topic, want)| position.get(topic).is_some_and(|have| have >= want))
}
