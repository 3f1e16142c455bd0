//! Randomly stretched waits, as upstream's `wait.Jitter`: many clients started together
//! (a fleet of kubelets, their pods, leader candidates) then act at different moments.

use std::time::Duration;

/// `base` stretched by `max_factor * unit` of itself; `unit` (meant uniform in [0, 1)) is
/// clamped to [0, 1].
pub fn at(base: Duration, max_factor: f64, unit: f64) -> Duration {
    base.mul_f64(1.0 + max_factor * unit.clamp(0.0, 1.0))
}

/// `base` stretched by a random part, up to `max_factor`, of itself.
pub fn up_to(base: Duration, max_factor: f64) -> Duration {
    at(base, max_factor, rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stretch_by_a_random_part_of_the_factor() {
        let base = Duration::from_secs(10);
        assert_eq!(at(base, 0.5, 0.0), base);
        assert_eq!(at(base, 0.5, 1.0), Duration::from_secs(15));
        assert_eq!(at(base, 2.0, -3.0), base);
        let waits: Vec<Duration> = (0..200).map(|_| up_to(base, 1.0)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= base && *w <= Duration::from_secs(20)));
        let short = waits
            .iter()
            .filter(|w| **w < Duration::from_secs(15))
            .count();
        assert!(
            (40..=160).contains(&short),
            "{short} of 200 in the lower half"
        );
    }
}
