//! Reading what a test's application wrote: a consumer assigned whole topics from the
//! beginning, with the isolation level the check needs, and the check that local state is a
//! committed prefix of its changelogs.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// A consumer in group `group` with `isolation` (`read_committed` or `read_uncommitted`),
/// assigned every partition of the topics that `chosen` picks, from the beginning.
///
/// Panics when the broker cannot be reached: it is for tests.
pub fn consumer_from_beginning(
    bootstrap: &str,
    group: &str,
    isolation: &str,
    chosen: impl Fn(&str) -> bool,
) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .create()
        .expect("a verifier consumer");
    let metadata = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| chosen(t.name())) {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .expect("a partition");
        }
    }
    c.assign(&tpl).expect("assignment");
    c
}

/// How many records the topics that `chosen` picks hold, as a consumer with `isolation`
/// (`read_committed` or `read_uncommitted`) sees them: read until nothing comes for 2 s.
pub fn count_records(bootstrap: &str, isolation: &str, chosen: impl Fn(&str) -> bool) -> usize {
    let c = consumer_from_beginning(
        bootstrap,
        &format!("counter-{isolation}"),
        isolation,
        chosen,
    );
    let mut n = 0;
    let mut idle = std::time::Instant::now();
    while idle.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(50)) {
            n += 1;
            idle = std::time::Instant::now();
        }
    }
    n
}

/// What [`local_state_matches_changelogs`] compared.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalStateCheck {
    /// Logged stores compared with their changelog.
    pub stores: usize,
    /// Of those, stores with a checkpoint past the changelog's first record.
    pub checkpointed: usize,
    /// Entries compared in all.
    pub entries: usize,
}

/// Checks the invariant of Eddy's checkpoints: every task's local state under `app_state_dir`
/// (`state.dir/<application.id>`) is exactly its changelogs replayed (read_committed) up to the
/// offsets of the task's checkpoint — no aborted change, no uncommitted change, nothing missing.
/// Stores without a changelog topic are skipped. The workers must have stopped (RocksDB locks
/// its directory).
///
/// On a compacted changelog a record below the checkpoint may be gone in favour of a newer one of
/// its key above the checkpoint; such a key is only checked to have that newer record. Compares
/// raw keys, so it suits stores whose retention has not dropped segments yet.
pub fn local_state_matches_changelogs(
    bootstrap: &str,
    application_id: &str,
    app_state_dir: &std::path::Path,
) -> Result<LocalStateCheck, String> {
    use eddy_state::{KeyValueStore, RocksDbEnv, RocksDbInstance, RocksDbMemoryConfig};

    let env = RocksDbEnv::new(RocksDbMemoryConfig {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
    });
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = admin
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let mut check = LocalStateCheck::default();
    let entries = std::fs::read_dir(app_state_dir)
        .map_err(|e| format!("{}: {e}", app_state_dir.display()))?;
    for entry in entries.flatten() {
        let task = entry.file_name().to_string_lossy().to_string();
        let Some(partition) = task
            .rsplit_once('_')
            .and_then(|(_, p)| p.parse::<i32>().ok())
        else {
            continue;
        };
        let db = RocksDbInstance::open(&env, entry.path()).map_err(|e| e.to_string())?;
        let checkpoint = db.checkpoint().map_err(|e| e.to_string())?;
        for store in db.store_names() {
            let topic = format!("{application_id}-{store}-changelog");
            if !topics.contains(&topic) {
                continue;
            }
            let until = checkpoint
                .changelog_offsets
                .get(&store)
                .copied()
                .unwrap_or(0);
            let (replayed, rewritten_later) = replay_until(bootstrap, &topic, partition, until)?;
            let local: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = db
                .key_value_store(&store)
                .and_then(|s| s.all().and_then(|it| it.collect()))
                .map_err(|e| e.to_string())?;
            // A key missing from the replayed prefix but written again later was compacted.
            let compacted = |k: &Vec<u8>| !replayed.contains_key(k) && rewritten_later.contains(k);
            let differs = |k: &Vec<u8>| local.get(k) != replayed.get(k) && !compacted(k);
            if replayed.keys().chain(local.keys()).any(differs) {
                let differing: Vec<String> = replayed
                    .keys()
                    .chain(local.keys())
                    .filter(|k| differs(k))
                    .take(5)
                    .map(|k| {
                        format!(
                            "{}: local {:?} changelog {:?}",
                            String::from_utf8_lossy(k),
                            local.get(k),
                            replayed.get(k)
                        )
                    })
                    .collect();
                return Err(format!(
                    "task {task} store {store}: local state differs from {topic}-{partition} \
                     replayed up to its checkpoint {until} ({} local, {} replayed entries): {differing:?}",
                    local.len(),
                    replayed.len()
                ));
            }
            check.stores += 1;
            check.entries += local.len();
            if until > 0 {
                check.checkpointed += 1;
            }
        }
    }
    Ok(check)
}

type Replayed = (
    std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    std::collections::BTreeSet<Vec<u8>>,
);

/// `topic`-`partition` read_committed from the beginning: the state up to (not including)
/// `until`, and the keys written again at or after `until`.
fn replay_until(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    until: i64,
) -> Result<Replayed, String> {
    let mut state = std::collections::BTreeMap::new();
    let mut later = std::collections::BTreeSet::new();
    if until <= 0 {
        return Ok((state, later));
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "local-state-verifier")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| e.to_string())?;
    let (_, high) = c
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut idle = std::time::Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                idle = std::time::Instant::now();
                let key = m.key().unwrap_or_default().to_vec();
                if m.offset() >= until {
                    later.insert(key);
                } else {
                    match m.payload() {
                        Some(v) => state.insert(key, v.to_vec()),
                        None => state.remove(&key),
                    };
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                let position = c
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()));
                if matches!(position, Some(Offset::Offset(o)) if o >= high) {
                    break;
                }
            }
        }
    }
    Ok((state, later))
}
