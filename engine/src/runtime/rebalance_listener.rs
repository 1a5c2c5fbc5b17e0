//! The stream thread's rebalance listener: it only tells the task manager what the group
//! decided (Kafka Streams' `StreamsRebalanceListener`), and hands librdkafka's statistics to
//! the thread's statistics parser.

use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::runtime::statistics::StatisticsParser;
use crate::runtime::task_manager::TaskManager;

/// The consumer context of a stream thread.
pub(crate) struct RebalanceListener {
    pub task_manager: Arc<Mutex<TaskManager>>,
    pub statistics: StatisticsParser,
}

impl ClientContext for RebalanceListener {
    fn stats_raw(&self, statistics: &[u8]) {
        self.statistics.offer(statistics);
    }
}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut tasks = self.task_manager.lock();
            if consumer.assignment_lost() {
                tasks.handle_lost(partitions);
            } else {
                tasks.handle_revocation(consumer, partitions);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.task_manager
                .lock()
                .handle_assignment(consumer, partitions);
        }
    }
}
