//! etcd3 backend: the [`Storage`] trait on an etcd cluster through `etcd-client`.
//!
//! Start at [`EtcdStorage::connect`]. Writes are single transactions guarded by compares
//! (`create_revision == 0` for create, `mod_revision == expected` for update and delete) whose
//! failure branch reads the key, so a failed precondition is answered without a second round
//! trip. Lists page through the range at one fixed revision so no reply exceeds gRPC's message
//! limit. Watches are etcd watches with `prev_kv`, resumed at `after + 1`.
//!
//! Keys: the logical root `/registry` is swapped for the configured `--etcd-prefix` (identity
//! with the default prefix `/registry`); keys outside the root are stored unchanged.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchOptions,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::storage::interface::{
    prefix_end, Event, EventType, KeyValue, ListOptions, ListResult, Revision, Storage,
    StorageError,
};

/// The logical root of every key the apiserver uses.
const LOGICAL_ROOT: &str = "/registry";

/// Keys fetched per range request while listing: keeps replies well under the message limit.
const LIST_PAGE: usize = 1000;

/// Largest gRPC message accepted from etcd (etcd's own default request limit is 1.5 MiB per
/// value, so a page of `LIST_PAGE` big objects can exceed gRPC's default 4 MiB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The etcd3 [`Storage`] backend. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStorage {
    kv: KvClient,
    watch: WatchClient,
    /// The `--etcd-prefix` that stands for [`LOGICAL_ROOT`].
    prefix: Arc<str>,
    /// The highest revision this process compacted to (etcd reports no revision with a
    /// compacted range error).
    compacted: Arc<AtomicI64>,
}

fn etcd(context: &'static str) -> impl FnOnce(etcd_client::Error) -> StorageError {
    move |source| StorageError::Etcd { context, source }
}

/// The gRPC message of an etcd error, for the few errors that are told apart by text.
fn grpc_message(error: &etcd_client::Error) -> Option<&str> {
    match error {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

fn is_compacted(error: &etcd_client::Error) -> bool {
    grpc_message(error).is_some_and(|m| m.contains("required revision has been compacted"))
}

fn is_future(error: &etcd_client::Error) -> bool {
    grpc_message(error).is_some_and(|m| m.contains("required revision is a future revision"))
}

impl EtcdStorage {
    /// Connects to the etcd cluster at `endpoints`, mapping the logical `/registry` root to
    /// `prefix`. Fails if no endpoint answers.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StorageError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(etcd("connect"))?;
        let storage = EtcdStorage {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            prefix: Arc::from(prefix.trim_end_matches('/')),
            compacted: Arc::new(AtomicI64::new(0)),
        };
        // Connecting is lazy: one read proves an endpoint answers.
        let revision = storage.current_revision().await?;
        tracing::info!(?endpoints, prefix, revision, "connected to etcd");
        Ok(storage)
    }

    fn etcd_key(&self, key: &str) -> Vec<u8> {
        match key.strip_prefix(LOGICAL_ROOT) {
            Some(rest) => format!("{}{rest}", self.prefix).into_bytes(),
            None => key.as_bytes().to_vec(),
        }
    }

    fn logical_key(&self, key: &[u8]) -> Result<String, StorageError> {
        let key = std::str::from_utf8(key).map_err(|_| StorageError::InvalidKey)?;
        Ok(match key.strip_prefix(&*self.prefix) {
            Some(rest) => format!("{LOGICAL_ROOT}{rest}"),
            None => key.to_string(),
        })
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StorageError> {
        Ok(KeyValue {
            key: self.logical_key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    fn compacted_error(&self, requested: Revision) -> StorageError {
        StorageError::Compacted {
            requested,
            compacted: self
                .compacted
                .load(Ordering::Relaxed)
                .max(requested.saturating_add(1)),
        }
    }

    /// Maps a read error at `revision`, telling compacted and future revisions apart.
    async fn read_error(&self, revision: Revision, error: etcd_client::Error) -> StorageError {
        if is_compacted(&error) {
            self.compacted_error(revision)
        } else if is_future(&error) {
            match self.current_revision().await {
                Ok(current) => StorageError::FutureRevision {
                    requested: revision,
                    current,
                },
                Err(e) => e,
            }
        } else {
            StorageError::Etcd {
                context: "range",
                source: error,
            }
        }
    }

    /// Runs a guarded write; on failure, reads the key from the failure branch.
    /// Returns the new revision, or the key's current kv (None when absent).
    async fn guarded(&self, txn: Txn) -> Result<Result<Revision, Option<KeyValue>>, StorageError> {
        let response = self.kv.clone().txn(txn).await.map_err(etcd("txn"))?;
        if response.succeeded() {
            let revision = response.header().map(|h| h.revision()).ok_or_else(|| {
                StorageError::Backend("etcd txn response without header".to_string())
            })?;
            return Ok(Ok(revision));
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return match get.kvs().first() {
                    Some(kv) => Ok(Err(Some(self.key_value(kv)?))),
                    None => Ok(Err(None)),
                };
            }
        }
        Ok(Err(None))
    }

    fn event(&self, event: &etcd_client::Event) -> Result<Option<Event>, StorageError> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        let prev = event.prev_kv().map(|p| self.key_value(p)).transpose()?;
        let mut current = self.key_value(kv)?;
        let event_type = match event.event_type() {
            etcd_client::EventType::Delete => {
                // etcd's delete event has an empty value; the contract wants the last value.
                if let Some(prev) = &prev {
                    current.value = prev.value.clone();
                    current.create_revision = prev.create_revision;
                }
                EventType::Deleted
            }
            etcd_client::EventType::Put if kv.version() == 1 => EventType::Added,
            etcd_client::EventType::Put => EventType::Modified,
        };
        let prev = if event_type == EventType::Added {
            None
        } else {
            prev
        };
        Ok(Some(Event {
            event_type,
            kv: current,
            prev,
        }))
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let response = self
            .kv
            .clone()
            .get(self.etcd_key(key), None)
            .await
            .map_err(etcd("get"))?;
        response
            .kvs()
            .first()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StorageError> {
        let start = self.etcd_key(prefix);
        let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
        let mut cursor = start.clone();
        if let Some(after) = &opts.start_after {
            let after = self.etcd_key(after);
            if after >= start {
                cursor = after;
                cursor.push(0);
            }
        }
        // 0 = newest; after the first page every page reads the first page's revision.
        let mut revision = opts.effective_revision().unwrap_or(0);
        let mut items = Vec::new();
        let mut more = false;
        loop {
            let wanted = match opts.effective_limit() {
                Some(limit) => limit.saturating_sub(items.len()).min(LIST_PAGE),
                None => LIST_PAGE,
            };
            if wanted == 0 {
                break;
            }
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(wanted).unwrap_or(i64::MAX))
                .with_revision(revision);
            let response = match self.kv.clone().get(cursor.clone(), Some(options)).await {
                Ok(response) => response,
                Err(error) => return Err(self.read_error(revision, error).await),
            };
            if revision == 0 {
                revision = response.header().map(|h| h.revision()).ok_or_else(|| {
                    StorageError::Backend("etcd range response without header".to_string())
                })?;
            }
            for kv in response.kvs() {
                items.push(self.key_value(kv)?);
            }
            more = response.more();
            match response.kvs().last() {
                Some(last) if more => {
                    cursor = last.key().to_vec();
                    cursor.push(0);
                }
                _ => break,
            }
        }
        if opts
            .effective_limit()
            .is_some_and(|limit| items.len() < limit)
        {
            more = false;
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64, StorageError> {
        let start = self.etcd_key(prefix);
        let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
        let options = GetOptions::new().with_range(end).with_count_only();
        let response = self
            .kv
            .clone()
            .get(start, Some(options))
            .await
            .map_err(etcd("count"))?;
        Ok(response.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError> {
        let etcd_key = self.etcd_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(etcd_key, value, None)]);
        match self.guarded(txn).await? {
            Ok(revision) => Ok(revision),
            Err(_) => Err(StorageError::AlreadyExists {
                key: key.to_string(),
            }),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        let etcd_key = self.etcd_key(key);
        let txn = Txn::new()
            .when([
                // An absent key has mod_revision 0: never let an update create it.
                Compare::create_revision(etcd_key.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(etcd_key.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(etcd_key.clone(), value, None)])
            .or_else([TxnOp::get(etcd_key, None)]);
        match self.guarded(txn).await? {
            Ok(revision) => Ok(revision),
            Err(Some(current)) => Err(StorageError::Conflict {
                key: key.to_string(),
                current: current.mod_revision,
            }),
            Err(None) => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        let etcd_key = self.etcd_key(key);
        let mut compares = vec![Compare::create_revision(
            etcd_key.clone(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                etcd_key.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(etcd_key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(etcd("delete txn"))?;
        let revision = response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| StorageError::Backend("etcd txn response without header".to_string()))?;
        for op in response.op_responses() {
            match op {
                TxnOpResponse::Delete(deleted) if response.succeeded() => {
                    if let Some(kv) = deleted.prev_kvs().first() {
                        return Ok((self.key_value(kv)?, revision));
                    }
                }
                TxnOpResponse::Get(get) if !response.succeeded() => {
                    if let Some(kv) = get.kvs().first() {
                        return Err(StorageError::Conflict {
                            key: key.to_string(),
                            current: kv.mod_revision(),
                        });
                    }
                }
                _ => {}
            }
        }
        Err(StorageError::NotFound {
            key: key.to_string(),
        })
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
        let start = self.etcd_key(prefix);
        let end = prefix_end(&start).unwrap_or_else(|| vec![0]);
        let mut options = WatchOptions::new().with_range(end).with_prev_key();
        if after > 0 {
            options = options.with_start_revision(after.saturating_add(1));
        }
        let mut stream = self
            .watch
            .clone()
            .watch(start, Some(options))
            .await
            .map_err(etcd("start watch"))?;
        // The first response confirms the watch, or cancels it (compacted start revision).
        let first = stream
            .message()
            .await
            .map_err(etcd("start watch"))?
            .ok_or_else(|| StorageError::Backend("etcd closed the watch stream".to_string()))?;
        if first.canceled() {
            return Err(watch_canceled(after, &first));
        }
        let storage = self.clone();
        let mut pending: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
        for event in first.events() {
            pending.extend(storage.event(event)?);
        }
        let state = WatchState {
            storage,
            stream,
            pending,
            after,
            done: false,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            if state.done {
                return None;
            }
            let item = state.next_event().await?;
            state.done = item.is_err();
            Some((item, state))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .kv
            .clone()
            .get(self.prefix.as_bytes().to_vec(), Some(options))
            .await
            .map_err(etcd("read revision"))?;
        response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| StorageError::Backend("etcd range response without header".to_string()))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        match self.kv.clone().compact(revision, None).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            Err(error) if is_compacted(&error) => Ok(()),
            Err(error) if is_future(&error) => Err(StorageError::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(error) => Err(StorageError::Etcd {
                context: "compact",
                source: error,
            }),
        }
    }
}

fn watch_canceled(after: Revision, response: &etcd_client::WatchResponse) -> StorageError {
    if response.compact_revision() > 0 {
        StorageError::Compacted {
            requested: after,
            compacted: response.compact_revision(),
        }
    } else {
        StorageError::Backend(format!(
            "etcd canceled the watch: {}",
            response.cancel_reason()
        ))
    }
}

/// The state of one etcd watch stream between two items.
struct WatchState {
    storage: EtcdStorage,
    /// Kept whole: dropping its request half would end the watch.
    stream: etcd_client::WatchStream,
    pending: std::collections::VecDeque<Event>,
    after: Revision,
    done: bool,
}

impl WatchState {
    async fn next_event(&mut self) -> Option<Result<Event, StorageError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.after = event.revision();
                return Some(Ok(event));
            }
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return None,
                Err(source) => {
                    return Some(Err(StorageError::Etcd {
                        context: "watch",
                        source,
                    }))
                }
            };
            if response.canceled() {
                return Some(Err(watch_canceled(self.after, &response)));
            }
            for event in response.events() {
                match self.storage.event(event) {
                    Ok(Some(event)) => self.pending.push_back(event),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
        }
    }
}
