//! The suite's table: one row per workload, records/s and a ratio to a named baseline row.

use std::time::Duration;

/// One measured workload.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: &'static str,
    pub workload: String,
    pub records: u64,
    pub elapsed: Duration,
    /// What the figure is compared with, and the ratio.
    pub note: String,
}

impl Row {
    /// A row of `records` in `elapsed`.
    pub fn new(
        section: &'static str,
        workload: impl Into<String>,
        records: u64,
        elapsed: Duration,
    ) -> Self {
        Self {
            section,
            workload: workload.into(),
            records,
            elapsed,
            note: String::new(),
        }
    }

    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// This row with its ratio to `base` in the note.
    pub fn against(mut self, label: &str, base: &Row) -> Self {
        let ratio = self.rate() / base.rate();
        self.note = format!("{ratio:.2}× {label}");
        self
    }

    /// This row with a free-form note.
    pub fn noted(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Thousands separated by spaces, as the README's tables write them.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| section | workload | records | records/s | note |\n|---|---|---:|---:|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.section,
            r.workload,
            grouped(r.records),
            grouped(r.rate() as u64),
            r.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_print_rates_and_ratios() {
        let base = Row::new("s", "base", 1_000, Duration::from_secs(1));
        let fast = Row::new("s", "fast", 3_000_000, Duration::from_secs(1)).against("base", &base);
        assert_eq!(grouped(3_000_000), "3 000 000");
        assert_eq!(fast.note, "3000.00× base");
        assert!(table(&[base, fast]).contains("| s | fast | 3 000 000 | 3 000 000 |"));
    }
}
