//! The desired table kept between syncs, as the merge of one fragment per Service, so that a
//! change recomputes only the services it touched.
//!
//! A fragment ([`crate::rules::service_rules`]) holds a service's own chains and affinity sets and
//! its elements of the standard sets and maps. Every piece of the table a fragment provides is a
//! [`Slot`]; a slot can have several providers (two services sharing an endpoint IP both add its
//! hairpin element; two services claiming the same external IP and port): the provider with the
//! smallest service key wins, and a slot disappears only with its last provider. A full build
//! and any sequence of updates therefore give the same table.
//!
//! [`DesiredTable::set_service`] records the value every slot it changes had before (once per
//! sync); [`DesiredTable::delta`] turns those into the nft commands of just that change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::conntrack::{stale_flows, Flush};
use crate::model::{Chain, Collection, HealthCheck, Ruleset, UdpDestinations, FAMILY};

/// `namespace/name` of a Service.
pub type ServiceKey = Arc<str>;

/// One piece of the table that a service fragment can provide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// A chain (with its rules).
    Chain(String),
    /// A set or map of its own (session affinity sets).
    Collection(String),
    /// `(collection, key)`: an element of a standard set or map.
    Element(Arc<str>, String),
    /// A UDP destination and its endpoint IPs (not rendered; conntrack clearing).
    Udp(Ipv4Addr, u16),
    /// A health check node port (not rendered; the health check servers).
    Health(u16),
}

/// The value of a [`Slot`] in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Chain(Chain),
    Collection(Collection),
    Element(Option<String>),
    Udp(BTreeSet<Ipv4Addr>),
    Health(HealthCheck),
}

/// What a sync must send for the changes since the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// The commands (empty: nothing changed).
    Script(String),
    /// A set changed its declaration (an affinity timeout), which nft cannot change in place:
    /// the table must be recreated.
    Redeclare,
}

/// The desired table: the static part, every service's fragment, and their merge.
#[derive(Debug, Clone)]
pub struct DesiredTable {
    merged: Ruleset,
    /// Names of the standard sets and maps (declared by the static part), shared by the slots.
    standard: BTreeMap<String, Arc<str>>,
    fragments: HashMap<ServiceKey, Ruleset>,
    /// Providers of each slot, sorted by service key (the first one wins).
    providers: HashMap<Slot, Providers>,
    /// The value each changed slot had at the last [`DesiredTable::mark_applied`].
    before: HashMap<Slot, Option<Value>>,
    /// Whether changes are recorded (not while the table is first built).
    track: bool,
}

/// Every slot a fragment provides; `standard` tells the standard collections (whose elements
/// are slots) from the fragment's own ones.
fn slots(fragment: &Ruleset, standard: &BTreeMap<String, Arc<str>>) -> Vec<Slot> {
    let mut out: Vec<Slot> = fragment
        .chains
        .keys()
        .map(|name| Slot::Chain(name.clone()))
        .collect();
    for (name, collection) in &fragment.collections {
        if let Some(shared) = standard.get(name) {
            out.extend(
                collection
                    .elements
                    .keys()
                    .map(|key| Slot::Element(shared.clone(), key.clone())),
            );
        } else {
            out.push(Slot::Collection(name.clone()));
        }
    }
    out.extend(
        fragment
            .udp_destinations
            .keys()
            .map(|(ip, port)| Slot::Udp(*ip, *port)),
    );
    out.extend(
        fragment
            .health_checks
            .keys()
            .map(|port| Slot::Health(*port)),
    );
    out
}

/// The value of `slot` in `rules` (a fragment or the merged table).
fn read(rules: &Ruleset, slot: &Slot) -> Option<Value> {
    match slot {
        Slot::Chain(name) => rules.chains.get(name).cloned().map(Value::Chain),
        Slot::Collection(name) => rules.collections.get(name).cloned().map(Value::Collection),
        Slot::Element(name, key) => rules
            .collections
            .get(&**name)
            .and_then(|c| c.elements.get(key))
            .cloned()
            .map(Value::Element),
        Slot::Udp(ip, port) => rules
            .udp_destinations
            .get(&(*ip, *port))
            .cloned()
            .map(Value::Udp),
        Slot::Health(port) => rules.health_checks.get(port).cloned().map(Value::Health),
    }
}

/// Whether two fragments give `slot` the same value (without copying it).
fn same(a: &Ruleset, b: &Ruleset, slot: &Slot) -> bool {
    match slot {
        Slot::Chain(name) => a.chains.get(name) == b.chains.get(name),
        Slot::Collection(name) => a.collections.get(name) == b.collections.get(name),
        Slot::Element(name, key) => {
            let in_a = a.collections.get(&**name).and_then(|c| c.elements.get(key));
            let in_b = b.collections.get(&**name).and_then(|c| c.elements.get(key));
            in_a == in_b
        }
        Slot::Udp(ip, port) => {
            a.udp_destinations.get(&(*ip, *port)) == b.udp_destinations.get(&(*ip, *port))
        }
        Slot::Health(port) => a.health_checks.get(port) == b.health_checks.get(port),
    }
}

impl DesiredTable {
    /// A table with only the static part (`static_rules`, see
    /// [`crate::rules::static_ruleset`]) and no service.
    /// Changes are recorded from the first [`DesiredTable::mark_applied`] on.
    pub fn new(static_rules: Ruleset) -> Self {
        Self {
            standard: static_rules
                .collections
                .keys()
                .map(|name| (name.clone(), Arc::from(name.as_str())))
                .collect(),
            merged: static_rules,
            fragments: HashMap::new(),
            providers: HashMap::new(),
            before: HashMap::new(),
            track: false,
        }
    }

    /// The merged table.
    pub fn ruleset(&self) -> &Ruleset {
        &self.merged
    }

    /// The merged table, consuming `self`.
    pub fn into_ruleset(self) -> Ruleset {
        self.merged
    }

    /// Number of services with a fragment.
    pub fn services(&self) -> usize {
        self.fragments.len()
    }

    /// Replaces the fragment of service `key` (`None`: the service is gone or gets no rules)
    /// and updates the merged table where the fragment's slots changed.
    pub fn set_service(&mut self, key: ServiceKey, fragment: Option<Ruleset>) {
        let old = self.fragments.remove(&key);
        let mut changed: Vec<Slot> = Vec::new();
        if let Some(old) = &old {
            for slot in slots(old, &self.standard) {
                if fragment.as_ref().is_some_and(|new| same(old, new, &slot)) {
                    continue;
                }
                if let Some(providers) = self.providers.get_mut(&slot) {
                    if providers.remove(&key) {
                        self.providers.remove(&slot);
                    }
                }
                changed.push(slot);
            }
            self.merged.no_local_internal -= old.no_local_internal;
            self.merged.no_local_external -= old.no_local_external;
        }
        if let Some(new) = &fragment {
            for slot in slots(new, &self.standard) {
                if old.as_ref().is_some_and(|old| same(old, new, &slot)) {
                    continue;
                }
                match self.providers.get_mut(&slot) {
                    Some(providers) => providers.add(&key),
                    None => {
                        self.providers
                            .insert(slot.clone(), Providers::One(key.clone()));
                    }
                }
                changed.push(slot);
            }
            self.merged.no_local_internal += new.no_local_internal;
            self.merged.no_local_external += new.no_local_external;
        }
        if let Some(new) = fragment {
            self.fragments.insert(key, new);
        }
        for slot in changed {
            if self.track && !self.before.contains_key(&slot) {
                let value = read(&self.merged, &slot);
                self.before.insert(slot.clone(), value);
            }
            self.resolve(&slot);
        }
    }

    /// Writes the winning provider's value of `slot` into the merged table (or removes it).
    fn resolve(&mut self, slot: &Slot) {
        let providers = self
            .providers
            .get(slot)
            .map(Providers::as_slice)
            .unwrap_or(&[]);
        let winner = providers.first().and_then(|key| self.fragments.get(key));
        let merged = &mut self.merged;
        match slot {
            Slot::Chain(name) => match winner.and_then(|f| f.chains.get(name)) {
                Some(chain) => {
                    merged.chains.insert(name.clone(), chain.clone());
                }
                None => {
                    merged.chains.remove(name);
                }
            },
            Slot::Collection(name) => match winner.and_then(|f| f.collections.get(name)) {
                Some(collection) => {
                    merged.collections.insert(name.clone(), collection.clone());
                }
                None => {
                    merged.collections.remove(name);
                }
            },
            Slot::Element(name, key) => {
                let value = winner
                    .and_then(|f| f.collections.get(&**name))
                    .and_then(|c| c.elements.get(key));
                if let Some(collection) = merged.collections.get_mut(&**name) {
                    match value {
                        Some(value) => {
                            collection.elements.insert(key.clone(), value.clone());
                        }
                        None => {
                            collection.elements.remove(key);
                        }
                    }
                }
            }
            Slot::Udp(ip, port) => {
                match winner.and_then(|f| f.udp_destinations.get(&(*ip, *port))) {
                    Some(backends) => {
                        merged
                            .udp_destinations
                            .insert((*ip, *port), backends.clone());
                    }
                    None => {
                        merged.udp_destinations.remove(&(*ip, *port));
                    }
                }
            }
            Slot::Health(port) => {
                // The first service names the check; the local endpoints are the most any
                // service sharing the port has.
                let mut merged_check: Option<HealthCheck> = None;
                for check in providers
                    .iter()
                    .filter_map(|key| self.fragments.get(key))
                    .filter_map(|f| f.health_checks.get(port))
                {
                    match &mut merged_check {
                        None => merged_check = Some(check.clone()),
                        Some(first) => {
                            first.local_endpoints = first.local_endpoints.max(check.local_endpoints)
                        }
                    }
                }
                match merged_check {
                    Some(check) => {
                        merged.health_checks.insert(*port, check);
                    }
                    None => {
                        merged.health_checks.remove(port);
                    }
                }
            }
        }
    }

    /// Forgets the recorded changes: the kernel now has the merged table.
    pub fn mark_applied(&mut self) {
        self.before.clear();
        self.track = true;
    }

    /// Whether any slot changed since the last [`DesiredTable::mark_applied`].
    pub fn has_changes(&self) -> bool {
        !self.before.is_empty()
    }

    /// The UDP conntrack entries the recorded changes make stale.
    pub fn stale_udp_flows(&self) -> Vec<Flush> {
        let mut previous = UdpDestinations::new();
        let mut desired = UdpDestinations::new();
        for (slot, before) in &self.before {
            let Slot::Udp(ip, port) = slot else {
                continue;
            };
            if let Some(Value::Udp(backends)) = before {
                previous.insert((*ip, *port), backends.clone());
            }
            if let Some(backends) = self.merged.udp_destinations.get(&(*ip, *port)) {
                desired.insert((*ip, *port), backends.clone());
            }
        }
        stale_flows(Some(&previous), &desired)
    }

    /// The nft commands that bring a kernel holding the table as of the last
    /// [`DesiredTable::mark_applied`] to the merged table. Order: new chains and sets, rules of
    /// new and changed chains, element deletions then additions (one command per set or map),
    /// then stale chains (all flushed before any is deleted) and stale sets.
    pub fn delta(&self) -> Delta {
        let table = &self.merged.table;
        let mut changed: Vec<(&Slot, &Option<Value>)> = self.before.iter().collect();
        changed.sort_by(|a, b| a.0.cmp(b.0));
        let mut declare = String::new();
        let mut rules = String::new();
        let mut stale_chains = Vec::new();
        let mut stale_sets = String::new();
        let mut deletions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut additions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (slot, before) in changed {
            match slot {
                Slot::Chain(name) => {
                    let old = match before {
                        Some(Value::Chain(chain)) => Some(chain),
                        _ => None,
                    };
                    match (old, self.merged.chains.get(name)) {
                        (None, Some(chain)) => {
                            declare.push_str(&format!("add chain {FAMILY} {table} {name}\n"));
                            push_rules(&mut rules, table, name, chain);
                        }
                        (Some(old), Some(chain)) if old.rules != chain.rules => {
                            rules.push_str(&format!("flush chain {FAMILY} {table} {name}\n"));
                            push_rules(&mut rules, table, name, chain);
                        }
                        (Some(_), None) => stale_chains.push(name),
                        _ => {}
                    }
                }
                Slot::Collection(name) => {
                    let old = match before {
                        Some(Value::Collection(collection)) => Some(collection),
                        _ => None,
                    };
                    match (old, self.merged.collections.get(name)) {
                        (None, Some(new)) => declare.push_str(&format!(
                            "add {} {FAMILY} {table} {name} {{ {} }}\n",
                            new.kind.keyword(),
                            new.spec
                        )),
                        (Some(old), Some(new)) if old.kind != new.kind || old.spec != new.spec => {
                            return Delta::Redeclare
                        }
                        (Some(old), None) => stale_sets.push_str(&format!(
                            "delete {} {FAMILY} {table} {name}\n",
                            old.kind.keyword()
                        )),
                        _ => {}
                    }
                }
                Slot::Element(name, key) => {
                    let old = match before {
                        Some(Value::Element(value)) => Some(value),
                        _ => None,
                    };
                    let new = self
                        .merged
                        .collections
                        .get(&**name)
                        .and_then(|c| c.elements.get(key));
                    if old == new {
                        continue;
                    }
                    if old.is_some() {
                        deletions.entry(&**name).or_default().push(key);
                    }
                    if let Some(value) = new {
                        additions
                            .entry(&**name)
                            .or_default()
                            .push(crate::model::element_text(key, value));
                    }
                }
                Slot::Udp(..) | Slot::Health(_) => {}
            }
        }
        let mut out = declare;
        out.push_str(&rules);
        for (name, keys) in deletions {
            out.push_str(&format!(
                "delete element {FAMILY} {table} {name} {{ {} }}\n",
                keys.join(", ")
            ));
        }
        for (name, elements) in additions {
            out.push_str(&format!(
                "add element {FAMILY} {table} {name} {{ {} }}\n",
                elements.join(", ")
            ));
        }
        for name in &stale_chains {
            out.push_str(&format!("flush chain {FAMILY} {table} {name}\n"));
        }
        for name in &stale_chains {
            out.push_str(&format!("delete chain {FAMILY} {table} {name}\n"));
        }
        out.push_str(&stale_sets);
        Delta::Script(out)
    }
}

/// The providers of one slot, sorted by service key; almost always just one.
#[derive(Debug, Clone)]
enum Providers {
    One(ServiceKey),
    Many(Vec<ServiceKey>),
}

impl Providers {
    fn as_slice(&self) -> &[ServiceKey] {
        match self {
            Self::One(key) => std::slice::from_ref(key),
            Self::Many(keys) => keys,
        }
    }

    fn add(&mut self, key: &ServiceKey) {
        let mut keys = match self {
            Self::One(one) if one == key => return,
            Self::One(one) => vec![one.clone()],
            Self::Many(keys) => std::mem::take(keys),
        };
        if let Err(at) = keys.binary_search(key) {
            keys.insert(at, key.clone());
        }
        *self = Self::Many(keys);
    }

    /// Removes `key`; true when none is left.
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Self::One(one) => one == key,
            Self::Many(keys) => {
                keys.retain(|k| k != key);
                keys.is_empty()
            }
        }
    }
}

fn push_rules(out: &mut String, table: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        out.push_str(&format!("add rule {FAMILY} {table} {name} {rule}\n"));
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
