//! The metering decorator: counts and times every store operation in Prometheus.

use std::ops::Bound;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, HistogramVec};

use crate::error::Result;
use crate::store::{FlushedEntry, KeyValueStore, KvIter};

/// `eddy_store_operation_seconds{task, store, op}`: latency (and, by its count, the number) of
/// store operations, registered once in the default Prometheus registry.
static STORE_OPERATION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let histogram = HistogramVec::new(
        HistogramOpts::new(
            "eddy_store_operation_seconds",
            "Latency of state store operations, by task, store and operation.",
        )
        .buckets(vec![
            1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1.0,
        ]),
        &["task", "store", "op"],
    )
    .expect("static metric definition is valid");
    // A second registration (a test that builds several registries) is harmless.
    let _ = prometheus::default_registry().register(Box::new(histogram.clone()));
    histogram
});

struct OpMetrics {
    get: Histogram,
    put: Histogram,
    delete: Histogram,
    range: Histogram,
    flush: Histogram,
}

/// Times each operation of the store below.
pub struct MeteredKeyValueStore<S> {
    inner: S,
    /// `None`: not timed (Kafka Streams records store metrics at the debug level only).
    metrics: Option<OpMetrics>,
}

impl<S: KeyValueStore> std::fmt::Debug for MeteredKeyValueStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredKeyValueStore")
            .field("name", &self.inner.name())
            .finish()
    }
}

impl<S: KeyValueStore> MeteredKeyValueStore<S> {
    /// Meters `inner`, labelling its metrics with `task`; `timed: false` passes operations
    /// through untimed.
    pub fn new(inner: S, task: &str, timed: bool) -> Self {
        let name = inner.name().to_string();
        let op = |op: &str| STORE_OPERATION_SECONDS.with_label_values(&[task, name.as_str(), op]);
        let metrics = timed.then(|| OpMetrics {
            get: op("get"),
            put: op("put"),
            delete: op("delete"),
            range: op("range"),
            flush: op("flush"),
        });
        Self { inner, metrics }
    }
}

fn timed<T>(histogram: Option<&Histogram>, f: impl FnOnce() -> T) -> T {
    let Some(histogram) = histogram else {
        return f();
    };
    let started = Instant::now();
    let out = f();
    histogram.observe(started.elapsed().as_secs_f64());
    out
}

impl<S: KeyValueStore> KeyValueStore for MeteredKeyValueStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        timed(self.metrics.as_ref().map(|m| &m.get), || {
            self.inner.get(key)
        })
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let inner = &mut self.inner;
        timed(self.metrics.as_ref().map(|m| &m.put), || {
            inner.put(key, value)
        })
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = &mut self.inner;
        timed(self.metrics.as_ref().map(|m| &m.delete), || {
            inner.delete(key)
        })
    }
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KvIter<'a>> {
        // Times opening the iterator; reading it is the caller's time.
        timed(self.metrics.as_ref().map(|m| &m.range), || {
            self.inner.range(from, to)
        })
    }
    fn delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let inner = &mut self.inner;
        timed(self.metrics.as_ref().map(|m| &m.delete), || {
            inner.delete_range(from, to)
        })
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        let inner = &mut self.inner;
        timed(self.metrics.as_ref().map(|m| &m.flush), || inner.flush())
    }
    fn flush_cache(&mut self) -> Result<Vec<FlushedEntry>> {
        let inner = &mut self.inner;
        timed(self.metrics.as_ref().map(|m| &m.flush), || {
            inner.flush_cache()
        })
    }
    fn cache_full(&self) -> bool {
        self.inner.cache_full()
    }
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.inner.restore(key, value)
    }
    fn commit_into(&mut self, batch: &mut crate::batch::StateBatch) -> Result<()> {
        self.inner.commit_into(batch)
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}

/// The number of `op` operations recorded for `store` of `task` so far.
pub fn store_operation_count(task: &str, store: &str, op: &str) -> u64 {
    STORE_OPERATION_SECONDS
        .with_label_values(&[task, store, op])
        .get_sample_count()
}
