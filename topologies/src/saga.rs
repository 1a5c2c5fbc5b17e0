//! `document-quiz-saga` (orchestrated saga): per document, upload → processed →
//! notes.generated → quiz.generated, each step with a deadline. A missed deadline or a failure
//! event (`document.error`, `quiz.failed`) compensates the completed steps in reverse order
//! (commands to `saga.commands`) and fails the saga; the last step completes it
//! (`saga.completed`). Steps are idempotent, so duplicates change nothing, and a step that
//! arrives early is kept until the steps before it arrive. `saga_state` is queryable.

use std::time::Duration;

use eddy_engine::{
    KStream, KeyValueStoreHandle, Processor, ProcessorContext, Produced, PunctuationType, Record,
    Result, ScheduleId, Serde, SerdeError, Serdes, StoreSpec, StreamsBuilder, Topology,
};
use serde::{Deserialize, Serialize};

use crate::events::{platform_events, PlatformEvent};

/// The steps of the saga, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    Uploaded,
    Processed,
    NotesGenerated,
    QuizGenerated,
}

impl SagaStep {
    /// Every step, in order.
    pub const ALL: [SagaStep; 4] = [
        SagaStep::Uploaded,
        SagaStep::Processed,
        SagaStep::NotesGenerated,
        SagaStep::QuizGenerated,
    ];

    /// The step an event completes.
    pub fn of_event(event_type: &str) -> Option<Self> {
        match event_type {
            "document.uploaded" => Some(SagaStep::Uploaded),
            "document.processed" => Some(SagaStep::Processed),
            "notes.generated" => Some(SagaStep::NotesGenerated),
            "quiz.generated" => Some(SagaStep::QuizGenerated),
            _ => None,
        }
    }

    /// The command that undoes this step.
    pub fn compensation(self) -> &'static str {
        match self {
            SagaStep::Uploaded => "delete_document",
            SagaStep::Processed => "delete_processed_data",
            SagaStep::NotesGenerated => "delete_notes",
            SagaStep::QuizGenerated => "delete_quiz",
        }
    }
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    Running,
    Completed,
    Failed,
}

/// The row of `saga_state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
    pub document_id: String,
    pub user_id: Option<String>,
    pub status: SagaStatus,
    /// The first step not completed yet (`None` once all are).
    pub current_step: Option<SagaStep>,
    pub completed_steps: Vec<SagaStep>,
    /// When the current step times out (event time, ms).
    pub deadline_ms: Option<i64>,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub failure_reason: Option<String>,
    pub quiz_id: Option<String>,
}

/// A compensation command on `saga.commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaCommand {
    pub saga_id: String,
    pub document_id: String,
    pub command: String,
    pub reason: String,
    /// Position in this saga's compensation (0 first).
    pub sequence: u32,
    pub issued_at_ms: i64,
    pub quiz_id: Option<String>,
}

/// The completion event on `saga.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaCompleted {
    pub event_type: String,
    pub saga_id: String,
    pub document_id: String,
    pub user_id: Option<String>,
    pub quiz_id: Option<String>,
    pub completed_at_ms: i64,
}

/// Topics and deadlines.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaConfig {
    pub document_topic: String,
    pub quiz_topic: String,
    pub commands_topic: String,
    pub completed_topic: String,
    /// How long each step may take after the previous one, by step (event time).
    pub step_deadline_ms: [i64; 4],
    /// How often deadlines are checked (stream time).
    pub check_interval_ms: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            document_topic: "document-events".into(),
            quiz_topic: "quiz-events".into(),
            commands_topic: "saga.commands".into(),
            completed_topic: "saga.completed".into(),
            step_deadline_ms: [60_000, 5 * 60_000, 10 * 60_000, 10 * 60_000],
            check_interval_ms: 1_000,
        }
    }
}

/// What the saga processor sends on: commands and completions share one stream, split by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SagaOutput {
    Command(SagaCommand),
    Completed(SagaCompleted),
}

/// Keys of `saga_deadlines`: deadline first so that due sagas are one range scan.
struct DeadlineKeySerde;

impl Serde<(i64, String)> for DeadlineKeySerde {
    fn serialize(&self, value: &(i64, String)) -> std::result::Result<Vec<u8>, SerdeError> {
        let mut out = ((value.0 as u64) ^ (1 << 63)).to_be_bytes().to_vec();
        out.extend_from_slice(value.1.as_bytes());
        Ok(out)
    }
    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<(i64, String), SerdeError> {
        if bytes.len() < 8 {
            return Err(SerdeError::Invalid {
                format: "deadline key",
                reason: "shorter than 8 bytes".into(),
            });
        }
        let mut head = [0u8; 8];
        head.copy_from_slice(&bytes[..8]);
        let ts = (u64::from_be_bytes(head) ^ (1 << 63)) as i64;
        let id = String::from_utf8(bytes[8..].to_vec()).map_err(|e| SerdeError::Invalid {
            format: "deadline key",
            reason: e.to_string(),
        })?;
        Ok((ts, id))
    }
}

struct SagaProcessor {
    config: SagaConfig,
    states: Option<KeyValueStoreHandle<String, SagaState>>,
    deadlines: Option<KeyValueStoreHandle<(i64, String), ()>>,
    metrics: crate::saga_metrics::SagaMetrics,
}

impl SagaProcessor {
    fn stores(
        &self,
    ) -> Option<(
        KeyValueStoreHandle<String, SagaState>,
        KeyValueStoreHandle<(i64, String), ()>,
    )> {
        Some((self.states.clone()?, self.deadlines.clone()?))
    }

    fn set_deadline(&self, state: &mut SagaState, deadline: Option<i64>) -> Result<()> {
        let Some((_, deadlines)) = self.stores() else {
            return Ok(());
        };
        if let Some(old) = state.deadline_ms {
            deadlines.delete(&(old, state.document_id.clone()))?;
        }
        if let Some(new) = deadline {
            deadlines.put(&(new, state.document_id.clone()), &())?;
        }
        state.deadline_ms = deadline;
        Ok(())
    }

    /// Moves the saga past every completed step; completes it after the last.
    fn advance(
        &self,
        state: &mut SagaState,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, SagaOutput>,
    ) -> Result<()> {
        let next = SagaStep::ALL
            .into_iter()
            .find(|s| !state.completed_steps.contains(s));
        state.current_step = next;
        match next {
            Some(step) => {
                let deadline = now.saturating_add(self.config.step_deadline_ms[step as usize]);
                self.set_deadline(state, Some(deadline))
            }
            None => {
                state.status = SagaStatus::Completed;
                self.set_deadline(state, None)?;
                let done = SagaCompleted {
                    event_type: "saga.completed".into(),
                    saga_id: state.document_id.clone(),
                    document_id: state.document_id.clone(),
                    user_id: state.user_id.clone(),
                    quiz_id: state.quiz_id.clone(),
                    completed_at_ms: now,
                };
                ctx.forward(Record::new(
                    state.document_id.clone(),
                    SagaOutput::Completed(done),
                    now,
                ))
            }
        }
    }

    /// Emits the compensations of the completed steps, last step first, and fails the saga.
    fn compensate(
        &self,
        state: &mut SagaState,
        reason: String,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, SagaOutput>,
    ) -> Result<()> {
        let mut done = state.completed_steps.clone();
        done.sort();
        for (sequence, step) in done.iter().rev().enumerate() {
            let command = SagaCommand {
                saga_id: state.document_id.clone(),
                document_id: state.document_id.clone(),
                command: step.compensation().into(),
                reason: reason.clone(),
                sequence: sequence as u32,
                issued_at_ms: now,
                quiz_id: state.quiz_id.clone(),
            };
            self.metrics.compensation(&command.command);
            ctx.forward(Record::new(
                state.document_id.clone(),
                SagaOutput::Command(command),
                now,
            ))?;
        }
        state.status = SagaStatus::Failed;
        state.failure_reason = Some(reason);
        state.updated_at_ms = now;
        self.set_deadline(state, None)
    }
}

impl Processor<String, PlatformEvent, String, SagaOutput> for SagaProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, SagaOutput>) -> Result<()> {
        self.states = Some(ctx.key_value_store("saga_state")?);
        self.deadlines = Some(ctx.key_value_store("saga_deadlines")?);
        if let Some(states) = &self.states {
            // A metric must not stop the task: a store it cannot read counts nothing.
            let running = match states.all() {
                Ok(rows) => rows
                    .iter()
                    .filter(|(_, s)| s.status == SagaStatus::Running)
                    .count(),
                Err(e) => {
                    tracing::warn!("counting the sagas in flight: {e}");
                    0
                }
            };
            let commands: Vec<&str> = SagaStep::ALL.iter().map(|s| s.compensation()).collect();
            self.metrics.opened(running as i64, &commands);
        }
        ctx.schedule(
            Duration::from_millis(self.config.check_interval_ms),
            PunctuationType::StreamTime,
        );
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<String, PlatformEvent>,
        ctx: &mut ProcessorContext<'_, String, SagaOutput>,
    ) -> Result<()> {
        let Some((states, _)) = self.stores() else {
            return Ok(());
        };
        let event = record.value;
        let now = record.timestamp;
        let mut started = false;
        let mut state = match states.get(&record.key)? {
            Some(s) => s,
            None => {
                started = true;
                SagaState {
                    document_id: record.key.clone(),
                    user_id: None,
                    status: SagaStatus::Running,
                    current_step: Some(SagaStep::Uploaded),
                    completed_steps: Vec::new(),
                    deadline_ms: None,
                    started_at_ms: now,
                    updated_at_ms: now,
                    failure_reason: None,
                    quiz_id: None,
                }
            }
        };
        if state.status != SagaStatus::Running {
            return Ok(()); // finished sagas ignore late and duplicate events
        }
        if state.user_id.is_none() {
            state.user_id = event.str("user_id").map(str::to_string);
        }
        if event.event_type.starts_with("quiz.") && state.quiz_id.is_none() {
            state.quiz_id = event.str("quiz_id").map(str::to_string);
        }
        match event.event_type.as_str() {
            "document.error" | "quiz.failed" => {
                let detail = event
                    .str("error")
                    .or_else(|| event.str("reason"))
                    .unwrap_or("no detail");
                let reason = format!("{}: {detail}", event.event_type);
                self.compensate(&mut state, reason, now, ctx)?;
            }
            other => match SagaStep::of_event(other) {
                Some(step) if !state.completed_steps.contains(&step) => {
                    state.completed_steps.push(step);
                    state.completed_steps.sort();
                    state.updated_at_ms = state.updated_at_ms.max(now);
                    self.advance(&mut state, now, ctx)?;
                }
                Some(_) => return Ok(()), // duplicate
                None => {
                    // document.processing / indexed, quiz.requested: progress, no step. A new
                    // saga still needs its first deadline.
                    if state.deadline_ms.is_none() {
                        self.advance(&mut state, now, ctx)?;
                    }
                }
            },
        }
        states.put(&record.key, &state)?;
        // Counted once the saga's state is written (a failure before leaves the gauges alone).
        if started {
            self.metrics.started();
        }
        self.metrics.ended(&state, now);
        Ok(())
    }

    fn close(&mut self) {
        self.metrics.closed();
    }

    fn punctuate(
        &mut self,
        _: ScheduleId,
        stream_time: i64,
        ctx: &mut ProcessorContext<'_, String, SagaOutput>,
    ) -> Result<()> {
        let Some((states, deadlines)) = self.stores() else {
            return Ok(());
        };
        let due = deadlines.range(
            &(i64::MIN, String::new()),
            &(stream_time.saturating_sub(1), "\u{10FFFF}".repeat(4)),
        )?;
        for ((deadline, document_id), ()) in due {
            let Some(mut state) = states.get(&document_id)? else {
                deadlines.delete(&(deadline, document_id))?;
                continue;
            };
            if state.status != SagaStatus::Running || state.deadline_ms != Some(deadline) {
                deadlines.delete(&(deadline, document_id))?;
                continue;
            }
            let step = state
                .current_step
                .map_or("none".to_string(), |s| format!("{s:?}"));
            let reason = format!("timeout waiting for {step}");
            self.compensate(&mut state, reason, deadline, ctx)?;
            states.put(&document_id, &state)?;
            self.metrics.ended(&state, deadline);
        }
        Ok(())
    }
}

/// The event types the saga reads from each topic.
pub const DOCUMENT_EVENT_TYPES: &[&str] = &[
    "document.uploaded",
    "document.processing",
    "document.processed",
    "document.indexed",
    "document.error",
    "notes.generated",
    "audio.transcription.completed",
];

/// Builds the topology.
pub fn document_quiz_saga(config: &SagaConfig) -> Result<Topology> {
    // The saga's metric families exist from the start, before its first task opens.
    let commands: Vec<&str> = SagaStep::ALL.iter().map(|s| s.compensation()).collect();
    crate::saga_metrics::touch(&commands);
    let b = StreamsBuilder::new();
    b.add_state_store(
        StoreSpec::key_value("saga_state"),
        Serdes::string(),
        Serdes::json::<SagaState>(),
    );
    b.add_state_store(
        StoreSpec::key_value("saga_deadlines"),
        std::sync::Arc::new(DeadlineKeySerde),
        Serdes::json::<()>(),
    );
    let documents: KStream<String, PlatformEvent> = platform_events(
        &b,
        config.document_topic.as_str(),
        DOCUMENT_EVENT_TYPES,
        "document_id",
    );
    // Quiz events are keyed by quiz; the saga's are re-keyed by document and repartitioned.
    let quizzes: KStream<String, PlatformEvent> = platform_events(
        &b,
        config.quiz_topic.as_str(),
        crate::quiz_results::QUIZ_EVENT_TYPES,
        "quiz_id",
    )
    .filter(|_, e| {
        matches!(e.event_type.as_str(), "quiz.generated" | "quiz.failed")
            && e.str("document_id").is_some_and(|d| !d.is_empty())
    })
    .select_key(|_, e| e.str("document_id").unwrap_or_default().to_string())
    .repartition_with(
        "saga-quizzes-by-document",
        Serdes::string(),
        Serdes::json::<PlatformEvent>(),
    );
    let saga_config = config.clone();
    let by_document = documents.merge(&quizzes);
    let outputs = by_document.process_values(
        move || SagaProcessor {
            metrics: Default::default(),
            config: saga_config.clone(),
            states: None,
            deadlines: None,
        },
        &["saga_state", "saga_deadlines"],
    );
    outputs
        .flat_map_values(|o| match o {
            SagaOutput::Command(c) => Some(c),
            SagaOutput::Completed(_) => None,
        })
        .to(
            &config.commands_topic,
            Produced::with(Serdes::string(), Serdes::json::<SagaCommand>()),
        );
    outputs
        .flat_map_values(|o| match o {
            SagaOutput::Completed(c) => Some(c),
            SagaOutput::Command(_) => None,
        })
        .to(
            &config.completed_topic,
            Produced::with(Serdes::string(), Serdes::json::<SagaCompleted>()),
        );
    b.build()
}
