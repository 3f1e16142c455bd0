//! Events expire (upstream: `--event-ttl`, one hour, through etcd leases). Storage here has no
//! leases, so a background task deletes Events whose last activity is older than the TTL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::storage::{ListOptions, Storage, StorageError};

/// Upstream's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

const PREFIX: &str = "/registry/events/";

/// The last time an event was seen (series, last timestamp, event time, creation), in seconds.
fn last_seen(event: &Value) -> Option<i64> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
    .map(|t| t.as_second())
    .max()
}

/// Deletes events last seen before `now - ttl`; returns how many.
pub async fn sweep(storage: &dyn Storage, ttl: Duration, now: i64) -> Result<usize, StorageError> {
    let list = storage.list(PREFIX, &ListOptions::default()).await?;
    let cutoff = now - i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    for kv in list.items {
        let Ok(event) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if last_seen(&event).is_some_and(|t| t < cutoff) {
            match storage.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => deleted += 1,
                Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Spawns the sweeper (every `ttl / 6`); abort the handle to stop it.
pub fn spawn(storage: Arc<dyn Storage>, ttl: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval((ttl / 6).max(Duration::from_secs(1)));
        loop {
            ticker.tick().await;
            let now = jiff::Timestamp::now().as_second();
            match sweep(storage.as_ref(), ttl, now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired events removed"),
                Err(error) => tracing::warn!(%error, "sweeping expired events"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_seen_prefers_the_latest_timestamp() {
        let e = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
            "lastTimestamp": "2024-01-01T01:00:00Z"});
        let t: jiff::Timestamp = "2024-01-01T01:00:00Z".parse().expect("ts");
        assert_eq!(last_seen(&e), Some(t.as_second()));
        assert_eq!(last_seen(&json!({})), None);
    }

    #[tokio::test]
    async fn old_events_are_swept_and_new_ones_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let storage = crate::storage::open(&crate::storage::StorageConfig::Sqlite {
            path: dir.path().join("db"),
        })
        .await
        .expect("storage");
        let old = json!({"metadata": {"name": "old", "creationTimestamp": "2020-01-01T00:00:00Z"}});
        let new = json!({"metadata": {"name": "new", "creationTimestamp": "2030-01-01T00:00:00Z"}});
        storage
            .create(
                "/registry/events/default/old",
                serde_json::to_vec(&old).expect("json"),
            )
            .await
            .expect("create");
        storage
            .create(
                "/registry/events/default/new",
                serde_json::to_vec(&new).expect("json"),
            )
            .await
            .expect("create");
        let now: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().expect("ts");
        let n = sweep(storage.as_ref(), DEFAULT_EVENT_TTL, now.as_second())
            .await
            .expect("sweep");
        assert_eq!(n, 1);
        assert!(storage
            .get("/registry/events/default/new")
            .await
            .expect("get")
            .is_some());
        assert!(storage
            .get("/registry/events/default/old")
            .await
            .expect("get")
            .is_none());
    }
}
