//! Controller expectations (upstream's `ControllerExpectations`): after a controller asks for pod
//! creations and deletions it waits until its informer has seen them before acting on the same
//! owner again, so a stale cache never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::key::ObjectKey;

/// Expectations older than this are considered satisfied (a watch event may have been lost).
const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Outstanding creations (a count) and deletions (pod names) per owner.
#[derive(Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<ObjectKey, Expectation>>>,
}

impl Expectations {
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Expectation>> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the owner may be synced: nothing outstanding, nothing recorded, or expired.
    pub fn satisfied(&self, owner: &ObjectKey) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > TTL,
        }
    }

    /// Records that `count` creations were requested.
    pub fn expect_creations(&self, owner: &ObjectKey, count: usize) {
        self.lock().insert(
            owner.clone(),
            Expectation {
                adds: i64::try_from(count).unwrap_or(i64::MAX),
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Records that the named pods were asked to be deleted.
    pub fn expect_deletions(&self, owner: &ObjectKey, pods: impl IntoIterator<Item = String>) {
        self.lock().insert(
            owner.clone(),
            Expectation {
                adds: 0,
                deletes: pods.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One creation was observed (or will never happen because the request failed).
    pub fn creation_observed(&self, owner: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// The deletion of `pod` was observed (or will never happen).
    pub fn deletion_observed(&self, owner: &ObjectKey, pod: &str) {
        if let Some(e) = self.lock().get_mut(owner) {
            e.deletes.remove(pod);
        }
    }

    /// Forgets the owner (it was deleted).
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_unsatisfied_until_every_creation_and_deletion_is_observed() {
        let owner = ObjectKey::new("default", "web");
        let expectations = Expectations::default();
        assert!(expectations.satisfied(&owner));
        expectations.expect_creations(&owner, 2);
        expectations.creation_observed(&owner);
        assert!(!expectations.satisfied(&owner));
        expectations.creation_observed(&owner);
        assert!(expectations.satisfied(&owner));
        expectations.expect_deletions(&owner, ["a".to_string()]);
        assert!(!expectations.satisfied(&owner));
        expectations.deletion_observed(&owner, "a");
        expectations.deletion_observed(&owner, "a");
        assert!(expectations.satisfied(&owner));
    }
}
