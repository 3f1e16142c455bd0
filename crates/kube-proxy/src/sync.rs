//! Decides how to bring the kernel to the desired [`Ruleset`]: the first sync (and any sync after
//! a failure) recreates the table, a periodic full resync rewrites every chain and map, and the
//! syncs in between send only the differences against the last applied ruleset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{full_transaction, incremental_transaction, Ruleset};
use crate::nft::{NftError, Nftables};

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The table was deleted and written from scratch.
    Recreate,
    /// Every chain and map was flushed and rewritten.
    Full,
    /// Only changed chains and elements were sent.
    Incremental,
    /// Nothing had changed; nft was not called.
    Unchanged,
}

/// Whether an object present in both rulesets changed its declaration (a set's timeout, a base
/// chain's hook, a fixed chain's rules, the table): nft cannot redeclare those in place, so the
/// table is recreated.
pub(crate) fn declarations_changed(previous: &Ruleset, desired: &Ruleset) -> bool {
    previous.table != desired.table
        || desired.collections.iter().any(|(name, collection)| {
            previous
                .collections
                .get(name)
                .is_some_and(|old| old.kind != collection.kind || old.spec != collection.spec)
        })
        || desired.chains.iter().any(|(name, chain)| {
            previous.chains.get(name).is_some_and(|old| {
                old.hook != chain.hook || (chain.fixed && old.rules != chain.rules)
            })
        })
}

/// Keeps the last applied ruleset and applies new ones.
pub struct Syncer {
    nft: Arc<dyn Nftables>,
    last: Option<Ruleset>,
    last_full: Option<Instant>,
    full_every: Duration,
}

impl Syncer {
    /// A syncer that does a full resync at least every `full_every`.
    pub fn new(nft: Arc<dyn Nftables>, full_every: Duration) -> Self {
        Self {
            nft,
            last: None,
            last_full: None,
            full_every,
        }
    }

    /// The ruleset the kernel is known to have, if any.
    pub fn last_applied(&self) -> Option<&Ruleset> {
        self.last.as_ref()
    }

    /// Applies `desired` as one transaction. On failure the next sync recreates the table.
    pub fn sync(&mut self, desired: Ruleset, now: Instant) -> Result<SyncKind, NftError> {
        let full_due = self
            .last_full
            .is_none_or(|at| now.saturating_duration_since(at) >= self.full_every);
        let previous = self
            .last
            .as_ref()
            .filter(|previous| !declarations_changed(previous, &desired));
        let (kind, script) = match previous {
            None => (SyncKind::Recreate, full_transaction(&desired, None, true)),
            Some(previous) if full_due => (
                SyncKind::Full,
                full_transaction(&desired, Some(previous), false),
            ),
            Some(previous) => {
                let script = incremental_transaction(&desired, previous);
                if script.is_empty() {
                    return Ok(SyncKind::Unchanged);
                }
                (SyncKind::Incremental, script)
            }
        };
        if let Err(error) = self.nft.apply(&script) {
            self.last = None;
            self.last_full = None;
            return Err(error);
        }
        if matches!(kind, SyncKind::Recreate | SyncKind::Full) {
            self.last_full = Some(now);
        }
        self.last = Some(desired);
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::RecordingNftables;

    fn ruleset(rules: &[&str]) -> Ruleset {
        let mut r = Ruleset::new("t");
        r.chain("c").rules = rules.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn first_sync_recreates_then_changes_are_incremental_until_the_full_resync() {
        let fake = RecordingNftables::new();
        let mut syncer = Syncer::new(Arc::new(fake.clone()), Duration::from_secs(30));
        let start = Instant::now();
        assert_eq!(
            syncer.sync(ruleset(&["accept"]), start).ok(),
            Some(SyncKind::Recreate)
        );
        assert_eq!(
            syncer
                .sync(ruleset(&["accept"]), start + Duration::from_secs(1))
                .ok(),
            Some(SyncKind::Unchanged)
        );
        assert_eq!(
            syncer
                .sync(ruleset(&["drop"]), start + Duration::from_secs(2))
                .ok(),
            Some(SyncKind::Incremental)
        );
        assert_eq!(
            syncer
                .sync(ruleset(&["drop"]), start + Duration::from_secs(31))
                .ok(),
            Some(SyncKind::Full)
        );
        let scripts = fake.scripts();
        assert_eq!(scripts.len(), 3);
        assert_eq!(scripts[1], "flush chain ip t c\nadd rule ip t c drop\n");
        assert!(scripts[2].contains("flush chain ip t c\n"));
    }

    #[test]
    fn a_changed_set_declaration_recreates_the_table() {
        use crate::model::Collection;
        let fake = RecordingNftables::new();
        let mut syncer = Syncer::new(Arc::new(fake.clone()), Duration::from_secs(30));
        let now = Instant::now();
        let with_timeout = |seconds: u32| {
            let mut r = ruleset(&["accept"]);
            r.collections.insert(
                "affinity-x".into(),
                Collection::dynamic_set(&format!(
                    "type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;"
                )),
            );
            r
        };
        assert_eq!(
            syncer.sync(with_timeout(10), now).ok(),
            Some(SyncKind::Recreate)
        );
        assert_eq!(
            syncer.sync(with_timeout(10), now).ok(),
            Some(SyncKind::Unchanged)
        );
        assert_eq!(
            syncer.sync(with_timeout(20), now).ok(),
            Some(SyncKind::Recreate)
        );
    }

    #[test]
    fn a_changed_fixed_chain_recreates_the_table() {
        let fake = RecordingNftables::new();
        let mut syncer = Syncer::new(Arc::new(fake.clone()), Duration::from_secs(30));
        let now = Instant::now();
        let with_fixed = |rule: &str| {
            let mut r = ruleset(&["accept"]);
            r.fixed_chain("balance-1").rules = vec![rule.to_string()];
            r
        };
        assert_eq!(
            syncer.sync(with_fixed("drop"), now).ok(),
            Some(SyncKind::Recreate)
        );
        assert_eq!(
            syncer.sync(with_fixed("drop"), now).ok(),
            Some(SyncKind::Unchanged)
        );
        assert_eq!(
            syncer.sync(with_fixed("accept"), now).ok(),
            Some(SyncKind::Recreate)
        );
    }

    #[test]
    fn failed_apply_forces_a_recreate_next_time() {
        let fake = RecordingNftables::new();
        let mut syncer = Syncer::new(Arc::new(fake.clone()), Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(
            syncer.sync(ruleset(&["accept"]), now).ok(),
            Some(SyncKind::Recreate)
        );
        fake.fail_next("boom");
        assert!(syncer.sync(ruleset(&["drop"]), now).is_err());
        assert!(syncer.last_applied().is_none());
        assert_eq!(
            syncer.sync(ruleset(&["drop"]), now).ok(),
            Some(SyncKind::Recreate)
        );
    }
}
