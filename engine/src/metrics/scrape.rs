//! The gauges read when Prometheus scrapes: per input partition lag (records, and seconds
//! behind), and RocksDB's figures per store partition. Reading them costs a lock and a RocksDB
//! property per store, so they are not kept current between scrapes.
//!
//! 1. Each application registers a [`ScrapeSource`] at start (weakly held: a closed
//!    application's series disappear).
//! 2. Its stream threads' statistics parsers give each partition's lag in records, about once
//!    a second; a partition seen with none is caught up at that moment.
//! 3. At a scrape, lag in seconds is the wall-clock time since the partition was last caught
//!    up while records wait, 0 when none do. (Not now minus a record's timestamp: timestamps
//!    are event time, which may be far in the past, and a transaction marker that shows as one
//!    record of lag for a report would then read as that far behind.) The RocksDB figures
//!    come from the databases of the tasks open now.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::query::QueryableStores;

/// What a scrape reads of one application.
#[derive(Debug)]
pub(crate) struct ScrapeSource {
    pub application: String,
    pub stores: Weak<QueryableStores>,
    /// Thread → (topic, partition) → records not read yet.
    lag: Mutex<BTreeMap<usize, BTreeMap<(String, i32), i64>>>,
    /// (topic, partition) → when (wall clock, ms) it was last seen with no lag, or first seen.
    caught_up_at: Mutex<BTreeMap<(String, i32), i64>>,
}

impl ScrapeSource {
    /// Registers `application`'s source for every scrape from now on.
    pub fn register(application: &str, stores: &Arc<QueryableStores>) -> Arc<Self> {
        let source = Arc::new(Self {
            application: application.to_string(),
            stores: Arc::downgrade(stores),
            lag: Mutex::new(BTreeMap::new()),
            caught_up_at: Mutex::new(BTreeMap::new()),
        });
        let collector = &*COLLECTOR;
        let mut sources = collector.sources.lock();
        sources.retain(|s| s.strong_count() > 0);
        sources.push(Arc::downgrade(&source));
        source
    }

    /// Thread `thread`'s partitions and their lag now (a partition it no longer fetches is
    /// left out, and disappears).
    pub fn set_lag(&self, thread: usize, lag: BTreeMap<(String, i32), i64>) {
        self.set_lag_at(thread, lag, chrono::Utc::now().timestamp_millis());
    }

    fn set_lag_at(&self, thread: usize, lag: BTreeMap<(String, i32), i64>, now_ms: i64) {
        let mut caught_up = self.caught_up_at.lock();
        for (partition, records) in &lag {
            if *records == 0 {
                caught_up.insert(partition.clone(), now_ms);
            } else {
                caught_up.entry(partition.clone()).or_insert(now_ms);
            }
        }
        let mut all = self.lag.lock();
        all.insert(thread, lag);
        // A partition no thread fetches any more starts afresh when it comes back.
        caught_up.retain(|partition, _| all.values().any(|l| l.contains_key(partition)));
    }

    /// (topic, partition) → (records behind, seconds behind) at `now_ms`.
    pub fn lag_at(&self, now_ms: i64) -> BTreeMap<(String, i32), (i64, f64)> {
        let caught_up = self.caught_up_at.lock();
        self.lag
            .lock()
            .values()
            .flatten()
            .map(|(partition, records)| {
                let seconds = match caught_up.get(partition) {
                    Some(at) if *records > 0 => ((now_ms - at).max(0) as f64) / 1e3,
                    _ => 0.0,
                };
                (partition.clone(), (*records, seconds))
            })
            .collect()
    }
}

struct ScrapeCollector {
    sources: Mutex<Vec<Weak<ScrapeSource>>>,
    descs: Vec<Desc>,
}

const LAG_RECORDS: (&str, &str) = (
    "eddy_consumer_lag_records",
    "Records of an input partition not read yet (read_committed: up to the last stable offset).",
);
const LAG_SECONDS: (&str, &str) = (
    "eddy_consumer_lag_seconds",
    "How long an input partition has had records waiting: wall-clock seconds since it was last caught up; 0 when none wait.",
);
const ROCKSDB: [(&str, &str); 4] = [
    (
        "eddy_rocksdb_estimated_keys",
        "RocksDB's estimate of a store partition's keys.",
    ),
    (
        "eddy_rocksdb_memtable_bytes",
        "Bytes in a store partition's memtables.",
    ),
    (
        "eddy_rocksdb_pending_compaction_bytes",
        "Bytes RocksDB estimates compaction has still to rewrite for a store partition.",
    ),
    (
        "eddy_rocksdb_live_sst_bytes",
        "Bytes of a store partition's live SST files.",
    ),
];
const BLOCK_CACHE: (&str, &str) = (
    "eddy_rocksdb_block_cache_usage_bytes",
    "Bytes held by the block cache an application's stores share (memtables charged to it included).",
);
const PARTITION_LABELS: [&str; 3] = ["application", "topic", "partition"];
const STORE_LABELS: [&str; 3] = ["application", "store", "partition"];

fn int_gauges((name, help): (&str, &str), labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn float_gauges((name, help): (&str, &str), labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl ScrapeCollector {
    fn new() -> Self {
        let mut descs = Vec::new();
        descs.extend(
            int_gauges(LAG_RECORDS, &PARTITION_LABELS)
                .desc()
                .into_iter()
                .cloned(),
        );
        descs.extend(
            float_gauges(LAG_SECONDS, &PARTITION_LABELS)
                .desc()
                .into_iter()
                .cloned(),
        );
        for family in ROCKSDB {
            descs.extend(
                int_gauges(family, &STORE_LABELS)
                    .desc()
                    .into_iter()
                    .cloned(),
            );
        }
        descs.extend(
            int_gauges(BLOCK_CACHE, &["application"])
                .desc()
                .into_iter()
                .cloned(),
        );
        Self {
            sources: Mutex::new(Vec::new()),
            descs,
        }
    }
}

impl Collector for ScrapeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sources: Vec<Arc<ScrapeSource>> = self
            .sources
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let lag_records = int_gauges(LAG_RECORDS, &PARTITION_LABELS);
        let lag_seconds = float_gauges(LAG_SECONDS, &PARTITION_LABELS);
        let rocksdb: Vec<IntGaugeVec> = ROCKSDB
            .iter()
            .map(|f| int_gauges(*f, &STORE_LABELS))
            .collect();
        let block_cache = int_gauges(BLOCK_CACHE, &["application"]);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for source in &sources {
            let app = source.application.as_str();
            for ((topic, partition), (records, seconds)) in source.lag_at(now_ms) {
                let p = partition.to_string();
                let labels = [app, topic.as_str(), p.as_str()];
                lag_records.with_label_values(&labels).set(records);
                lag_seconds.with_label_values(&labels).set(seconds);
            }
            let Some(stores) = source.stores.upgrade() else {
                continue;
            };
            let mut cache_usage = None;
            for (store, partitions) in stores.live() {
                for partition in partitions {
                    let Some(db) = stores.partition(&store, partition) else {
                        continue;
                    };
                    cache_usage = Some(db.block_cache_usage());
                    let Some(props) = db.store_properties(&store) else {
                        continue;
                    };
                    let p = partition.to_string();
                    let labels = [app, store.as_str(), p.as_str()];
                    let values = [
                        props.estimated_keys,
                        props.memtable_bytes,
                        props.pending_compaction_bytes,
                        props.live_sst_bytes,
                    ];
                    for (gauges, value) in rocksdb.iter().zip(values) {
                        gauges
                            .with_label_values(&labels)
                            .set(i64::try_from(value).unwrap_or(i64::MAX));
                    }
                }
            }
            if let Some(bytes) = cache_usage {
                block_cache
                    .with_label_values(&[app])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut families = lag_records.collect();
        families.extend(lag_seconds.collect());
        for gauges in &rocksdb {
            families.extend(gauges.collect());
        }
        families.extend(block_cache.collect());
        families
    }
}

static COLLECTOR: LazyLock<Arc<ScrapeCollector>> = LazyLock::new(|| {
    let collector = Arc::new(ScrapeCollector::new());
    let _ = prometheus::default_registry().register(Box::new(Shared(Arc::clone(&collector))));
    collector
});

/// The registry owns a box; the sources list stays reachable here.
struct Shared(Arc<ScrapeCollector>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_that_comes_back_is_behind_from_its_return() {
        let stores = Arc::new(QueryableStores::default());
        let source = ScrapeSource::register("scrape-return-test", &stores);
        let p = ("in".to_string(), 0);
        source.set_lag_at(0, BTreeMap::from([(p.clone(), 0)]), 1_000);
        // Moved to another instance, then back an hour later with a backlog.
        source.set_lag_at(0, BTreeMap::new(), 2_000);
        source.set_lag_at(0, BTreeMap::from([(p.clone(), 40)]), 3_601_000);
        assert_eq!(source.lag_at(3_603_000)[&p], (40, 2.0));
    }

    #[test]
    fn lag_in_seconds_counts_only_while_records_wait() {
        let stores = Arc::new(QueryableStores::default());
        let source = ScrapeSource::register("scrape-test", &stores);
        let p = |n: i32| ("in".to_string(), n);
        source.set_lag_at(0, BTreeMap::from([(p(0), 0), (p(1), 0)]), 10_000);
        source.set_lag_at(0, BTreeMap::from([(p(0), 5), (p(1), 0)]), 11_000);
        source.set_lag_at(0, BTreeMap::from([(p(0), 3), (p(1), 0)]), 12_000);
        let lag = source.lag_at(13_500);
        // Behind since it was last caught up (10 s), not since the first report with lag.
        assert_eq!(lag[&p(0)], (3, 3.5));
        assert_eq!(lag[&p(1)], (0, 0.0));
        // A partition the thread no longer fetches disappears.
        source.set_lag_at(0, BTreeMap::from([(p(1), 2)]), 14_000);
        let lag = source.lag_at(14_500);
        assert_eq!(lag.len(), 1);
        assert_eq!(lag[&p(1)], (2, 2.5));
        let text = crate::metrics::render_metrics().unwrap();
        assert!(
            text.contains(
                "eddy_consumer_lag_records{application=\"scrape-test\",partition=\"1\",topic=\"in\"} 2"
            ),
            "{text}"
        );
    }
}
