//! The one place that touches transactions and offsets (Kafka Streams' `StreamsProducer`): a
//! stream thread's producer sends the records of all its tasks, and commits them together with
//! the consumed offsets — in one transaction under `exactly_once_v2` (EOS-v2:
//! `send_offsets_to_transaction` with the consumer's group metadata), or by flushing and then
//! committing offsets under `at_least_once`.
//!
//! Transactional calls follow librdkafka's rules: a retriable error repeats the same call, an
//! abortable one aborts the transaction, anything else makes the producer unusable (the thread
//! replaces it, and the new producer's `init_transactions` fences the old one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::ProcessingGuarantee;
use crate::error::{EngineError, Result};
use crate::runtime::clients::KafkaClients;
use crate::task::collector::{ChangelogRecord, DeadLetter, ProducedRecord};

/// What a failed commit means for the thread, with the client error behind it when there is one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// The transaction was aborted: drop uncommitted state and rewind to the committed offsets.
    #[error("aborted: {what}")]
    Aborted {
        what: String,
        #[source]
        source: Option<KafkaError>,
    },
    /// The producer is fenced or broken: close the tasks, make a new producer, rejoin.
    #[error("fatal: {what}")]
    Fatal {
        what: String,
        #[source]
        source: Option<KafkaError>,
    },
}

impl CommitError {
    pub fn aborted(what: impl Into<String>) -> Self {
        CommitError::Aborted {
            what: what.into(),
            source: None,
        }
    }

    pub fn fatal(what: impl Into<String>) -> Self {
        CommitError::Fatal {
            what: what.into(),
            source: None,
        }
    }

    /// Whether the producer is unusable (it must be replaced).
    pub fn is_fatal(&self) -> bool {
        matches!(self, CommitError::Fatal { .. })
    }
}

impl From<CommitError> for EngineError {
    /// A failed commit rewinds the thread; the client error stays the source.
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Aborted { what, source } | CommitError::Fatal { what, source } => {
                match source {
                    Some(source) => EngineError::kafka(what, source),
                    None => EngineError::TaskMigrated(what),
                }
            }
        }
    }
}

/// Where the thread got to in one input partition: the next offset to read, and the stream time
/// of the task reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputPosition {
    pub offset: i64,
    pub stream_time: Option<i64>,
}

/// The stream time goes with the committed offset as its metadata (Kafka Streams commits its
/// partition time the same way), so that a task that moves to a worker without its local
/// checkpoint still drops the records that are late for it.
const STREAM_TIME_METADATA: &str = "eddy.stream.time=";

fn stream_time_metadata(stream_time: i64) -> String {
    format!("{STREAM_TIME_METADATA}{stream_time}")
}

/// The offsets committed for `partitions`, with the stream times Eddy commits beside them;
/// `None` when they could not be read.
pub(crate) fn committed_inputs<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &TopicPartitionList,
) -> Option<BTreeMap<(String, i32), CommittedInput>> {
    let committed = match consumer.committed_offsets(partitions.clone(), TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("reading committed offsets and stream times: {e}");
            return None;
        }
    };
    let committed = committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let stream_time = e
                .metadata()
                .strip_prefix(STREAM_TIME_METADATA)
                .and_then(|t| t.parse().ok());
            let input = CommittedInput {
                offset,
                stream_time,
            };
            ((e.topic().to_string(), e.partition()), input)
        })
        .collect();
    Some(committed)
}

/// What is committed for an input partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommittedInput {
    /// The next offset to read; `None` when nothing is committed.
    pub offset: Option<i64>,
    /// The task's stream time when it was committed.
    pub stream_time: Option<i64>,
}

/// The next offset of each changelog partition written by a commit: `(topic, partition)` →
/// one past the newest record delivered. Tasks checkpoint their state with it.
pub(crate) type ChangelogOffsets = BTreeMap<(String, i32), i64>;

/// A record the broker refused for good in a delivery report (its batch was too large, say):
/// every record of the refused batch gets one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefusedDelivery {
    pub topic: String,
    /// [`fingerprint`] of the record.
    pub fingerprint: u64,
    /// Key and value bytes.
    pub bytes: usize,
    pub code: RDKafkaErrorCode,
}

/// At most this many refused deliveries are kept between two aborts (the rest are counted as
/// undelivered only): enough to tell every record of many refused batches.
const MAX_REFUSED_KEPT: usize = 100_000;

/// What identifies an output when its transaction is redone (a topology redoes the same
/// outputs from the same inputs): all of it as the task produced it — topic, the partition it
/// asked for (not the partitioner's), key, value, timestamp and headers. It travels with the
/// record as its delivery opaque, so a delivery report names the record exactly as it was sent.
pub(crate) fn fingerprint(r: &ProducedRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same record hashes the same in every round.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &r.topic,
        r.partition,
        &r.key,
        &r.value,
        r.timestamp,
        &r.headers.0,
    )
        .hash(&mut h);
    // What fits the delivery opaque (a `usize`), so both sides agree on every target.
    h.finish() as usize as u64
}

/// The delivery opaque of records the ledger of refused outputs never asks about (changelog
/// records, dead letters).
const NO_FINGERPRINT: usize = 0;

/// One record for [`StreamsProducer::send_raw`].
struct Outgoing<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: i64,
    headers: Option<OwnedHeaders>,
    fingerprint: usize,
}

/// Counts delivery failures, any of which stops the commit, remembers the records refused for
/// good, and remembers the newest offset delivered to each changelog partition since the last
/// commit or abort.
pub(crate) struct DeliveryTracker {
    /// The application's changelog topics, whose delivered offsets become checkpoints.
    changelogs: Arc<BTreeSet<String>>,
    /// Records not delivered since the last abort (a failure always ends in one). An abort
    /// purges every record still queued, so they are counted and logged once, not a line each.
    undelivered: Arc<AtomicU64>,
    refused: Arc<parking_lot::Mutex<Vec<RefusedDelivery>>>,
    changelog_offsets: Arc<parking_lot::Mutex<ChangelogOffsets>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    /// The record's [`fingerprint`].
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, fingerprint: usize) {
        match result {
            Ok(m) if self.changelogs.contains(m.topic()) => {
                let next = m.offset() + 1;
                let mut offsets = self.changelog_offsets.lock();
                let entry = offsets
                    .entry((m.topic().to_string(), m.partition()))
                    .or_insert(next);
                *entry = (*entry).max(next);
            }
            Ok(_) => {}
            Err((e, record)) => {
                let before = self.undelivered.fetch_add(1, Ordering::SeqCst);
                let purged = matches!(
                    e,
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                    )
                );
                if let KafkaError::MessageProduction(code) = e {
                    let mut refused = self.refused.lock();
                    if (refused_for_good(*code) || unauthorized(*code))
                        && refused.len() < MAX_REFUSED_KEPT
                    {
                        refused.push(RefusedDelivery {
                            topic: record.topic().to_string(),
                            fingerprint: fingerprint as u64,
                            bytes: record.key().map_or(0, <[u8]>::len)
                                + record.payload().map_or(0, <[u8]>::len),
                            code: *code,
                        });
                    }
                }
                // The first real failure says why; purges follow an abort, which is logged.
                if before == 0 && !purged {
                    tracing::warn!(topic = record.topic(), "delivery failed: {e}");
                }
            }
        }
    }
}

/// A stream thread's producer.
pub(crate) struct StreamsProducer {
    producer: BaseProducer<DeliveryTracker>,
    undelivered: Arc<AtomicU64>,
    refused: Arc<parking_lot::Mutex<Vec<RefusedDelivery>>>,
    changelog_offsets: Arc<parking_lot::Mutex<ChangelogOffsets>>,
    guarantee: ProcessingGuarantee,
    in_transaction: bool,
}

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long an abort may take before the producer is replaced instead.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

fn fatal(what: &str, e: KafkaError) -> CommitError {
    CommitError::Fatal {
        what: what.to_string(),
        source: Some(e),
    }
}

/// Classifies a transactional error that retrying did not cure: abortable, or fatal (fenced,
/// broken).
fn classify(what: &str, e: KafkaError) -> CommitError {
    match &e {
        KafkaError::Transaction(t) if t.txn_requires_abort() => CommitError::Aborted {
            what: what.to_string(),
            source: Some(e),
        },
        _ => fatal(what, e),
    }
}

/// The code of a send that the producer refused for good, if `e` is one.
pub(crate) fn refused(e: &CommitError) -> Option<RDKafkaErrorCode> {
    match e {
        CommitError::Fatal {
            source: Some(KafkaError::MessageProduction(code)),
            ..
        } if refused_for_good(*code) => Some(*code),
        _ => None,
    }
}

/// Errors of `send` that refuse one record for what it is, whatever is retried: the
/// production exception handler's to decide.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::UnknownPartition
    )
}

/// Delivery errors that refuse every record of a topic, not one record for what it is: the
/// application's principal may not write there. Redoing never passes and no handler may skip
/// them (the record is not at fault), so they stop the thread, as Kafka Streams treats an
/// authorization error as fatal.
pub(crate) fn unauthorized(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

/// How long a transactional call is repeated while librdkafka calls its error retriable.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Runs a transactional call, repeating it while its error is retriable — librdkafka requires
/// the same call to be resumed, not a different one (an abort) — up to [`RETRY_FOR`].
fn retrying<T>(what: &str, mut call: impl FnMut() -> KafkaResult<T>) -> Result<T, CommitError> {
    let until = std::time::Instant::now() + RETRY_FOR;
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(KafkaError::Transaction(t))
                if t.is_retriable() && !t.txn_requires_abort() && !t.is_fatal() =>
            {
                if std::time::Instant::now() >= until {
                    return Err(CommitError::Fatal {
                        what: format!("{what}: still retriable after {RETRY_FOR:?}"),
                        source: Some(KafkaError::Transaction(t)),
                    });
                }
                tracing::debug!("{what}: retriable error, calling again: {t}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(classify(what, e)),
        }
    }
}

impl StreamsProducer {
    /// A producer for thread `thread` of the application; transactional under EOS, with the
    /// `transactional.id` `<application.id>-<process id>-<thread>`. EOS-v2 fences zombies through
    /// the consumer group generation; the process id is kept in the state directory, so an
    /// instance restarted after a crash takes over its transactional ids and its
    /// `init_transactions` aborts the transactions the dead one left open at once (another
    /// instance's are aborted by `transaction.timeout.ms`, 10 s by default as in Kafka Streams).
    /// A replacement producer of the same thread does the same to its predecessor's.
    pub fn new(
        clients: &KafkaClients,
        process_id: &str,
        thread: usize,
        guarantee: ProcessingGuarantee,
        changelogs: Arc<BTreeSet<String>>,
    ) -> Result<Self> {
        let tracker = DeliveryTracker {
            changelogs,
            undelivered: Arc::default(),
            refused: Arc::default(),
            changelog_offsets: Arc::default(),
        };
        let undelivered = Arc::clone(&tracker.undelivered);
        let refused = Arc::clone(&tracker.refused);
        let changelog_offsets = Arc::clone(&tracker.changelog_offsets);
        let producer: BaseProducer<DeliveryTracker> = clients
            .producer_config(process_id, thread)
            .create_with_context(tracker)
            .map_err(|e| EngineError::Config {
                key: "bootstrap.servers".into(),
                reason: e.to_string(),
            })?;
        if guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            retrying("init_transactions", || producer.init_transactions(TIMEOUT))?;
        }
        Ok(Self {
            producer,
            undelivered,
            refused,
            changelog_offsets,
            guarantee,
            in_transaction: false,
        })
    }

    fn begin_if_needed(&mut self) -> std::result::Result<(), CommitError> {
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|e| fatal("begin_transaction", e))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn send_raw(&mut self, out: Outgoing<'_>) -> std::result::Result<(), CommitError> {
        self.begin_if_needed()?;
        loop {
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(out.topic, out.fingerprint);
            if let Some(k) = out.key {
                record = record.key(k);
            }
            if let Some(v) = out.value {
                record = record.payload(v);
            }
            if let Some(p) = out.partition {
                record = record.partition(p);
            }
            if out.timestamp >= 0 {
                record = record.timestamp(out.timestamp);
            }
            if let Some(h) = &out.headers {
                record = record.headers(h.clone());
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(classify("send", e)),
            }
        }
    }

    /// Sends a record of a sink or repartition topic; `Ok(Some(code))` if the producer refuses
    /// this record for good (too large, say) and sent nothing, so that the transaction is
    /// intact and the production exception handler decides.
    pub fn send(
        &mut self,
        r: &ProducedRecord,
    ) -> std::result::Result<Option<RDKafkaErrorCode>, CommitError> {
        let headers = (!r.headers.is_empty()).then(|| {
            r.headers.0.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                })
            })
        });
        match self.send_raw(Outgoing {
            topic: &r.topic,
            partition: r.partition,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp,
            headers,
            fingerprint: fingerprint(r) as usize,
        }) {
            Ok(()) => Ok(None),
            // Only while nothing failed before it: a producer whose transaction a refused
            // delivery doomed may answer every later send with an error too.
            Err(CommitError::Fatal {
                source: Some(KafkaError::MessageProduction(code)),
                ..
            }) if refused_for_good(code) && self.undelivered.load(Ordering::SeqCst) == 0 => {
                Ok(Some(code))
            }
            Err(e) => Err(e),
        }
    }

    /// Acknowledges every record sent so far, before an output is sent alone
    /// ([`StreamsProducer::send_alone`]).
    pub fn flush_before_alone(&mut self) -> std::result::Result<(), CommitError> {
        self.await_deliveries(TIMEOUT)
            .map_err(|e| CommitError::aborted(format!("flush before an output sent alone: {e}")))
    }

    /// [`StreamsProducer::send`] of a record suspected of a refusal, alone: after
    /// [`StreamsProducer::flush_before_alone`] acknowledged the records sent before it, it is
    /// sent and acknowledged, so that a delivery report that refuses it names it and no other.
    /// A refusal at delivery is an abortable error, and the refused record is among
    /// [`StreamsProducer::take_refused`].
    pub fn send_alone(
        &mut self,
        r: &ProducedRecord,
    ) -> std::result::Result<Option<RDKafkaErrorCode>, CommitError> {
        if let Some(code) = self.send(r)? {
            return Ok(Some(code));
        }
        self.await_deliveries(TIMEOUT).map_err(|e| {
            CommitError::aborted(format!("an output to `{}` sent alone: {e}", r.topic))
        })?;
        Ok(None)
    }

    /// The records refused for good at delivery since the last call.
    pub fn take_refused(&self) -> Vec<RefusedDelivery> {
        std::mem::take(&mut *self.refused.lock())
    }

    /// Sends a store change to `topic`, its store's changelog, at the task's partition, with
    /// the timestamp of the record that made it.
    pub fn send_changelog(
        &mut self,
        topic: &str,
        r: &ChangelogRecord,
        partition: i32,
    ) -> std::result::Result<(), CommitError> {
        self.send_raw(Outgoing {
            topic,
            partition: Some(partition),
            key: Some(&r.key),
            value: r.value.as_deref(),
            timestamp: r.timestamp,
            headers: None,
            fingerprint: NO_FINGERPRINT,
        })
    }

    /// Sends a bad record to the dead-letter topic with its provenance in headers.
    pub fn send_dead_letter(&mut self, d: &DeadLetter) -> std::result::Result<(), CommitError> {
        let failed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as i64)
            .to_string();
        let (partition, offset, timestamp) = (
            d.partition.to_string(),
            d.offset.to_string(),
            d.timestamp.to_string(),
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(d.error.as_bytes()),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(d.topic.as_bytes()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_bytes()),
            })
            .insert(Header {
                key: "source.timestamp",
                value: Some(timestamp.as_bytes()),
            })
            .insert(Header {
                key: "failed.at",
                value: Some(failed_at.as_bytes()),
            });
        self.send_raw(Outgoing {
            topic: super::DLQ_TOPIC,
            partition: None,
            key: d.key.as_deref(),
            value: d.value.as_deref(),
            timestamp: d.timestamp,
            headers: Some(headers),
            fingerprint: NO_FINGERPRINT,
        })
    }

    /// Commits what was sent together with `positions` (the next offset to read per input
    /// partition, with its stream time as metadata). Returns where the committed changelog writes ended, for the tasks'
    /// checkpoints.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        positions: &BTreeMap<(String, i32), InputPosition>,
    ) -> std::result::Result<ChangelogOffsets, CommitError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), position) in positions {
            let mut element = tpl.add_partition(topic, *partition);
            let _ = element.set_offset(Offset::Offset(position.offset));
            if let Some(t) = position.stream_time {
                element.set_metadata(stream_time_metadata(t));
            }
        }
        match self.guarantee {
            ProcessingGuarantee::ExactlyOnceV2 => {
                self.begin_if_needed()?;
                let started = std::time::Instant::now();
                // Records first, then offsets (as Kafka Streams flushes before committing): a
                // transaction whose offset commit is refused has all its records in the log,
                // and a failed delivery aborts it before its offsets are sent.
                self.await_deliveries(TIMEOUT)
                    .map_err(|e| CommitError::aborted(format!("flush: {e}")))?;
                let flushed_at = started.elapsed();
                if tpl.count() > 0 {
                    let metadata = consumer
                        .group_metadata()
                        .ok_or_else(|| CommitError::fatal("no group metadata"))?;
                    retrying("send_offsets_to_transaction", || {
                        self.producer
                            .send_offsets_to_transaction(&tpl, &metadata, TIMEOUT)
                    })?;
                }
                let offsets_at = started.elapsed();
                retrying("commit_transaction", || {
                    self.producer.commit_transaction(TIMEOUT)
                })?;
                if started.elapsed() > Duration::from_secs(1) {
                    tracing::warn!(?flushed_at, ?offsets_at, total = ?started.elapsed(), "slow transaction commit");
                }
                self.in_transaction = false;
            }
            ProcessingGuarantee::AtLeastOnce => {
                self.await_deliveries(TIMEOUT)
                    .map_err(|e| CommitError::aborted(format!("flush: {e}")))?;
                if tpl.count() > 0 {
                    consumer.commit(&tpl, CommitMode::Sync).map_err(|source| {
                        CommitError::Aborted {
                            what: "commit".into(),
                            source: Some(source),
                        }
                    })?;
                }
            }
        }
        // Every delivery report of the committed records was served by the flush above.
        Ok(std::mem::take(&mut *self.changelog_offsets.lock()))
    }

    /// Aborts the open transaction (a no-op under at-least-once).
    /// Whether a transaction is open now (exactly-once only).
    pub fn in_transaction(&self) -> bool {
        self.guarantee == ProcessingGuarantee::ExactlyOnceV2 && self.in_transaction
    }

    pub fn abort(&mut self) -> std::result::Result<(), CommitError> {
        if self.guarantee == ProcessingGuarantee::ExactlyOnceV2 && self.in_transaction {
            // librdkafka wants outstanding deliveries served before an abort.
            let _ = self.await_deliveries(Duration::from_secs(5));
            self.in_transaction = false;
            // An abort that does not finish in time (librdkafka waits for in-flight requests)
            // is not repeated: the producer is replaced instead, and its successor's
            // init_transactions aborts the transaction on the broker.
            self.producer
                .abort_transaction(ABORT_TIMEOUT)
                .map_err(|e| fatal("abort_transaction", e))?;
            // The purged records' delivery reports are served now, so that none of them fails
            // the next transaction's flush or reaches its checkpoint.
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while self.producer.in_flight_count() > 0 && std::time::Instant::now() < until {
                self.producer.poll(Duration::from_millis(10));
            }
            self.producer.poll(Duration::ZERO);
        }
        let undelivered = self.undelivered.swap(0, Ordering::SeqCst);
        if undelivered > 0 {
            tracing::warn!(
                undelivered,
                "records of the aborted commit were not delivered (they are redone)"
            );
        }
        // Offsets of aborted changelog records must never reach a checkpoint.
        self.changelog_offsets.lock().clear();
        Ok(())
    }

    /// Sends what lingers and serves delivery reports until every record sent is acknowledged.
    /// (`BaseProducer::flush` serves them in 100 ms slices, so every commit took 100 ms.)
    fn await_deliveries(&self, timeout: Duration) -> std::result::Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        // A zero-timeout flush only tells the broker threads to send lingering batches now.
        let _ = self.producer.flush(Duration::ZERO);
        loop {
            // A failed record dooms the commit; waiting for the rest would only delay the abort
            // (a transaction in error sends nothing more).
            if self.undelivered.load(Ordering::SeqCst) > 0 {
                return Err("a record was not delivered".into());
            }
            if self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} records unacknowledged after {timeout:?}",
                    self.producer.in_flight_count()
                ));
            }
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// Serves delivery reports.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two outputs that differ only in timestamp, headers or asked-for partition are two
    /// outputs to the ledger of refused outputs: dead-lettering one must not skip the other.
    #[test]
    fn a_fingerprint_tells_apart_every_part_of_an_output() {
        let base = ProducedRecord {
            topic: "out".into(),
            partition: None,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            timestamp: 1,
            headers: crate::Headers::new(),
        };
        let mut variants = vec![base.clone()];
        variants.push(ProducedRecord {
            timestamp: 2,
            ..base.clone()
        });
        variants.push(ProducedRecord {
            partition: Some(0),
            ..base.clone()
        });
        let mut headers = crate::Headers::new();
        headers.add("h", "1");
        variants.push(ProducedRecord {
            headers,
            ..base.clone()
        });
        variants.push(ProducedRecord {
            value: Some(b"w".to_vec()),
            ..base.clone()
        });
        let prints: BTreeSet<u64> = variants.iter().map(fingerprint).collect();
        assert_eq!(prints.len(), variants.len());
        assert_eq!(fingerprint(&base), fingerprint(&base.clone()), "stable");
    }
}
