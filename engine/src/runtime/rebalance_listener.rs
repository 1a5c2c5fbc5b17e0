//! The stream thread's rebalance listener: it only tells the task manager what the group
//! decided (Kafka Streams' `StreamsRebalanceListener`), and hands librdkafka's statistics to
//! the thread's statistics parser.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::metrics::client::ClientMetrics;
use crate::runtime::statistics::StatisticsParser;
use crate::runtime::task_manager::TaskManager;

/// The consumer context of a stream thread.
pub(crate) struct RebalanceListener {
    pub task_manager: Arc<Mutex<TaskManager>>,
    pub statistics: StatisticsParser,
    /// The client's state says `rebalancing` from a revocation to the assignment after it.
    pub client: Arc<ClientMetrics>,
    pub rebalancing: AtomicBool,
}

impl RebalanceListener {
    fn enter_rebalance(&self) {
        if !self.rebalancing.swap(true, Ordering::SeqCst) {
            self.client.rebalancing(true);
        }
    }

    fn leave_rebalance(&self) {
        if self.rebalancing.swap(false, Ordering::SeqCst) {
            self.client.rebalancing(false);
        }
    }
}

impl Drop for RebalanceListener {
    fn drop(&mut self) {
        self.leave_rebalance();
    }
}

impl ClientContext for RebalanceListener {
    fn stats_raw(&self, statistics: &[u8]) {
        self.statistics.offer(statistics);
    }
}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.enter_rebalance();
            let mut tasks = self.task_manager.lock();
            if consumer.assignment_lost() {
                tasks.handle_lost(consumer, partitions);
            } else {
                tasks.handle_revocation(consumer, partitions);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.enter_rebalance();
            self.task_manager
                .lock()
                .handle_assignment(consumer, partitions);
            self.leave_rebalance();
        }
    }
}
