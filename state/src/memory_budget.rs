//! A byte budget that many stores of one instance draw on, so that a limit such as
//! `statestore.cache.max.bytes` is a total for the instance (as in Kafka Streams), not a limit
//! per store and layer.
//!
//! ```
//! use eddy_state::MemoryBudget;
//! let budget = MemoryBudget::new(100);
//! let mut a = MemoryBudget::charge(&budget);
//! let mut b = MemoryBudget::charge(&budget);
//! a.set(60);
//! assert!(!budget.exceeded());
//! b.set(60);
//! assert!(budget.exceeded());
//! drop(b);
//! assert_eq!(budget.used(), 60);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes in use against a maximum, shared by every store that holds a [`Charge`] on it.
#[derive(Debug)]
pub struct MemoryBudget {
    max_bytes: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_bytes,
            used: AtomicUsize::new(0),
        })
    }

    /// A budget that is never exceeded.
    pub fn unbounded() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    /// The maximum.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes held by every charge together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the charges together hold more than the maximum.
    pub fn exceeded(&self) -> bool {
        self.used() > self.max_bytes
    }

    /// A new charge of zero bytes on `budget`.
    pub fn charge(budget: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(budget),
            bytes: 0,
        }
    }
}

/// One store's share of a [`MemoryBudget`]; dropping it gives the bytes back.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    /// Sets this store's share to `bytes`.
    pub fn set(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.budget
                .used
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else if bytes < self.bytes {
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    /// Adds `bytes` to this store's share.
    pub fn add(&mut self, bytes: usize) {
        self.set(self.bytes.saturating_add(bytes));
    }

    /// Takes `bytes` off this store's share.
    pub fn sub(&mut self, bytes: usize) {
        self.set(self.bytes.saturating_sub(bytes));
    }

    /// Whether the budget as a whole is exceeded.
    pub fn exceeded(&self) -> bool {
        self.budget.exceeded()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}
