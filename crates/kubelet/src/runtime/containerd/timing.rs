//! Step timing for the container create/start paths: each step's wall time, logged at debug
//! level with the step that ended it, so a slow pod start can be traced to containerd's part.

use std::time::Instant;

/// Laps of one operation, in milliseconds.
#[derive(Debug)]
pub struct Laps {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Default for Laps {
    fn default() -> Self {
        Self::new()
    }
}

impl Laps {
    /// Starts timing now.
    pub fn new() -> Self {
        Self {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Ends the current step, named `step`.
    pub fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        let ms = now.duration_since(self.last).as_secs_f64() * 1000.0;
        self.laps.push((step, (ms * 10.0).round() / 10.0));
        self.last = now;
    }

    /// `step=ms,step=ms,...` for a log field.
    pub fn summary(&self) -> String {
        self.laps
            .iter()
            .map(|(step, ms)| format!("{step}={ms}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_step_in_order() {
        let mut laps = Laps::new();
        laps.lap("first");
        laps.lap("second");
        let summary = laps.summary();
        let names: Vec<&str> = summary
            .split(',')
            .filter_map(|part| part.split('=').next())
            .collect();
        assert_eq!(names, vec!["first", "second"]);
    }
}
