//! A [`Storage`] wrapper that remembers the revision of the last write made through it.
//!
//! Admission reads served from the watch cache ([`crate::admission::lister`]) wait until the
//! cache has applied every write this apiserver made, so a client that created a LimitRange,
//! a ResourceQuota or a namespace label and then creates a pod sees its own write (what a
//! consistent read would give) without an extra storage round trip.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use futures::stream::BoxStream;

use super::interface::{Event, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError};

/// Delegates to `inner`, recording the highest revision written.
pub struct WriteTracking {
    inner: Arc<dyn Storage>,
    written: Arc<AtomicI64>,
}

impl WriteTracking {
    /// Wraps `inner`; `written` is raised to the revision of every successful write.
    pub fn new(inner: Arc<dyn Storage>, written: Arc<AtomicI64>) -> Self {
        WriteTracking { inner, written }
    }

    fn wrote(&self, revision: Revision) -> Revision {
        self.written.fetch_max(revision, Ordering::AcqRel);
        revision
    }
}

#[async_trait::async_trait]
impl Storage for WriteTracking {
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
        let revision = self.inner.create(key, value).await?;
        Ok(self.wrote(revision))
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        let revision = self.inner.update(key, expected, value).await?;
        Ok(self.wrote(revision))
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        let (kv, revision) = self.inner.delete(key, expected).await?;
        self.wrote(revision);
        Ok((kv, revision))
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
        self.inner.watch(prefix, after).await
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.inner.compact(revision).await
    }
}
