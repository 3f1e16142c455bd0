//! The in-memory nftables ruleset kube-proxy wants, and how it becomes `nft -f` text.
//!
//! A [`Ruleset`] is one table: chains (each a list of rule lines), and sets/maps (each with a type
//! spec and elements). [`full_transaction`] renders everything (used at start and for the periodic
//! resync); [`incremental_transaction`] renders only what changed since the last applied ruleset.
//! Both are applied as one atomic `nft -f -` transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Appends one formatted line to a `String` (formatting into a `String` cannot fail).
macro_rules! emit {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

/// The address family of the table (kube-proxy only manages `ip`, IPv4).
pub const FAMILY: &str = "ip";

/// UDP `(destination ip, port)` -> the endpoint IPs behind it.
pub type UdpDestinations = BTreeMap<(Ipv4Addr, u16), BTreeSet<Ipv4Addr>>;

/// One chain: an optional base-chain hook spec and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// For base chains, e.g. `type nat hook prerouting priority -100`.
    pub hook: Option<String>,
    /// Rule lines, without the `add rule ip <table> <chain>` prefix.
    pub rules: Vec<String>,
    /// Rules written only when the chain is created, never flushed and rewritten in place: nft
    /// 1.0 cannot re-parse a `typeof` map declaration read back from the kernel, so a rule that
    /// looks up such a map can only be added in the transaction that declares the map. A change
    /// of a fixed chain's rules makes the [`crate::sync::Syncer`] recreate the table.
    pub fixed: bool,
}

/// Whether a collection is a set or a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionKind {
    /// `set`: elements have keys only.
    Set,
    /// `map`: elements are `key : value`.
    Map,
}

impl CollectionKind {
    /// `set` or `map`.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Map => "map",
        }
    }
}

/// A set or map in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Set or map.
    pub kind: CollectionKind,
    /// The body of the declaration, e.g. `type ipv4_addr . inet_proto . inet_service : verdict;`.
    pub spec: String,
    /// Whether kube-proxy owns the elements (false for dynamic affinity sets that the kernel fills).
    pub managed_elements: bool,
    /// Element key -> value (`None` for sets).
    pub elements: BTreeMap<String, Option<String>>,
}

impl Collection {
    /// A map with the given `type ...` spec and no elements yet.
    pub fn map(spec: &str) -> Self {
        Self {
            kind: CollectionKind::Map,
            spec: spec.to_string(),
            managed_elements: true,
            elements: BTreeMap::new(),
        }
    }

    /// A set whose elements kube-proxy writes.
    pub fn set(spec: &str) -> Self {
        Self {
            kind: CollectionKind::Set,
            spec: spec.to_string(),
            managed_elements: true,
            elements: BTreeMap::new(),
        }
    }

    /// A set filled by the kernel (`update @set`), whose elements kube-proxy never writes.
    pub fn dynamic_set(spec: &str) -> Self {
        Self {
            kind: CollectionKind::Set,
            spec: spec.to_string(),
            managed_elements: false,
            elements: BTreeMap::new(),
        }
    }
}

/// The whole desired content of one nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// Table name (`kube-proxy` in production; unique names in tests).
    pub table: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub collections: BTreeMap<String, Collection>,
    /// Not rendered: UDP destinations (`ip:port`, ClusterIPs and external IPs) and the endpoint
    /// IPs behind them, so stale UDP conntrack entries can be cleared after a sync.
    pub udp_destinations: UdpDestinations,
    /// Not rendered: `healthCheckNodePort` -> the service it reports on (services with
    /// `externalTrafficPolicy: Local`), served by [`crate::healthcheck`].
    pub health_checks: BTreeMap<u16, HealthCheck>,
    /// Not rendered: service ports with `internalTrafficPolicy: Local` and no local endpoint.
    pub no_local_internal: usize,
    /// Not rendered: service ports with `externalTrafficPolicy: Local` and no local endpoint.
    pub no_local_external: usize,
}

/// What a `healthCheckNodePort` server answers for one service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthCheck {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Ready endpoints of the service on this node.
    pub local_endpoints: usize,
}

impl Ruleset {
    /// An empty ruleset for `table`.
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
            ..Self::default()
        }
    }

    /// Adds (or returns) a regular chain.
    pub fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains.entry(name.to_string()).or_default()
    }

    /// Adds (or returns) a chain whose rules are written only when it is created (see
    /// [`Chain::fixed`]).
    pub fn fixed_chain(&mut self, name: &str) -> &mut Chain {
        let chain = self.chain(name);
        chain.fixed = true;
        chain
    }

    /// Adds a base chain with a hook spec.
    pub fn base_chain(&mut self, name: &str, hook: &str) -> &mut Chain {
        let chain = self.chain(name);
        chain.hook = Some(hook.to_string());
        chain
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
}

fn chain_decl(out: &mut String, table: &str, name: &str, chain: &Chain) {
    match &chain.hook {
        Some(hook) => {
            emit!(out, "add chain {FAMILY} {table} {name} {{ {hook}; }}");
        }
        None => {
            emit!(out, "add chain {FAMILY} {table} {name}");
        }
    }
}

fn collection_decl(out: &mut String, table: &str, name: &str, collection: &Collection) {
    emit!(
        out,
        "add {} {FAMILY} {table} {name} {{ {} }}",
        collection.kind.keyword(),
        collection.spec
    );
}

fn chain_rules(out: &mut String, table: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        emit!(out, "add rule {FAMILY} {table} {name} {rule}");
    }
}

/// `key` or `key : value`, as in an `add element` command.
pub fn element_text(key: &str, value: &Option<String>) -> String {
    match value {
        Some(value) => format!("{key} : {value}"),
        None => key.to_string(),
    }
}

fn add_elements<'a>(
    out: &mut String,
    table: &str,
    name: &str,
    elements: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) {
    for (key, value) in elements {
        emit!(
            out,
            "add element {FAMILY} {table} {name} {{ {} }}",
            element_text(key, value)
        );
    }
}

/// Elements per `add element` command of a full transaction: one command per element costs nft
/// (parsing, evaluation, netlink) about twice as much as large batches.
const ELEMENTS_PER_COMMAND: usize = 1000;

/// Adds `elements` with one command per [`ELEMENTS_PER_COMMAND`] elements.
fn add_elements_batched(
    out: &mut String,
    table: &str,
    name: &str,
    elements: &BTreeMap<String, Option<String>>,
) {
    let mut in_command = 0;
    for (key, value) in elements {
        if in_command == 0 {
            out.push_str(&format!("add element {FAMILY} {table} {name} {{ "));
        } else {
            out.push_str(", ");
        }
        out.push_str(key);
        if let Some(value) = value {
            out.push_str(" : ");
            out.push_str(value);
        }
        in_command += 1;
        if in_command == ELEMENTS_PER_COMMAND {
            out.push_str(" }\n");
            in_command = 0;
        }
    }
    if in_command > 0 {
        out.push_str(" }\n");
    }
}

/// Flushes and deletes the chains and collections of `previous` that `desired` no longer has.
/// All stale chains are flushed before any is deleted, since stale chains may jump to each other.
fn delete_stale(out: &mut String, desired: &Ruleset, previous: &Ruleset) {
    let table = &desired.table;
    let stale: Vec<&String> = previous
        .chains
        .keys()
        .filter(|name| !desired.chains.contains_key(*name))
        .collect();
    for name in &stale {
        emit!(out, "flush chain {FAMILY} {table} {name}");
    }
    for name in &stale {
        emit!(out, "delete chain {FAMILY} {table} {name}");
    }
    for (name, collection) in &previous.collections {
        if !desired.collections.contains_key(name) {
            emit!(
                out,
                "delete {} {FAMILY} {table} {name}",
                collection.kind.keyword()
            );
        }
    }
}

/// Renders the whole ruleset as one transaction.
///
/// With `recreate`, the table is deleted first (`add table` then `delete table`, so a missing
/// table is no error), which also removes leftovers of an earlier run. Otherwise every chain and
/// managed collection is flushed and refilled, and what `previous` had but `desired` lacks is
/// deleted; dynamic sets keep their elements (session affinity survives a resync).
pub fn full_transaction(desired: &Ruleset, previous: Option<&Ruleset>, recreate: bool) -> String {
    let table = &desired.table;
    let mut out = String::new();
    emit!(
        out,
        "add table {FAMILY} {table} {{ comment \"rules for kube-proxy\"; }}"
    );
    if recreate {
        emit!(out, "delete table {FAMILY} {table}");
        emit!(
            out,
            "add table {FAMILY} {table} {{ comment \"rules for kube-proxy\"; }}"
        );
    }
    for (name, chain) in &desired.chains {
        chain_decl(&mut out, table, name, chain);
    }
    for (name, collection) in &desired.collections {
        collection_decl(&mut out, table, name, collection);
    }
    for (name, chain) in &desired.chains {
        if !recreate {
            let kept = previous.and_then(|p| p.chains.get(name)).is_some();
            if chain.fixed && kept {
                continue;
            }
            emit!(out, "flush chain {FAMILY} {table} {name}");
        }
        chain_rules(&mut out, table, name, chain);
    }
    for (name, collection) in &desired.collections {
        if !collection.managed_elements {
            continue;
        }
        if !recreate {
            emit!(
                out,
                "flush {} {FAMILY} {table} {name}",
                collection.kind.keyword()
            );
        }
        add_elements_batched(&mut out, table, name, &collection.elements);
    }
    if let (false, Some(previous)) = (recreate, previous) {
        delete_stale(&mut out, desired, previous);
    }
    out
}

/// Renders only the differences between `previous` (what the kernel has) and `desired`: new
/// chains and collections are added, chains whose rules changed are flushed and rewritten, map
/// elements are added and deleted one by one, and stale chains are removed. Returns an empty
/// string when nothing changed.
pub fn incremental_transaction(desired: &Ruleset, previous: &Ruleset) -> String {
    let table = &desired.table;
    let mut out = String::new();
    for (name, chain) in &desired.chains {
        if !previous.chains.contains_key(name) {
            chain_decl(&mut out, table, name, chain);
        }
    }
    for (name, collection) in &desired.collections {
        if !previous.collections.contains_key(name) {
            collection_decl(&mut out, table, name, collection);
        }
    }
    for (name, chain) in &desired.chains {
        match previous.chains.get(name) {
            None => chain_rules(&mut out, table, name, chain),
            Some(old) if old.rules != chain.rules => {
                emit!(out, "flush chain {FAMILY} {table} {name}");
                chain_rules(&mut out, table, name, chain);
            }
            Some(_) => {}
        }
    }
    for (name, collection) in &desired.collections {
        if !collection.managed_elements {
            continue;
        }
        let empty = BTreeMap::new();
        let old = previous
            .collections
            .get(name)
            .map(|c| &c.elements)
            .unwrap_or(&empty);
        for (key, value) in old {
            if collection.elements.get(key) != Some(value) {
                emit!(out, "delete element {FAMILY} {table} {name} {{ {key} }}");
            }
        }
        let added = collection
            .elements
            .iter()
            .filter(|(key, value)| old.get(*key) != Some(*value));
        add_elements(&mut out, table, name, added);
    }
    delete_stale(&mut out, desired, previous);
    out
}

/// The transaction that removes the whole table (no error when it does not exist).
pub fn delete_table_transaction(table: &str) -> String {
    format!("add table {FAMILY} {table}\ndelete table {FAMILY} {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ruleset {
        let mut r = Ruleset::new("t");
        r.base_chain("nat-output", "type nat hook output priority -100")
            .rules
            .push("jump services".into());
        r.chain("services")
            .rules
            .push("ip daddr . meta l4proto . th dport vmap @service-ips".into());
        r.chain("service-a").rules.push("goto endpoint-a".into());
        r.chain("endpoint-a")
            .rules
            .push("meta l4proto tcp dnat to 10.0.0.1:80".into());
        let mut map = Collection::map("type ipv4_addr . inet_proto . inet_service : verdict;");
        map.elements
            .insert("10.96.0.5 . tcp . 80".into(), Some("goto service-a".into()));
        r.collections.insert("service-ips".into(), map);
        r
    }

    #[test]
    fn incremental_with_no_change_is_empty() {
        let r = sample();
        assert_eq!(incremental_transaction(&r, &r), "");
    }

    #[test]
    fn full_recreate_deletes_the_table_first() {
        let text = full_transaction(&sample(), None, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "delete table ip t");
        assert!(text.contains("add chain ip t nat-output { type nat hook output priority -100; }"));
        assert!(
            text.contains("add element ip t service-ips { 10.96.0.5 . tcp . 80 : goto service-a }")
        );
        assert!(!text.contains("flush"));
    }

    #[test]
    fn removed_chains_are_flushed_before_any_is_deleted() {
        let old = sample();
        let mut new = sample();
        new.chains.remove("service-a");
        new.chains.remove("endpoint-a");
        new.collections
            .get_mut("service-ips")
            .expect("sample has the map")
            .elements
            .clear();
        let text = incremental_transaction(&new, &old);
        assert_eq!(
            text,
            "delete element ip t service-ips { 10.96.0.5 . tcp . 80 }\n\
             flush chain ip t endpoint-a\n\
             flush chain ip t service-a\n\
             delete chain ip t endpoint-a\n\
             delete chain ip t service-a\n"
        );
    }
}
