//! core/v1 Events written as upstream's event recorder writes them: the first report of an event
//! creates an Event; a repeat (same source, object, type, reason and message) while the first is
//! remembered patches that Event's `count` and `lastTimestamp` instead of adding an object, which
//! `kubectl describe` shows as `(x3 over 2m)`. A repeat whose Event is gone (the apiserver's event
//! TTL, or a delete) creates a new one. Recording is best effort: a failure is logged at debug
//! level and never fails the caller.
//!
//! Start with [`EventRecorder::record`]; [`Correlator`] is the pure part that decides between a
//! create and a patch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How many distinct events a recorder remembers (upstream's cache size).
pub const REMEMBERED: usize = 4096;

/// One report of an event about an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The object the event is about.
    pub involved: ObjectReference,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Upstream's reason (`ScalingReplicaSet`, `FailedScheduling`...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// What the component did (events.k8s.io `action`).
    pub action: String,
}

impl Report {
    /// The namespace the Event goes in: the object's, or `default` for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.involved.namespace.as_deref().unwrap_or("default")
    }
}

/// What to write for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// A new Event named `name` with count 1.
    Create {
        /// The Event's name.
        name: String,
    },
    /// Event `name` (already written) now has `count` reports.
    Bump {
        /// The Event's name.
        name: String,
        /// Its new count.
        count: i32,
    },
}

/// Upstream's event key: everything that makes two reports the same event (not the object's
/// resourceVersion, which changes between reports).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    kind: Option<String>,
    api_version: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    field_path: Option<String>,
    warning: bool,
    reason: String,
    message: String,
}

impl Key {
    fn of(source: &str, report: &Report) -> Self {
        let o = &report.involved;
        Key {
            source: source.to_string(),
            kind: o.kind.clone(),
            api_version: o.api_version.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            field_path: o.field_path.clone(),
            warning: report.warning,
            reason: report.reason.clone(),
            message: report.message.clone(),
        }
    }
}

/// Remembers the Events written so far (at most `capacity`, the oldest forgotten first) and
/// decides whether a report creates an Event or bumps one.
#[derive(Debug)]
pub struct Correlator {
    written: HashMap<Key, (String, i32)>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl Correlator {
    /// A correlator remembering up to `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Correlator {
            written: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// What to write for `report` from `source`; `fresh_name` names a new Event.
    pub fn correlate(&mut self, source: &str, report: &Report, fresh_name: String) -> Write {
        let key = Key::of(source, report);
        if let Some((name, count)) = self.written.get_mut(&key) {
            *count = count.saturating_add(1);
            return Write::Bump {
                name: name.clone(),
                count: *count,
            };
        }
        self.remember(key, fresh_name.clone(), 1);
        Write::Create { name: fresh_name }
    }

    /// The Event for `report` was gone: it is now `name`, with one report.
    pub fn replaced(&mut self, source: &str, report: &Report, name: String) {
        let key = Key::of(source, report);
        match self.written.get_mut(&key) {
            Some(entry) => *entry = (name, 1),
            None => self.remember(key, name, 1),
        }
    }

    fn remember(&mut self, key: Key, name: String, count: i32) {
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.written.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.written.insert(key, (name, count));
    }
}

/// Writes Events as one component (the `source`); clones share what has been written.
#[derive(Clone)]
pub struct EventRecorder {
    client: Option<Client>,
    source: String,
    correlator: Arc<Mutex<Correlator>>,
}

impl EventRecorder {
    /// A recorder writing through `client` as `source` (e.g. `deployment-controller`).
    pub fn new(client: Client, source: &str) -> Self {
        Self::with_client(Some(client), source)
    }

    /// A recorder that only logs (tests).
    pub fn disabled(source: &str) -> Self {
        Self::with_client(None, source)
    }

    fn with_client(client: Option<Client>, source: &str) -> Self {
        EventRecorder {
            client,
            source: source.to_string(),
            correlator: Arc::new(Mutex::new(Correlator::new(REMEMBERED))),
        }
    }

    /// The same client and memory, recording as another source.
    pub fn for_source(&self, source: &str) -> Self {
        EventRecorder {
            client: self.client.clone(),
            source: source.to_string(),
            correlator: self.correlator.clone(),
        }
    }

    fn correlate<T>(&self, f: impl FnOnce(&mut Correlator) -> T) -> T {
        match self.correlator.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Records `report`: creates its Event, or bumps the one already written.
    pub async fn record(&self, report: Report) {
        tracing::info!(
            source = %self.source,
            object = report.involved.name.as_deref().unwrap_or_default(),
            reason = %report.reason,
            message = %report.message,
            "event"
        );
        let Some(client) = &self.client else {
            return;
        };
        let now = jiff::Timestamp::now();
        let api: Api<Event> = Api::namespaced(client.clone(), report.namespace());
        let fresh = fresh_name(&report, now);
        let (name, count) = match self.correlate(|c| c.correlate(&self.source, &report, fresh)) {
            Write::Create { name } => (name, 1),
            Write::Bump { name, count } => {
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": Time(now),
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => return,
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let name = fresh_name(&report, now);
                        self.correlate(|c| c.replaced(&self.source, &report, name.clone()));
                        (name, 1)
                    }
                    Err(error) => {
                        tracing::debug!(%error, reason = %report.reason, "could not update event");
                        return;
                    }
                }
            }
        };
        let event = self.event(&report, name, count, now);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%error, reason = %report.reason, "could not record event");
        }
    }

    fn event(&self, report: &Report, name: String, count: i32, now: jiff::Timestamp) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(report.namespace().to_string()),
                ..ObjectMeta::default()
            },
            involved_object: report.involved.clone(),
            reason: Some(report.reason.clone()),
            message: Some(report.message.clone()),
            type_: Some(if report.warning { "Warning" } else { "Normal" }.to_string()),
            source: Some(EventSource {
                component: Some(self.source.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(count),
            reporting_component: Some(self.source.clone()),
            reporting_instance: Some(self.source.clone()),
            action: Some(report.action.clone()),
            ..Event::default()
        }
    }
}

/// Upstream's Event name: the object's name and the time in hex nanoseconds.
fn fresh_name(report: &Report, now: jiff::Timestamp) -> String {
    let object = report.involved.name.as_deref().unwrap_or("event");
    format!("{object}.{:x}", now.as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(object: &str, reason: &str, message: &str) -> Report {
        Report {
            involved: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(object.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{object}")),
                ..ObjectReference::default()
            },
            warning: true,
            reason: reason.into(),
            message: message.into(),
            action: "Scheduling".into(),
        }
    }

    fn create(name: &str) -> Write {
        Write::Create { name: name.into() }
    }

    fn bump(name: &str, count: i32) -> Write {
        Write::Bump {
            name: name.into(),
            count,
        }
    }

    #[test]
    fn a_repeated_event_bumps_the_first_and_anything_different_creates() {
        let mut c = Correlator::new(REMEMBERED);
        let full = report("web", "FailedScheduling", "0/1 nodes are available");
        assert_eq!(c.correlate("sched", &full, "e1".into()), create("e1"));
        assert_eq!(c.correlate("sched", &full, "e2".into()), bump("e1", 2));
        assert_eq!(c.correlate("sched", &full, "e3".into()), bump("e1", 3));

        // A new resourceVersion of the object is still the same event.
        let mut newer = full.clone();
        newer.involved.resource_version = Some("42".into());
        assert_eq!(c.correlate("sched", &newer, "e4".into()), bump("e1", 4));

        let mut normal = full.clone();
        normal.warning = false;
        let mut recreated = full.clone();
        recreated.involved.uid = Some("uid-2".into());
        let cases = [
            ("other", full.clone(), "another source"),
            (
                "sched",
                report("web", "FailedScheduling", "0/2 nodes"),
                "message",
            ),
            (
                "sched",
                report("web", "Scheduled", "0/1 nodes are available"),
                "reason",
            ),
            (
                "sched",
                report("db", "FailedScheduling", "0/1 nodes are available"),
                "object",
            ),
            ("sched", normal, "type"),
            ("sched", recreated, "object uid"),
        ];
        for (i, (source, r, what)) in cases.into_iter().enumerate() {
            let name = format!("n{i}");
            assert_eq!(
                c.correlate(source, &r, name.clone()),
                create(&name),
                "{what}"
            );
        }
    }

    #[test]
    fn a_replaced_event_counts_again_from_one() {
        let mut c = Correlator::new(REMEMBERED);
        let r = report("web", "BackOff", "Back-off restarting failed container");
        assert_eq!(c.correlate("k", &r, "e1".into()), create("e1"));
        assert_eq!(c.correlate("k", &r, "e2".into()), bump("e1", 2));
        c.replaced("k", &r, "e3".into());
        assert_eq!(c.correlate("k", &r, "e4".into()), bump("e3", 2));
    }

    #[test]
    fn the_oldest_events_are_forgotten_past_the_capacity() {
        let mut c = Correlator::new(2);
        let (a, b, d) = (
            report("a", "R", "m"),
            report("b", "R", "m"),
            report("d", "R", "m"),
        );
        assert_eq!(c.correlate("k", &a, "a1".into()), create("a1"));
        assert_eq!(c.correlate("k", &b, "b1".into()), create("b1"));
        assert_eq!(c.correlate("k", &d, "d1".into()), create("d1"));
        // `a` was forgotten to make room for `d`; `b` and `d` are remembered.
        assert_eq!(c.correlate("k", &b, "b2".into()), bump("b1", 2));
        assert_eq!(c.correlate("k", &d, "d2".into()), bump("d1", 2));
        assert_eq!(c.correlate("k", &a, "a2".into()), create("a2"));
    }
}
