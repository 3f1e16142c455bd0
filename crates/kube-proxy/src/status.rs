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
use prometheus_client::metrics::family::Family;
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
    full_duration: Histogram,
    partial_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    last_queued: Gauge<f64, AtomicU64>,
    chains: Gauge,
    rules: Gauge,
    no_local: Family<Vec<(String, String)>, Gauge>,
    errors: Counter,
}

fn now_seconds() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let full_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let partial_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let last_sync = Gauge::<f64, AtomicU64>::default();
        let last_queued = Gauge::<f64, AtomicU64>::default();
        let no_local = Family::<Vec<(String, String)>, Gauge>::default();
        let chains = Gauge::default();
        let rules = Gauge::default();
        let errors = Counter::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            full_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            partial_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            last_queued.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no local endpoints",
            no_local.clone(),
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
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Syncs whose nftables transaction failed",
            errors.clone(),
        );
        Self {
            registry,
            sync_duration,
            full_duration,
            partial_duration,
            last_sync,
            last_queued,
            chains,
            rules,
            no_local,
            errors,
        }
    }
}

impl Metrics {
    /// Records a successful sync.
    pub fn observe_sync(&self, took: Duration, chains: usize, rules: usize) {
        self.sync_duration.observe(took.as_secs_f64());
        self.last_sync.set(now_seconds());
        self.chains.set(i64::try_from(chains).unwrap_or(i64::MAX));
        self.rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// Records the latency of a sync that rewrote everything (`full`) or only differences.
    pub fn observe_kind(&self, full: bool, took: Duration) {
        let histogram = if full {
            &self.full_duration
        } else {
            &self.partial_duration
        };
        histogram.observe(took.as_secs_f64());
    }

    /// Records services with a `Local` traffic policy and no local endpoint.
    pub fn set_no_local_endpoints(&self, internal: usize, external: usize) {
        for (policy, count) in [("internal", internal), ("external", external)] {
            self.no_local
                .get_or_create(&vec![("traffic_policy".to_string(), policy.to_string())])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Records that a change queued a sync.
    pub fn queued(&self) {
        self.last_queued.set(now_seconds());
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

#[derive(Debug)]
struct HealthState {
    last_updated: Option<(Instant, jiff::Timestamp)>,
    /// False while the Node is being deleted (upstream: `/healthz` then fails, `/livez` not).
    node_eligible: bool,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            last_updated: None,
            node_eligible: true,
        }
    }
}

/// The taint the cluster autoscaler puts on nodes it is about to delete.
const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

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

    /// Whether the last successful sync is recent enough.
    pub fn is_healthy(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .last_updated
            .is_some_and(|(at, _)| at.elapsed() < self.stale_after)
    }

    /// Follows this node: not eligible (for load balancers) once it is being deleted or is
    /// tainted `ToBeDeletedByClusterAutoscaler`.
    pub fn sync_node(&self, node: &k8s_openapi::api::core::v1::Node) {
        let deleting = node.metadata.deletion_timestamp.is_some()
            || node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == TO_BE_DELETED_TAINT));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.node_eligible = !deleting;
    }

    /// Status code and JSON body of `/livez`: sync health only.
    pub fn report_live(&self) -> (StatusCode, String) {
        let (code, body) = self.report();
        let healthy = self.is_healthy();
        let mut json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(map) = json.as_object_mut() {
            map.remove("nodeEligible");
        }
        let code = if healthy { StatusCode::OK } else { code };
        (code, json.to_string())
    }

    /// Status code and JSON body of `/healthz`: sync health and node eligibility.
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
            "nodeEligible": state.node_eligible,
        });
        let code = if healthy && state.node_eligible {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, body.to_string())
    }
}

async fn livez(State(health): State<Health>) -> impl IntoResponse {
    let (code, body) = health.report_live();
    (code, [(header::CONTENT_TYPE, "application/json")], body)
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
        .route("/livez", get(livez))
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
        assert_eq!(json["nodeEligible"], true);

        // A node being deleted fails /healthz (load balancers move away) but not /livez.
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-a"},
            "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}
        }))
        .expect("node");
        health.sync_node(&node);
        let (code, body) = health.report();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"nodeEligible\":false"), "{body}");
        let (code, body) = health.report_live();
        assert_eq!(code, StatusCode::OK);
        assert!(!body.contains("nodeEligible"), "{body}");
        health.sync_node(&k8s_openapi::api::core::v1::Node::default());
        assert_eq!(health.report().0, StatusCode::OK);
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
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_nftables_rules 40"),
            "{text}"
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds "),
            "{text}"
        );
        assert!(
            !text.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds 0.0"),
            "{text}"
        );
        metrics.observe_kind(true, Duration::from_millis(5));
        metrics.observe_kind(false, Duration::from_millis(1));
        metrics.observe_kind(false, Duration::from_millis(1));
        metrics.set_no_local_endpoints(1, 2);
        metrics.queued();
        metrics.observe_error();
        let text = metrics.encode();
        for needle in [
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 2",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1",
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 2",
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds ",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
