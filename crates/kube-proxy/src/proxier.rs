//! Incremental syncs: keeps the [`DesiredTable`] of the last sync and, when only some services
//! changed, recomputes just their fragments and sends just their differences.
//!
//! A full rebuild happens at the first sync, after a failed one (the table is then recreated),
//! when the node's configuration changed, after a relist (every service may have changed; the
//! rebuilt table is diffed against the old one) and every `--sync-period` (every chain and map
//! is rewritten, which repairs anything changed behind kube-proxy's back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::conntrack::{stale_flows, Flush};
use crate::model::{full_transaction, incremental_transaction, Ruleset};
use crate::nft::{NftError, Nftables};
use crate::objects::ServiceInput;
use crate::rules::{service_rules, static_ruleset, RuleConfig};
use crate::sync::{declarations_changed, SyncKind};
use crate::table::{Delta, DesiredTable};

/// The outcome of one successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// What was sent.
    pub kind: SyncKind,
    /// UDP conntrack entries made stale by the change.
    pub flushes: Vec<Flush>,
}

/// The last applied table and how to move it forward.
pub struct Proxier {
    nft: Arc<dyn Nftables>,
    full_every: Duration,
    /// The desired table of the last sync (applied, unless `in_sync` is false).
    table: Option<DesiredTable>,
    /// The configuration `table` was built with.
    config: Option<RuleConfig>,
    /// Whether the kernel is known to hold `table`.
    in_sync: bool,
    last_full: Option<Instant>,
}

/// The fragment of one service.
fn fragment(config: &RuleConfig, input: &ServiceInput) -> Option<Ruleset> {
    let service = input.service.as_deref()?;
    let slices: Vec<&EndpointSlice> = input.slices.iter().map(Arc::as_ref).collect();
    service_rules(config, service, &slices)
}

impl Proxier {
    /// A proxier that rewrites everything at least every `full_every`.
    pub fn new(nft: Arc<dyn Nftables>, full_every: Duration) -> Self {
        Self {
            nft,
            full_every,
            table: None,
            config: None,
            in_sync: false,
            last_full: None,
        }
    }

    /// The desired table of the last sync.
    pub fn ruleset(&self) -> Option<&Ruleset> {
        self.table.as_ref().map(DesiredTable::ruleset)
    }

    /// Whether the next sync must see every service ([`Proxier::sync_all`]): nothing applied
    /// yet, the last sync failed, `config` differs, or the periodic full resync is due.
    pub fn needs_all(&self, config: &RuleConfig, now: Instant) -> bool {
        !self.in_sync
            || self.table.is_none()
            || self.config.as_ref() != Some(config)
            || self.full_due(now)
    }

    fn full_due(&self, now: Instant) -> bool {
        self.last_full
            .is_none_or(|at| now.saturating_duration_since(at) >= self.full_every)
    }

    fn apply(&mut self, script: &str) -> Result<(), NftError> {
        let result = self.nft.apply(script);
        self.in_sync = result.is_ok();
        result
    }

    /// Rebuilds the table from every service. Recreates the table when the kernel state is
    /// unknown or a declaration changed, rewrites everything when the periodic resync is due,
    /// and otherwise sends the differences.
    pub fn sync_all(
        &mut self,
        config: &RuleConfig,
        services: &[ServiceInput],
        now: Instant,
    ) -> Result<SyncReport, NftError> {
        let mut table = DesiredTable::new(static_ruleset(config));
        for input in services {
            table.set_service(input.key.clone(), fragment(config, input));
        }
        table.mark_applied();
        let old = self.table.take();
        let previous = old
            .as_ref()
            .filter(|_| self.in_sync)
            .map(DesiredTable::ruleset);
        let desired = table.ruleset();
        let flushes = stale_flows(
            previous.map(|p| &p.udp_destinations),
            &desired.udp_destinations,
        );
        let previous = previous.filter(|p| !declarations_changed(p, desired));
        let (kind, script) = match previous {
            None => (SyncKind::Recreate, full_transaction(desired, None, true)),
            Some(previous) if self.full_due(now) => (
                SyncKind::Full,
                full_transaction(desired, Some(previous), false),
            ),
            Some(previous) => (
                SyncKind::Incremental,
                incremental_transaction(desired, previous),
            ),
        };
        // Freeing every fragment of the old table takes as long as building them: not on the
        // sync's path.
        if let Some(old) = old {
            if let Err(error) = std::thread::Builder::new()
                .name("drop-old-table".into())
                .spawn(move || drop(old))
            {
                tracing::debug!(%error, "freeing the old table inline");
            }
        }
        self.table = Some(table);
        self.config = Some(config.clone());
        if script.is_empty() {
            return Ok(SyncReport {
                kind: SyncKind::Unchanged,
                flushes,
            });
        }
        self.apply(&script)?;
        if matches!(kind, SyncKind::Recreate | SyncKind::Full) {
            self.last_full = Some(now);
        }
        Ok(SyncReport { kind, flushes })
    }

    /// Recomputes only `changed` services and sends their differences. Only valid when
    /// [`Proxier::needs_all`] is false (with `config` the one of the last sync); otherwise it
    /// recreates the table from what it has.
    pub fn sync_changed(&mut self, changed: &[ServiceInput]) -> Result<SyncReport, NftError> {
        let Some(config) = self.config.clone() else {
            return Ok(SyncReport {
                kind: SyncKind::Unchanged,
                flushes: Vec::new(),
            });
        };
        let table = self
            .table
            .get_or_insert_with(|| DesiredTable::new(static_ruleset(&config)));
        for input in changed {
            table.set_service(input.key.clone(), fragment(&config, input));
        }
        let (kind, script) = match (self.in_sync, table.delta()) {
            (true, Delta::Script(script)) if script.is_empty() => {
                table.mark_applied();
                return Ok(SyncReport {
                    kind: SyncKind::Unchanged,
                    flushes: Vec::new(),
                });
            }
            (true, Delta::Script(script)) => (SyncKind::Incremental, script),
            _ => (
                SyncKind::Recreate,
                full_transaction(table.ruleset(), None, true),
            ),
        };
        let flushes = if kind == SyncKind::Incremental {
            table.stale_udp_flows()
        } else {
            stale_flows(None, &table.ruleset().udp_destinations)
        };
        table.mark_applied();
        self.apply(&script)?;
        Ok(SyncReport { kind, flushes })
    }
}

#[cfg(test)]
#[path = "proxier_tests.rs"]
mod tests;
