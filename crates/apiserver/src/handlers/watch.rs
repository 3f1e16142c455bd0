//! WATCH: a chunked stream of `{"type":...,"object":...}` lines from storage events, with initial
//! ADDED events when no resourceVersion is given (or `sendInitialEvents=true`), selectors (an
//! object leaving the selector is DELETED), bookmarks, timeouts and `410 Gone` as an ERROR event.
//!
//! Served from the watch cache ([`crate::storage::cache`]) when it is on: the initial state from
//! its store (for no resourceVersion once it has caught up with storage), a resourceVersion from
//! its event buffer (`410 Gone` when older than the buffer), live events from its dispatch, which
//! offers a pod event to a kubelet's `spec.nodeName` watch through the node index. A watcher that
//! falls behind is ended by the cache, and the client re-watches. Without the cache (or before it
//! is filled) the stream comes from a storage watch.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{read, Ctx, Output};
use crate::objects;
use crate::selectors::Selectors;
use crate::status::ApiError;
use crate::storage::cache::{
    CacheEvent, CacheWatch, CachedObject, WatchEventType, WatchRequest, WatchStart,
};
use crate::storage::{Event, EventType, Revision};
use crate::table;

/// Interval between BOOKMARK events when asked for.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Default watch timeout when the client gives none (upstream: 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Everything the streaming task needs to shape events.
struct Shaper {
    resource: &'static api_types::registry::Resource,
    selectors: Selectors,
    name: Option<String>,
    output: Output,
}

impl Shaper {
    fn matches(&self, object: &Value) -> bool {
        self.name
            .as_deref()
            .is_none_or(|n| objects::name(object) == Some(n))
            && self.selectors.matches(object)
    }

    fn line(&self, kind: &str, mut object: Value) -> Bytes {
        objects::set_type_meta(&mut object, self.resource);
        let object = if self.output.metadata_only {
            table::partial_metadata(&object)
        } else if self.output.table {
            table::table(
                self.resource,
                std::slice::from_ref(&object),
                None,
                None,
                self.output.include_object,
            )
        } else {
            object
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn matches_cached(&self, object: &CachedObject) -> bool {
        self.name.as_deref().is_none_or(|n| object.name() == n)
            && read::cached_matches(self.resource, &self.selectors, object)
    }

    /// The watch line for a cached object (the object of `event` when given, whose plain JSON
    /// is serialized once for all its watchers).
    fn cached_line(&self, kind: &str, object: &CachedObject, event: Option<&CacheEvent>) -> Bytes {
        let plain = !self.output.metadata_only && !self.output.table;
        let converted = read::stored_form_differs(self.resource);
        if self.output.metadata_only && !converted {
            // The garbage collector's watches: the metadata is copied from the cached bytes,
            // the object is not decoded.
            if let Some(partial) = object.partial_metadata_json() {
                return Self::wrap(kind, &partial);
            }
        }
        if !plain || converted {
            return self.line(kind, read::cached_value(self.resource, object));
        }
        let api_version = self.resource.api_version();
        let json = match event {
            Some(event) => event.json(&api_version, self.resource.kind),
            None => object.to_json(&api_version, self.resource.kind),
        };
        Self::wrap(kind, &json)
    }

    /// `{"type":kind,"object":json}` and a newline.
    fn wrap(kind: &str, json: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(json.len() + kind.len() + 24);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    /// The watch line for a cache event, if the client should see one.
    fn cached_event(&self, event: &CacheEvent) -> Option<Bytes> {
        let now = self.matches_cached(&event.object);
        let kind = match event.event_type {
            WatchEventType::Added => now.then_some("ADDED"),
            WatchEventType::Deleted => now.then_some("DELETED"),
            WatchEventType::Modified => {
                let before = event
                    .prev
                    .as_ref()
                    .map_or(now, |prev| self.matches_cached(prev));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some(self.cached_line(kind, &event.object, Some(event)))
    }

    fn bookmark(&self, revision: Revision, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": metadata,
        });
        let mut line =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The watch line for a storage event, if the client should see one.
    fn event(&self, event: &Event) -> Result<Option<Bytes>, ApiError> {
        let current = objects::decode_as(self.resource, &event.kv)?;
        match event.event_type {
            EventType::Added => Ok(self.matches(&current).then(|| self.line("ADDED", current))),
            EventType::Deleted => Ok(self
                .matches(&current)
                .then(|| self.line("DELETED", current))),
            EventType::Modified => {
                let now = self.matches(&current);
                let before = match &event.prev {
                    Some(prev) => self.matches(&objects::decode_as(self.resource, prev)?),
                    None => now,
                };
                Ok(match (before, now) {
                    (true, true) => Some(self.line("MODIFIED", current)),
                    (false, true) => Some(self.line("ADDED", current)),
                    (true, false) => Some(self.line("DELETED", current)),
                    (false, false) => None,
                })
            }
        }
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// GET with `watch=true` (or a `/watch/` path).
pub async fn serve(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let resource = ctx.resource();
    let selectors = ctx.selectors()?;
    let prefix = read::list_prefix(ctx, &selectors);
    let shaper = Shaper {
        resource,
        selectors: selectors.clone(),
        name: ctx.path.name.clone(),
        output: ctx.output,
    };
    let rv = ctx.query.get("resourceVersion").filter(|v| !v.is_empty());
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = ctx
        .query
        .int("timeoutSeconds")
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_TIMEOUT);

    let options = WatchOptions {
        send_initial,
        bookmarks,
        timeout,
    };
    let shaper = match serve_from_cache(ctx, shaper, &prefix, &selectors, rv, options).await? {
        Ok(response) => return Ok(response),
        Err(shaper) => shaper,
    };

    let (initial, start) = match rv {
        Some(rv) if rv != "0" && !send_initial => {
            let rev: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            (Vec::new(), rev)
        }
        _ => {
            let page = read::list_objects(ctx, &prefix, &selectors, None, None, None).await?;
            let items = page
                .items
                .into_iter()
                .filter(|o| shaper.matches(o))
                .collect::<Vec<_>>();
            (items, page.revision)
        }
    };

    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let watch = ctx.state.storage.watch(&prefix, start).await;
    let mut stream = match watch {
        Ok(stream) => Some(stream),
        Err(e) => {
            let api = ctx.storage_error(e, "");
            if api.code != 410 && api.code != 504 {
                return Err(api);
            }
            // Upstream opens the stream and reports the expired revision as an ERROR event.
            let line = error_line(&api);
            tx.send(Ok(line)).await.ok();
            None
        }
    };
    tokio::spawn(async move {
        let Some(events) = stream.as_mut() else {
            return;
        };
        for object in initial {
            if tx.send(Ok(shaper.line("ADDED", object))).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(Ok(shaper.bookmark(start, true))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        let mut last = start;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(shaper.bookmark(last, false))).await.is_err() {
                        break;
                    }
                }
                next = events.next() => match next {
                    None => break,
                    Some(Err(e)) => {
                        let api = super::map_storage_error(shaper.resource, e, "");
                        tracing::debug!(error = %api, "watch ended by storage");
                        tx.send(Ok(error_line(&api))).await.ok();
                        break;
                    }
                    Some(Ok(event)) => {
                        last = event.revision();
                        match shaper.event(&event) {
                            Ok(Some(line)) => {
                                if tx.send(Ok(line)).await.is_err() {
                                    break;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tx.send(Ok(error_line(&e))).await.ok();
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
    stream_response(rx)
}

/// The knobs of one watch request.
#[derive(Clone, Copy)]
struct WatchOptions {
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
}

/// The chunked response streaming the lines sent on `rx`.
fn stream_response(
    rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> Result<Response<Body>, ApiError> {
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(ApiError::internal)
}

/// Serves the watch from the watch cache; gives the shaper back when the cache cannot serve it
/// (off, not filled yet, or not caught up with storage for a consistent start).
async fn serve_from_cache(
    ctx: &Ctx,
    shaper: Shaper,
    prefix: &str,
    selectors: &Selectors,
    rv: Option<&str>,
    options: WatchOptions,
) -> Result<Result<Response<Body>, Shaper>, ApiError> {
    let (Some(cache), Some(watch_cache)) = (read::cache_of(ctx), ctx.state.watch_cache.as_ref())
    else {
        return Ok(Err(shaper));
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let start = match rv {
        None => {
            if let Err(e) = watch_cache.wait_consistent().await {
                tracing::debug!(error = %e, "consistent watch falls back to storage");
                return Ok(Err(shaper));
            }
            WatchStart::Snapshot
        }
        Some("0") => WatchStart::Snapshot,
        Some(rv) => {
            let revision: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            if let Err(e) = watch_cache.wait_for(revision).await {
                tracing::debug!(user = %ctx.user.name, %prefix, revision, error = %e, "watch refused by the cache");
                // Upstream opens the stream and reports the revision as an ERROR event.
                tx.send(Ok(error_line(&read::cache_error(e)))).await.ok();
                return stream_response(rx).map(Ok);
            }
            if options.send_initial {
                WatchStart::Snapshot
            } else {
                WatchStart::After(revision)
            }
        }
    };
    let request = WatchRequest {
        prefix: prefix.to_string(),
        indexed: cache
            .index_field()
            .and_then(|field| selectors.fields.required(field))
            .map(str::to_string),
        start,
    };
    let watch = match cache.watch(request) {
        Ok(watch) => watch,
        Err(e) => {
            tx.send(Ok(error_line(&read::cache_error(e)))).await.ok();
            return stream_response(rx).map(Ok);
        }
    };
    let client = format!("{} {prefix}", ctx.user.name);
    tokio::spawn(stream_cached(shaper, watch, tx, options, client));
    stream_response(rx).map(Ok)
}

/// Streams a cache watch: initial objects, replayed events, then live events.
async fn stream_cached(
    shaper: Shaper,
    mut watch: CacheWatch,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    options: WatchOptions,
    client: String,
) {
    for object in std::mem::take(&mut watch.initial) {
        if shaper.matches_cached(&object)
            && tx
                .send(Ok(shaper.cached_line("ADDED", &object, None)))
                .await
                .is_err()
        {
            return;
        }
    }
    let mut last = watch.revision;
    for event in std::mem::take(&mut watch.replay) {
        last = event.revision;
        if let Some(line) = shaper.cached_event(&event) {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
    }
    if options.send_initial
        && tx
            .send(Ok(shaper.bookmark(watch.revision, true)))
            .await
            .is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tx.closed() => break,
            _ = ticker.tick(), if options.bookmarks => {
                let revision = watch.progress().unwrap_or(last).max(last);
                if tx.send(Ok(shaper.bookmark(revision, false))).await.is_err() {
                    break;
                }
            }
            next = watch.events.recv() => match next {
                // Terminated by the cache (too slow, or re-listed): the client re-watches.
                None => {
                    tracing::info!(%client, last, "watch ended by the cache (fell behind, or the cache re-listed)");
                    break;
                }
                Some(event) => {
                    last = event.revision;
                    if let Some(line) = shaper.cached_event(&event) {
                        if tx.send(Ok(line)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}
