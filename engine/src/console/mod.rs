//! The web console at `/` of the HTTP endpoint: one page, built into the binary, that shows
//! each running topology (its graph, state and counters with sparklines), a table of tasks
//! (thread, RUNNING or RESTORING with the records still to restore, lag in records and
//! seconds), the last dead letters with their reasons, and a read-only SQL box.
//!
//! 1. `GET /` answers the page (`console.html`: markup, style and script in one file, no
//!    outside assets, so it works on a closed network).
//! 2. The page asks `GET /console/status` every two seconds: the JSON of [`LiveApp`]s.
//! 3. It keeps the last minutes of counters itself and draws the sparklines from them.
//! 4. Its SQL box posts to `POST /query`, as any client would (read-only there).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::metrics::client::ClientMetrics;
use crate::metrics::scrape::ScrapeSource;
use crate::query::StateQueries;
use crate::runtime::status::RuntimeStatus;
use crate::runtime::Progress;
use crate::topology::{NodeKind, Topology};

/// The page.
pub(crate) const PAGE: &str = include_str!("console.html");

/// What the console shows of one running application.
pub(crate) struct LiveApp {
    pub topology: Arc<Topology>,
    pub progress: Arc<Progress>,
    pub client: Arc<ClientMetrics>,
    pub scrape: Arc<ScrapeSource>,
    pub status: Arc<RuntimeStatus>,
    /// `application.server`, when set.
    pub server: Option<String>,
}

/// The topology as nodes (name, kind, detail) and edges (parent index → child index).
fn graph(topology: &Topology) -> Value {
    let index: BTreeMap<&str, usize> = topology
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let nodes: Vec<Value> = topology
        .nodes
        .iter()
        .map(|n| {
            let (kind, detail) = match &n.kind {
                NodeKind::Source { topics, .. } => ("source", topics.join(", ")),
                NodeKind::Processor => ("processor", n.stores.join(", ")),
                NodeKind::Sink { topic } => ("sink", topic.clone()),
            };
            json!({"name": n.name, "kind": kind, "detail": detail})
        })
        .collect();
    let edges: Vec<Value> = topology
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(child, n)| {
            n.parents
                .iter()
                .filter_map(|p| index.get(p.as_str()))
                .map(move |parent| json!([parent, child]))
                .collect::<Vec<_>>()
        })
        .collect();
    json!({"nodes": nodes, "edges": edges})
}

impl LiveApp {
    fn status(&self, now_ms: i64) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let app = self.scrape.application.as_str();
        let p = &self.progress;
        let lag = self.scrape.lag_at(now_ms);
        let subtopologies = self.topology.subtopologies();
        let tasks: Vec<Value> = self
            .status
            .tasks()
            .into_iter()
            .map(|t| {
                let inputs: Vec<String> = subtopologies
                    .get(t.subtopology)
                    .map(|s| {
                        s.source_topics
                            .iter()
                            .map(|topic| self.topology.physical_topic(app, topic))
                            .collect()
                    })
                    .unwrap_or_default();
                let (mut records, mut seconds) = (0i64, 0f64);
                for topic in &inputs {
                    if let Some((r, s)) = lag.get(&(topic.clone(), t.partition)) {
                        records += r;
                        seconds = seconds.max(*s);
                    }
                }
                let remaining = crate::metrics::restore_remaining(app, &self.topology, &t);
                json!({
                    "task": t.task,
                    "thread": t.thread,
                    "state": t.state,
                    "restore_remaining": remaining,
                    "lag_records": records,
                    "lag_seconds": seconds,
                })
            })
            .collect();
        json!({
            "application": app,
            "state": self.client.state().name(),
            "records_in": p.records_in.load(Relaxed),
            "records_out": p.records_out.load(Relaxed),
            "lag": p.lag.load(Relaxed),
            "dead_letters": p.dead_letters.load(Relaxed),
            "commits": p.commits.load(Relaxed),
            "aborts": p.aborts.load(Relaxed),
            "restoring": self.status.restoring(),
            "graph": graph(&self.topology),
            "tasks": tasks,
            "recent_dead_letters": self.status.dead_letters(),
        })
    }
}

impl StateQueries {
    /// What `GET /console/status` answers.
    pub(crate) fn console_status(&self) -> Value {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let apps: Vec<&Arc<LiveApp>> = self.live_apps().collect();
        let worker = apps
            .iter()
            .find_map(|a| a.server.clone())
            .unwrap_or_else(|| format!("pid {}", std::process::id()));
        json!({
            "worker": worker,
            "now_ms": now_ms,
            "applications": apps.iter().map(|a| a.status(now_ms)).collect::<Vec<_>>(),
        })
    }
}
