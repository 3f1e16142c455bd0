//! What kube-proxy tells the outside about itself: `/healthz` (upstream's JSON with `lastUpdated`
//! and `currentTime`, 503 once syncs stall) and `/metrics` (sync latency, chain and rule counts).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a status server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The address could not be bound.
    #[error("binding {addr}: {source} (is the port already in use?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The sync metrics kube-proxy exports.
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    chains: Gauge,
    rules: Gauge,
    errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let last_sync = Gauge::<f64, AtomicU64>::default();
        let chains = Gauge::default();
        let rules = Gauge::default();
        let errors = Counter::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            last_sync.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_nftables_chains",
            "Number of chains in the kube-proxy nftables table",
            chains.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_nftables_rules",
            "Number of rules in the kube-proxy nftables table",
            rules.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_errors",
            "Syncs whose nftables transaction failed",
            errors.clone(),
        );
        Self {
            registry,
            sync_duration,
            last_sync,
            chains,
            rules,
            errors,
        }
    }
}

impl Metrics {
    /// Records a successful sync.
    pub fn observe_sync(&self, took: Duration, chains: usize, rules: usize) {
        self.sync_duration.observe(took.as_secs_f64());
        let now = jiff::Timestamp::now();
        self.last_sync.set(now.as_millisecond() as f64 / 1000.0);
        self.chains.set(i64::try_from(chains).unwrap_or(i64::MAX));
        self.rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// Records a failed sync.
    pub fn observe_error(&self) {
        self.errors.inc();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        out
    }
}

#[derive(Debug, Default)]
struct HealthState {
    last_updated: Option<(Instant, jiff::Timestamp)>,
}

/// Sync health shared between the sync loop and `/healthz`.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
    /// A sync older than this means unhealthy (upstream: twice the sync period).
    stale_after: Duration,
}

impl Health {
    /// Unhealthy until the first successful sync; stale after `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            state: Arc::default(),
            stale_after,
        }
    }

    /// Records a successful sync.
    pub fn updated(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_updated = Some((Instant::now(), jiff::Timestamp::now()));
    }

    /// Status code and JSON body of `/healthz`.
    pub fn report(&self) -> (StatusCode, String) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = jiff::Timestamp::now();
        let (healthy, last) = match state.last_updated {
            Some((at, stamp)) => (at.elapsed() < self.stale_after, stamp.to_string()),
            None => (false, String::new()),
        };
        let body = serde_json::json!({
            "lastUpdated": last,
            "currentTime": now.to_string(),
            "nodeEligible": true,
        });
        let code = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, body.to_string())
    }
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let (code, body) = health.report();
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn bind_and_serve(addr: SocketAddr, router: Router) -> Result<SocketAddr, StatusError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StatusError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StatusError::Bind { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, %addr, "status server stopped");
        }
    });
    Ok(local)
}

/// Serves `/healthz` (and `/livez`) on `addr` in the background.
pub async fn serve_health(addr: SocketAddr, health: Health) -> Result<SocketAddr, StatusError> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .with_state(health);
    bind_and_serve(addr, router).await
}

/// Serves `/metrics` on `addr` in the background.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics_state: Arc<Metrics>,
) -> Result<SocketAddr, StatusError> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(metrics_state);
    bind_and_serve(addr, router).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_unavailable_until_the_first_sync() {
        let health = Health::new(Duration::from_secs(60));
        assert_eq!(health.report().0, StatusCode::SERVICE_UNAVAILABLE);
        health.updated();
        let (code, body) = health.report();
        assert_eq!(code, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).expect("json body");
        assert!(json["lastUpdated"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(json["currentTime"].is_string());
    }

    #[test]
    fn metrics_include_sync_latency_and_counts() {
        let metrics = Metrics::default();
        metrics.observe_sync(Duration::from_millis(3), 12, 40);
        let text = metrics.encode();
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_nftables_chains 12"),
            "{text}"
        );
    }
}
