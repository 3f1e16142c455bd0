//! Random sequences of Service and EndpointSlice changes: after every sync, the table that a
//! strict model of the kernel holds (built only from the transactions sent) equals a full
//! rebuild from the same objects. A service the dirty tracking misses, a delta in the wrong
//! order or a stale element left behind makes it fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;
use crate::model::CollectionKind;
use crate::nft::NftError;
use crate::objects::Objects;
use crate::rules::build_ruleset;

/// A set or map in the model kernel.
#[derive(Debug, Clone, PartialEq)]
struct KernelSet {
    kind: CollectionKind,
    spec: String,
    elements: BTreeMap<String, Option<String>>,
}

/// One table in the model kernel.
#[derive(Debug, Clone, Default, PartialEq)]
struct KernelTable {
    chains: BTreeMap<String, (Option<String>, Vec<String>)>,
    sets: BTreeMap<String, KernelSet>,
}

/// Chains named after `goto`/`jump` and sets named after `@` in `text`.
fn references(text: &str) -> (Vec<String>, Vec<String>) {
    let word = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| !matches!(c, ' ' | ',' | '}'))
            .collect()
    };
    let mut chains = Vec::new();
    for verb in ["goto ", "jump "] {
        for (at, _) in text.match_indices(verb) {
            chains.push(word(&text[at + verb.len()..]));
        }
    }
    let sets = text
        .match_indices('@')
        .map(|(at, _)| word(&text[at + 1..]))
        .collect();
    (chains, sets)
}

impl KernelTable {
    fn referenced(&self, chain: Option<&str>, set: Option<&str>) -> bool {
        let texts = self
            .chains
            .values()
            .flat_map(|(_, rules)| rules.iter().map(String::as_str))
            .chain(
                self.sets
                    .values()
                    .flat_map(|s| s.elements.values().flatten().map(String::as_str)),
            );
        for text in texts {
            let (chains, sets) = references(text);
            if chain.is_some_and(|c| chains.iter().any(|x| x == c))
                || set.is_some_and(|s| sets.iter().any(|x| x == s))
            {
                return true;
            }
        }
        false
    }

    fn check_refs(&self, text: &str) -> Result<(), String> {
        let (chains, sets) = references(text);
        for chain in chains {
            if !self.chains.contains_key(&chain) {
                return Err(format!("{text}: no chain {chain}"));
            }
        }
        for set in sets {
            if !self.sets.contains_key(&set) {
                return Err(format!("{text}: no set {set}"));
            }
        }
        Ok(())
    }
}

/// A strict model of nft for one table: applies scripts all-or-nothing and refuses what the
/// kernel refuses (missing objects, deleting a chain with rules or still referenced, changing
/// an element's value with `add`, deleting a missing element).
#[derive(Debug, Clone, Default)]
struct ModelKernel {
    table: Arc<Mutex<Option<KernelTable>>>,
}

fn braces(rest: &str) -> Result<&str, String> {
    rest.trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .map(str::trim)
        .ok_or_else(|| format!("no {{ }} in {rest:?}"))
}

fn apply_line(table: &mut Option<KernelTable>, line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.splitn(5, ' ').collect();
    let (verb, what) = (words[0], words.get(1).copied().unwrap_or(""));
    if what == "table" {
        match verb {
            "add" => {
                table.get_or_insert_with(KernelTable::default);
            }
            "delete" => {
                table.take().ok_or("delete of a missing table")?;
            }
            _ => return Err(format!("unknown: {line}")),
        }
        return Ok(());
    }
    let t = table.as_mut().ok_or("no table")?;
    let name = words.get(4).copied().unwrap_or("");
    let (name, rest) = name.split_once(' ').unwrap_or((name, ""));
    match (verb, what) {
        ("add", "chain") => {
            let hook = (!rest.is_empty()).then(|| rest.to_string());
            t.chains
                .entry(name.to_string())
                .or_insert((hook, Vec::new()));
        }
        ("flush", "chain") => {
            t.chains.get_mut(name).ok_or("flush: no chain")?.1.clear();
        }
        ("delete", "chain") => {
            let (_, rules) = t.chains.get(name).ok_or("delete: no chain")?;
            if !rules.is_empty() || t.referenced(Some(name), None) {
                return Err(format!("chain {name} busy"));
            }
            t.chains.remove(name);
        }
        ("add", "rule") => {
            t.check_refs(rest)?;
            t.chains
                .get_mut(name)
                .ok_or("add rule: no chain")?
                .1
                .push(rest.to_string());
        }
        ("add", "set" | "map") => {
            let kind = if what == "set" {
                CollectionKind::Set
            } else {
                CollectionKind::Map
            };
            let spec = braces(rest)?.to_string();
            let entry = t.sets.entry(name.to_string()).or_insert(KernelSet {
                kind,
                spec: spec.clone(),
                elements: BTreeMap::new(),
            });
            if entry.spec != spec || entry.kind != kind {
                return Err(format!("set {name} redeclared"));
            }
        }
        ("flush", "set" | "map") => {
            t.sets
                .get_mut(name)
                .ok_or("flush: no set")?
                .elements
                .clear();
        }
        ("delete", "set" | "map") => {
            if !t.sets.contains_key(name) || t.referenced(None, Some(name)) {
                return Err(format!("delete set {name}: missing or busy"));
            }
            t.sets.remove(name);
        }
        ("add", "element") => {
            for element in braces(rest)?.split(", ") {
                let (key, value) = match element.split_once(" : ") {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (element.to_string(), None),
                };
                if let Some(value) = &value {
                    t.check_refs(value)?;
                }
                let set = t.sets.get_mut(name).ok_or("add element: no set")?;
                match set.elements.get(&key) {
                    Some(old) if *old != value => return Err(format!("element {key} exists")),
                    _ => {
                        set.elements.insert(key, value);
                    }
                }
            }
        }
        ("delete", "element") => {
            let set = t.sets.get_mut(name).ok_or("delete element: no set")?;
            for key in braces(rest)?.split(", ") {
                set.elements
                    .remove(key)
                    .ok_or_else(|| format!("delete of missing element {key}"))?;
            }
        }
        _ => return Err(format!("unknown: {line}")),
    }
    Ok(())
}

impl Nftables for ModelKernel {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = table.clone();
        for line in script.lines() {
            apply_line(&mut next, line)
                .map_err(|e| NftError::Injected(format!("{e}\nline: {line}\n{script}")))?;
        }
        *table = next;
        Ok(())
    }

    fn list_table(&self, _table: &str) -> Result<String, NftError> {
        Ok(format!("{:?}", self.table.lock().map(|t| t.clone()).ok()))
    }
}

impl ModelKernel {
    /// The kernel table in the form of the ruleset it should equal.
    fn as_table(&self) -> Option<KernelTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn expected_table(rules: &Ruleset) -> KernelTable {
    KernelTable {
        chains: rules
            .chains
            .iter()
            .map(|(name, c)| {
                let hook = c.hook.as_ref().map(|h| format!("{{ {h}; }}"));
                (name.clone(), (hook, c.rules.clone()))
            })
            .collect(),
        sets: rules
            .collections
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    KernelSet {
                        kind: c.kind,
                        spec: c.spec.clone(),
                        elements: c.elements.clone(),
                    },
                )
            })
            .collect(),
    }
}

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMES: [&str; 6] = ["web", "api", "db", "dns", "cache", "queue"];
const NAMESPACES: [&str; 2] = ["default", "other"];

fn random_service(rng: &mut Rng) -> Service {
    let name = rng.pick(&NAMES);
    let namespace = rng.pick(&NAMESPACES);
    let type_ = rng.pick(&[
        "ClusterIP",
        "ClusterIP",
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "ExternalName",
    ]);
    let cluster_ip = if rng.chance(10) {
        "None".to_string()
    } else {
        // A small pool: two services may even claim the same address.
        format!("10.96.0.{}", 1 + rng.below(5))
    };
    let mut ports = Vec::new();
    for (port_name, port, protocol) in [("http", 80, "TCP"), ("dns", 53, "UDP"), ("", 443, "TCP")] {
        if rng.chance(50) || (ports.is_empty() && port == 443) {
            let mut p = json!({"port": port, "protocol": protocol});
            if !port_name.is_empty() {
                p["name"] = json!(port_name);
            }
            if type_ != "ClusterIP" {
                p["nodePort"] = json!(30000 + rng.below(3));
            }
            ports.push(p);
        }
    }
    let mut spec = json!({"type": type_, "clusterIP": cluster_ip, "ports": ports});
    if rng.chance(30) {
        spec["sessionAffinity"] = json!("ClientIP");
        if rng.chance(50) {
            spec["sessionAffinityConfig"] =
                json!({"clientIP": {"timeoutSeconds": 10 + 10 * rng.below(2)}});
        }
    }
    if rng.chance(20) {
        spec["internalTrafficPolicy"] = json!("Local");
    }
    if type_ != "ClusterIP" && rng.chance(50) {
        spec["externalTrafficPolicy"] = json!("Local");
        spec["healthCheckNodePort"] = json!(32000 + rng.below(2));
    }
    if rng.chance(30) {
        spec["externalIPs"] = json!([format!("192.0.2.{}", 1 + rng.below(2))]);
    }
    let mut service = json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    if type_ == "LoadBalancer" && rng.chance(50) {
        service["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": format!("198.51.100.{}", rng.below(2))}]}});
    }
    serde_json::from_value(service).expect("valid service")
}

fn random_slice(rng: &mut Rng) -> EndpointSlice {
    let service = rng.pick(&NAMES);
    let namespace = rng.pick(&NAMESPACES);
    let name = format!("{service}-{}", rng.pick(&["a", "b"]));
    // Sometimes the slice is filed under another service than its name says.
    let label = if rng.chance(15) {
        rng.pick(&NAMES)
    } else {
        service
    };
    let count = if rng.chance(5) { 70 } else { rng.below(4) };
    let endpoints: Vec<_> = (0..count)
        .map(|i| {
            let ip = if count > 10 {
                format!("10.244.1.{i}")
            } else {
                format!("10.244.0.{}", 1 + rng.below(6))
            };
            let ready = rng.chance(75);
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready || rng.chance(50),
                               "terminating": !ready && rng.chance(50)},
                "nodeName": rng.pick(&["node-a", "node-b"]),
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {crate::rules::SERVICE_NAME_LABEL: label}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"port": 8443 + rng.below(2) as i32, "protocol": "TCP"},
        ],
    }))
    .expect("valid slice")
}

fn config() -> RuleConfig {
    RuleConfig {
        table: "t".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        service_cidr: Some("10.96.0.0/12".into()),
        node_name: Some("node-a".into()),
        node_ips: vec!["192.0.2.9".parse().expect("ip")],
        node_labels: BTreeMap::new(),
    }
}

/// The truth: every object by `namespace/name`, rebuilt from scratch.
#[derive(Default)]
struct Truth {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
}

fn id(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

fn sync(
    proxier: &mut Proxier,
    objects: &mut Objects,
    config: &RuleConfig,
    now: Instant,
) -> SyncReport {
    let changes = objects.take_changes();
    let result = if changes.everything || proxier.needs_all(config, now) {
        proxier.sync_all(config, &objects.all_inputs(), now)
    } else {
        let inputs: Vec<_> = changes.services.iter().map(|k| objects.input(k)).collect();
        proxier.sync_changed(&inputs)
    };
    result.unwrap_or_else(|e| panic!("sync failed: {e}"))
}

#[test]
fn incremental_syncs_reach_the_same_table_as_a_full_rebuild() {
    let mut incremental = 0;
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let kernel = ModelKernel::default();
        let mut proxier = Proxier::new(Arc::new(kernel.clone()), Duration::from_secs(3600));
        let mut objects = Objects::new();
        let mut truth = Truth::default();
        let mut config = config();
        let start = Instant::now();
        let mut now = start;
        for step in 0..60 {
            for _ in 0..1 + rng.below(3) {
                match rng.below(10) {
                    0..=2 => {
                        let service = random_service(&mut rng);
                        truth
                            .services
                            .insert(id(&service.metadata), service.clone());
                        objects.apply_service(service);
                    }
                    3 => {
                        let service = random_service(&mut rng);
                        truth.services.remove(&id(&service.metadata));
                        objects.delete_service(&service);
                    }
                    4..=7 => {
                        let slice = random_slice(&mut rng);
                        truth.slices.insert(id(&slice.metadata), slice.clone());
                        objects.apply_slice(slice);
                    }
                    8 => {
                        let slice = random_slice(&mut rng);
                        truth.slices.remove(&id(&slice.metadata));
                        objects.delete_slice(&slice);
                    }
                    _ => {}
                }
            }
            if step % 17 == 16 {
                // The node's addresses change: everything is rebuilt and diffed.
                config.node_ips =
                    vec![format!("192.0.2.{}", 9 + rng.below(2)).parse().expect("ip")];
            }
            if step % 23 == 22 {
                // The periodic full resync.
                now += Duration::from_secs(3601);
            }
            let report = sync(&mut proxier, &mut objects, &config, now);
            if report.kind == SyncKind::Incremental {
                incremental += 1;
            }
            let expected = build_ruleset(&config, truth.services.values(), truth.slices.values());
            assert_eq!(
                kernel.as_table(),
                Some(expected_table(&expected)),
                "seed {seed} step {step}: the kernel differs from a full rebuild"
            );
            assert_eq!(
                proxier.ruleset(),
                Some(&expected),
                "seed {seed} step {step}"
            );
        }
    }
    assert!(incremental > 1000, "only {incremental} incremental syncs");
}

#[test]
fn a_failed_sync_recreates_the_table_next_time() {
    let kernel = crate::nft::RecordingNftables::new();
    let mut proxier = Proxier::new(Arc::new(kernel.clone()), Duration::from_secs(3600));
    let mut objects = Objects::new();
    let mut rng = Rng(7);
    let now = Instant::now();
    let config = config();
    objects.apply_service(random_service(&mut rng));
    assert_eq!(
        sync(&mut proxier, &mut objects, &config, now).kind,
        SyncKind::Recreate
    );
    let mut slice = random_slice(&mut rng);
    slice.metadata.labels = Some(BTreeMap::from([(
        crate::rules::SERVICE_NAME_LABEL.to_string(),
        "web".to_string(),
    )]));
    let mut web = random_service(&mut rng);
    web.metadata.name = Some("web".into());
    web.metadata.namespace = slice.metadata.namespace.clone();
    objects.apply_service(web);
    kernel.fail_next("boom");
    let changes = objects.take_changes();
    assert!(!proxier.needs_all(&config, now));
    let inputs: Vec<_> = changes.services.iter().map(|k| objects.input(k)).collect();
    assert!(proxier.sync_changed(&inputs).is_err());
    assert!(proxier.needs_all(&config, now));
    assert_eq!(
        sync(&mut proxier, &mut objects, &config, now).kind,
        SyncKind::Recreate
    );
    let scripts = kernel.scripts();
    assert!(scripts[2].starts_with("add table ip t"), "{}", scripts[2]);
    assert!(scripts[2].contains("delete table ip t\n"));
}

#[test]
fn an_unchanged_service_sends_nothing_and_one_endpoint_is_two_element_commands() {
    let kernel = crate::nft::RecordingNftables::new();
    let mut proxier = Proxier::new(Arc::new(kernel.clone()), Duration::from_secs(3600));
    let mut objects = Objects::new();
    let now = Instant::now();
    let config = config();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}
    }))
    .expect("service");
    let slice = |ip: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-a", "namespace": "default",
                         "labels": {crate::rules::SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": [ip]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .expect("slice")
    };
    objects.apply_service(service.clone());
    objects.apply_slice(slice("10.244.0.6"));
    sync(&mut proxier, &mut objects, &config, now);
    objects.apply_service(service);
    assert_eq!(
        sync(&mut proxier, &mut objects, &config, now).kind,
        SyncKind::Unchanged
    );
    objects.apply_slice(slice("10.244.0.7"));
    assert_eq!(
        sync(&mut proxier, &mut objects, &config, now).kind,
        SyncKind::Incremental
    );
    let scripts = kernel.scripts();
    assert_eq!(scripts.len(), 2);
    assert_eq!(
        scripts[1],
        "delete element ip t hairpin-endpoints { 10.244.0.6 . 10.244.0.6 }\n\
         delete element ip t service-endpoints { 10.96.0.20 . tcp . 80 . 1 }\n\
         add element ip t hairpin-endpoints { 10.244.0.7 . 10.244.0.7 }\n\
         add element ip t service-endpoints { 10.96.0.20 . tcp . 80 . 1 : 10.244.0.7 . 8080 }\n"
    );
}
