//! `quiz-results` (CQRS read side): grades each `quiz.submitted` against its quiz from
//! `quiz.generated`, and keeps the queryable views `quiz_results`, `user_quiz_history` and
//! `quiz_stats`.
//!
//! Both event types are keyed by `quiz_id`, so a quiz and its submissions meet in one task.
//! A submission whose quiz has not arrived waits in `quiz_pending_submissions` until the quiz
//! comes or `max_wait_ms` of stream time passes; then it goes to the dead-letter topic instead
//! of being graded wrong. A re-delivered submission (same `submission_id`) changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_engine::{
    DeadLetter, Grouped, KeyValueStoreHandle, Materialized, Processor, ProcessorContext, Produced,
    PunctuationType, Record, Result, Serdes, StoreSpec, StreamsBuilder, Topology,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{platform_events, PlatformEvent};

/// Topic names, limits and store names of the topology.
#[derive(Debug, Clone, PartialEq)]
pub struct QuizResultsConfig {
    pub input_topic: String,
    pub output_topic: String,
    /// How long (stream time) a submission waits for its quiz.
    pub max_wait_ms: i64,
    /// Submissions kept waiting per quiz; more go to the dead-letter topic at once.
    pub max_pending_per_quiz: usize,
    /// Entries of `user_quiz_history` per user, newest first.
    pub history_length: usize,
}

impl Default for QuizResultsConfig {
    fn default() -> Self {
        Self {
            input_topic: "quiz-events".into(),
            output_topic: "quiz-results".into(),
            max_wait_ms: 10 * 60 * 1000,
            max_pending_per_quiz: 1_000,
            history_length: 20,
        }
    }
}

/// The event types of `quiz-events`.
pub const QUIZ_EVENT_TYPES: &[&str] = &[
    "quiz.requested",
    "quiz.generated",
    "quiz.submitted",
    "quiz.failed",
];

/// A quiz: the correct answer per question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quiz {
    pub quiz_id: String,
    pub correct: BTreeMap<String, String>,
}

/// A submission, with where it came from (for the dead-letter topic if its quiz never comes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub submission_id: String,
    pub quiz_id: String,
    pub user_id: String,
    pub answers: BTreeMap<String, String>,
    pub time_ms: i64,
    pub source_event_id: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A graded submission: the row of `quiz_results` and the record of the output topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuizResult {
    pub submission_id: String,
    pub quiz_id: String,
    pub user_id: String,
    pub correct: u32,
    pub total: u32,
    /// correct / total × 100 (0 for a quiz without questions).
    pub score: f64,
    pub submitted_at_ms: i64,
}

/// The row of `quiz_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QuizStats {
    pub attempts: u64,
    pub score_sum: f64,
    pub mean_score: f64,
    pub best_score: f64,
}

/// The row of `user_quiz_history`: newest first, at most `history_length`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserQuizHistory {
    pub results: Vec<QuizResult>,
}

/// Reads `{question_id: answer}` or `[{question_id, answer|correct_answer}]`.
fn answer_map(value: Option<&Value>, answer_field: &str) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match value {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| {
                let q = item.get("question_id").map(text)?;
                let a = item
                    .get(answer_field)
                    .or_else(|| item.get("answer"))
                    .map(text)?;
                Some((q, a))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Grades `submission` against `quiz`.
pub fn grade(quiz: &Quiz, submission: &Submission) -> QuizResult {
    let total = quiz.correct.len() as u32;
    let correct = quiz
        .correct
        .iter()
        .filter(|(q, a)| submission.answers.get(*q) == Some(*a))
        .count() as u32;
    let score = if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64 * 100.0
    };
    QuizResult {
        submission_id: submission.submission_id.clone(),
        quiz_id: submission.quiz_id.clone(),
        user_id: submission.user_id.clone(),
        correct,
        total,
        score,
        submitted_at_ms: submission.time_ms,
    }
}

struct Grader {
    config: QuizResultsConfig,
    quizzes: Option<KeyValueStoreHandle<String, Quiz>>,
    pending: Option<KeyValueStoreHandle<String, Vec<Submission>>>,
    results: Option<KeyValueStoreHandle<String, QuizResult>>,
}

impl Grader {
    fn emit(
        &self,
        result: QuizResult,
        ctx: &mut ProcessorContext<'_, String, QuizResult>,
    ) -> Result<()> {
        if let Some(results) = &self.results {
            results.put(&result.submission_id, &result)?;
        }
        let ts = result.submitted_at_ms;
        ctx.forward(Record::new(result.quiz_id.clone(), result, ts))
    }

    fn give_up(
        &self,
        s: Submission,
        reason: String,
        ctx: &mut ProcessorContext<'_, String, QuizResult>,
    ) {
        let value = serde_json::to_vec(&s).unwrap_or_default();
        ctx.dead_letter_record(DeadLetter {
            topic: s.topic,
            partition: s.partition,
            offset: s.offset,
            key: Some(s.quiz_id.into_bytes()),
            value: Some(value),
            timestamp: s.time_ms,
            error: reason,
        });
    }
}

impl Processor<String, PlatformEvent, String, QuizResult> for Grader {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, QuizResult>) -> Result<()> {
        self.quizzes = Some(ctx.key_value_store("quizzes")?);
        self.pending = Some(ctx.key_value_store("quiz_pending_submissions")?);
        self.results = Some(ctx.key_value_store("quiz_results")?);
        ctx.schedule(Duration::from_secs(1), PunctuationType::StreamTime);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, PlatformEvent>,
        ctx: &mut ProcessorContext<'_, String, QuizResult>,
    ) -> Result<()> {
        let (Some(quizzes), Some(pending), Some(results)) =
            (&self.quizzes, &self.pending, &self.results)
        else {
            return Ok(());
        };
        let event = record.value;
        let quiz_id = record.key;
        match event.event_type.as_str() {
            "quiz.generated" => {
                let quiz = Quiz {
                    quiz_id: quiz_id.clone(),
                    correct: answer_map(event.get("questions"), "correct_answer"),
                };
                quizzes.put(&quiz_id, &quiz)?;
                if let Some(waiting) = pending.delete(&quiz_id)? {
                    for s in waiting {
                        if results.get(&s.submission_id)?.is_none() {
                            self.emit(grade(&quiz, &s), ctx)?;
                        }
                    }
                }
                Ok(())
            }
            "quiz.submitted" => {
                let Ok(submission_id) = event.entity_id("submission_id") else {
                    ctx.dead_letter("missing entity id `submission_id`");
                    return Ok(());
                };
                let Ok(user_id) = event.entity_id("user_id") else {
                    ctx.dead_letter("missing entity id `user_id`");
                    return Ok(());
                };
                if results.get(&submission_id)?.is_some() {
                    return Ok(()); // re-delivered: already graded
                }
                let meta = ctx.record_metadata().cloned();
                let submission = Submission {
                    submission_id,
                    quiz_id: quiz_id.clone(),
                    user_id,
                    answers: answer_map(event.get("answers"), "answer"),
                    time_ms: record.timestamp,
                    source_event_id: event.event_id.clone(),
                    topic: meta.as_ref().map(|m| m.topic.clone()).unwrap_or_default(),
                    partition: meta.as_ref().map_or(0, |m| m.partition),
                    offset: meta.as_ref().map_or(-1, |m| m.offset),
                };
                match quizzes.get(&quiz_id)? {
                    Some(quiz) => self.emit(grade(&quiz, &submission), ctx),
                    None => {
                        let mut waiting = pending.get(&quiz_id)?.unwrap_or_default();
                        if waiting
                            .iter()
                            .any(|w| w.submission_id == submission.submission_id)
                        {
                            return Ok(());
                        }
                        if waiting.len() >= self.config.max_pending_per_quiz {
                            let reason = format!(
                                "quiz `{quiz_id}` unknown and {} submissions already wait for it",
                                waiting.len()
                            );
                            self.give_up(submission, reason, ctx);
                            return Ok(());
                        }
                        waiting.push(submission);
                        pending.put(&quiz_id, &waiting)
                    }
                }
            }
            // quiz.requested / quiz.failed carry nothing to grade.
            _ => Ok(()),
        }
    }

    fn punctuate(
        &mut self,
        _: eddy_engine::ScheduleId,
        stream_time: i64,
        ctx: &mut ProcessorContext<'_, String, QuizResult>,
    ) -> Result<()> {
        let Some(pending) = self.pending.clone() else {
            return Ok(());
        };
        for (quiz_id, waiting) in pending.all()? {
            let (expired, kept): (Vec<_>, Vec<_>) = waiting
                .into_iter()
                .partition(|s| s.time_ms + self.config.max_wait_ms < stream_time);
            if expired.is_empty() {
                continue;
            }
            for s in expired {
                let reason = format!(
                    "quiz `{quiz_id}` did not arrive within {} ms",
                    self.config.max_wait_ms
                );
                self.give_up(s, reason, ctx);
            }
            if kept.is_empty() {
                pending.delete(&quiz_id)?;
            } else {
                pending.put(&quiz_id, &kept)?;
            }
        }
        Ok(())
    }
}

/// Builds the topology.
pub fn quiz_results(config: &QuizResultsConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    b.add_state_store(
        StoreSpec::key_value("quizzes"),
        Serdes::string(),
        Serdes::json::<Quiz>(),
    );
    b.add_state_store(
        StoreSpec::key_value("quiz_pending_submissions"),
        Serdes::string(),
        Serdes::json::<Vec<Submission>>(),
    );
    b.add_state_store(
        StoreSpec::key_value("quiz_results"),
        Serdes::string(),
        Serdes::json::<QuizResult>(),
    );
    let grader_config = config.clone();
    let graded = platform_events(&b, config.input_topic.as_str(), QUIZ_EVENT_TYPES, "quiz_id")
        .process_values(
            move || Grader {
                config: grader_config.clone(),
                quizzes: None,
                pending: None,
                results: None,
            },
            &["quizzes", "quiz_pending_submissions", "quiz_results"],
        );
    graded.to(
        &config.output_topic,
        Produced::with(Serdes::string(), Serdes::json::<QuizResult>()),
    );
    graded
        .group_by_key(
            Grouped::named("quiz-stats").with(Serdes::string(), Serdes::json::<QuizResult>()),
        )
        .aggregate(
            QuizStats::default,
            |_, r: QuizResult, mut s: QuizStats| {
                s.attempts += 1;
                s.score_sum += r.score;
                s.mean_score = s.score_sum / s.attempts as f64;
                s.best_score = s.best_score.max(r.score);
                s
            },
            Materialized::named("quiz_stats").with_value_serde(Serdes::json()),
        );
    let history_length = config.history_length;
    graded
        .group_by(
            |_, r| r.user_id.clone(),
            Grouped::named("user-quiz-history")
                .with(Serdes::string(), Serdes::json::<QuizResult>()),
        )
        .aggregate(
            UserQuizHistory::default,
            move |_, r: QuizResult, mut h: UserQuizHistory| {
                let at = h
                    .results
                    .iter()
                    .position(|x| x.submitted_at_ms <= r.submitted_at_ms)
                    .unwrap_or(h.results.len());
                h.results.insert(at, r);
                h.results.truncate(history_length);
                h
            },
            Materialized::named("user_quiz_history").with_value_serde(Serdes::json()),
        );
    b.build()
}
