//! Events expire (upstream: `--event-ttl`, one hour, through etcd leases). Storage here has no
//! leases, so a background task deletes Events whose last activity is older than the TTL.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::storage::{ListOptions, Storage, StorageError};

/// Upstream's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

const PREFIX: &str = "/registry/events/";

/// Events a sweep reads at a time. Each page is one short storage read: a cluster that has
/// written hundreds of thousands of events within the TTL is swept without one long read
/// (which, on SQLite, kept the WAL from being copied back while it ran) or all of their JSON
/// in memory at once.
const PAGE: usize = 500;

/// The timestamps of a stored event, and nothing else of it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Times<'a> {
    #[serde(borrow)]
    series: Option<Series<'a>>,
    #[serde(borrow)]
    last_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Series<'a> {
    #[serde(borrow)]
    last_observed_time: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Metadata<'a> {
    #[serde(borrow)]
    creation_timestamp: Option<Cow<'a, str>>,
}

/// The last time a stored event was seen (series, last timestamp, event time, creation), in
/// seconds; `None` when it is not an event's JSON or carries no time.
fn last_seen(stored: &[u8]) -> Option<i64> {
    let times: Times<'_> = serde_json::from_slice(stored).ok()?;
    [
        times.series.and_then(|s| s.last_observed_time),
        times.last_timestamp,
        times.event_time,
        times.metadata.and_then(|m| m.creation_timestamp),
    ]
    .into_iter()
    .flatten()
    .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
    .map(|t| t.as_second())
    .max()
}

/// Deletes events last seen before `now - ttl`; returns how many.
pub async fn sweep(storage: &dyn Storage, ttl: Duration, now: i64) -> Result<usize, StorageError> {
    sweep_in_pages(storage, ttl, now, PAGE).await
}

async fn sweep_in_pages(
    storage: &dyn Storage,
    ttl: Duration,
    now: i64,
    page: usize,
) -> Result<usize, StorageError> {
    let cutoff = now - i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    let mut options = ListOptions {
        limit: Some(page),
        ..ListOptions::default()
    };
    loop {
        let list = storage.list(PREFIX, &options).await?;
        for kv in &list.items {
            if last_seen(&kv.value).is_some_and(|t| t < cutoff) {
                match storage.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(_) => deleted += 1,
                    Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match list.items.last() {
            Some(last) if list.more => options.start_after = Some(last.key.clone()),
            _ => return Ok(deleted),
        }
    }
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

    fn seen(event: serde_json::Value) -> Option<i64> {
        last_seen(&serde_json::to_vec(&event).expect("json"))
    }

    fn at(time: &str) -> i64 {
        time.parse::<jiff::Timestamp>().expect("ts").as_second()
    }

    #[test]
    fn last_seen_prefers_the_latest_timestamp() {
        let e = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
            "lastTimestamp": "2024-01-01T01:00:00Z"});
        assert_eq!(seen(e), Some(at("2024-01-01T01:00:00Z")));
        let e = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
            "lastTimestamp": null, "eventTime": "2024-01-01T02:00:00.123456Z",
            "series": {"count": 3, "lastObservedTime": "2024-01-01T03:00:00.000001Z"}});
        assert_eq!(seen(e), Some(at("2024-01-01T03:00:00Z")));
        assert_eq!(seen(json!({})), None);
        assert_eq!(last_seen(b"not json"), None);
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

    #[tokio::test]
    async fn a_sweep_reads_page_after_page_and_reaches_every_event() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = crate::storage::open(&crate::storage::StorageConfig::Sqlite {
            path: dir.path().join("db"),
        })
        .await?;
        let mut expected_left = Vec::new();
        for i in 0..11 {
            let old = i % 3 != 0;
            let time = if old {
                "2020-01-01T00:00:00Z"
            } else {
                "2030-01-01T00:00:00Z"
            };
            let key = format!("/registry/events/ns-{}/e{i:02}", i % 2);
            let event = json!({"metadata": {"name": format!("e{i:02}")}, "lastTimestamp": time});
            storage.create(&key, serde_json::to_vec(&event)?).await?;
            if !old {
                expected_left.push(key);
            }
        }
        // Outside the prefix: never read, never deleted.
        storage
            .create(
                "/registry/eventsx/old",
                br#"{"lastTimestamp":"2020-01-01T00:00:00Z"}"#.to_vec(),
            )
            .await?;
        let now = at("2025-01-01T00:00:00Z");
        let deleted = sweep_in_pages(storage.as_ref(), DEFAULT_EVENT_TTL, now, 2).await?;
        assert_eq!(deleted, 11 - expected_left.len());
        let left = storage.list(PREFIX, &ListOptions::default()).await?;
        let left: Vec<String> = left.items.into_iter().map(|kv| kv.key).collect();
        expected_left.sort();
        assert_eq!(left, expected_left);
        assert!(storage.get("/registry/eventsx/old").await?.is_some());
        Ok(())
    }
}
