//! Storage of API objects: the [`Storage`] trait and its two backends.
//!
//! Start at [`interface`] for the contract (etcd v3 semantics: one global revision, CAS writes on
//! `mod_revision`, resumable watches), then [`open`], which builds the backend a
//! [`StorageConfig`] names: [`sqlite::SqliteStorage`] (embedded, kine-style revision log) or
//! [`etcd::EtcdStorage`] (etcd3). [`spawn_compactor`] keeps history bounded for either.
//! Keys are logical paths such as `/registry/pods/default/web-1`; values are opaque bytes.

pub mod cache;
pub mod compactor;
pub mod encryption;
pub mod etcd;
pub mod interface;
pub mod sqlite;
pub mod tracking;

use std::path::PathBuf;
use std::sync::Arc;

pub use compactor::{spawn_compactor, DEFAULT_COMPACTION_INTERVAL};
pub use etcd::EtcdStorage;
pub use interface::{
    prefix_end, Event, EventType, KeyValue, ListOptions, ListResult, Revision, Storage,
    StorageError,
};
pub use sqlite::SqliteStorage;

/// Which backend to open, from the apiserver's `--storage-backend` flags.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageConfig {
    /// Embedded SQLite database at `path` (`--storage-backend sqlite --sqlite-path F`).
    Sqlite {
        /// The database file; created with its directory if missing.
        path: PathBuf,
    },
    /// An etcd3 cluster (`--storage-backend etcd3 --etcd-servers URL,.. --etcd-prefix P`).
    Etcd {
        /// Client URLs, e.g. `http://127.0.0.1:2379`.
        endpoints: Vec<String>,
        /// `--etcd-prefix`: the etcd key prefix that stands for the logical `/registry` root.
        prefix: String,
    },
}

/// Opens the backend `config` names.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>, StorageError> {
    match config {
        StorageConfig::Sqlite { path } => Ok(Arc::new(SqliteStorage::open(path).await?)),
        StorageConfig::Etcd { endpoints, prefix } => {
            Ok(Arc::new(EtcdStorage::connect(endpoints, prefix).await?))
        }
    }
}
