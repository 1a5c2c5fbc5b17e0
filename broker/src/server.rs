//! Connections: size-prefixed frames in, one response per request out. Garbage (bad sizes,
//! unknown API keys, truncated frames) closes that connection with a log line, never the broker.
//! A listener with TLS wraps each connection first; one with SASL authenticates it before any
//! other request (`security.rs`).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::security::{SaslState, SaslStep};
use crate::{api_fetch, api_meta, api_offsets, api_produce, faults, groups, txn, Shared};

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Frames larger than this are garbage, not requests.
const MAX_FRAME: i32 = 100 * 1024 * 1024;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let served = match tls {
                        None => serve(stream, shared, peer).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => serve(stream, shared, peer).await,
                                Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                                Err(_) => Err("TLS handshake timed out".into()),
                            }
                        }
                    };
                    if let Err(reason) = served {
                        tracing::debug!(%peer, "connection closed: {reason}");
                    }
                });
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: Arc<Shared>,
    peer: std::net::SocketAddr,
) -> Result<(), String> {
    let mut sasl = SaslState::new(&shared.config.sasl_plain_users);
    let mut epoch = shared.faults.connection_epoch.subscribe();
    epoch.borrow_and_update();
    loop {
        let size = tokio::select! {
            read = stream.read_i32() => match read {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.to_string()),
            },
            _ = epoch.changed() => return Err("connections dropped by fault injection".into()),
        };
        if !(4..=MAX_FRAME).contains(&size) {
            tracing::warn!("closing connection: frame size {size} is not a request");
            return Err(format!("bad frame size {size}"));
        }
        let mut frame = vec![0u8; size as usize];
        stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| format!("truncated frame: {e}"))?;
        let mut body = Bytes::from(frame);
        let (header, request) = match decode(&mut body) {
            Ok(r) => r,
            Err(reason) => {
                tracing::warn!("closing connection: {reason}");
                return Err(reason);
            }
        };
        let api_key =
            ApiKey::try_from(header.request_api_key).map_err(|_| "unknown api key".to_string())?;
        let step = match &request {
            RequestKind::SaslHandshake(r) => Some(match sasl.handshake(r) {
                SaslStep::Answer(r) => (ResponseKind::SaslHandshake(r), false),
                SaslStep::AnswerAndClose(r) => (ResponseKind::SaslHandshake(r), true),
            }),
            RequestKind::SaslAuthenticate(r) => Some(
                match sasl.authenticate(r, &shared.config.sasl_plain_users) {
                    SaslStep::Answer(r) => (ResponseKind::SaslAuthenticate(r), false),
                    SaslStep::AnswerAndClose(r) => (ResponseKind::SaslAuthenticate(r), true),
                },
            ),
            RequestKind::ApiVersions(_) => None,
            _ if !sasl.allows_requests() => {
                return Err(format!(
                    "unexpected {api_key:?} request before SASL authentication"
                ));
            }
            _ => None,
        };
        if let Some((response, close)) = step {
            write_response(&mut stream, &header, api_key, &response).await?;
            if close {
                return Err("SASL authentication failed".into());
            }
            continue;
        }
        shared.faults.wait_unpaused().await;
        let (delay, error) = shared.faults.take(api_key);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut request = request;
        let rejected = match &mut request {
            RequestKind::Produce(r) => shared.faults.reject_produce(r),
            _ => Vec::new(),
        };
        let Some(mut response) = handle(&shared, &header, request, peer).await else {
            continue; // acks=0 produce: no response
        };
        if let ResponseKind::Produce(r) = &mut response {
            r.responses.extend(rejected);
        }
        if let Some(code) = error {
            faults::inject_error(&mut response, code);
        }
        if epoch.has_changed().unwrap_or(true) {
            return Err("connections dropped by fault injection".into());
        }
        write_response(&mut stream, &header, api_key, &response).await?;
    }
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    header: &RequestHeader,
    api_key: ApiKey,
    response: &ResponseKind,
) -> Result<(), String> {
    let version = header.request_api_version;
    {
        let mut out = BytesMut::new();
        out.put_i32(0);
        let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
        response_header
            .encode(&mut out, api_key.response_header_version(version))
            .map_err(|e| e.to_string())?;
        response
            .encode(&mut out, version)
            .map_err(|e| format!("encoding {api_key:?} v{version}: {e}"))?;
        let len = (out.len() - 4) as i32;
        out[0..4].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        // A TLS stream holds what it was given until flushed.
        stream.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn decode(body: &mut Bytes) -> Result<(RequestHeader, RequestKind), String> {
    if body.remaining() < 4 {
        return Err("frame shorter than a request header".into());
    }
    let header =
        decode_request_header_from_buffer(body).map_err(|e| format!("bad request header: {e}"))?;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|_| format!("unknown api key {}", header.request_api_key))?;
    let version = header.request_api_version;
    if !api_meta::supported(api_key, version) {
        // ApiVersions is answered at v0 with UNSUPPORTED_VERSION by the handler; others are refused.
        if api_key != ApiKey::ApiVersions {
            return Err(format!("{api_key:?} v{version} is not supported"));
        }
    }
    let request = if api_key == ApiKey::ApiVersions && !api_meta::supported(api_key, version) {
        RequestKind::ApiVersions(Default::default())
    } else {
        // A panic in a decoder must not take the broker down.
        let mut copy = body.clone();
        std::panic::catch_unwind(move || RequestKind::decode(api_key, &mut copy, version))
            .map_err(|_| format!("{api_key:?} v{version} body made the decoder panic"))?
            .map_err(|e| format!("bad {api_key:?} v{version} body: {e}"))?
    };
    Ok((header, request))
}

async fn handle(
    shared: &Arc<Shared>,
    header: &RequestHeader,
    request: RequestKind,
    peer: std::net::SocketAddr,
) -> Option<ResponseKind> {
    let version = header.request_api_version;
    Some(match request {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_meta::api_versions(&r, version))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(api_meta::metadata(shared, r, version)),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(api_meta::create_topics(shared, r))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(api_meta::delete_topics(shared, r))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(api_meta::describe_configs(shared, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(api_meta::find_coordinator(shared, r, version))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(txn::init_producer_id(shared, r))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(shared, r))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(shared, r))
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(shared, r))
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(shared, r)),
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let response = api_produce::produce(shared, r);
            if acks == 0 {
                return None;
            }
            ResponseKind::Produce(response)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(api_fetch::fetch(shared, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(api_fetch::list_offsets(shared, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(api_fetch::delete_records(shared, r))
        }
        RequestKind::JoinGroup(r) => {
            let client = groups::Client {
                id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                // Kafka reports the address as Java prints it.
                host: format!("/{}", peer.ip()),
            };
            ResponseKind::JoinGroup(groups::join_group(shared, r, client).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(shared, r))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(shared, r)),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync_group(shared, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(shared, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(shared, r)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(api_offsets::offset_commit(shared, r))
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(api_offsets::offset_fetch(shared, r))
        }
        other => {
            tracing::warn!("no handler for {:?}", std::mem::discriminant(&other));
            return None;
        }
    })
}
