//! `GET /stats/summary`: the node and pod resource usage summary (statsapi `v1alpha1`
//! `Summary`) gathered by [`crate::node::stats::StatsCollector`]. Authorized like the other
//! kubelet endpoints, as `nodes/stats`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::routes::ServerState;
use crate::node::stats::StatsCollector;

/// The collector the summary handler uses (added to the router as an extension).
#[derive(Clone)]
pub struct StatsSource(pub Arc<StatsCollector>);

/// Answers the summary as JSON; 503 when the kubelet was started without a collector.
pub async fn summary(
    State(state): State<ServerState>,
    source: Option<Extension<StatsSource>>,
) -> Response {
    let Some(Extension(StatsSource(collector))) = source else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "stats are not collected by this kubelet",
        )
            .into_response();
    };
    let store = state.store.clone();
    // Reading cgroup and /proc files and walking log dirs blocks.
    let summary = tokio::task::spawn_blocking(move || collector.summary(&store)).await;
    match summary.map(|s| serde_json::to_string(&s)) {
        Ok(Ok(body)) => ([(http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "encoding the stats summary failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "collecting the stats summary failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
