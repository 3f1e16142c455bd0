//! containerd's event stream (`Events.Subscribe`) feeding a container state cache.
//!
//! Polling a container's state costs two RPCs (`Containers.Get`, `Tasks.Get`); pod workers ask
//! for every container about once a second, which with 100 pods is 200 RPCs a second for
//! nothing. Instead, [`StateCache`] remembers the last state read for each container and
//! forgets it as soon as containerd publishes an event about that container (`/tasks/exit`,
//! `/tasks/oom`, `/tasks/start`, `/tasks/delete`, `/containers/update`, ...): the next read goes
//! to containerd again. Exits of main processes are also broadcast ([`StateCache::exits`]) so a
//! caller can react at once instead of at its next poll.
//!
//! The cache only answers while the subscription is known to be live: from the first envelope
//! received (the watcher publishes a marker event of its own to get one at once, since
//! containerd sends the stream's headers with its first message) until the stream fails. While
//! it is down every read is an RPC, as before; the watcher resubscribes with back-off.
//!
//! Reads race with events: a state read over RPC is only stored if no event arrived while it
//! was being read (an epoch counter), so a stale state is never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use containerd_client::events::{
    ContainerDelete, ContainerUpdate, TaskCreate, TaskDelete, TaskExit, TaskOom, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::types::Envelope;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::client::Client;
pub use crate::runtime::ContainerExit;

/// Topic of the marker event the watcher publishes to learn its subscription is live.
pub const MARKER_TOPIC: &str = "/kubelet/events-subscribed";
/// How many exits a slow [`StateCache::exits`] receiver may lag behind.
const EXIT_BUFFER: usize = 64;
/// Longest wait between resubscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the marker is republished until the first envelope arrives.
const MARKER_PERIOD: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct Inner {
    /// Whether the subscription is live (the cache may answer).
    live: bool,
    /// Bumped by every event and by every loss of the subscription.
    epoch: u64,
    states: HashMap<String, crate::runtime::ContainerState>,
}

/// Container states remembered between events; see the module docs.
#[derive(Debug)]
pub struct StateCache {
    inner: Mutex<Inner>,
    exits: broadcast::Sender<ContainerExit>,
}

impl Default for StateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl StateCache {
    /// An empty cache, not live until a watcher marks it so.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            exits: broadcast::channel(EXIT_BUFFER).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the map consistent: a panicking holder cannot break it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached state of `id`, if the subscription is live and nothing happened to it since.
    pub fn get(&self, id: &str) -> Option<crate::runtime::ContainerState> {
        let inner = self.lock();
        if !inner.live {
            return None;
        }
        inner.states.get(id).cloned()
    }

    /// A token to pass to [`store`](Self::store) after reading a state; `None` when the cache
    /// is not live (the state read will not be kept).
    pub fn begin_read(&self) -> Option<u64> {
        let inner = self.lock();
        inner.live.then_some(inner.epoch)
    }

    /// Keeps `state` for `id` unless an event (or a loss of the stream) came after `token`.
    pub fn store(&self, id: &str, state: crate::runtime::ContainerState, token: Option<u64>) {
        let mut inner = self.lock();
        if inner.live && token == Some(inner.epoch) {
            inner.states.insert(id.to_string(), state);
        }
    }

    /// Forgets what is known of `id` (an event, or a change this process made itself).
    pub fn invalidate(&self, id: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.states.remove(id);
    }

    /// Forgets everything (an event that could not be read).
    pub fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.states.clear();
    }

    /// Marks the subscription live or lost; either way the cache starts empty.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.lock();
        inner.live = live;
        inner.epoch += 1;
        inner.states.clear();
    }

    /// Whether the cache currently answers.
    pub fn is_live(&self) -> bool {
        self.lock().live
    }

    /// Main-process exits from now on.
    pub fn exits(&self) -> broadcast::Receiver<ContainerExit> {
        self.exits.subscribe()
    }

    /// Applies one envelope from the stream.
    pub fn apply(&self, envelope: &Envelope) {
        match decode(envelope) {
            Decoded::Container(id) => self.invalidate(&id),
            Decoded::Exit(exit) => {
                self.invalidate(&exit.id);
                // No receiver is normal: nobody waits for exits.
                if self.exits.send(exit).is_err() {
                    tracing::trace!("no exit listeners");
                }
            }
            Decoded::Ignored => {}
            Decoded::Unreadable => {
                tracing::debug!(
                    topic = envelope.topic,
                    "unreadable containerd event; forgetting every cached state"
                );
                self.invalidate_all();
            }
        }
    }
}

/// What an envelope means for the cache.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// Something happened to this container.
    Container(String),
    /// A main process exited.
    Exit(ContainerExit),
    /// Not about a container (images, snapshots, our marker, other namespaces' topics).
    Ignored,
    /// About containers or tasks, but its body could not be decoded.
    Unreadable,
}

/// `any` with the `/` prost expects in front of containerd's type URLs.
fn with_slash(any: &prost_types::Any) -> prost_types::Any {
    prost_types::Any {
        type_url: if any.type_url.starts_with('/') {
            any.type_url.clone()
        } else {
            format!("/{}", any.type_url)
        },
        value: any.value.clone(),
    }
}

fn decode(envelope: &Envelope) -> Decoded {
    let topic = envelope.topic.as_str();
    if !topic.starts_with("/tasks/") && !topic.starts_with("/containers/") {
        return Decoded::Ignored;
    }
    let Some(any) = envelope.event.as_ref() else {
        return Decoded::Unreadable;
    };
    let id = match topic {
        "/tasks/exit" => {
            return match with_slash(any).to_msg::<TaskExit>().ok() {
                // An exec's exit says nothing about the container's state... except that an
                // exec ended; forgetting the container is harmless.
                Some(exit) if exit.id == exit.container_id || exit.id.is_empty() => {
                    Decoded::Exit(ContainerExit {
                        id: exit.container_id,
                        exit_code: exit.exit_status,
                    })
                }
                Some(exit) => Decoded::Container(exit.container_id),
                None => Decoded::Unreadable,
            };
        }
        "/tasks/create" => with_slash(any)
            .to_msg::<TaskCreate>()
            .ok()
            .map(|e| e.container_id),
        "/tasks/start" => with_slash(any)
            .to_msg::<TaskStart>()
            .ok()
            .map(|e| e.container_id),
        "/tasks/delete" => with_slash(any)
            .to_msg::<TaskDelete>()
            .ok()
            .map(|e| e.container_id),
        "/tasks/oom" => with_slash(any)
            .to_msg::<TaskOom>()
            .ok()
            .map(|e| e.container_id),
        "/tasks/paused" => with_slash(any)
            .to_msg::<TaskPaused>()
            .ok()
            .map(|e| e.container_id),
        "/tasks/resumed" => with_slash(any)
            .to_msg::<TaskResumed>()
            .ok()
            .map(|e| e.container_id),
        "/containers/update" => with_slash(any)
            .to_msg::<ContainerUpdate>()
            .ok()
            .map(|e| e.id),
        "/containers/delete" => with_slash(any)
            .to_msg::<ContainerDelete>()
            .ok()
            .map(|e| e.id),
        // Exec processes and checkpoints do not change a container's state; a new
        // container has nothing cached yet.
        _ => return Decoded::Ignored,
    };
    match id {
        Some(id) => Decoded::Container(id),
        None => Decoded::Unreadable,
    }
}

/// The subscription filters for `namespace`: task and container events only.
fn filters(namespace: &str) -> Vec<String> {
    ["/tasks/", "/containers/", MARKER_TOPIC]
        .iter()
        .map(|prefix| format!("namespace=={namespace},topic~=\"^{prefix}\""))
        .collect()
}

/// Follows containerd's events into `cache` until the task is aborted, resubscribing with
/// back-off when the stream fails.
pub async fn watch(client: Client, namespace: String, cache: Arc<StateCache>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&client, &namespace, &cache).await {
            Ok(()) => tracing::info!("containerd event stream ended; resubscribing"),
            Err(status) => {
                tracing::warn!(error = %status, "containerd event stream failed; resubscribing")
            }
        }
        cache.set_live(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription: marks the cache live at the first envelope, applies every envelope.
async fn follow(client: &Client, namespace: &str, cache: &StateCache) -> Result<(), tonic::Status> {
    let mut events = EventsClient::new(client.channel());
    let request = client.request(SubscribeRequest {
        filters: filters(namespace),
    });
    let subscribe = events.subscribe(request);
    tokio::pin!(subscribe);
    // containerd sends the response headers with the first event: publish markers until the
    // subscription answers.
    let mut stream = loop {
        tokio::select! {
            response = &mut subscribe => break response?.into_inner(),
            _ = tokio::time::sleep(MARKER_PERIOD) => publish_marker(client).await,
        }
    };
    let mut first = true;
    loop {
        let envelope = tokio::select! {
            envelope = stream.next() => envelope,
            // Until the first envelope, keep knocking (the first marker may predate the
            // subscription).
            _ = tokio::time::sleep(MARKER_PERIOD), if first => {
                publish_marker(client).await;
                continue;
            }
        };
        let Some(envelope) = envelope else {
            return Ok(());
        };
        let envelope = envelope?;
        if first {
            first = false;
            cache.set_live(true);
            tracing::debug!("containerd event stream live");
        }
        cache.apply(&envelope);
    }
}

async fn publish_marker(client: &Client) {
    let request = client.request(PublishRequest {
        topic: MARKER_TOPIC.to_string(),
        event: Some(prost_types::Any {
            type_url: "types.containerd.io/kubelet/marker".to_string(),
            value: Vec::new(),
        }),
    });
    if let Err(status) = EventsClient::new(client.channel()).publish(request).await {
        tracing::debug!(error = %status, "publishing the event stream marker failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerState;

    /// An envelope as containerd sends it (type URL without the leading `/`).
    fn envelope<E: std::fmt::Debug>(topic: &str, body: Result<prost_types::Any, E>) -> Envelope {
        let body = body.expect("encode");
        Envelope {
            topic: topic.to_string(),
            namespace: "k8s.io".to_string(),
            timestamp: None,
            event: Some(prost_types::Any {
                type_url: body.type_url.trim_start_matches('/').to_string(),
                value: body.value,
            }),
        }
    }

    fn running() -> ContainerState {
        ContainerState::Running {
            started_at: jiff::Timestamp::UNIX_EPOCH,
            pid: 1,
        }
    }

    #[test]
    fn cache_answers_only_while_live() {
        let cache = StateCache::new();
        cache.store("c1", running(), cache.begin_read());
        assert_eq!(cache.get("c1"), None, "not live: nothing kept");
        cache.set_live(true);
        cache.store("c1", running(), cache.begin_read());
        assert_eq!(cache.get("c1"), Some(running()));
        cache.set_live(false);
        assert_eq!(cache.get("c1"), None);
        cache.set_live(true);
        assert_eq!(cache.get("c1"), None, "a new subscription starts empty");
    }

    #[test]
    fn a_state_read_across_an_event_is_not_kept() {
        let cache = StateCache::new();
        cache.set_live(true);
        let token = cache.begin_read();
        cache.apply(&envelope(
            "/tasks/start",
            prost_types::Any::from_msg(&TaskStart {
                container_id: "c2".into(),
                pid: 7,
            }),
        ));
        cache.store("c1", running(), token);
        assert_eq!(cache.get("c1"), None);
    }

    #[test]
    fn exit_of_the_main_process_forgets_the_state_and_is_broadcast() {
        let cache = StateCache::new();
        cache.set_live(true);
        cache.store("c1", running(), cache.begin_read());
        cache.store("c2", running(), cache.begin_read());
        let mut exits = cache.exits();
        cache.apply(&envelope(
            "/tasks/exit",
            prost_types::Any::from_msg(&TaskExit {
                container_id: "c1".into(),
                id: "c1".into(),
                pid: 7,
                exit_status: 3,
                exited_at: None,
            }),
        ));
        assert_eq!(cache.get("c1"), None);
        assert_eq!(cache.get("c2"), Some(running()), "other containers stay");
        assert_eq!(
            exits.try_recv().expect("exit"),
            ContainerExit {
                id: "c1".into(),
                exit_code: 3
            }
        );
    }

    #[test]
    fn exec_exits_forget_the_container_without_reporting_an_exit() {
        let cache = StateCache::new();
        cache.set_live(true);
        cache.store("c1", running(), cache.begin_read());
        let mut exits = cache.exits();
        cache.apply(&envelope(
            "/tasks/exit",
            prost_types::Any::from_msg(&TaskExit {
                container_id: "c1".into(),
                id: "exec-1".into(),
                pid: 9,
                exit_status: 0,
                exited_at: None,
            }),
        ));
        assert_eq!(cache.get("c1"), None);
        assert!(exits.try_recv().is_err());
    }

    #[test]
    fn decode_maps_topics_to_containers_and_flags_broken_bodies() {
        let cases = [
            (
                envelope(
                    "/tasks/oom",
                    prost_types::Any::from_msg(&TaskOom {
                        container_id: "a".into(),
                    }),
                ),
                Decoded::Container("a".into()),
            ),
            (
                envelope(
                    "/containers/delete",
                    prost_types::Any::from_msg(&ContainerDelete { id: "b".into() }),
                ),
                Decoded::Container("b".into()),
            ),
            (
                envelope(
                    "/images/create",
                    prost_types::Any::from_msg(&ContainerDelete { id: "x".into() }),
                ),
                Decoded::Ignored,
            ),
            (
                Envelope {
                    topic: "/tasks/start".into(),
                    event: None,
                    ..Default::default()
                },
                Decoded::Unreadable,
            ),
            (
                Envelope {
                    topic: "/tasks/start".into(),
                    event: Some(prost_types::Any {
                        type_url: "containerd.events.TaskStart".into(),
                        value: vec![0xff, 0xff, 0xff],
                    }),
                    ..Default::default()
                },
                Decoded::Unreadable,
            ),
        ];
        for (envelope, want) in cases {
            assert_eq!(decode(&envelope), want, "{}", envelope.topic);
        }
    }

    #[test]
    fn an_unreadable_event_forgets_everything() {
        let cache = StateCache::new();
        cache.set_live(true);
        cache.store("c1", running(), cache.begin_read());
        cache.apply(&Envelope {
            topic: "/tasks/exit".into(),
            event: None,
            ..Default::default()
        });
        assert_eq!(cache.get("c1"), None);
    }

    #[test]
    fn filters_select_this_namespace_tasks_and_containers() {
        let filters = filters("k8s.io");
        assert_eq!(filters.len(), 3);
        assert!(filters[0].starts_with("namespace==k8s.io,topic~="));
        assert!(filters[0].contains("^/tasks/"));
    }
}
