//! What `eddy demo` and `eddy run` print while they run: on a terminal, a table refreshed in
//! place (per topology: records in and out per second, lag, dead letters, commits, aborts,
//! tasks restoring) under the console URL and the psql command; with `--plain`, or when the
//! output is not a terminal, one line per topology per round, for logs and CI.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use eddy_engine::KafkaStreams;

/// One application's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub records_in: u64,
    pub records_out: u64,
    pub lag: u64,
    pub dead_letters: u64,
    pub commits: u64,
    pub aborts: u64,
    pub restoring: u64,
    /// Records the restoring tasks have still to read.
    pub restore_left: u64,
    pub restored: u64,
    /// Changelog records written by this instance's standby tasks.
    pub standby: u64,
}

impl Counts {
    fn of(app: &KafkaStreams) -> Self {
        let p = app.progress();
        Self {
            records_in: p.records_in.load(Relaxed),
            records_out: p.records_out.load(Relaxed),
            lag: p.lag.load(Relaxed),
            dead_letters: p.dead_letters.load(Relaxed),
            commits: p.commits.load(Relaxed),
            aborts: p.aborts.load(Relaxed),
            restoring: app.restoring_tasks() as u64,
            restore_left: app.restore_remaining(),
            restored: p.restored.load(Relaxed),
            standby: p.standby_records.load(Relaxed),
        }
    }
}

/// The progress view of a run.
pub struct ProgressView {
    table: bool,
    header: Vec<String>,
    last: Option<(Instant, Vec<Counts>)>,
}

impl ProgressView {
    /// A table on a terminal unless `plain`; `header`: the lines above it (URLs, commands).
    pub fn new(plain: bool, header: Vec<String>) -> Self {
        Self {
            table: !plain && std::io::stdout().is_terminal(),
            header,
            last: None,
        }
    }

    /// Prints the applications' progress now.
    pub fn show(&mut self, apps: &[(String, KafkaStreams)], fed: u64) {
        let now = Instant::now();
        let counts: Vec<Counts> = apps.iter().map(|(_, a)| Counts::of(a)).collect();
        let names: Vec<&str> = apps.iter().map(|(n, _)| n.as_str()).collect();
        let text = if self.table {
            let seconds = self
                .last
                .as_ref()
                .map(|(at, _)| now.duration_since(*at).as_secs_f64());
            let before = self.last.as_ref().map(|(_, c)| c.as_slice());
            // Home, clear the screen, then the whole table: refreshed in place.
            format!(
                "\x1b[H\x1b[2J{}",
                table(&self.header, &names, &counts, before, seconds, fed)
            )
        } else {
            lines(&names, &counts, fed)
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.last = Some((now, counts));
    }
}

/// The plain form: a round marker, then a line per application.
pub fn lines(names: &[&str], counts: &[Counts], fed: u64) -> String {
    let mut text = format!("-- {fed} records fed\n");
    for (name, c) in names.iter().zip(counts) {
        text.push_str(&format!(
            "{name:<22} in {:>8}  out {:>8}  lag {:>6}  dead-letters {:>5}  commits {:>6}  aborts {:>3}  restoring {:>2}  left {:>7}  standby {:>7}  restored {:>6}\n",
            c.records_in, c.records_out, c.lag, c.dead_letters, c.commits, c.aborts, c.restoring, c.restore_left, c.standby, c.restored,
        ));
    }
    text
}

/// The table form; rates come from `before`, `seconds` ago (blank on the first round).
pub fn table(
    header: &[String],
    names: &[&str],
    counts: &[Counts],
    before: Option<&[Counts]>,
    seconds: Option<f64>,
    fed: u64,
) -> String {
    let mut text = String::new();
    for line in header {
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&format!(
        "{:<22} {:>9} {:>9} {:>8} {:>12} {:>8} {:>7} {:>10}\n",
        "topology", "in/s", "out/s", "lag", "dead letters", "commits", "aborts", "restoring"
    ));
    let rate = |now: u64, then: Option<u64>| match (then, seconds) {
        (Some(then), Some(s)) if s > 0.0 => format!("{:.0}", now.saturating_sub(then) as f64 / s),
        _ => "-".to_string(),
    };
    for (i, (name, c)) in names.iter().zip(counts).enumerate() {
        let prior = before.and_then(|b| b.get(i));
        text.push_str(&format!(
            "{name:<22} {:>9} {:>9} {:>8} {:>12} {:>8} {:>7} {:>10}\n",
            rate(c.records_in, prior.map(|p| p.records_in)),
            rate(c.records_out, prior.map(|p| p.records_out)),
            c.lag,
            c.dead_letters,
            c.commits,
            c.aborts,
            match c.restoring {
                0 => "0".to_string(),
                n => format!("{n} ({} left)", c.restore_left),
            },
        ));
    }
    text.push_str(&format!("\n{fed} records fed; Ctrl-C stops\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_rates_since_the_last_round() {
        let before = Counts {
            records_in: 100,
            records_out: 50,
            ..Default::default()
        };
        let now = Counts {
            records_in: 500,
            records_out: 250,
            lag: 7,
            dead_letters: 2,
            commits: 40,
            aborts: 1,
            restoring: 3,
            restore_left: 120,
            restored: 0,
            standby: 0,
        };
        let header = vec!["console: http://127.0.0.1:8080/".to_string()];
        let text = table(
            &header,
            &["quiz-results"],
            &[now],
            Some(&[before]),
            Some(2.0),
            900,
        );
        assert!(
            text.starts_with("console: http://127.0.0.1:8080/\n"),
            "{text}"
        );
        let row = text
            .lines()
            .find(|l| l.starts_with("quiz-results"))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "quiz-results",
                "200",
                "100",
                "7",
                "2",
                "40",
                "1",
                "3",
                "(120",
                "left)"
            ]
        );
        let first = table(&header, &["quiz-results"], &[now], None, None, 900);
        let row = first
            .lines()
            .find(|l| l.starts_with("quiz-results"))
            .unwrap();
        assert!(row.split_whitespace().nth(1) == Some("-"), "{row}");
    }

    #[test]
    fn plain_lines_keep_one_line_per_topology() {
        let c = Counts {
            records_in: 5,
            lag: 1,
            ..Default::default()
        };
        let text = lines(&["a", "b"], &[c, c], 10);
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with("-- 10 records fed\n"));
        assert!(
            text.contains("a                      in        5"),
            "{text}"
        );
    }
}
