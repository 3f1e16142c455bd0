//! A [`Storage`] wrapper that remembers the revision of the last write made through it, in all
//! and per resource.
//!
//! Admission reads served from the watch cache ([`crate::admission::lister`]) wait until the
//! cache has applied every write this apiserver made to the resource they read, so a client
//! that created a LimitRange, a ResourceQuota or a namespace label and then creates a pod sees
//! its own write (what a consistent read would give) without an extra storage round trip. Per
//! resource, because under a stream of pod creates the last write of all is always a pod the
//! cache has not seen yet: a LimitRange read waiting for it would wait for the watch on every
//! create.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use futures::stream::BoxStream;

use super::interface::{Event, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError};

/// The storage prefixes of the registered resources (`/registry/pods/`), longest first, so
/// `/registry/a/b/` wins over `/registry/a/`.
pub fn resource_prefixes() -> &'static [String] {
    static PREFIXES: OnceLock<Vec<String>> = OnceLock::new();
    PREFIXES.get_or_init(|| {
        let mut prefixes: Vec<String> = api_types::registry::RESOURCES
            .iter()
            .map(|r| format!("{}/", r.storage_prefix()))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        prefixes
    })
}

/// The highest revision written through a [`WriteTracking`], in all and per resource prefix.
#[derive(Debug)]
pub struct Written {
    all: AtomicI64,
    /// One slot per entry of [`resource_prefixes`], in the same order.
    by_prefix: Vec<AtomicI64>,
}

impl Default for Written {
    fn default() -> Self {
        Written {
            all: AtomicI64::new(0),
            by_prefix: resource_prefixes()
                .iter()
                .map(|_| AtomicI64::new(0))
                .collect(),
        }
    }
}

impl Written {
    fn slot(&self, key: &str) -> Option<&AtomicI64> {
        let i = resource_prefixes()
            .iter()
            .position(|p| key.starts_with(p.as_str()))?;
        self.by_prefix.get(i)
    }

    /// Records a write of `key` at `revision`.
    pub fn record(&self, key: &str, revision: Revision) {
        self.all.fetch_max(revision, Ordering::AcqRel);
        if let Some(slot) = self.slot(key) {
            slot.fetch_max(revision, Ordering::AcqRel);
        }
    }

    /// The revision of the last write of all.
    pub fn all(&self) -> Revision {
        self.all.load(Ordering::Acquire)
    }

    /// The revision of the last write of the resource `key` (a key or a list prefix) belongs
    /// to; of all for a key of no registered resource.
    pub fn of(&self, key: &str) -> Revision {
        match self.slot(key) {
            Some(slot) => slot.load(Ordering::Acquire),
            None => self.all(),
        }
    }
}

/// Delegates to `inner`, recording the highest revision written.
pub struct WriteTracking {
    inner: Arc<dyn Storage>,
    written: Arc<Written>,
}

impl WriteTracking {
    /// Wraps `inner`; `written` records the revision of every successful write.
    pub fn new(inner: Arc<dyn Storage>, written: Arc<Written>) -> Self {
        WriteTracking { inner, written }
    }

    fn wrote(&self, key: &str, revision: Revision) -> Revision {
        self.written.record(key, revision);
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
        Ok(self.wrote(key, revision))
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        let revision = self.inner.update(key, expected, value).await?;
        Ok(self.wrote(key, revision))
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        let (kv, revision) = self.inner.delete(key, expected).await?;
        self.wrote(key, revision);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_write_does_not_raise_the_revision_of_limitranges() {
        let written = Written::default();
        written.record("/registry/limitranges/ns/lr", 5);
        written.record("/registry/pods/ns/p", 9);
        assert_eq!(written.of("/registry/limitranges/ns/"), 5);
        assert_eq!(written.of("/registry/pods/ns/p"), 9);
        assert_eq!(written.of("/registry/resourcequotas/ns/"), 0);
        assert_eq!(written.all(), 9);
    }

    #[test]
    fn a_key_of_no_registered_resource_falls_back_to_every_write() {
        let written = Written::default();
        written.record("/registry/pods/ns/p", 7);
        written.record("/registry/example.com/widgets/ns/w", 8);
        assert_eq!(written.of("/registry/example.com/widgets/ns/w"), 8);
        assert_eq!(written.of("/registry/pods/"), 7);
    }
}
