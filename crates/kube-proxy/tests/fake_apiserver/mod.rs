//! A tiny plain-HTTP fake of the apiserver's list and watch endpoints, enough for kube-rs
//! reflectors: lists return fixed items, watches stream events pushed by the test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use tokio::sync::broadcast;

/// One collection the fake serves: items for lists, a channel for watch events.
#[derive(Clone)]
struct Collection {
    list_kind: String,
    items: Arc<Mutex<Vec<serde_json::Value>>>,
    events: broadcast::Sender<String>,
    /// Every event sent so far, replayed to watches that start late (no lost events).
    history: Arc<Mutex<Vec<String>>>,
}

/// The fake apiserver.
#[derive(Clone, Default)]
pub struct FakeApiserver {
    collections: Arc<Mutex<HashMap<String, Collection>>>,
}

impl FakeApiserver {
    /// Serves `path` (e.g. `/api/v1/services`) listing `items` as `list_kind`.
    pub fn collection(&self, path: &str, list_kind: &str, items: Vec<serde_json::Value>) {
        let (events, _) = broadcast::channel(64);
        self.collections.lock().expect("lock").insert(
            path.to_string(),
            Collection {
                list_kind: list_kind.to_string(),
                items: Arc::new(Mutex::new(items)),
                events,
                history: Arc::default(),
            },
        );
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) to current watchers of `path`.
    pub fn event(&self, path: &str, kind: &str, object: serde_json::Value) {
        let collections = self.collections.lock().expect("lock");
        let collection = collections.get(path).expect("known collection");
        let line = serde_json::json!({"type": kind, "object": object}).to_string() + "\n";
        collection.history.lock().expect("lock").push(line.clone());
        let _ = collection.events.send(line);
    }

    /// Starts serving on 127.0.0.1 and writes a kubeconfig pointing at it into `dir`.
    pub async fn start(&self, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let router = Router::new().fallback(handle).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
                 users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
                 current-context: fake\n"
            ),
        )?;
        Ok(kubeconfig)
    }
}

async fn handle(
    State(fake): State<FakeApiserver>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let collection = fake
        .collections
        .lock()
        .expect("lock")
        .get(uri.path())
        .cloned();
    let Some(collection) = collection else {
        return (axum::http::StatusCode::NOT_FOUND, "{}").into_response();
    };
    if query.get("watch").map(String::as_str) == Some("true") {
        // Subscribe before copying the history: an event may then come twice, never not at all.
        let live = tokio_stream::wrappers::BroadcastStream::new(collection.events.subscribe())
            .filter_map(|e| async move { e.ok() });
        let past = collection.history.lock().expect("lock").clone();
        let events = futures::stream::iter(past)
            .chain(live)
            .map(Ok::<_, std::convert::Infallible>);
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(events))
            .expect("response");
    }
    let items = collection.items.lock().expect("lock").clone();
    axum::Json(serde_json::json!({
        "kind": collection.list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }))
    .into_response()
}
