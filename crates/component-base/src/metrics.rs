//! `/metrics` in the Prometheus text format, served beside the health routes of
//! [`crate::health`] on a component's port. Start with [`serve`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::health::{Health, HealthError};
use crate::leaderelection::LeaderStatus;

/// A registry shared between the parts of a component that register metrics and the server.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry in the Prometheus text format.
pub fn encode(registry: &SharedRegistry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match registry.lock() {
        Ok(registry) => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Err(poisoned) => {
            prometheus_client::encoding::text::encode(&mut out, &poisoned.into_inner())?
        }
    }
    Ok(out)
}

async fn metrics(State(registry): State<SharedRegistry>) -> impl IntoResponse {
    match encode(&registry) {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
        Err(error) => {
            tracing::warn!(%error, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                "encoding metrics failed".to_string(),
            )
        }
    }
}

/// The `/metrics` route alone.
pub fn router(registry: SharedRegistry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// Binds `addr` now and serves `/healthz`, `/livez`, `/readyz` and `/metrics` in a background
/// task; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    registry: SharedRegistry,
) -> Result<SocketAddr, HealthError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HealthError::Bind { addr, source })?;
    let app = crate::health::router(health).merge(router(registry));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "health and metrics server stopped");
        }
    });
    Ok(local)
}

/// Registers upstream's `leader_election_master_status{name}` gauge (1 while leading), read
/// from `status` at every scrape.
pub fn register_leader_status(registry: &SharedRegistry, name: &str, status: LeaderStatus) {
    let gauge = LeaderGauge {
        status,
        name: name.to_string(),
    };
    match registry.lock() {
        Ok(mut registry) => registry.register_collector(Box::new(gauge)),
        Err(poisoned) => poisoned.into_inner().register_collector(Box::new(gauge)),
    }
}

/// Collects `leader_election_master_status` from a [`LeaderStatus`] at scrape time.
#[derive(Debug)]
struct LeaderGauge {
    status: LeaderStatus,
    name: String,
}

impl prometheus_client::collector::Collector for LeaderGauge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(i64::from(self.status.is_leader()));
        let mut family = encoder.encode_descriptor(
            "leader_election_master_status",
            "1 while this process holds the lease named by 'name', 0 while it stands by.",
            None,
            gauge.metric_type(),
        )?;
        let labels = [("name", self.name.as_str())];
        gauge.encode(family.encode_family(&labels)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_status_is_exported_as_a_gauge_per_lease() -> Result<(), std::fmt::Error> {
        let registry = SharedRegistry::default();
        let status = LeaderStatus::default();
        register_leader_status(&registry, "kube-scheduler", status.clone());
        let text = encode(&registry)?;
        assert!(
            text.contains("# TYPE leader_election_master_status gauge"),
            "{text}"
        );
        assert!(
            text.contains("leader_election_master_status{name=\"kube-scheduler\"} 0"),
            "{text}"
        );
        status.set_for_test(true);
        let text = encode(&registry)?;
        assert!(
            text.contains("leader_election_master_status{name=\"kube-scheduler\"} 1"),
            "{text}"
        );
        Ok(())
    }
}
