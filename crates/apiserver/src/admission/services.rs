//! Services: defaulting (type, ports, affinity, IP families), ClusterIP allocation from
//! `--service-cluster-ip-range` and NodePort allocation from `--service-node-port-range`. Each
//! allocated IP or port is a storage key (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`), so allocation is atomic across apiservers.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use crate::state::ApiState;
use crate::status::{ApiError, Cause};
use crate::storage::StorageError;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Why a range flag is bad.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// The CIDR does not parse.
    #[error("invalid CIDR {0:?} (want an IPv4 network such as 10.96.0.0/12)")]
    Cidr(String),
    /// The port range does not parse.
    #[error("invalid port range {0:?} (want FROM-TO, such as 30000-32767)")]
    Ports(String),
}

/// The service IP range and NodePort range.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceNetwork {
    base: u32,
    size: u32,
    ports: (u16, u16),
}

impl ServiceNetwork {
    /// Parses `--service-cluster-ip-range` and `--service-node-port-range`.
    pub fn parse(cidr: &str, ports: &str) -> Result<Self, RangeError> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| RangeError::Cidr(cidr.into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| RangeError::Cidr(cidr.into()))?;
        let bits: u32 = bits.parse().map_err(|_| RangeError::Cidr(cidr.into()))?;
        if !(8..=30).contains(&bits) {
            return Err(RangeError::Cidr(cidr.into()));
        }
        let mask = u32::MAX << (32 - bits);
        let (from, to) = ports
            .split_once('-')
            .ok_or_else(|| RangeError::Ports(ports.into()))?;
        let from: u16 = from
            .trim()
            .parse()
            .map_err(|_| RangeError::Ports(ports.into()))?;
        let to: u16 = to
            .trim()
            .parse()
            .map_err(|_| RangeError::Ports(ports.into()))?;
        if from > to {
            return Err(RangeError::Ports(ports.into()));
        }
        Ok(ServiceNetwork {
            base: u32::from(ip) & mask,
            size: 1 << (32 - bits),
            ports: (from, to),
        })
    }

    /// The first usable IP (the `kubernetes` Service's).
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether `ip` is a usable address of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }

    /// Size of the static band at the start of the range that dynamic allocation avoids (as
    /// upstream, KEP-3070), so well-known IPs such as the DNS Service's 10.96.0.10 stay free.
    fn static_band(&self) -> u32 {
        (self.size / 16).clamp(16, 256).min(self.size / 2)
    }

    fn random_ip(&self, avoid_static: bool) -> Ipv4Addr {
        // The first address is kept for the `kubernetes` Service.
        let low = if avoid_static {
            self.static_band().max(2)
        } else {
            2
        };
        let offset = rand::rng().random_range(low..self.size - 1);
        Ipv4Addr::from(self.base + offset)
    }
}

fn set_default(object: &mut Value, key: &str, value: Value) {
    if let Some(o) = object.as_object_mut() {
        if o.get(key).is_none_or(Value::is_null) {
            o.insert(key.to_string(), value);
        }
    }
}

/// Defaults a Service in place.
pub fn default_service(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
        spec["clusterIPs"] = json!(["None"]);
    }
}

fn invalid(object: &Value, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        crate::objects::name(object).unwrap_or(""),
        vec![Cause {
            reason: "FieldValueInvalid",
            message,
            field: field.into(),
        }],
    )
}

async fn claim(state: &ApiState, key: String, owner: &str) -> Result<bool, ApiError> {
    match state.storage.create(&key, owner.as_bytes().to_vec()).await {
        Ok(_) => Ok(true),
        Err(StorageError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::internal(e)),
    }
}

fn owner(object: &Value) -> String {
    format!(
        "{}/{}",
        crate::objects::meta_str(object, "namespace").unwrap_or(""),
        crate::objects::name(object).unwrap_or("")
    )
}

fn cluster_ip(object: &Value) -> Option<String> {
    object
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
        .map(str::to_string)
}

fn node_ports(object: &Value) -> Vec<i64> {
    object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default()
}

/// Allocates the ClusterIP and NodePorts `object` needs (keeping those of `old` on update).
pub async fn allocate(
    state: &ApiState,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let kind = object
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if kind == "ExternalName" || object.get("spec").is_none() {
        return Ok(());
    }
    let who = owner(object);
    let net = &state.services;
    let old_ip = old.and_then(cluster_ip);
    let headless = object.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        match (cluster_ip(object), old_ip) {
            (None, Some(ip)) => {
                crate::objects::put(object, &["spec", "clusterIP"], json!(ip));
                crate::objects::put(object, &["spec", "clusterIPs"], json!([ip]));
            }
            (Some(ip), Some(old)) if ip == old => {
                crate::objects::put(object, &["spec", "clusterIPs"], json!([ip]));
            }
            (Some(ip), Some(old)) => {
                return Err(invalid(
                    object,
                    "spec.clusterIPs[0]",
                    format!(
                        "Invalid value: []string{{\"{ip}\"}}: may not change once set (was {old})"
                    ),
                ));
            }
            (Some(ip), None) => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(
                        object,
                        "spec.clusterIPs",
                        format!("Invalid value: []string{{\"{ip}\"}}: must be a valid IP address"),
                    )
                })?;
                if !net.contains(parsed) {
                    return Err(invalid(object, "spec.clusterIPs", format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}/{}", Ipv4Addr::from(net.base), 32 - net.size.trailing_zeros())));
                }
                if !claim(state, format!("{IP_PREFIX}{ip}"), &who).await? {
                    return Err(invalid(object, "spec.clusterIPs", format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated")));
                }
                crate::objects::put(object, &["spec", "clusterIPs"], json!([ip]));
            }
            (None, None) => {
                let mut chosen = None;
                for attempt in 0..256 {
                    let ip = net.random_ip(attempt < 128).to_string();
                    if claim(state, format!("{IP_PREFIX}{ip}"), &who).await? {
                        chosen = Some(ip);
                        break;
                    }
                }
                let ip = chosen.ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?;
                crate::objects::put(object, &["spec", "clusterIP"], json!(ip));
                crate::objects::put(object, &["spec", "clusterIPs"], json!([ip]));
            }
        }
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let old_ports = old.map(node_ports).unwrap_or_default();
        // An update that omits a port's nodePort keeps the one it had (as upstream).
        if let Some(old_specs) = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
        {
            if let Some(ports) = object
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
            {
                for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
                    let same = old_specs.iter().find(|o| {
                        o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                    });
                    if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                        set_default(p, "nodePort", np.clone());
                    }
                }
            }
        }
        let Some(ports) = object
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
        else {
            return Ok(());
        };
        let mut errors = None;
        for p in ports.iter_mut() {
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if old_ports.contains(&np) => {}
                Some(np) => {
                    if !claim(state, format!("{PORT_PREFIX}{np}"), &who).await? {
                        errors = Some(format!(
                            "Invalid value: {np}: provided port is already allocated"
                        ));
                        break;
                    }
                }
                None => {
                    let (from, to) = net.ports;
                    let mut chosen = None;
                    for _ in 0..256 {
                        let port = rand::rng().random_range(from..=to);
                        if claim(state, format!("{PORT_PREFIX}{port}"), &who).await? {
                            chosen = Some(port);
                            break;
                        }
                    }
                    match chosen {
                        Some(port) => set_default(p, "nodePort", json!(port)),
                        None => {
                            errors = Some("range is full".to_string());
                            break;
                        }
                    }
                }
            }
        }
        if let Some(message) = errors {
            return Err(invalid(object, "spec.ports[0].nodePort", message));
        }
    }
    Ok(())
}

async fn free(state: &ApiState, key: String) {
    match state.storage.delete(&key, None).await {
        Ok(_) | Err(StorageError::NotFound { .. }) => {}
        Err(error) => tracing::warn!(%key, %error, "releasing service allocation"),
    }
}

/// Releases the ClusterIP and NodePorts of `object` that `keep` does not hold.
pub async fn release(state: &ApiState, object: &Value, keep: Option<&Value>) {
    let keep_ip = keep.and_then(cluster_ip);
    if let Some(ip) = cluster_ip(object) {
        if keep_ip.as_deref() != Some(ip.as_str()) {
            free(state, format!("{IP_PREFIX}{ip}")).await;
        }
    }
    let keep_ports = keep.map(node_ports).unwrap_or_default();
    for port in node_ports(object) {
        if !keep_ports.contains(&port) {
            free(state, format!("{PORT_PREFIX}{port}")).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_range_parses_and_reserves_the_first_ip() {
        let n = ServiceNetwork::parse("10.96.0.0/12", "30000-32767").expect("parse");
        assert_eq!(n.first_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(n.contains(Ipv4Addr::new(10, 96, 0, 10)));
        assert!(!n.contains(Ipv4Addr::new(10, 112, 0, 1)));
        for _ in 0..100 {
            let ip = n.random_ip(true);
            assert!(n.contains(ip) && ip != n.first_ip());
            assert!(
                u32::from(ip) >= u32::from(Ipv4Addr::new(10, 96, 1, 0)),
                "{ip}"
            );
        }
        let small = ServiceNetwork::parse("10.0.0.0/28", "1-2").expect("parse");
        for _ in 0..100 {
            assert!(small.contains(small.random_ip(true)));
        }
        assert!(ServiceNetwork::parse("10.96.0.0", "1-2").is_err());
        assert!(ServiceNetwork::parse("10.96.0.0/12", "5-2").is_err());
    }

    #[test]
    fn services_get_port_defaults() {
        let mut s = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        default_service(&mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
    }
}
