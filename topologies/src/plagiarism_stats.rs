//! `plagiarism-stats`: per course and assignment, count, mean, min, max, p50 and p95 of
//! plagiarism scores, all-time (`plagiarism_stats`) and per day (`plagiarism_stats_daily`).
//! `plagiarism_checked` is joined to `paper_uploaded` (a table by submission) for the course,
//! assignment and owner; each checked paper also notifies its owner on `notifications`.

use std::time::Duration;

use eddy_engine::{
    Grouped, Materialized, Processor, ProcessorContext, Produced, Record, Result, Serdes,
    StreamsBuilder, TimeWindows, Topology,
};
use serde::{Deserialize, Serialize};

use crate::events::{platform_events, PlatformEvent};
use crate::notifications::Notification;

/// Event types of `paper_uploaded` and `plagiarism_checked`.
pub const PAPER_EVENT_TYPES: &[&str] = &["paper_uploaded", "paper.uploaded"];
pub const CHECK_EVENT_TYPES: &[&str] = &["plagiarism_checked", "plagiarism.checked"];

/// Topics and the daily window's grace.
#[derive(Debug, Clone, PartialEq)]
pub struct PlagiarismStatsConfig {
    pub papers_topic: String,
    pub checks_topic: String,
    pub stats_topic: String,
    pub notifications_topic: String,
    pub daily_grace: Duration,
}

impl Default for PlagiarismStatsConfig {
    fn default() -> Self {
        Self {
            papers_topic: "paper_uploaded".into(),
            checks_topic: "plagiarism_checked".into(),
            stats_topic: "analytics.plagiarism-stats".into(),
            notifications_topic: "notifications".into(),
            daily_grace: Duration::from_secs(3600),
        }
    }
}

/// A paper, the row of the `papers` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paper {
    pub submission_id: String,
    pub user_id: String,
    pub course_id: String,
    pub assignment_id: String,
}

/// A check joined with its paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedPaper {
    pub paper: Paper,
    pub score: f64,
    pub event_id: Option<String>,
}

/// Score statistics; percentiles come from a histogram of 0.1-point buckets (scores are 0–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Count per tenth of a point, 0.0 ..= 100.0.
    pub histogram: Vec<u64>,
}

impl Default for ScoreStats {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            histogram: vec![0; 1001],
        }
    }
}

impl ScoreStats {
    /// Adds a score.
    pub fn add(&mut self, score: f64) {
        self.count += 1;
        self.sum += score;
        self.min = self.min.min(score);
        self.max = self.max.max(score);
        let bucket = ((score * 10.0).round() as usize).min(1000);
        if let Some(b) = self.histogram.get_mut(bucket) {
            *b += 1;
        }
    }
    /// The mean score.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
    /// The `q`-quantile (nearest rank), to 0.1 point.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return i as f64 / 10.0;
            }
        }
        self.max
    }
    /// The summary that goes to the stats topic.
    pub fn summary(&self, course_assignment: &str, day_start_ms: Option<i64>) -> StatsSummary {
        let (course_id, assignment_id) = course_assignment
            .split_once('|')
            .unwrap_or((course_assignment, ""));
        StatsSummary {
            course_id: course_id.into(),
            assignment_id: assignment_id.into(),
            day_start_ms,
            count: self.count,
            mean: self.mean(),
            min: self.min,
            max: self.max,
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
        }
    }
}

/// A record of the stats topic (`day_start_ms` is `None` for all-time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSummary {
    pub course_id: String,
    pub assignment_id: String,
    pub day_start_ms: Option<i64>,
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p95: f64,
}

/// Turns `paper_uploaded` events into table rows; a paper missing a field is dead-lettered.
struct ToPaper;

impl Processor<String, PlatformEvent, String, Option<Paper>> for ToPaper {
    fn process(
        &mut self,
        r: Record<String, PlatformEvent>,
        ctx: &mut ProcessorContext<'_, String, Option<Paper>>,
    ) -> Result<()> {
        let e = &r.value;
        let fields = (
            e.entity_id("user_id"),
            e.entity_id("course_id"),
            e.entity_id("assignment_id"),
        );
        match fields {
            (Ok(user_id), Ok(course_id), Ok(assignment_id)) => {
                let paper = Paper {
                    submission_id: r.key.clone(),
                    user_id,
                    course_id,
                    assignment_id,
                };
                ctx.forward(Record::new(r.key, Some(paper), r.timestamp))
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                ctx.dead_letter(e.to_string());
                Ok(())
            }
        }
    }
}

/// Checks a joined check: dead-letters one whose paper is unknown or whose score is not 0–100.
struct ValidateCheck;

impl Processor<String, (PlatformEvent, Option<Paper>), String, CheckedPaper> for ValidateCheck {
    fn process(
        &mut self,
        r: Record<String, (PlatformEvent, Option<Paper>)>,
        ctx: &mut ProcessorContext<'_, String, CheckedPaper>,
    ) -> Result<()> {
        let (event, paper) = r.value;
        let Some(paper) = paper else {
            ctx.dead_letter(format!("no paper_uploaded for submission `{}`", r.key));
            return Ok(());
        };
        match event.f64("score") {
            Some(score) if (0.0..=100.0).contains(&score) => {
                let checked = CheckedPaper {
                    paper,
                    score,
                    event_id: event.event_id.clone(),
                };
                ctx.forward(Record::new(r.key, checked, r.timestamp))
            }
            other => {
                ctx.dead_letter(format!("score {other:?} is not within 0–100"));
                Ok(())
            }
        }
    }
}

/// Builds the topology.
pub fn plagiarism_stats(config: &PlagiarismStatsConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    let papers = platform_events(
        &b,
        config.papers_topic.as_str(),
        PAPER_EVENT_TYPES,
        "submission_id",
    )
    .process_values(|| ToPaper, &[])
    .flat_map_values(|p: Option<Paper>| p)
    .to_table(
        Materialized::named("papers")
            .with_key_serde(Serdes::string())
            .with_value_serde(Serdes::json()),
    );
    let checked = platform_events(
        &b,
        config.checks_topic.as_str(),
        CHECK_EVENT_TYPES,
        "submission_id",
    )
    .left_join_table(&papers, |check, paper| (check.clone(), paper.cloned()))
    .process_values(|| ValidateCheck, &[]);
    checked
        .map(|_, c| {
            let n = Notification {
                user_id: c.paper.user_id.clone(),
                kind: "plagiarism.checked".into(),
                message: format!(
                    "Your paper for {} was checked: plagiarism score {:.1}",
                    c.paper.assignment_id, c.score
                ),
                source_event_id: c
                    .event_id
                    .clone()
                    .unwrap_or_else(|| c.paper.submission_id.clone()),
            };
            (n.user_id.clone(), n)
        })
        .to(
            &config.notifications_topic,
            Produced::with(Serdes::string(), Serdes::json::<Notification>()),
        );
    let by_assignment = checked
        .map(|_, c| {
            (
                format!("{}|{}", c.paper.course_id, c.paper.assignment_id),
                c.score,
            )
        })
        .group_by_key(
            Grouped::named("plagiarism-by-assignment")
                .with(Serdes::string(), Serdes::json::<f64>()),
        );
    by_assignment
        .aggregate(
            ScoreStats::default,
            |_, s, mut st: ScoreStats| {
                st.add(s);
                st
            },
            Materialized::named("plagiarism_stats").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .flat_map(|k, st| st.map(|st| (k.clone(), st.summary(&k, None))))
        .to(
            &config.stats_topic,
            Produced::with(Serdes::string(), Serdes::json::<StatsSummary>()),
        );
    by_assignment
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(86_400),
            config.daily_grace,
        ))
        .aggregate(
            ScoreStats::default,
            |_, s, mut st: ScoreStats| {
                st.add(s);
                st
            },
            Materialized::named("plagiarism_stats_daily").with_value_serde(Serdes::json()),
        )
        .to_stream()
        .flat_map(|w, st| st.map(|st| (w.key.clone(), st.summary(&w.key, Some(w.start)))))
        .to(
            &config.stats_topic,
            Produced::with(Serdes::string(), Serdes::json::<StatsSummary>()),
        );
    b.build()
}
