//! What the web console shows of a running application beyond its counters: each open task
//! with its thread and state (restoring or running), and the last records dead-lettered with
//! their reasons. The task manager keeps it; the console reads it.

use std::collections::{BTreeMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

/// The dead letters kept for the console.
const RECENT_DEAD_LETTERS: usize = 20;

/// A task as the console lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct TaskStatus {
    pub task: String,
    pub thread: String,
    /// `RESTORING` or `RUNNING`.
    pub state: &'static str,
    /// The task's input partition.
    pub partition: i32,
    pub subtopology: usize,
}

/// A dead-lettered record as the console lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct DeadLetterNote {
    pub at_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

/// One application's tasks and recent dead letters.
#[derive(Debug, Default)]
pub(crate) struct RuntimeStatus {
    tasks: Mutex<BTreeMap<String, TaskStatus>>,
    dead_letters: Mutex<VecDeque<DeadLetterNote>>,
}

impl RuntimeStatus {
    pub fn set_task(&self, status: TaskStatus) {
        self.tasks.lock().insert(status.task.clone(), status);
    }

    /// Forgets `task` if `thread` holds it (another thread of the application may have it by
    /// now).
    pub fn remove_task(&self, task: &str, thread: &str) {
        let mut tasks = self.tasks.lock();
        if tasks.get(task).is_some_and(|t| t.thread == thread) {
            tasks.remove(task);
        }
    }

    /// Tasks restoring now.
    pub fn restoring(&self) -> usize {
        self.tasks
            .lock()
            .values()
            .filter(|t| t.state == "RESTORING")
            .count()
    }

    pub fn tasks(&self) -> Vec<TaskStatus> {
        self.tasks.lock().values().cloned().collect()
    }

    pub fn dead_lettered(&self, note: DeadLetterNote) {
        let mut recent = self.dead_letters.lock();
        if recent.len() == RECENT_DEAD_LETTERS {
            recent.pop_front();
        }
        recent.push_back(note);
    }

    /// The most recent first.
    pub fn dead_letters(&self) -> Vec<DeadLetterNote> {
        self.dead_letters.lock().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_forgets_only_the_tasks_it_holds() {
        let status = RuntimeStatus::default();
        let task = |thread: &str| TaskStatus {
            task: "0_1".into(),
            thread: thread.into(),
            state: "RUNNING",
            partition: 1,
            subtopology: 0,
        };
        // Thread 0 lost its partitions; thread 1 has opened 0_1 since.
        status.set_task(task("stream-0"));
        status.set_task(task("stream-1"));
        status.remove_task("0_1", "stream-0");
        assert_eq!(status.tasks(), vec![task("stream-1")]);
        status.remove_task("0_1", "stream-1");
        assert!(status.tasks().is_empty());
    }

    #[test]
    fn only_the_last_dead_letters_are_kept_newest_first() {
        let status = RuntimeStatus::default();
        for offset in 0..30 {
            status.dead_lettered(DeadLetterNote {
                at_ms: offset,
                topic: "in".into(),
                partition: 0,
                offset,
                reason: "bad".into(),
            });
        }
        let kept = status.dead_letters();
        assert_eq!(kept.len(), RECENT_DEAD_LETTERS);
        assert_eq!(kept[0].offset, 29);
        assert_eq!(kept.last().unwrap().offset, 10);
    }
}
