//! Leader election over a `coordination.k8s.io/v1` Lease, with upstream client-go semantics.
//!
//! Start with [`LeaderElector::run`]: it waits until this process holds the Lease, calls the
//! caller's "started leading" future, renews the Lease every retry period, and returns
//! [`Outcome::Lost`] when renewing failed for longer than the renew deadline (upstream processes
//! then exit) or [`Outcome::Cancelled`] on shutdown, after releasing the Lease (upstream
//! `ReleaseOnCancel`). [`LeaderElectionFlags`] holds the upstream `--leader-elect*` flags.
//!
//! As upstream, expiry is judged on the local monotonic clock: a Lease is taken over only when
//! its record has not changed for `leaseDurationSeconds` since this process last saw it change,
//! so clock skew between holders does not matter. `renewTime` and `acquireTime` are informative.
//!
//! [`LeaderElector::health_check`] is the `leaderElection` check a component adds to `/healthz`
//! ([`LeaderHealthCheck`]): it fails while this process believes it leads but last renewed more
//! than the lease duration plus a tolerance ago, which means its renew loop is stuck (a loop that
//! runs gives up at the renew deadline and the component exits).

mod healthz;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

pub use healthz::{LeaderHealthCheck, LeaderHealthError, LEADER_HEALTH_TIMEOUT};

/// The upstream leader-election flags, flattened into a component's options.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionFlags {
    /// Campaign for the Lease and do the component's work only while holding it.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long followers wait after the last renewal they saw before taking the Lease over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before it gives up leading.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Pause between attempts to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Kind of lock object (only `leases`).
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,
    /// Namespace of the Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the Lease (default: the component's name).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

impl LeaderElectionFlags {
    /// The election configuration these flags describe for `component` (also the default Lease
    /// name), with a fresh identity and release on shutdown.
    pub fn config(&self, component: &str) -> Result<LeaderElectionConfig, ConfigError> {
        if self.leader_elect_resource_lock != "leases" {
            return Err(ConfigError::ResourceLock(
                self.leader_elect_resource_lock.clone(),
            ));
        }
        let config = LeaderElectionConfig {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self
                .leader_elect_resource_name
                .clone()
                .unwrap_or_else(|| component.to_string()),
            identity: default_identity(),
            component: component.to_string(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            release_on_cancel: true,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Parses a Go-style duration: `15s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(format!("invalid duration {input:?}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {input:?}"))?;
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}"))?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {input:?}")),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// `<hostname>_<uuid>`, the identity upstream components use.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Why an election configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--leader-elect-resource-lock` names something other than `leases`.
    #[error("--leader-elect-resource-lock: unsupported lock type {0:?} (only \"leases\")")]
    ResourceLock(String),
    /// The lease duration must exceed the renew deadline.
    #[error("leaseDuration must be greater than renewDeadline")]
    LeaseNotAboveDeadline,
    /// The renew deadline must exceed 1.2 x the retry period (upstream's jitter factor).
    #[error("renewDeadline must be greater than retryPeriod*1.2")]
    DeadlineNotAboveRetry,
    /// A duration is zero.
    #[error("leaseDuration, renewDeadline and retryPeriod must be greater than zero")]
    Zero,
    /// The identity is empty.
    #[error("leader election identity must not be empty")]
    NoIdentity,
}

/// What one elector competes for and how.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's `holderIdentity`.
    pub identity: String,
    /// Component name for the `LeaderElection` event's source.
    pub component: String,
    /// How long a Lease is honoured after its holder last changed it.
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before it gives up.
    pub renew_deadline: Duration,
    /// Pause between acquire and renew attempts.
    pub retry_period: Duration,
    /// Whether to clear `holderIdentity` when the caller cancels (shutdown).
    pub release_on_cancel: bool,
}

impl LeaderElectionConfig {
    /// Checks upstream's constraints between the durations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration.is_zero()
            || self.renew_deadline.is_zero()
            || self.retry_period.is_zero()
        {
            return Err(ConfigError::Zero);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotAboveDeadline);
        }
        if self.renew_deadline.as_secs_f64() <= self.retry_period.as_secs_f64() * JITTER_FACTOR {
            return Err(ConfigError::DeadlineNotAboveRetry);
        }
        if self.identity.is_empty() {
            return Err(ConfigError::NoIdentity);
        }
        Ok(())
    }
}

/// Upstream's jitter factor for the acquire loop.
const JITTER_FACTOR: f64 = 1.2;

/// How an election run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Renewing failed for longer than the renew deadline: another candidate may lead now, so
    /// the caller must stop its work (upstream components exit).
    Lost,
    /// The caller cancelled (shutdown); the Lease was released if configured.
    Cancelled,
}

/// Whether this process leads, and since when it has not renewed; cheap to clone, for metrics
/// and health.
#[derive(Debug, Clone, Default)]
pub struct LeaderStatus(Arc<Mutex<Role>>);

/// What this candidate believes about itself. One value, so a reader never sees "leading" without
/// the renewal that made it so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Role {
    /// Not holding the Lease (campaigning, lost, released or cancelled).
    #[default]
    Standby,
    /// Holding the Lease; `renewed_at` is the last successful acquire or renew.
    Leading { renewed_at: Instant },
}

impl LeaderStatus {
    /// True while this process holds the Lease.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role(), Role::Leading { .. })
    }

    /// When this process last acquired or renewed the Lease, while it leads.
    pub fn last_renewal(&self) -> Option<Instant> {
        match *self.role() {
            Role::Leading { renewed_at } => Some(renewed_at),
            Role::Standby => None,
        }
    }

    /// Records a successful acquire or renew at `at`: this process leads.
    fn renewed(&self, at: Instant) {
        *self.role() = Role::Leading { renewed_at: at };
    }

    /// This process no longer leads.
    fn stand_by(&self) {
        *self.role() = Role::Standby;
    }

    fn role(&self) -> MutexGuard<'_, Role> {
        // The guarded value is a plain enum, whole after any panic.
        match self.0.lock() {
            Ok(role) => role,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sets the flag directly (renewed now when leading), for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn set_for_test(&self, leading: bool) {
        if leading {
            self.renewed(Instant::now());
        } else {
            self.stand_by();
        }
    }
}

/// The Lease record as this candidate last observed it.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    spec: LeaseSpec,
    resource_version: Option<String>,
}

/// A candidate for leadership of one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    events: Api<Event>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
    observed_at: Option<Instant>,
    uid: Option<String>,
    status: LeaderStatus,
}

impl LeaderElector {
    /// A candidate using `client` for `config`.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client.clone(), &config.namespace),
            events: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            observed_at: None,
            uid: None,
            status: LeaderStatus::default(),
        }
    }

    /// A handle saying whether this candidate leads now.
    pub fn status(&self) -> LeaderStatus {
        self.status.clone()
    }

    /// The identity this candidate writes as `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The `leaderElection` `/healthz` check for this candidate: it fails while this candidate
    /// leads but last renewed more than the lease duration plus [`LEADER_HEALTH_TIMEOUT`] ago.
    pub fn health_check(&self) -> LeaderHealthCheck {
        LeaderHealthCheck::new(
            self.status.clone(),
            format!("{}/{}", self.config.namespace, self.config.name),
            self.config.lease_duration,
            LEADER_HEALTH_TIMEOUT,
        )
    }

    /// This candidate as kube-scheduler and kube-controller-manager run it: its
    /// `leaderElection` check on `health`'s `/healthz` and its status as
    /// `leader_election_master_status{name="<component>"}` in `registry`.
    pub fn observed(
        self,
        component: &str,
        health: &crate::health::Health,
        registry: &crate::metrics::SharedRegistry,
    ) -> Self {
        health.add_check(self.health_check());
        crate::metrics::register_leader_status(registry, component, self.status());
        self
    }

    /// Campaigns until elected (or `cancel` resolves), then runs `lead` beside the renew loop.
    /// Returns when leadership is lost or `cancel` resolves; `lead` is dropped then.
    pub async fn run<L, C>(&mut self, cancel: C, lead: L) -> Outcome
    where
        L: Future<Output = ()>,
        C: Future<Output = ()>,
    {
        tokio::pin!(cancel);
        tokio::select! {
            () = self.acquire() => {}
            () = &mut cancel => return Outcome::Cancelled,
        }
        tokio::pin!(lead);
        let mut lead_done = false;
        let outcome = loop {
            tokio::select! {
                () = self.renew() => break Outcome::Lost,
                () = &mut cancel => break Outcome::Cancelled,
                () = &mut lead, if !lead_done => lead_done = true,
            }
        };
        self.status.stand_by();
        match outcome {
            Outcome::Lost => {
                tracing::error!(lease = %self.config.name, identity = %self.config.identity, "leaderelection lost");
            }
            Outcome::Cancelled => {
                if self.config.release_on_cancel {
                    self.release().await;
                }
            }
        }
        outcome
    }

    /// Retries with jitter every retry period until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        tracing::info!(lease = %format!("{}/{}", self.config.namespace, self.config.name), identity = %self.config.identity, "attempting to acquire leader lease");
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(lease = %format!("{}/{}", self.config.namespace, self.config.name), identity = %self.config.identity, "successfully acquired lease");
                self.status.renewed(Instant::now());
                self.record_event().await;
                return;
            }
            tokio::time::sleep(crate::jitter::up_to(
                self.config.retry_period,
                JITTER_FACTOR,
            ))
            .await;
        }
    }

    /// Renews every retry period; returns when one renewal did not succeed within the renew
    /// deadline (retrying every retry period meanwhile).
    pub async fn renew(&mut self) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = Instant::now() + self.config.renew_deadline;
            let renewed = tokio::time::timeout_at(deadline, async {
                loop {
                    if self.try_acquire_or_renew().await {
                        self.status.renewed(Instant::now());
                        return;
                    }
                    tokio::time::sleep(self.config.retry_period).await;
                }
            })
            .await;
            if renewed.is_err() {
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "failed to renew lease: timed out waiting for the condition");
                self.status.stand_by();
                return;
            }
        }
    }

    /// Clears `holderIdentity` if this candidate holds the Lease, so a successor need not wait
    /// for it to expire.
    pub async fn release(&mut self) {
        let Some(observed) = self.observed.clone() else {
            return;
        };
        if observed.spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: observed.spec.lease_transitions,
            ..LeaseSpec::default()
        };
        match self.update(spec, observed.resource_version).await {
            Ok(lease) => {
                self.observe(&lease);
                self.status.stand_by();
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "released leader lease");
            }
            Err(error) => {
                tracing::error!(%error, lease = %self.config.name, "failed to release lease");
            }
        }
    }

    /// One attempt, as upstream's `tryAcquireOrRenew`: true when this candidate holds the Lease
    /// afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        let mut spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::error!(%error, lease = %self.config.name, "error retrieving resource lock");
                return false;
            }
        };
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    true
                }
                Err(error) => {
                    tracing::error!(%error, lease = %self.config.name, "error initially creating leader election record");
                    false
                }
            };
        };
        let old = current.spec.clone().unwrap_or_default();
        let seen = Observed {
            spec: old.clone(),
            resource_version: current.metadata.resource_version.clone(),
        };
        if self.observed.as_ref().map(|o| &o.spec) != Some(&seen.spec) {
            self.observed_at = Some(Instant::now());
        }
        self.observed = Some(seen);
        self.uid = current.metadata.uid.clone();
        let holder = old.holder_identity.clone().unwrap_or_default();
        let leading = holder == self.config.identity;
        // As upstream, a record stays valid for its own leaseDurationSeconds (not ours), so
        // candidates started with different flags agree on when it expires.
        let held_for = old
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.config.lease_duration);
        let fresh = self
            .observed_at
            .is_some_and(|at| at + held_for > Instant::now());
        if !holder.is_empty() && fresh && !leading {
            tracing::debug!(lease = %self.config.name, %holder, "lock is held by another candidate and has not yet expired");
            return false;
        }
        if leading {
            spec.acquire_time = old.acquire_time.clone();
            spec.lease_transitions = old.lease_transitions;
        } else {
            spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
        }
        match self
            .update(spec, current.metadata.resource_version.clone())
            .await
        {
            Ok(lease) => {
                self.observe(&lease);
                true
            }
            Err(error) => {
                tracing::error!(%error, lease = %self.config.name, "failed to update lock");
                false
            }
        }
    }

    async fn update(
        &self,
        spec: LeaseSpec,
        resource_version: Option<String>,
    ) -> Result<Lease, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
    }

    fn observe(&mut self, lease: &Lease) {
        self.observed = Some(Observed {
            spec: lease.spec.clone().unwrap_or_default(),
            resource_version: lease.metadata.resource_version.clone(),
        });
        self.observed_at = Some(Instant::now());
        self.uid = lease.metadata.uid.clone().or(self.uid.take());
    }

    /// The upstream `LeaderElection` event ("<identity> became leader") on the Lease.
    async fn record_event(&self) {
        let now = jiff::Timestamp::now();
        let message = format!("{} became leader", self.config.identity);
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.config.name)),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("coordination.k8s.io/v1".to_string()),
                kind: Some("Lease".to_string()),
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                uid: self.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some("LeaderElection".to_string()),
            message: Some(message),
            type_: Some("Normal".to_string()),
            source: Some(EventSource {
                component: Some(self.config.component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.config.component.clone()),
            reporting_instance: Some(self.config.identity.clone()),
            ..Event::default()
        };
        if let Err(error) = self.events.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, lease = %self.config.name, "recording LeaderElection event");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        election: LeaderElectionFlags,
    }

    #[test]
    fn flags_default_to_upstream_values() -> Result<(), Box<dyn std::error::Error>> {
        let flags = Flags::try_parse_from(["component"])?.election;
        assert!(flags.leader_elect);
        let config = flags.config("kube-scheduler")?;
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));
        assert_eq!(config.namespace, "kube-system");
        assert_eq!(config.name, "kube-scheduler");
        let (host, id) = config
            .identity
            .rsplit_once('_')
            .ok_or("identity has no underscore")?;
        assert!(!host.is_empty());
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{}", config.identity);
        Ok(())
    }

    #[test]
    fn flags_override_the_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let flags = Flags::try_parse_from([
            "component",
            "--leader-elect=false",
            "--leader-elect-lease-duration",
            "30s",
            "--leader-elect-renew-deadline",
            "20s",
            "--leader-elect-retry-period",
            "4s",
            "--leader-elect-resource-namespace",
            "other",
            "--leader-elect-resource-name",
            "mine",
        ])?
        .election;
        assert!(!flags.leader_elect);
        let config = flags.config("kube-controller-manager")?;
        assert_eq!(config.lease_duration, Duration::from_secs(30));
        assert_eq!(
            (config.namespace.as_str(), config.name.as_str()),
            ("other", "mine")
        );
        Ok(())
    }

    #[test]
    fn inconsistent_durations_are_rejected_as_upstream() -> Result<(), Box<dyn std::error::Error>> {
        let cases = [
            (
                &["--leader-elect-lease-duration", "10s"][..],
                Some(ConfigError::LeaseNotAboveDeadline),
            ),
            (
                &["--leader-elect-retry-period", "9s"][..],
                Some(ConfigError::DeadlineNotAboveRetry),
            ),
            (
                &["--leader-elect-retry-period", "0s"][..],
                Some(ConfigError::Zero),
            ),
            (
                &["--leader-elect-resource-lock", "endpoints"][..],
                Some(ConfigError::ResourceLock("endpoints".into())),
            ),
            (&[][..], None),
        ];
        for (args, want) in cases {
            let flags =
                Flags::try_parse_from(std::iter::once("component").chain(args.iter().copied()))?
                    .election;
            assert_eq!(flags.config("c").err(), want, "{args:?}");
        }
        Ok(())
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("").is_err());
    }
}
