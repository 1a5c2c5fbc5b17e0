//! `emotion-aggregates`: per child and emotion, the count and mean confidence in 1-minute
//! tumbling event-time windows with grace; each window's final result goes once, when it
//! closes, to `analytics.emotion-aggregates`. Windows also close after a wall-clock idle
//! timeout, so a quiet child's last window is not held open. Store: `emotion_aggregates`.

use std::time::Duration;

use eddy_engine::{
    EmitStrategy, Grouped, Materialized, Produced, Result, Serdes, StreamsBuilder, TimeWindows,
    Topology,
};
use serde::{Deserialize, Serialize};

use crate::events::{platform_events, PlatformEvent};

/// Topics, window size, grace and idle timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionAggregatesConfig {
    pub input_topic: String,
    pub output_topic: String,
    pub window: Duration,
    pub grace: Duration,
    pub idle_close: Duration,
}

impl Default for EmotionAggregatesConfig {
    fn default() -> Self {
        Self {
            input_topic: "emotion.detected".into(),
            output_topic: "analytics.emotion-aggregates".into(),
            window: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            idle_close: Duration::from_secs(30),
        }
    }
}

/// The running aggregate of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EmotionWindow {
    pub count: u64,
    pub confidence_sum: f64,
}

/// A record of `analytics.emotion-aggregates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotionAggregate {
    pub child_id: String,
    pub emotion: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub count: u64,
    pub mean_confidence: f64,
}

/// Builds the topology.
pub fn emotion_aggregates(config: &EmotionAggregatesConfig) -> Result<Topology> {
    let b = StreamsBuilder::new();
    platform_events(
        &b,
        config.input_topic.as_str(),
        &["emotion.detected"],
        "child_id",
    )
    .flat_map(|child, e: PlatformEvent| {
        // The flat schema says `emotion`/`confidence`; message events say `emotion_detected`.
        let emotion = e
            .str("emotion")
            .or_else(|| e.str("emotion_detected"))
            .map(str::to_string);
        let confidence = e.f64("confidence").or_else(|| e.f64("emotion_confidence"));
        match (emotion, confidence) {
            (Some(emotion), Some(c)) => Some((format!("{child}|{emotion}"), c)),
            _ => None,
        }
    })
    .group_by_key(Grouped::named("emotions-by-child").with(Serdes::string(), Serdes::json::<f64>()))
    .windowed_by(TimeWindows::of_size_and_grace(config.window, config.grace))
    .emit_strategy(EmitStrategy::OnWindowClose)
    .close_on_idle(config.idle_close)
    .aggregate(
        EmotionWindow::default,
        |_, c, mut w: EmotionWindow| {
            w.count += 1;
            w.confidence_sum += c;
            w
        },
        Materialized::named("emotion_aggregates").with_value_serde(Serdes::json()),
    )
    .to_stream()
    .flat_map(|w, agg| {
        agg.map(|a| {
            let (child, emotion) = w.key.split_once('|').unwrap_or((w.key.as_str(), ""));
            let out = EmotionAggregate {
                child_id: child.to_string(),
                emotion: emotion.to_string(),
                window_start_ms: w.start,
                window_end_ms: w.end,
                count: a.count,
                mean_confidence: if a.count == 0 {
                    0.0
                } else {
                    a.confidence_sum / a.count as f64
                },
            };
            (child.to_string(), out)
        })
    })
    .to(
        &config.output_topic,
        Produced::with(Serdes::string(), Serdes::json::<EmotionAggregate>()),
    );
    b.build()
}
