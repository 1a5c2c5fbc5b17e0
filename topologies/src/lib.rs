//! The topologies Eddy ships, by name: what `eddy list`, `eddy describe` and (with the runtime)
//! `eddy run` work from. The learning platform's seven topologies join this registry.

pub mod active_users;
mod distinct_users;
pub mod document_lifecycle;
pub mod emotion_aggregates;
pub mod events;
pub mod generator;
pub mod notifications;
pub mod plagiarism_stats;
pub mod platform;
pub mod quiz_results;
pub mod saga;
mod saga_metrics;
mod word_count;

use eddy_engine::{Result, Topology};

pub use word_count::{windowed_word_count, word_count};

fn active_users_default() -> Result<Topology> {
    active_users::active_users(&active_users::ActiveUsersConfig::default())
}

fn document_lifecycle_default() -> Result<Topology> {
    document_lifecycle::document_lifecycle(&document_lifecycle::DocumentLifecycleConfig::default())
}

fn emotion_aggregates_default() -> Result<Topology> {
    emotion_aggregates::emotion_aggregates(&emotion_aggregates::EmotionAggregatesConfig::default())
}

fn notifications_default() -> Result<Topology> {
    notifications::notifications(&notifications::NotificationsConfig::default())
}

fn plagiarism_stats_default() -> Result<Topology> {
    plagiarism_stats::plagiarism_stats(&plagiarism_stats::PlagiarismStatsConfig::default())
}

fn saga_default() -> Result<Topology> {
    saga::document_quiz_saga(&saga::SagaConfig::default())
}

fn quiz_results_default() -> Result<Topology> {
    quiz_results::quiz_results(&quiz_results::QuizResultsConfig::default())
}

/// A topology the `eddy` binary can list, describe and run.
#[derive(Debug, Clone, Copy)]
pub struct TopologyEntry {
    /// The name used on the command line; also the default `application.id`.
    pub name: &'static str,
    /// One line on what it computes.
    pub summary: &'static str,
    /// Builds it.
    pub build: fn() -> Result<Topology>,
}

/// Every topology, in the order `eddy list` shows them.
pub fn registry() -> Vec<TopologyEntry> {
    vec![
        TopologyEntry {
            name: "plagiarism-stats",
            summary: "count, mean, min, max, p50, p95 of plagiarism scores per course and assignment, all-time and daily",
            build: plagiarism_stats_default,
        },
        TopologyEntry {
            name: "quiz-results",
            summary: "grades quiz.submitted against quiz.generated; stores quiz_results, user_quiz_history, quiz_stats",
            build: quiz_results_default,
        },
        TopologyEntry {
            name: "document-quiz-saga",
            summary: "per-document saga upload → processed → notes → quiz with deadlines, compensations to saga.commands",
            build: saga_default,
        },
        TopologyEntry {
            name: "active-users",
            summary: "exact distinct users per tenant, 5-minute tumbling and 1-hour hopping windows",
            build: active_users_default,
        },
        TopologyEntry {
            name: "document-lifecycle",
            summary: "event-sourced document state (document_state) and event history (document_history)",
            build: document_lifecycle_default,
        },
        TopologyEntry {
            name: "emotion-aggregates",
            summary: "count and mean confidence per child and emotion, 1-minute windows emitted once at close",
            build: emotion_aggregates_default,
        },
        TopologyEntry {
            name: "notifications",
            summary: "one notification per completion event (document.processed, quiz.generated, transcription)",
            build: notifications_default,
        },
        TopologyEntry {
            name: "word-count",
            summary: "counts words of `text-lines` into `word-counts` (the engine's smoke test)",
            build: word_count,
        },
        TopologyEntry {
            name: "windowed-word-count",
            summary: "counts words of `text-lines` per 1-second window into `windowed-word-counts`",
            build: windowed_word_count,
        },
    ]
}

/// The topology called `name`.
pub fn find(name: &str) -> Option<TopologyEntry> {
    registry().into_iter().find(|t| t.name == name)
}
