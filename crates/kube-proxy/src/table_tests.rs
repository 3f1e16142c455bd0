//! The merge of fragments: shared slots, winners, and the recorded delta.

use super::*;
use crate::model::Collection;

fn base() -> Ruleset {
    let mut rules = Ruleset::new("t");
    rules
        .collections
        .insert("hairpin".into(), Collection::set("type ipv4_addr;"));
    rules
        .collections
        .insert("ips".into(), Collection::map("type ipv4_addr : verdict;"));
    rules
}

/// A fragment with a hairpin element for `endpoint` and `ip -> goto <chain>`.
fn fragment(chain: &str, ip: &str, endpoint: &str) -> Ruleset {
    let mut rules = Ruleset::new("t");
    rules.chain(chain).rules = vec![format!("dnat to {endpoint}")];
    let mut hairpin = Collection::set("");
    hairpin.elements.insert(endpoint.into(), None);
    rules.collections.insert("hairpin".into(), hairpin);
    let mut ips = Collection::set("");
    ips.elements
        .insert(ip.into(), Some(format!("goto {chain}")));
    rules.collections.insert("ips".into(), ips);
    rules
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::from(name)
}

#[test]
fn a_shared_element_stays_until_its_last_provider_goes() {
    let mut table = DesiredTable::new(base());
    table.set_service(
        key("ns/a"),
        Some(fragment("chain-a", "10.0.0.1", "10.1.0.1")),
    );
    table.set_service(
        key("ns/b"),
        Some(fragment("chain-b", "10.0.0.2", "10.1.0.1")),
    );
    table.mark_applied();
    table.set_service(key("ns/a"), None);
    assert!(table.ruleset().collections["hairpin"]
        .elements
        .contains_key("10.1.0.1"));
    assert_eq!(
        table.delta(),
        Delta::Script(
            "delete element ip t ips { 10.0.0.1 }\n\
             flush chain ip t chain-a\n\
             delete chain ip t chain-a\n"
                .into()
        )
    );
    table.mark_applied();
    table.set_service(key("ns/b"), None);
    assert_eq!(
        table.delta(),
        Delta::Script(
            "delete element ip t hairpin { 10.1.0.1 }\n\
             delete element ip t ips { 10.0.0.2 }\n\
             flush chain ip t chain-b\n\
             delete chain ip t chain-b\n"
                .into()
        )
    );
}

#[test]
fn the_smallest_service_key_wins_a_contested_element_whatever_the_order() {
    let mut forward = DesiredTable::new(base());
    forward.set_service(
        key("ns/a"),
        Some(fragment("chain-a", "10.0.0.1", "10.1.0.1")),
    );
    forward.set_service(
        key("ns/b"),
        Some(fragment("chain-b", "10.0.0.1", "10.1.0.2")),
    );
    let mut backward = DesiredTable::new(base());
    backward.set_service(
        key("ns/b"),
        Some(fragment("chain-b", "10.0.0.1", "10.1.0.2")),
    );
    backward.set_service(
        key("ns/a"),
        Some(fragment("chain-a", "10.0.0.1", "10.1.0.1")),
    );
    assert_eq!(forward.ruleset(), backward.ruleset());
    assert_eq!(
        forward.ruleset().collections["ips"].elements["10.0.0.1"],
        Some("goto chain-a".to_string())
    );
    // When the winner leaves, the other provider takes over: one value swap.
    forward.mark_applied();
    forward.set_service(key("ns/a"), None);
    let Delta::Script(script) = forward.delta() else {
        panic!("expected a script");
    };
    assert!(script.contains("delete element ip t ips { 10.0.0.1 }\n"));
    assert!(script.contains("add element ip t ips { 10.0.0.1 : goto chain-b }\n"));
}

#[test]
fn a_changed_affinity_set_declaration_asks_for_a_recreate() {
    let with_set = |timeout: u32| {
        let mut rules = fragment("chain-a", "10.0.0.1", "10.1.0.1");
        rules.collections.insert(
            "affinity-a".into(),
            Collection::dynamic_set(&format!(
                "type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"
            )),
        );
        rules
    };
    let mut table = DesiredTable::new(base());
    table.set_service(key("ns/a"), Some(with_set(10)));
    table.mark_applied();
    table.set_service(key("ns/a"), Some(with_set(10)));
    assert!(!table.has_changes());
    table.set_service(key("ns/a"), Some(with_set(20)));
    assert_eq!(table.delta(), Delta::Redeclare);
}
