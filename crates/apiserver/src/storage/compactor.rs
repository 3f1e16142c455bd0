//! Periodic compaction, as the upstream apiserver does it: every interval, compact to the
//! revision that was current one interval earlier, so watchers always have at least one
//! interval of history to resume from.

use std::sync::Arc;
use std::time::Duration;

use super::interface::{Revision, Storage};

/// Upstream's default `--etcd-compaction-interval`.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Spawns the compaction loop; abort the returned handle to stop it.
pub fn spawn_compactor(
    storage: Arc<dyn Storage>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The revision seen at the previous tick: history up to it is at least one interval old.
        let mut previous: Option<Revision> = None;
        loop {
            ticker.tick().await;
            if let Some(revision) = previous {
                match storage.compact(revision).await {
                    Ok(()) => tracing::debug!(revision, "compacted storage"),
                    Err(error) => tracing::warn!(revision, %error, "storage compaction failed"),
                }
            }
            match storage.current_revision().await {
                Ok(revision) => previous = Some(revision),
                Err(error) => tracing::warn!(%error, "reading the storage revision failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Event, KeyValue, ListOptions, ListResult, StorageError};
    use futures::stream::BoxStream;
    use std::sync::Mutex;

    /// Records compactions; the revision grows by 10 every time it is read.
    #[derive(Default)]
    struct Recorder {
        revision: Mutex<Revision>,
        compacted: Mutex<Vec<Revision>>,
    }

    #[async_trait::async_trait]
    impl Storage for Recorder {
        async fn get(&self, _: &str) -> Result<Option<KeyValue>, StorageError> {
            Ok(None)
        }
        async fn list(&self, _: &str, _: &ListOptions) -> Result<ListResult, StorageError> {
            Err(StorageError::Backend("unused".into()))
        }
        async fn count(&self, _: &str) -> Result<i64, StorageError> {
            Ok(0)
        }
        async fn create(&self, _: &str, _: Vec<u8>) -> Result<Revision, StorageError> {
            Err(StorageError::Backend("unused".into()))
        }
        async fn update(&self, _: &str, _: Revision, _: Vec<u8>) -> Result<Revision, StorageError> {
            Err(StorageError::Backend("unused".into()))
        }
        async fn delete(
            &self,
            _: &str,
            _: Option<Revision>,
        ) -> Result<(KeyValue, Revision), StorageError> {
            Err(StorageError::Backend("unused".into()))
        }
        async fn watch(
            &self,
            _: &str,
            _: Revision,
        ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
            Err(StorageError::Backend("unused".into()))
        }
        async fn current_revision(&self) -> Result<Revision, StorageError> {
            let mut revision = self.revision.lock().expect("lock");
            *revision += 10;
            Ok(*revision)
        }
        async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
            self.compacted.lock().expect("lock").push(revision);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn compactor_compacts_to_the_revision_seen_one_interval_earlier() {
        let recorder = Arc::new(Recorder::default());
        let handle = spawn_compactor(recorder.clone(), Duration::from_secs(300));
        tokio::time::sleep(Duration::from_secs(301 * 3)).await;
        handle.abort();
        assert_eq!(*recorder.compacted.lock().expect("lock"), vec![10, 20, 30]);
    }
}
