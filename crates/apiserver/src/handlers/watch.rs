//! WATCH: a chunked stream of `{"type":...,"object":...}` lines from storage events, with initial
//! ADDED events when no resourceVersion is given (or `sendInitialEvents=true`), selectors (an
//! object leaving the selector is DELETED), bookmarks, timeouts and `410 Gone` as an ERROR event.

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
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(ApiError::internal)
}
