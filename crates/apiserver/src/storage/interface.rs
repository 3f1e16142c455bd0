//! The storage contract: the [`Storage`] trait and the values it speaks in.
//!
//! Semantics follow etcd's v3 API, which is what the upstream apiserver builds on: one global,
//! monotonically increasing revision for the whole store, a key's `create_revision` and
//! `mod_revision`, compare-and-swap writes on `mod_revision`, and watches that resume from any
//! revision that has not been compacted away.

use futures::stream::BoxStream;

/// A store revision (etcd's `revision`; the apiserver's `resourceVersion`).
pub type Revision = i64;

/// One key and its current (or historical) value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-1`.
    pub key: String,
    /// The stored bytes (JSON for the apiserver).
    pub value: Vec<u8>,
    /// The revision at which the key was (last) created.
    pub create_revision: Revision,
    /// The revision of the last change to the key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Debug, PartialEq)]
pub enum EventType {
    /// The key was created.
    Added,
    /// The key's value was replaced.
    Modified,
    /// The key was deleted.
    Deleted,
}

/// One change to one key, as delivered by [`Storage::watch`].
///
/// For `Deleted`: `kv.value` is the last value, `kv.mod_revision` the revision of the delete.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub event_type: EventType,
    /// The key after the change (for a delete: the last value at the delete's revision).
    pub kv: KeyValue,
    /// The key before the change, when known (absent for `Added`, and when compacted away).
    pub prev: Option<KeyValue>,
}

impl ListOptions {
    /// The effective limit: `None` when unlimited.
    pub fn effective_limit(&self) -> Option<usize> {
        self.limit.filter(|limit| *limit > 0)
    }

    /// The effective revision to read at: `None` for "now".
    pub fn effective_revision(&self) -> Option<Revision> {
        self.revision.filter(|revision| *revision > 0)
    }
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options of [`Storage::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many items (`None` or `Some(0)` = all, as in etcd and the API's `limit`).
    pub limit: Option<usize>,
    /// Only keys strictly greater than this one (the continue token of the previous page).
    pub start_after: Option<String>,
    /// Read the store as it was at this revision (`None`, or a revision <= 0, = now, as in etcd).
    pub revision: Option<Revision>,
}

/// The answer of [`Storage::list`].
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Matching keys, sorted by key.
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: Revision,
    /// True when `limit` cut the list short and more keys follow the last item.
    pub more: bool,
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// `create` on a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: String,
    },
    /// A compare-and-swap precondition failed: the key's mod revision is `current`.
    #[error("key {key} was modified: current revision is {current}")]
    Conflict {
        /// The key asked for.
        key: String,
        /// The key's current mod revision.
        current: Revision,
    },
    /// The requested revision is older than the oldest revision the store still keeps.
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compacted revision.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The store holds a key that is not UTF-8 (written by something other than us).
    #[error("stored key is not valid UTF-8")]
    InvalidKey,
    /// The SQLite database failed.
    #[error("sqlite: {context}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The database error.
        #[source]
        source: rusqlite::Error,
    },
    /// The etcd cluster failed or could not be reached.
    #[error("etcd: {context}")]
    Etcd {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// Any other backend failure (a lost worker task, a watch cancelled by the server, ...).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// How an etcd failure should be answered, as upstream tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendFailure {
    /// etcd is overloaded (`etcdserver: too many requests`): 429, retry later.
    TooManyRequests,
    /// The request timed out in etcd or on the way to it: 504.
    Timeout,
    /// Anything else: 500.
    Internal,
}

impl StorageError {
    /// The gRPC message etcd answered, if this is an etcd error that carries one.
    pub fn etcd_message(&self) -> Option<&str> {
        match self {
            StorageError::Etcd {
                source: etcd_client::Error::GRpcStatus(status),
                ..
            } => Some(status.message()),
            _ => None,
        }
    }

    /// Classifies a backend failure for the HTTP answer.
    pub fn backend_failure(&self) -> BackendFailure {
        let StorageError::Etcd { source, .. } = self else {
            return BackendFailure::Internal;
        };
        match source {
            etcd_client::Error::GRpcStatus(status) => {
                let message = status.message();
                let code = i32::from(status.code());
                // gRPC codes: 4 DeadlineExceeded, 8 ResourceExhausted.
                if message.contains("too many requests") || code == 8 {
                    BackendFailure::TooManyRequests
                } else if message.contains("request timed out")
                    || message.contains("deadline exceeded")
                    || code == 4
                {
                    BackendFailure::Timeout
                } else {
                    BackendFailure::Internal
                }
            }
            other if other.to_string().contains("timed out") => BackendFailure::Timeout,
            _ => BackendFailure::Internal,
        }
    }
}

/// A key-value store with a global revision, compare-and-swap writes and resumable watches.
///
/// Implemented by the embedded SQLite backend and the etcd3 backend; both pass the same
/// conformance suite (`tests/storage_conformance.rs`).
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current value of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError>;

    /// Keys starting with `prefix`, sorted by key; `revision` = the store revision the list was
    /// read at (with `opts.revision` = Some(r): read at r, Compacted if r is compacted,
    /// FutureRevision if r is newer than the store).
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StorageError>;

    /// How many keys start with `prefix`.
    async fn count(&self, prefix: &str) -> Result<i64, StorageError>;

    /// Creates `key`; fails with AlreadyExists. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError>;

    /// Compare-and-swap on mod_revision: Conflict when the key's current mod_revision differs,
    /// NotFound when absent. Returns the new revision.
    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError>;

    /// Deletes (optionally only if mod_revision == expected). Returns the deleted kv (as it was
    /// before the delete) and the delete revision.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError>;

    /// Events for keys under `prefix` with revision > `after`, in revision order, then live
    /// events. `after` = 0 means "from now". Compacted when events after `after` are no longer
    /// kept, i.e. when `after + 1` < the compacted revision (etcd's rule for `start_revision`).
    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError>;

    /// The store's current revision (the revision of the last write).
    async fn current_revision(&self) -> Result<Revision, StorageError>;

    /// Drops history older than `revision` (the latest value of every live key is kept, and the
    /// store can still be read at `revision`). Compacting to a revision at or below the one
    /// already compacted is a no-op; FutureRevision when `revision` > current.
    async fn compact(&self, revision: Revision) -> Result<(), StorageError>;
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is no
/// such key (empty prefix, or a prefix of only 0xff bytes): etcd's `range_end` for a prefix.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
