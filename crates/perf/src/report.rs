//! The tables every scenario prints: metric | ours | floor | ratio to floor | upstream SLO or
//! figure, then the peak RSS and CPU seconds of every component process.

use std::fmt;
use std::time::Duration;

use crate::procs::ProcUsage;

/// One measured metric.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured (with its unit).
    pub metric: String,
    /// Our value.
    pub ours: f64,
    /// The physical floor measured in the same run, if there is one.
    pub floor: Option<f64>,
    /// The upstream SLO or published figure, as text.
    pub upstream: String,
}

impl Row {
    /// A row.
    pub fn new(metric: impl Into<String>, ours: f64, floor: Option<f64>, upstream: &str) -> Self {
        Self {
            metric: metric.into(),
            ours,
            floor,
            upstream: upstream.to_string(),
        }
    }

    /// ours / floor (how many times the floor; > 1 is slower for latencies, < 1 for rates).
    pub fn ratio(&self) -> Option<f64> {
        self.floor.filter(|f| *f > 0.0).map(|f| self.ours / f)
    }
}

/// A scenario's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Scenario name and size.
    pub title: String,
    /// The metrics.
    pub rows: Vec<Row>,
    /// Component processes at the end of the run.
    pub processes: Vec<ProcUsage>,
    /// Free-form remarks (what the floor means, what broke).
    pub notes: Vec<String>,
    /// The hollow nodes' files, removed when the report is dropped, after it is printed: at
    /// 150,000 pods removing their volume files took minutes, and the table waited for it.
    pub hollow_dirs: Vec<std::sync::Arc<tempfile::TempDir>>,
}

impl Report {
    /// An empty report titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Default::default()
        }
    }

    /// Adds a row.
    pub fn row(
        &mut self,
        metric: impl Into<String>,
        ours: f64,
        floor: Option<f64>,
        upstream: &str,
    ) {
        self.rows.push(Row::new(metric, ours, floor, upstream));
    }

    /// Adds p50/p90/p99 rows (milliseconds) of `latencies` under `name`.
    pub fn latency_rows(
        &mut self,
        name: &str,
        latencies: &Latencies,
        floor: Option<&Latencies>,
        upstream_p99: &str,
    ) {
        for (label, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
            let upstream = if label == "p99" { upstream_p99 } else { "" };
            self.row(
                format!("{name} {label} (ms)"),
                latencies.ms(q),
                floor.map(|f| f.ms(q)),
                upstream,
            );
        }
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "### {}", self.title)?;
        writeln!(f)?;
        writeln!(
            f,
            "| metric | ours | floor | ratio to floor | upstream SLO / figure |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---|")?;
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {} | {} |",
                row.metric,
                num(row.ours),
                row.floor.map(num).unwrap_or_else(|| "-".into()),
                row.ratio()
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                if row.upstream.is_empty() {
                    "-"
                } else {
                    &row.upstream
                },
            )?;
        }
        if !self.processes.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "| process | pid | peak RSS (MiB) | RSS now (MiB) | CPU (s) |"
            )?;
            writeln!(f, "|---|---:|---:|---:|---:|")?;
            for p in &self.processes {
                writeln!(
                    f,
                    "| {} | {} | {:.1} | {:.1} | {:.2} |",
                    p.name,
                    p.pid,
                    p.peak_rss_kib as f64 / 1024.0,
                    p.rss_kib as f64 / 1024.0,
                    p.cpu_seconds
                )?;
            }
        }
        for note in &self.notes {
            writeln!(f)?;
            writeln!(f, "- {note}")?;
        }
        Ok(())
    }
}

/// A set of latency samples.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
    dirty: Vec<Duration>,
}

impl Latencies {
    /// No samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// From samples.
    pub fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self {
            sorted: samples,
            dirty: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, sample: Duration) {
        self.dirty.push(sample);
    }

    fn settle(&self) -> Vec<Duration> {
        let mut all = self.sorted.clone();
        all.extend_from_slice(&self.dirty);
        all.sort();
        all
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.dirty.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q` quantile (0..=1) in milliseconds (NaN without samples).
    pub fn ms(&self, q: f64) -> f64 {
        let all = if self.dirty.is_empty() {
            None
        } else {
            Some(self.settle())
        };
        let all = all.as_ref().unwrap_or(&self.sorted);
        quantile(all, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latencies::from_samples(samples);
        assert_eq!(l.ms(0.5), 50.0);
        assert_eq!(l.ms(0.99), 99.0);
        assert_eq!(l.ms(1.0), 100.0);
    }

    #[test]
    fn empty_latencies_have_no_quantile() {
        assert!(Latencies::new().ms(0.5).is_nan());
    }

    #[test]
    fn table_shows_ratio_to_floor() {
        let mut r = Report::new("t");
        r.row("creates/s", 50.0, Some(100.0), "x");
        let text = r.to_string();
        assert!(
            text.contains("| creates/s | 50.0 | 100 | 0.50x | x |"),
            "{text}"
        );
    }
}
