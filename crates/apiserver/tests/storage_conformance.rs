//! One conformance suite for every storage backend.
//!
//! Each scenario is an `async fn(Arc<dyn Storage>)`; `conformance!` runs it against the
//! embedded SQLite backend (a fresh database in a temp dir) and against a real etcd started
//! for the test (Debian's `etcd-server`; the etcd half is skipped with a note when the `etcd`
//! binary is missing).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube_apiserver::storage::{
    self, Event, EventType, ListOptions, Revision, Storage, StorageConfig, StorageError,
};

use support::etcd::Etcd;

mod support;

type Watch = BoxStream<'static, Result<Event, StorageError>>;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A backend under test and whatever keeps it alive.
struct Backend {
    storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<Etcd>,
}

async fn sqlite_backend() -> anyhow::Result<Backend> {
    let dir = tempfile::tempdir()?;
    let config = StorageConfig::Sqlite {
        path: dir.path().join("state.db"),
    };
    Ok(Backend {
        storage: storage::open(&config).await?,
        _dir: Some(dir),
        _etcd: None,
    })
}

/// Starts etcd and connects to it; `None` when etcd is not installed.
async fn etcd_backend() -> anyhow::Result<Option<Backend>> {
    let Some(etcd) = support::etcd::start("the etcd half of this test").await? else {
        return Ok(None);
    };
    let config = StorageConfig::Etcd {
        endpoints: vec![etcd.url.clone()],
        prefix: "/registry".to_string(),
    };
    Ok(Some(Backend {
        storage: storage::open(&config).await?,
        _dir: None,
        _etcd: Some(etcd),
    }))
}

/// Runs each scenario against SQLite and against etcd.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    let backend = super::sqlite_backend().await?;
                    super::$name(backend.storage.clone()).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    match super::etcd_backend().await? {
                        Some(backend) => super::$name(backend.storage.clone()).await,
                        None => Ok(()),
                    }
                }
            )*
        }
    };
}

conformance!(
    create_then_get_returns_the_value_and_a_duplicate_create_fails,
    update_succeeds_on_the_current_revision_and_conflicts_on_a_stale_one,
    delete_honours_its_precondition_and_returns_the_last_value,
    list_sorts_by_key_stays_under_the_prefix_and_paginates,
    list_at_an_older_revision_sees_the_store_as_it_was,
    list_at_a_future_revision_fails,
    count_counts_live_keys_under_the_prefix,
    watch_from_a_revision_replays_then_streams_live_events,
    watch_from_zero_sees_only_new_events,
    watch_filters_by_prefix_and_carries_the_previous_value,
    deletes_carry_the_last_value_in_watch_events,
    watch_from_a_compacted_revision_fails_with_compacted,
    list_at_a_compacted_revision_fails_and_live_keys_survive_compaction,
    recreating_a_deleted_key_starts_a_new_life,
    concurrent_creates_all_get_distinct_increasing_revisions,
);

// ---------------------------------------------------------------------------------------------
// Helpers

const WAIT: Duration = Duration::from_secs(10);

async fn next(watch: &mut Watch) -> anyhow::Result<Event> {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(e))) => anyhow::bail!("watch failed: {e}"),
        Ok(None) => anyhow::bail!("watch ended"),
        Err(_) => anyhow::bail!("no watch event within {WAIT:?}"),
    }
}

/// Asserts that nothing arrives for a short while.
async fn assert_quiet(watch: &mut Watch) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        panic!("expected no event, got {item:?}");
    }
}

fn summary(event: &Event) -> (EventType, String, Vec<u8>, Revision) {
    (
        event.event_type.clone(),
        event.kv.key.clone(),
        event.kv.value.clone(),
        event.kv.mod_revision,
    )
}

fn keys(items: &[storage::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn create_then_get_returns_the_value_and_a_duplicate_create_fails(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let key = "/registry/pods/default/web-1";
    assert_eq!(s.get(key).await?, None);
    let before = s.current_revision().await?;
    assert!(
        before >= 1,
        "a fresh store is at revision 1 or later, not 0"
    );
    let rev = s.create(key, b"v1".to_vec()).await?;
    assert!(rev > before);
    assert_eq!(s.current_revision().await?, rev);
    let kv = s.get(key).await?.expect("created key");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.create_revision, rev);
    assert_eq!(kv.mod_revision, rev);
    match s.create(key, b"v2".to_vec()).await {
        Err(StorageError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get(key).await?.expect("key").value, b"v1");
    assert_eq!(
        s.current_revision().await?,
        rev,
        "a failed create writes nothing"
    );
    Ok(())
}

async fn update_succeeds_on_the_current_revision_and_conflicts_on_a_stale_one(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let key = "/registry/configmaps/default/cm";
    let created = s.create(key, b"a".to_vec()).await?;
    let updated = s.update(key, created, b"b".to_vec()).await?;
    assert!(updated > created);
    let kv = s.get(key).await?.expect("key");
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"b"[..], created, updated)
    );
    match s.update(key, created, b"c".to_vec()).await {
        Err(StorageError::Conflict { key: k, current }) => {
            assert_eq!(k, key);
            assert_eq!(current, updated);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(key).await?.expect("key").value, b"b");
    match s
        .update(
            "/registry/configmaps/default/missing",
            updated,
            b"x".to_vec(),
        )
        .await
    {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(s.get("/registry/configmaps/default/missing").await?, None);
    Ok(())
}

async fn delete_honours_its_precondition_and_returns_the_last_value(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let key = "/registry/secrets/default/s";
    let created = s.create(key, b"one".to_vec()).await?;
    let updated = s.update(key, created, b"two".to_vec()).await?;
    match s.delete(key, Some(created)).await {
        Err(StorageError::Conflict { current, .. }) => assert_eq!(current, updated),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(s.get(key).await?.is_some(), "a failed delete keeps the key");
    let (last, deleted_at) = s.delete(key, Some(updated)).await?;
    assert!(deleted_at > updated);
    assert_eq!(last.key, key);
    assert_eq!(last.value, b"two");
    assert_eq!(
        (last.create_revision, last.mod_revision),
        (created, updated)
    );
    assert_eq!(s.get(key).await?, None);
    match s.delete(key, None).await {
        Err(StorageError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Without a precondition.
    let other = "/registry/secrets/default/t";
    s.create(other, b"x".to_vec()).await?;
    let (last, _) = s.delete(other, None).await?;
    assert_eq!(last.value, b"x");
    assert_eq!(s.get(other).await?, None);
    Ok(())
}

async fn list_sorts_by_key_stays_under_the_prefix_and_paginates(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    for name in ["c", "a", "e", "b", "d"] {
        s.create(
            &format!("/registry/pods/default/{name}"),
            name.as_bytes().to_vec(),
        )
        .await?;
    }
    s.create("/registry/pods/kube-system/z", b"z".to_vec())
        .await?;
    s.create("/registry/podtemplates/default/x", b"x".to_vec())
        .await?;
    s.create("/registry/pods/default", b"not a child".to_vec())
        .await?;

    let all = s
        .list("/registry/pods/default/", &ListOptions::default())
        .await?;
    assert_eq!(
        keys(&all.items),
        ["a", "b", "c", "d", "e"].map(|n| format!("/registry/pods/default/{n}"))
    );
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await?);
    assert_eq!(all.items[0].value, b"a");

    let pods = s.list("/registry/pods/", &ListOptions::default()).await?;
    // `/registry/pods/default` itself is under `/registry/pods/` too.
    assert_eq!(pods.items.len(), 7);
    assert_eq!(pods.items[0].key, "/registry/pods/default");
    assert_eq!(pods.items[6].key, "/registry/pods/kube-system/z");

    let first = s
        .list(
            "/registry/pods/default/",
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(
        keys(&first.items),
        ["/registry/pods/default/a", "/registry/pods/default/b"]
    );
    assert!(first.more);
    // Writes between pages are not seen when the next page is read at the first page's revision.
    s.create("/registry/pods/default/bb", b"late".to_vec())
        .await?;
    let second = s
        .list(
            "/registry/pods/default/",
            &ListOptions {
                limit: Some(2),
                start_after: Some("/registry/pods/default/b".to_string()),
                revision: Some(first.revision),
            },
        )
        .await?;
    assert_eq!(
        keys(&second.items),
        ["/registry/pods/default/c", "/registry/pods/default/d"]
    );
    assert!(second.more);
    assert_eq!(second.revision, first.revision);
    let third = s
        .list(
            "/registry/pods/default/",
            &ListOptions {
                limit: Some(2),
                start_after: Some("/registry/pods/default/d".to_string()),
                revision: Some(first.revision),
            },
        )
        .await?;
    assert_eq!(keys(&third.items), ["/registry/pods/default/e"]);
    assert!(!third.more);
    // An exact fit reports no more.
    let exact = s
        .list(
            "/registry/pods/kube-system/",
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(exact.items.len(), 1);
    assert!(!exact.more);
    let zero = s
        .list(
            "/registry/pods/default/",
            &ListOptions {
                limit: Some(0),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(zero.items.len(), 6, "a zero limit means no limit");
    assert!(!zero.more);
    let now = s
        .list(
            "/registry/pods/default/",
            &ListOptions {
                revision: Some(0),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(now.items.len(), 6, "revision 0 means now");
    assert_eq!(now.revision, s.current_revision().await?);
    let empty = s
        .list("/registry/services/", &ListOptions::default())
        .await?;
    assert!(empty.items.is_empty());
    assert_eq!(empty.revision, s.current_revision().await?);
    Ok(())
}

async fn list_at_an_older_revision_sees_the_store_as_it_was(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let a = s.create("/registry/nodes/a", b"a1".to_vec()).await?;
    let b = s.create("/registry/nodes/b", b"b1".to_vec()).await?;
    let snapshot = s.current_revision().await?;
    s.update("/registry/nodes/a", a, b"a2".to_vec()).await?;
    s.delete("/registry/nodes/b", Some(b)).await?;
    s.create("/registry/nodes/c", b"c1".to_vec()).await?;

    let old = s
        .list(
            "/registry/nodes/",
            &ListOptions {
                revision: Some(snapshot),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(old.revision, snapshot);
    let values: Vec<_> = old
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(
        values,
        [
            ("/registry/nodes/a", &b"a1"[..]),
            ("/registry/nodes/b", &b"b1"[..])
        ]
    );
    let now = s.list("/registry/nodes/", &ListOptions::default()).await?;
    let values: Vec<_> = now
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(
        values,
        [
            ("/registry/nodes/a", &b"a2"[..]),
            ("/registry/nodes/c", &b"c1"[..])
        ]
    );
    Ok(())
}

async fn list_at_a_future_revision_fails(s: Arc<dyn Storage>) -> anyhow::Result<()> {
    let current = s.create("/registry/pods/default/p", b"p".to_vec()).await?;
    match s
        .list(
            "/registry/pods/",
            &ListOptions {
                revision: Some(current + 100),
                ..Default::default()
            },
        )
        .await
    {
        Err(StorageError::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!(requested, current + 100);
            assert_eq!(c, current);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

async fn count_counts_live_keys_under_the_prefix(s: Arc<dyn Storage>) -> anyhow::Result<()> {
    assert_eq!(s.count("/registry/pods/").await?, 0);
    let a = s.create("/registry/pods/default/a", b"a".to_vec()).await?;
    s.update("/registry/pods/default/a", a, b"a2".to_vec())
        .await?;
    s.create("/registry/pods/default/b", b"b".to_vec()).await?;
    s.create("/registry/pods/other/c", b"c".to_vec()).await?;
    s.create("/registry/services/default/s", b"s".to_vec())
        .await?;
    s.delete("/registry/pods/default/b", None).await?;
    assert_eq!(s.count("/registry/pods/").await?, 2);
    assert_eq!(s.count("/registry/pods/default/").await?, 1);
    Ok(())
}

async fn watch_from_a_revision_replays_then_streams_live_events(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let key = "/registry/deployments/default/web";
    let start = s.current_revision().await?;
    let r1 = s.create(key, b"1".to_vec()).await?;
    let r2 = s.update(key, r1, b"2".to_vec()).await?;
    let mut watch = s.watch("/registry/deployments/", start).await?;
    assert_eq!(
        summary(&next(&mut watch).await?),
        (EventType::Added, key.into(), b"1".to_vec(), r1)
    );
    assert_eq!(
        summary(&next(&mut watch).await?),
        (EventType::Modified, key.into(), b"2".to_vec(), r2)
    );
    let r3 = s.update(key, r2, b"3".to_vec()).await?;
    let (_, r4) = s.delete(key, None).await?;
    assert_eq!(
        summary(&next(&mut watch).await?),
        (EventType::Modified, key.into(), b"3".to_vec(), r3)
    );
    assert_eq!(
        summary(&next(&mut watch).await?),
        (EventType::Deleted, key.into(), b"3".to_vec(), r4)
    );
    assert_quiet(&mut watch).await;

    // Resuming from the middle replays only what came after.
    let mut resumed = s.watch("/registry/deployments/", r2).await?;
    assert_eq!(next(&mut resumed).await?.kv.mod_revision, r3);
    assert_eq!(next(&mut resumed).await?.kv.mod_revision, r4);
    assert_quiet(&mut resumed).await;
    Ok(())
}

async fn watch_from_zero_sees_only_new_events(s: Arc<dyn Storage>) -> anyhow::Result<()> {
    s.create("/registry/pods/default/old", b"old".to_vec())
        .await?;
    let mut watch = s.watch("/registry/pods/", 0).await?;
    assert_quiet(&mut watch).await;
    let rev = s
        .create("/registry/pods/default/new", b"new".to_vec())
        .await?;
    let event = next(&mut watch).await?;
    assert_eq!(
        summary(&event),
        (
            EventType::Added,
            "/registry/pods/default/new".into(),
            b"new".to_vec(),
            rev
        )
    );
    assert_quiet(&mut watch).await;
    Ok(())
}

async fn watch_filters_by_prefix_and_carries_the_previous_value(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let mut watch = s.watch("/registry/pods/default/", 0).await?;
    s.create("/registry/pods/other/x", b"x".to_vec()).await?;
    s.create("/registry/pods/defaultx/y", b"y".to_vec()).await?;
    let created = s.create("/registry/pods/default/p", b"p1".to_vec()).await?;
    let updated = s
        .update("/registry/pods/default/p", created, b"p2".to_vec())
        .await?;
    let added = next(&mut watch).await?;
    assert_eq!(added.event_type, EventType::Added);
    assert_eq!(added.kv.key, "/registry/pods/default/p");
    assert!(added.prev.is_none());
    let modified = next(&mut watch).await?;
    assert_eq!(modified.event_type, EventType::Modified);
    assert_eq!(
        (modified.kv.create_revision, modified.kv.mod_revision),
        (created, updated)
    );
    let prev = modified.prev.expect("prev of a modification");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision),
        (&b"p1"[..], created)
    );
    assert_quiet(&mut watch).await;
    Ok(())
}

async fn deletes_carry_the_last_value_in_watch_events(s: Arc<dyn Storage>) -> anyhow::Result<()> {
    let key = "/registry/services/default/web";
    let start = s.current_revision().await?;
    let created = s.create(key, b"first".to_vec()).await?;
    let updated = s.update(key, created, b"last".to_vec()).await?;
    let (_, deleted) = s.delete(key, Some(updated)).await?;
    let mut watch = s.watch("/registry/services/", start).await?;
    next(&mut watch).await?;
    next(&mut watch).await?;
    let event = next(&mut watch).await?;
    assert_eq!(event.event_type, EventType::Deleted);
    assert_eq!(event.kv.value, b"last");
    assert_eq!(
        (event.kv.create_revision, event.kv.mod_revision),
        (created, deleted)
    );
    let prev = event.prev.expect("prev of a delete");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision),
        (&b"last"[..], updated)
    );

    // Live deletes too.
    let mut live = s.watch("/registry/services/", 0).await?;
    let again = s.create(key, b"again".to_vec()).await?;
    let (_, gone) = s.delete(key, None).await?;
    assert_eq!(next(&mut live).await?.kv.mod_revision, again);
    let event = next(&mut live).await?;
    assert_eq!(
        summary(&event),
        (EventType::Deleted, key.into(), b"again".to_vec(), gone)
    );
    Ok(())
}

async fn watch_from_a_compacted_revision_fails_with_compacted(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let key = "/registry/pods/default/c";
    let old = s.current_revision().await?;
    let mut rev = s.create(key, b"0".to_vec()).await?;
    for i in 1..5 {
        rev = s.update(key, rev, i.to_string().into_bytes()).await?;
    }
    s.compact(rev).await?;
    match s.watch("/registry/pods/", old).await {
        Err(StorageError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, old);
            assert!(
                compacted >= rev - 1,
                "compacted {compacted} should be near {rev}"
            );
        }
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(mut watch) => match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Err(StorageError::Compacted { .. }))) => {}
            other => panic!("expected Compacted, got {other:?}"),
        },
    }
    // Watching from the compacted revision on still works.
    let mut watch = s.watch("/registry/pods/", rev).await?;
    let newer = s.update(key, rev, b"5".to_vec()).await?;
    assert_eq!(next(&mut watch).await?.kv.mod_revision, newer);
    // Compacting again to an older revision is harmless.
    s.compact(rev - 2).await?;
    match s.compact(newer + 10).await {
        Err(StorageError::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

async fn list_at_a_compacted_revision_fails_and_live_keys_survive_compaction(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    let keep = "/registry/pods/default/keep";
    let gone = "/registry/pods/default/gone";
    let k1 = s.create(keep, b"k1".to_vec()).await?;
    let g1 = s.create(gone, b"g1".to_vec()).await?;
    let k2 = s.update(keep, k1, b"k2".to_vec()).await?;
    s.delete(gone, Some(g1)).await?;
    let target = s
        .create("/registry/pods/default/last", b"l".to_vec())
        .await?;
    s.compact(target).await?;

    match s
        .list(
            "/registry/pods/",
            &ListOptions {
                revision: Some(k2),
                ..Default::default()
            },
        )
        .await
    {
        Err(StorageError::Compacted { requested, .. }) => assert_eq!(requested, k2),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at = s
        .list(
            "/registry/pods/",
            &ListOptions {
                revision: Some(target),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(
        keys(&at.items),
        ["/registry/pods/default/keep", "/registry/pods/default/last"]
    );
    let kept = s.get(keep).await?.expect("live key survives compaction");
    assert_eq!(
        (
            kept.value.as_slice(),
            kept.create_revision,
            kept.mod_revision
        ),
        (&b"k2"[..], k1, k2)
    );
    assert_eq!(s.get(gone).await?, None);
    // Writes go on after compaction with the revision still increasing.
    let after = s.update(keep, k2, b"k3".to_vec()).await?;
    assert!(after > target);
    Ok(())
}

async fn recreating_a_deleted_key_starts_a_new_life(s: Arc<dyn Storage>) -> anyhow::Result<()> {
    let key = "/registry/namespaces/dev";
    let first = s.create(key, b"1".to_vec()).await?;
    let (_, deleted) = s.delete(key, Some(first)).await?;
    let start = s.current_revision().await?;
    assert_eq!(start, deleted);
    let second = s.create(key, b"2".to_vec()).await?;
    let kv = s.get(key).await?.expect("recreated");
    assert_eq!((kv.create_revision, kv.mod_revision), (second, second));
    match s.update(key, first, b"stale".to_vec()).await {
        Err(StorageError::Conflict { current, .. }) => assert_eq!(current, second),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let mut watch = s.watch("/registry/namespaces/", first).await?;
    assert_eq!(next(&mut watch).await?.event_type, EventType::Deleted);
    let added = next(&mut watch).await?;
    assert_eq!(added.event_type, EventType::Added);
    assert!(added.prev.is_none());
    Ok(())
}

async fn concurrent_creates_all_get_distinct_increasing_revisions(
    s: Arc<dyn Storage>,
) -> anyhow::Result<()> {
    const N: usize = 64;
    let start = s.current_revision().await?;
    let mut watch = s.watch("/registry/events/", start).await?;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = format!("/registry/events/default/e{i:03}");
                s.create(&key, vec![b'x'; 64]).await.map(|rev| (key, rev))
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await??);
    }
    let mut revisions: Vec<Revision> = created.iter().map(|(_, r)| *r).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), N, "every create got its own revision");
    assert!(revisions[0] > start);
    assert_eq!(
        *revisions.last().expect("revisions"),
        s.current_revision().await?
    );
    // The watch delivers them once each, in revision order.
    let mut seen = Vec::new();
    for _ in 0..N {
        seen.push(next(&mut watch).await?.kv.mod_revision);
    }
    assert_eq!(seen, revisions);
    assert_quiet(&mut watch).await;
    assert_eq!(s.count("/registry/events/").await?, N as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// etcd only

/// `--etcd-prefix` stands for the logical `/registry` root in etcd's key space.
#[tokio::test]
async fn etcd_prefix_replaces_the_registry_root_in_etcd_keys() -> anyhow::Result<()> {
    let Some(backend) = etcd_backend().await? else {
        return Ok(());
    };
    let url = backend
        ._etcd
        .as_ref()
        .map(|p| p.url.clone())
        .expect("etcd backend");
    let default = backend.storage.clone();
    let custom = storage::open(&StorageConfig::Etcd {
        endpoints: vec![url],
        prefix: "/custom".to_string(),
    })
    .await?;
    custom
        .create("/registry/pods/default/p", b"p".to_vec())
        .await?;
    assert_eq!(
        custom
            .get("/registry/pods/default/p")
            .await?
            .map(|kv| kv.value),
        Some(b"p".to_vec())
    );
    let listed = custom
        .list("/registry/pods/", &ListOptions::default())
        .await?;
    assert_eq!(keys(&listed.items), ["/registry/pods/default/p"]);
    let mut watch = custom.watch("/registry/pods/", 0).await?;
    custom.delete("/registry/pods/default/p", None).await?;
    assert_eq!(next(&mut watch).await?.kv.key, "/registry/pods/default/p");
    // Seen through the default prefix, the object lived outside `/registry`.
    assert_eq!(default.count("/registry/").await?, 0);
    let start = default.current_revision().await?;
    custom
        .create("/registry/pods/default/q", b"q".to_vec())
        .await?;
    let raw = default
        .get("/custom/pods/default/q")
        .await?
        .expect("stored under /custom");
    assert_eq!(
        (raw.value.as_slice(), raw.mod_revision),
        (&b"q"[..], start + 1)
    );
    Ok(())
}
