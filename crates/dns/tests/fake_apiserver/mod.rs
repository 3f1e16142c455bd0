//! A tiny plain-HTTP fake of the apiserver: lists return fixed items, watches stream events pushed
//! by the test, GETs of single objects are 404 and POSTs are recorded and echoed back (201).

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
    created: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
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

    /// The objects POSTed so far, with their paths.
    pub fn created(&self) -> Vec<(String, serde_json::Value)> {
        self.created.lock().expect("lock").clone()
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
    method: axum::http::Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if method == axum::http::Method::POST {
        let object: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        fake.created
            .lock()
            .expect("lock")
            .push((uri.path().to_string(), object.clone()));
        return (axum::http::StatusCode::CREATED, axum::Json(object)).into_response();
    }
    let collection = fake
        .collections
        .lock()
        .expect("lock")
        .get(uri.path())
        .cloned();
    let Some(collection) = collection else {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"
        });
        return (axum::http::StatusCode::NOT_FOUND, axum::Json(status)).into_response();
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
