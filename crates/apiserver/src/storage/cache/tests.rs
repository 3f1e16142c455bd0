//! Tests of the watch cache over the SQLite backend: writes go to storage, the cache must
//! follow them through its storage watch.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Notify;

use super::*;
use crate::storage::{KeyValue, ListResult, SqliteStorage};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    storage: Arc<dyn Storage>,
    cache: WatchCache,
    _dir: tempfile::TempDir,
}

async fn fixture_with(
    config: CacheConfig,
    wrap: impl FnOnce(Arc<dyn Storage>) -> Arc<dyn Storage>,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite: Arc<dyn Storage> = Arc::new(
        SqliteStorage::open(&dir.path().join("state.db"))
            .await
            .expect("open sqlite"),
    );
    let storage = wrap(sqlite);
    let cache = WatchCache::start(storage.clone(), config);
    assert!(cache.wait_ready(WAIT).await, "cache never filled");
    Fixture {
        storage,
        cache,
        _dir: dir,
    }
}

async fn fixture(config: CacheConfig) -> Fixture {
    fixture_with(config, |s| s).await
}

fn pod(namespace: &str, name: &str, node: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node},
    }))
    .expect("json")
}

fn key(namespace: &str, name: &str) -> String {
    format!("/registry/pods/{namespace}/{name}")
}

impl Fixture {
    fn pods(&self) -> Arc<PrefixCache> {
        self.cache
            .cache("/registry/pods/")
            .expect("pods are cached")
            .clone()
    }

    async fn create(&self, namespace: &str, name: &str, node: &str) -> Revision {
        self.storage
            .create(&key(namespace, name), pod(namespace, name, node))
            .await
            .expect("create")
    }

    /// Waits until the cache has applied every write so far.
    async fn sync(&self) -> Revision {
        self.cache
            .wait_consistent()
            .await
            .expect("cache catches up")
    }

    fn list_all(&self, prefix: &str) -> CacheList {
        self.pods().list(
            &ListRequest {
                prefix,
                indexed: None,
                start_after: None,
                limit: None,
            },
            &|_| true,
        )
    }
}

fn keys(items: &[Arc<CachedObject>]) -> Vec<String> {
    items.iter().map(|o| o.key.clone()).collect()
}

async fn next(watch: &mut CacheWatch) -> Arc<CacheEvent> {
    tokio::time::timeout(WAIT, watch.events.recv())
        .await
        .expect("an event in time")
        .expect("watch still open")
}

#[tokio::test]
async fn lists_hold_objects_written_before_and_after_the_start_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(
        SqliteStorage::open(&dir.path().join("state.db"))
            .await
            .expect("open"),
    );
    storage
        .create(&key("b", "p1"), pod("b", "p1", "n1"))
        .await
        .expect("create");
    let cache = WatchCache::start(storage.clone(), CacheConfig::default());
    assert!(cache.wait_ready(WAIT).await);
    let f = Fixture {
        storage,
        cache,
        _dir: dir,
    };
    f.create("a", "p2", "n1").await;
    f.create("b", "p0", "n2").await;
    let deleted = f.create("a", "gone", "n2").await;
    f.storage
        .delete(&key("a", "gone"), Some(deleted))
        .await
        .expect("delete");
    let revision = f.sync().await;
    let list = f.list_all("/registry/pods/");
    assert_eq!(
        keys(&list.items),
        vec![key("a", "p2"), key("b", "p0"), key("b", "p1")]
    );
    assert!(list.revision >= revision);
    let namespace = f.list_all("/registry/pods/b/");
    assert_eq!(keys(&namespace.items), vec![key("b", "p0"), key("b", "p1")]);
    assert_eq!(
        namespace.items[0].value()["metadata"]["resourceVersion"],
        json!(namespace.items[0].revision.to_string())
    );
}

#[tokio::test]
async fn limited_lists_page_in_key_order_through_the_index() {
    let f = fixture(CacheConfig::default()).await;
    for (name, node) in [("a", "n1"), ("b", "n2"), ("c", "n1"), ("d", "n1")] {
        f.create("ns", name, node).await;
    }
    f.sync().await;
    let cache = f.pods();
    let page = |start_after: Option<&str>| {
        cache.list(
            &ListRequest {
                prefix: "/registry/pods/",
                indexed: Some("n1"),
                start_after,
                limit: Some(2),
            },
            &|_| true,
        )
    };
    let first = page(None);
    assert_eq!(keys(&first.items), vec![key("ns", "a"), key("ns", "c")]);
    let after = first.continue_after.expect("more follow");
    let second = page(Some(&after));
    assert_eq!(keys(&second.items), vec![key("ns", "d")]);
    assert_eq!(second.continue_after, None);
}

#[tokio::test]
async fn consistent_reads_wait_for_the_current_storage_revision() {
    let f = fixture(CacheConfig::default()).await;
    for i in 0..20 {
        let written = f.create("ns", &format!("p{i}"), "n1").await;
        let reached = f.sync().await;
        assert!(reached >= written);
        // Right after the wait, the write is in the cache.
        let (object, revision) = f.pods().get(&key("ns", &format!("p{i}")));
        assert!(object.is_some(), "write {i} not in the cache");
        assert!(revision >= written);
    }
}

#[tokio::test]
async fn waiting_for_a_future_revision_times_out_as_too_large() {
    let config = CacheConfig {
        wait_timeout: Duration::from_millis(50),
        ..CacheConfig::default()
    };
    let f = fixture(config).await;
    let current = f.sync().await;
    match f.cache.wait_for(current + 1000).await {
        Err(CacheError::TooLarge { requested, .. }) => assert_eq!(requested, current + 1000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn watches_replay_buffered_events_in_order_and_get_too_old_past_the_buffer() {
    let config = CacheConfig {
        min_buffer: 3,
        max_buffer: 3,
        fresh: Duration::ZERO,
        ..CacheConfig::default()
    };
    let f = fixture(config).await;
    let first = f.create("ns", "p0", "n1").await;
    let mut revisions = vec![first];
    for i in 1..6 {
        revisions.push(f.create("ns", &format!("p{i}"), "n1").await);
    }
    f.sync().await;
    let cache = f.pods();
    let request = |after| WatchRequest {
        prefix: "/registry/pods/".into(),
        indexed: None,
        start: WatchStart::After(after),
    };
    match cache.watch(request(first)) {
        Err(CacheError::TooOld { requested, .. }) => assert_eq!(requested, first),
        Err(e) => panic!("expected TooOld, got {e:?}"),
        Ok(_) => panic!("expected TooOld, got a watch"),
    }
    let watch = cache
        .watch(request(revisions[3]))
        .expect("within the buffer");
    let replayed: Vec<_> = watch.replay.iter().map(|e| e.revision).collect();
    assert_eq!(replayed, revisions[4..].to_vec());
    assert!(watch
        .replay
        .iter()
        .all(|e| e.event_type == WatchEventType::Added));
}

#[tokio::test]
async fn node_watches_get_only_their_pods_including_pods_moving_away() {
    let f = fixture(CacheConfig::default()).await;
    let start = f.sync().await;
    let cache = f.pods();
    let watch_node = |node: &str| {
        cache
            .watch(WatchRequest {
                prefix: "/registry/pods/".into(),
                indexed: Some(node.into()),
                start: WatchStart::After(start),
            })
            .expect("watch")
    };
    let mut n1 = watch_node("n1");
    let mut n2 = watch_node("n2");
    let mut all = cache
        .watch(WatchRequest {
            prefix: "/registry/pods/".into(),
            indexed: None,
            start: WatchStart::After(start),
        })
        .expect("watch");
    let created = f.create("ns", "a", "n1").await;
    f.create("ns", "b", "n2").await;
    f.storage
        .update(&key("ns", "a"), created, pod("ns", "a", "n2"))
        .await
        .expect("move a to n2");
    f.sync().await;

    let e = next(&mut n1).await;
    assert_eq!(
        (e.event_type, e.object.key.as_str()),
        (WatchEventType::Added, key("ns", "a").as_str())
    );
    let e = next(&mut n1).await;
    assert_eq!(e.event_type, WatchEventType::Modified);
    assert_eq!(
        e.prev.as_ref().and_then(|p| p.indexed.as_deref()),
        Some("n1")
    );
    assert!(n1.events.is_empty(), "n1 saw a pod of n2");

    let e = next(&mut n2).await;
    assert_eq!(e.object.key, key("ns", "b"));
    let e = next(&mut n2).await;
    assert_eq!(e.object.key, key("ns", "a"));
    assert_eq!(e.object.indexed.as_deref(), Some("n2"));
    assert!(n2.events.is_empty());

    for _ in 0..3 {
        next(&mut all).await;
    }
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_terminated_without_blocking_others() {
    let config = CacheConfig {
        watcher_channel: 2,
        ..CacheConfig::default()
    };
    let f = fixture(config).await;
    let start = f.sync().await;
    let cache = f.pods();
    let request = || WatchRequest {
        prefix: "/registry/pods/".into(),
        indexed: None,
        start: WatchStart::After(start),
    };
    let mut slow = cache.watch(request()).expect("watch");
    let mut fast = cache.watch(request()).expect("watch");
    let (ack_tx, mut ack) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 6 {
            next(&mut fast).await;
            seen += 1;
            ack_tx.send(()).await.expect("ack");
        }
        seen
    });
    for i in 0..6 {
        f.create("ns", &format!("p{i}"), "n1").await;
        // The fast watcher reads each event before the next write; the slow one never reads.
        tokio::time::timeout(WAIT, ack.recv())
            .await
            .expect("the fast watcher keeps up");
    }
    assert_eq!(reader.await.expect("reader"), 6);
    let mut received = 0;
    while tokio::time::timeout(WAIT, slow.events.recv())
        .await
        .expect("the slow watch ends")
        .is_some()
    {
        received += 1;
    }
    assert_eq!(
        received, 2,
        "the slow watcher keeps what fit, then its stream ends"
    );
    let metrics = f.cache.metrics();
    assert_eq!(metrics.terminated(), 1);
    assert!(metrics.events_received() >= 6);
    let text = metrics.render();
    assert!(
        text.contains("apiserver_terminated_watchers_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("apiserver_watch_cache_events_received_total "),
        "{text}"
    );
}

/// A storage whose watch streams fail with `Compacted` on demand.
struct BreakableWatch {
    inner: Arc<dyn Storage>,
    breaker: Arc<Notify>,
}

#[async_trait::async_trait]
impl Storage for BreakableWatch {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StorageError> {
        self.inner.list(prefix, opts).await
    }
    async fn count(&self, prefix: &str) -> Result<i64, StorageError> {
        self.inner.count(prefix).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        self.inner.update(key, expected, value).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
        let events = self.inner.watch(prefix, after).await?;
        let breaker = self.breaker.clone();
        let broken = futures::stream::once(async move {
            breaker.notified().await;
            Err(StorageError::Compacted {
                requested: after,
                compacted: after + 1,
            })
        });
        Ok(futures::stream::select(events, broken).boxed())
    }
    async fn current_revision(&self) -> Result<Revision, StorageError> {
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.inner.compact(revision).await
    }
}

#[tokio::test]
async fn a_failed_storage_watch_relists_terminates_watchers_and_keeps_following() {
    let breaker = Arc::new(Notify::new());
    let b = breaker.clone();
    let f = fixture_with(CacheConfig::default(), move |inner| {
        Arc::new(BreakableWatch { inner, breaker: b })
    })
    .await;
    f.create("ns", "before", "n1").await;
    let start = f.sync().await;
    let mut watch = f
        .pods()
        .watch(WatchRequest {
            prefix: "/registry/pods/".into(),
            indexed: None,
            start: WatchStart::After(start),
        })
        .expect("watch");
    breaker.notify_one();
    let ended = tokio::time::timeout(WAIT, watch.events.recv())
        .await
        .expect("the watcher is terminated by the re-list");
    assert!(ended.is_none());
    f.create("ns", "after", "n1").await;
    f.sync().await;
    let list = f.list_all("/registry/pods/");
    assert_eq!(
        keys(&list.items),
        vec![key("ns", "after"), key("ns", "before")]
    );
}
