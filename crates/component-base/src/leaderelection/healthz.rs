//! The `leaderElection` `/healthz` check (upstream client-go's leader healthz adaptor).
//!
//! A leader that cannot renew gives up after the renew deadline and the component exits, so a
//! leader whose last renewal is older than the lease duration plus a tolerance is one whose
//! renew loop is stuck (a deadlock, a starved runtime): by then another candidate may lead, so
//! this process must report itself unhealthy and let its supervisor restart it. A process that
//! does not lead is healthy as far as this check goes.

use std::time::Duration;

use tokio::time::Instant;

use super::LeaderStatus;
use crate::health::{CheckError, HealthCheck};

/// The tolerance past the lease duration that kube-scheduler and kube-controller-manager give
/// their `leaderElection` check.
pub const LEADER_HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// The check's name on `/healthz`, as upstream.
const NAME: &str = "leaderElection";

/// Why the `leaderElection` check fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaderHealthError {
    /// This process believes it leads, but its last renewal is older than the lease duration
    /// plus the tolerance.
    #[error(
        "leading lease {lease} but last renewed it {since:?} ago, more than the lease duration \
         {lease_duration:?} plus {tolerance:?}"
    )]
    RenewalOverdue {
        /// `<namespace>/<name>` of the Lease.
        lease: String,
        /// Time since the last successful acquire or renew.
        since: Duration,
        /// The configured lease duration.
        lease_duration: Duration,
        /// The tolerance past it.
        tolerance: Duration,
    },
}

/// The `leaderElection` check over one elector's [`LeaderStatus`]; build it with
/// [`super::LeaderElector::health_check`] and add it with [`crate::health::Health::add_check`].
#[derive(Debug, Clone)]
pub struct LeaderHealthCheck {
    status: LeaderStatus,
    lease: String,
    lease_duration: Duration,
    tolerance: Duration,
}

impl LeaderHealthCheck {
    pub(super) fn new(
        status: LeaderStatus,
        lease: String,
        lease_duration: Duration,
        tolerance: Duration,
    ) -> Self {
        LeaderHealthCheck {
            status,
            lease,
            lease_duration,
            tolerance,
        }
    }

    /// The rule, judged at `now`: healthy unless leading with the last renewal more than the
    /// lease duration plus the tolerance before `now`.
    pub fn check_at(&self, now: Instant) -> Result<(), LeaderHealthError> {
        let Some(renewed_at) = self.status.last_renewal() else {
            return Ok(());
        };
        let since = now.saturating_duration_since(renewed_at);
        if since > self.lease_duration + self.tolerance {
            return Err(LeaderHealthError::RenewalOverdue {
                lease: self.lease.clone(),
                since,
                lease_duration: self.lease_duration,
                tolerance: self.tolerance,
            });
        }
        Ok(())
    }
}

impl HealthCheck for LeaderHealthCheck {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self) -> Result<(), CheckError> {
        Ok(self.check_at(Instant::now())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn check(status: &LeaderStatus) -> LeaderHealthCheck {
        LeaderHealthCheck::new(
            status.clone(),
            "kube-system/kube-scheduler".into(),
            LEASE,
            LEADER_HEALTH_TIMEOUT,
        )
    }

    #[test]
    fn only_a_leader_whose_renewal_is_overdue_is_unhealthy() {
        let base = Instant::now();
        let limit = LEASE + LEADER_HEALTH_TIMEOUT;
        let ms = Duration::from_millis;
        // (leading, time since the last renewal when checked, healthy)
        let cases = [
            (false, limit + ms(1), true),
            (true, Duration::ZERO, true),
            (true, ms(2_000), true),
            (true, limit, true),
            (true, limit + ms(1), false),
            (true, limit * 10, false),
        ];
        for (leading, since, healthy) in cases {
            let status = LeaderStatus::default();
            if leading {
                status.renewed(base);
            }
            let result = check(&status).check_at(base + since);
            assert_eq!(
                result.is_ok(),
                healthy,
                "leading={leading} since={since:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_renewal_makes_an_overdue_leader_healthy_again() {
        let base = Instant::now();
        let status = LeaderStatus::default();
        let check = check(&status);
        status.renewed(base);
        let late = base + LEASE + LEADER_HEALTH_TIMEOUT + Duration::from_secs(1);
        assert_eq!(
            check.check_at(late),
            Err(LeaderHealthError::RenewalOverdue {
                lease: "kube-system/kube-scheduler".into(),
                since: LEASE + LEADER_HEALTH_TIMEOUT + Duration::from_secs(1),
                lease_duration: LEASE,
                tolerance: LEADER_HEALTH_TIMEOUT,
            })
        );
        status.renewed(late);
        assert_eq!(check.check_at(late), Ok(()));
    }

    #[test]
    fn a_leader_that_stood_down_is_healthy_whatever_its_last_renewal() {
        let base = Instant::now();
        let status = LeaderStatus::default();
        status.renewed(base);
        status.stand_by();
        assert_eq!(check(&status).check_at(base + LEASE * 100), Ok(()));
    }

    #[test]
    fn the_check_is_named_like_upstream_on_healthz() {
        assert_eq!(check(&LeaderStatus::default()).name(), "leaderElection");
    }
}
