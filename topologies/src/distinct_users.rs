//! Exact distinct users per tenant in tumbling and hopping time windows, in O(1) per record.
//!
//! Time is cut into slots (the greatest common divisor of the windows' sizes and advances, five
//! minutes by default), so that every window is a run of whole slots. Each (tenant, user) keeps
//! one small entry: the last slot it was active in and a 64-bit mask of its activity in the 64
//! slots up to it. A record then costs:
//!
//! 1. one point lookup of its user's entry (two when the user was last active in the previous
//!    epoch of 64 slots, where entries live so that they expire with the store's segments);
//! 2. nothing more when the user was already active in the record's slot — no window gains a
//!    user — which is the common case;
//! 3. otherwise, for each window that holds the slot, one counter increment if none of the
//!    window's other slots has the user's activity (the user is new to the window), and one write
//!    of the user's entry.
//!
//! The counters (tenant → users per window) changed since the last commit are kept in a map of
//! the processor's own, so that a record's thirteen increments are thirteen map updates rather
//! than thirteen store reads and writes; the commit writes each changed counter to its store
//! (and changelog) once and sends it downstream, with the timestamp of the record that last
//! changed it.

use std::collections::HashMap;

use eddy_engine::{
    EngineError, Processor, ProcessorContext, Record, Result, Serdes, StateError, StoreKind,
    StoreSpec, StreamsBuilder, TimeWindows, WindowStoreHandle,
};

use crate::active_users::ActiveUsers;

/// Slots in one activity mask (and in one epoch of the activity store).
const MASK_SLOTS: i64 = 64;

/// One window definition and its counter store.
#[derive(Clone)]
pub(crate) struct CountedWindows {
    pub windows: TimeWindows,
    /// `5m` or `1h`, written into each output row.
    pub label: String,
    pub store: String,
}

/// The processor of every window definition of a distinct count.
pub(crate) struct DistinctUsers {
    defs: Vec<CountedWindows>,
    activity_store: String,
    slot_ms: i64,
    activity: Option<WindowStoreHandle<String, Vec<u8>>>,
    counts: Vec<Option<WindowStoreHandle<String, i64>>>,
    /// Counters changed since the last commit: tenant → (definition, window start) →
    /// (users, timestamp of the record that last changed it).
    changed: HashMap<String, HashMap<(usize, i64), (i64, i64)>>,
    /// The largest record time seen; windows close relative to it.
    observed: i64,
}

/// A user's activity: bit `i` of `mask` is set when the user was active in slot `last - i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    last: i64,
    mask: u64,
}

impl Activity {
    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(&self.mask.to_be_bytes());
        out
    }

    fn decode(store: &str, bytes: &[u8]) -> Result<Self> {
        // A bad entry is a corrupted store: the task wipes it and restores from the changelog.
        let corrupt = || {
            EngineError::State(StateError::Corrupted {
                store: store.to_string(),
                reason: format!("an activity entry of {} bytes, not 16", bytes.len()),
            })
        };
        let last = bytes.get(0..8).ok_or_else(corrupt)?;
        let mask = bytes.get(8..16).ok_or_else(corrupt)?;
        Ok(Self {
            last: i64::from_be_bytes(last.try_into().map_err(|_| corrupt())?),
            mask: u64::from_be_bytes(mask.try_into().map_err(|_| corrupt())?),
        })
    }

    /// Whether the user was active in `slot`.
    fn active(&self, slot: i64) -> bool {
        let back = self.last - slot;
        (0..MASK_SLOTS).contains(&back) && self.mask & (1 << back) != 0
    }

    /// Whether the user was active in any slot of `[first, last]`.
    fn active_in(&self, first: i64, last: i64) -> bool {
        (first..=last).any(|s| self.active(s))
    }

    /// The same activity with `slot` marked.
    fn with(self, slot: i64) -> Self {
        if slot > self.last {
            let shift = slot - self.last;
            let mask = if shift >= MASK_SLOTS {
                0
            } else {
                self.mask << shift
            };
            Self {
                last: slot,
                mask: mask | 1,
            }
        } else {
            let back = self.last - slot;
            if back >= MASK_SLOTS {
                return self;
            }
            Self {
                last: self.last,
                mask: self.mask | (1 << back),
            }
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

/// The user-entry key of `user` in `tenant`: length-prefixed, so that no two pairs collide.
fn user_key(tenant: &str, user: &str) -> String {
    format!("{}:{tenant}{user}", tenant.len())
}

impl DistinctUsers {
    /// Adds the stores of a distinct count over `defs` to `b` (one counter store per definition
    /// and the activity store `activity_store`) and returns a processor supplier's prototype.
    /// Fails when the windows need a history longer than 64 slots.
    pub(crate) fn build(
        b: &StreamsBuilder,
        defs: Vec<CountedWindows>,
        activity_store: &str,
    ) -> Result<Self> {
        let slot_ms = defs.iter().fold(0, |g, d| {
            gcd(gcd(g, d.windows.size_ms), d.windows.advance_ms)
        });
        let slot_ms = slot_ms.max(1);
        // A record may still change a window that ended up to `grace` ago: its user's history
        // must reach back the window plus the grace.
        let history = defs
            .iter()
            .map(|d| (d.windows.size_ms + d.windows.grace_ms) / slot_ms + 1)
            .max()
            .unwrap_or(1);
        // Two slots of slack: a record whose slot lies beyond the history has no open window.
        if history + 2 >= MASK_SLOTS {
            return Err(EngineError::Topology(format!(
                "distinct counts keep at most {MASK_SLOTS} slots of {slot_ms} ms of history; \
                 these windows need {history}"
            )));
        }
        for d in &defs {
            b.add_state_store(
                StoreSpec {
                    kind: StoreKind::Window {
                        retention_ms: d.windows.size_ms + d.windows.grace_ms,
                        segment_interval_ms: None,
                        retain_duplicates: false,
                        time_ordered: false,
                    },
                    ..StoreSpec::key_value(d.store.clone())
                },
                Serdes::string(),
                Serdes::i64(),
            );
        }
        // Entries live at the start of their epoch: two epochs of retention keep the entry a
        // lookup may need (this epoch's or the previous one's).
        b.add_state_store(
            StoreSpec {
                kind: StoreKind::Window {
                    retention_ms: 2 * MASK_SLOTS * slot_ms,
                    segment_interval_ms: Some(MASK_SLOTS * slot_ms),
                    retain_duplicates: false,
                    time_ordered: false,
                },
                ..StoreSpec::key_value(activity_store)
            },
            Serdes::string(),
            Serdes::bytes(),
        );
        Ok(Self {
            counts: vec![None; defs.len()],
            changed: HashMap::new(),
            defs,
            activity_store: activity_store.to_string(),
            slot_ms,
            activity: None,
            observed: i64::MIN,
        })
    }

    /// The names of every store the processor uses.
    pub(crate) fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.defs.iter().map(|d| d.store.clone()).collect();
        names.push(self.activity_store.clone());
        names
    }

    /// A fresh processor of the same definitions, for each task.
    pub(crate) fn fresh(&self) -> Self {
        Self {
            defs: self.defs.clone(),
            activity_store: self.activity_store.clone(),
            slot_ms: self.slot_ms,
            activity: None,
            counts: vec![None; self.defs.len()],
            changed: HashMap::new(),
            observed: i64::MIN,
        }
    }

    fn epoch_start(&self, ts: i64) -> i64 {
        let epoch = MASK_SLOTS * self.slot_ms;
        ts.div_euclid(epoch) * epoch
    }
}

impl Processor<String, String, String, ActiveUsers> for DistinctUsers {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, ActiveUsers>) -> Result<()> {
        // A reopened task resumes at its committed stream time: windows closed before the
        // restart stay closed, and the activity entries are found at the epoch they were
        // written in.
        self.observed = self.observed.max(ctx.stream_time());
        self.activity = Some(ctx.window_store(&self.activity_store)?);
        for (i, d) in self.defs.iter().enumerate() {
            self.counts[i] = Some(ctx.window_store(&d.store)?);
        }
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, ActiveUsers>,
    ) -> Result<()> {
        let Some(activity_store) = &self.activity else {
            return Ok(());
        };
        let ts = record.timestamp;
        self.observed = self.observed.max(ts);
        // Late windows are dropped (and counted) whether or not the user is new to them.
        let mut open: Vec<(usize, i64)> = Vec::new();
        for (i, d) in self.defs.iter().enumerate() {
            let close = self.observed.saturating_sub(d.windows.grace_ms);
            for start in d.windows.windows_for(ts) {
                if start.saturating_add(d.windows.size_ms) <= close {
                    ctx.record_dropped("late-record");
                } else {
                    open.push((i, start));
                }
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        let (tenant, user) = (record.key, record.value);
        let key = user_key(&tenant, &user);
        let here = self.epoch_start(self.observed);
        let found = match activity_store.fetch(&key, here)? {
            Some(bytes) => Some(bytes),
            None => activity_store.fetch(&key, here - MASK_SLOTS * self.slot_ms)?,
        };
        let before = match found {
            Some(bytes) => Activity::decode(&self.activity_store, &bytes)?,
            None => Activity {
                last: i64::MIN / 2,
                mask: 0,
            },
        };
        let slot = ts.div_euclid(self.slot_ms);
        if before.active(slot) {
            return Ok(());
        }
        if before.last - slot >= MASK_SLOTS - 1 {
            // Older than any history kept, so every window of it has closed (the build checks
            // that the history covers a window and its grace); `open` is empty then.
            return Ok(());
        }
        for (i, start) in open {
            let d = &self.defs[i];
            let first = start.div_euclid(self.slot_ms);
            let last = start
                .saturating_add(d.windows.size_ms - 1)
                .div_euclid(self.slot_ms);
            if before.active_in(first, last) {
                continue;
            }
            let Some(counts) = &self.counts[i] else {
                continue;
            };
            let windows = self.changed.entry(tenant.clone()).or_default();
            let entry = match windows.entry((i, start)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((counts.fetch(&tenant, start)?.unwrap_or(0), ts))
                }
            };
            *entry = (entry.0 + 1, ts);
        }
        activity_store.put(&key, here, Some(&before.with(slot).encode()))?;
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, String, ActiveUsers>) -> Result<()> {
        if let Some(activity) = &self.activity {
            activity.flush_cache()?;
        }
        let changed = std::mem::take(&mut self.changed);
        let mut rows = Vec::new();
        for (tenant, windows) in changed {
            for ((i, start), (n, ts)) in windows {
                let (Some(counts), Some(d)) = (&self.counts[i], self.defs.get(i)) else {
                    continue;
                };
                counts.put(&tenant, start, Some(&n))?;
                rows.push((
                    ts,
                    ActiveUsers {
                        tenant_id: tenant.clone(),
                        window: d.label.clone(),
                        window_start_ms: start,
                        window_end_ms: start.saturating_add(d.windows.size_ms),
                        active_users: n.max(0) as u64,
                    },
                ));
            }
        }
        for counts in self.counts.iter().flatten() {
            counts.flush_cache()?;
        }
        // By the time of the record that last changed each (with out-of-order input not quite
        // a cache flush's write order), ties in a fixed order: the output is deterministic.
        rows.sort_by(|(a_ts, a), (b_ts, b)| {
            (a_ts, &a.tenant_id, &a.window, a.window_start_ms).cmp(&(
                b_ts,
                &b.tenant_id,
                &b.window,
                b.window_start_ms,
            ))
        });
        for (ts, row) in rows {
            ctx.forward(Record::new(row.tenant_id.clone(), row, ts))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_of_different_pairs_differ() {
        assert_ne!(user_key("ab", "c"), user_key("a", "bc"));
        assert_eq!(user_key("t1", "u1"), "2:t1u1");
    }

    #[test]
    fn activity_marks_slots_in_and_out_of_order() {
        let a = Activity {
            last: i64::MIN / 2,
            mask: 0,
        }
        .with(100);
        assert!(a.active(100) && !a.active(99));
        let a = a.with(103).with(101);
        assert!(a.active(100) && a.active(101) && a.active(103) && !a.active(102));
        assert!(a.active_in(95, 100) && !a.active_in(104, 110));
        let round = Activity::decode("s", &a.encode()).unwrap();
        assert_eq!(round, a);
        // A jump past the mask forgets the old slots.
        let far = a.with(103 + MASK_SLOTS);
        assert!(!far.active(103) && far.active(103 + MASK_SLOTS));
        assert!(Activity::decode("s", b"short").is_err());
    }
}
