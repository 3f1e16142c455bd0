//! Watch streams of the SQLite backend: replay from the log, then live events.
//!
//! A stream subscribes to the live broadcast *before* it reads the log, and remembers the
//! highest revision it has covered (`seen`): every live event at or below `seen` was already
//! replayed and is dropped, so there is no gap and no duplicate. When a slow consumer falls so
//! far behind that the broadcast drops events for it (`Lagged`), the stream catches up from the
//! log again (same rule), so it never loses an event; only if the missed events were compacted
//! away meanwhile does it end with [`StorageError::Compacted`]. Replays are read in chunks of
//! [`REPLAY_CHUNK`] events, so resuming from an old revision does not load the whole backlog.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{log, read, Shared};
use crate::storage::interface::{Event, Revision, StorageError};

/// Events read from the log per replay query (tiny in unit tests, to exercise chunking).
#[cfg(not(test))]
const REPLAY_CHUNK: usize = 1000;
#[cfg(test)]
const REPLAY_CHUNK: usize = 3;

/// The state of one watch stream between two items.
struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    live: broadcast::Receiver<Arc<Event>>,
    /// Replayed events not yet handed out.
    pending: VecDeque<Event>,
    /// Every event at or below this revision was delivered or is in `pending`.
    seen: Revision,
    /// The last replay chunk did not reach the present: read the next one before live events.
    replaying: bool,
    /// Set after an error: the stream ends.
    done: bool,
}

impl WatchState {
    /// Reads the next chunk of the log after `seen` into `pending` and moves `seen` to what
    /// that chunk covered.
    async fn catch_up(&mut self) -> Result<(), StorageError> {
        let shared = self.shared.clone();
        let prefix = self.prefix.clone();
        let after = self.seen;
        let replay = read(shared, move |conn| {
            log::events_after(conn, &prefix, after, REPLAY_CHUNK)
        })
        .await?;
        self.pending.extend(replay.events);
        self.seen = self.seen.max(replay.covered);
        self.replaying = !replay.complete;
        Ok(())
    }

    /// The next event of the stream, or `None` when the storage is gone.
    async fn next_event(&mut self) -> Option<Result<Event, StorageError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.replaying {
                if let Err(e) = self.catch_up().await {
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.revision() <= self.seen {
                        continue;
                    }
                    self.seen = event.revision();
                    if event.kv.key.starts_with(&self.prefix) {
                        return Some(Ok(Event::clone(&event)));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(prefix = %self.prefix, seen = self.seen, skipped,
                        "watcher lagged the live events; catching up from the log");
                    if let Err(e) = self.catch_up().await {
                        return Some(Err(e));
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// Starts a watch of keys under `prefix` with revision > `after` (0 = from now).
pub(super) async fn start(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
    // Subscribe first: anything committed from here on reaches us live.
    let live = shared.events.subscribe();
    let mut state = WatchState {
        shared,
        prefix,
        live,
        pending: VecDeque::new(),
        seen: after,
        replaying: false,
        done: false,
    };
    if after == 0 {
        let shared = state.shared.clone();
        state.seen = read(shared, |conn| log::current_revision(conn)).await?;
    } else {
        state.catch_up().await?;
    }
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
