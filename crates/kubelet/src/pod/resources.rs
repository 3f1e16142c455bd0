//! Container resources: quantity parsing (CPU millicores, memory bytes), the pod's QoS class,
//! the cgroup parent that follows from it, and the cgroup v1 values handed to the runtime.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::runtime::Resources;

/// Parses a quantity into its value times `scale` (e.g. scale 1000 for millicores), rounding up.
pub fn parse_scaled(quantity: &str, scale: f64) -> Option<i64> {
    let q = quantity.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let scaled = (value * factor * scale).ceil();
    if scaled.is_finite() {
        Some(scaled as i64)
    } else {
        None
    }
}

/// CPU millicores of a quantity (`"100m"` -> 100, `"1"` -> 1000).
pub fn cpu_millis(q: &Quantity) -> Option<i64> {
    parse_scaled(&q.0, 1000.0)
}

/// Bytes of a quantity (`"64Mi"` -> 67108864).
pub fn memory_bytes(q: &Quantity) -> Option<i64> {
    parse_scaled(&q.0, 1.0)
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// The pod's QoS class as upstream computes it: `Guaranteed`, `Burstable` or `BestEffort`.
pub fn qos_class(pod: &Pod) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for container in all_containers(pod) {
        let resources = container.resources.as_ref();
        let requests = resources
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        let limits = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
        for name in ["cpu", "memory"] {
            let request = requests.get(name).or_else(|| limits.get(name));
            let limit = limits.get(name);
            let nonzero =
                |q: Option<&Quantity>| q.and_then(|q| parse_scaled(&q.0, 1000.0)).unwrap_or(0) > 0;
            if nonzero(request) || nonzero(limit) {
                any = true;
            }
            match (request, limit) {
                (Some(r), Some(l)) if parse_scaled(&r.0, 1000.0) == parse_scaled(&l.0, 1000.0) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The cgroup parent of the pod's containers (cgroupfs driver): `/kubepods/pod<uid>` for
/// Guaranteed pods, `/kubepods/burstable/pod<uid>`, `/kubepods/besteffort/pod<uid>`.
pub fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// The cgroup v1 values for one container (shares from the CPU request, quota from the CPU
/// limit, memory limit), as upstream converts them.
pub fn container_resources(container: &Container) -> Resources {
    let resources = container.resources.as_ref();
    let requests = resources
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let limits = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
    let cpu_request = requests
        .get("cpu")
        .or_else(|| limits.get("cpu"))
        .and_then(cpu_millis);
    let cpu_shares = match cpu_request {
        Some(m) if m > 0 => u64::try_from((m * 1024 / 1000).max(2)).unwrap_or(2),
        _ => 2,
    };
    let (cpu_quota, cpu_period) = match limits.get("cpu").and_then(cpu_millis) {
        Some(m) if m > 0 => ((m * 100_000 / 1000).max(1000), 100_000),
        _ => (0, 0),
    };
    Resources {
        cpu_shares,
        cpu_quota,
        cpu_period,
        memory_limit_bytes: limits.get("memory").and_then(memory_bytes).unwrap_or(0),
    }
}

/// `oom_score_adj` of Guaranteed pods' containers (and of node-critical pods).
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// `oom_score_adj` of BestEffort pods' containers.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;

/// The `oom_score_adj` of a container, as upstream's QoS policy computes it: -997 for
/// Guaranteed (and `system-node-critical`) pods, 1000 for BestEffort, and for Burstable
/// `1000 - 1000 * memoryRequest / machineMemory`, kept within 3 ..= 999 so Burstable
/// containers always rank between the two.
pub fn oom_score_adj(pod: &Pod, container: &Container, machine_memory: i64) -> i32 {
    let critical = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.priority_class_name.as_deref() == Some("system-node-critical"));
    if critical {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        "Guaranteed" => return GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => return BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {}
    }
    let request = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("memory"))
        .and_then(memory_bytes)
        .unwrap_or(0)
        .max(0);
    let capacity = machine_memory.max(1);
    // i128: 1000 * request cannot overflow.
    let adj = 1000 - (1000 * i128::from(request)) / i128::from(capacity);
    let floor = i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    let adj = if adj < floor {
        floor
    } else if adj == i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        adj - 1
    } else {
        adj
    };
    i32::try_from(adj).unwrap_or(BEST_EFFORT_OOM_SCORE_ADJ - 1)
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), read once; `None` if it
/// cannot be read.
pub fn machine_memory_bytes() -> Option<i64> {
    static TOTAL: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_mem_total(&meminfo)
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use std::collections::BTreeMap;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn pod_with(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
        let map = |v: &[(&str, &str)]| -> Option<BTreeMap<String, Quantity>> {
            if v.is_empty() {
                None
            } else {
                Some(v.iter().map(|(k, x)| (k.to_string(), q(x))).collect())
            }
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: map(requests),
                        limits: map(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse_with_suffixes() {
        assert_eq!(cpu_millis(&q("100m")), Some(100));
        assert_eq!(cpu_millis(&q("1")), Some(1000));
        assert_eq!(cpu_millis(&q("0.5")), Some(500));
        assert_eq!(memory_bytes(&q("64Mi")), Some(67_108_864));
        assert_eq!(memory_bytes(&q("1G")), Some(1_000_000_000));
        assert_eq!(memory_bytes(&q("1e3")), Some(1000));
        assert_eq!(memory_bytes(&q("lots")), None);
    }

    #[test]
    fn qos_class_follows_upstream_rules() {
        assert_eq!(qos_class(&pod_with(&[], &[])), "BestEffort");
        assert_eq!(qos_class(&pod_with(&[("cpu", "100m")], &[])), "Burstable");
        assert_eq!(
            qos_class(&pod_with(&[], &[("cpu", "1"), ("memory", "64Mi")])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod_with(
                &[("cpu", "500m"), ("memory", "64Mi")],
                &[("cpu", "1"), ("memory", "64Mi")]
            )),
            "Burstable"
        );
    }

    #[test]
    fn container_resources_convert_to_cgroup_values() {
        let pod = pod_with(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "128Mi")]);
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let r = container_resources(container);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_bytes, 134_217_728);
    }

    #[test]
    fn oom_score_adj_follows_the_qos_class() {
        const GIB: i64 = 1 << 30;
        type Quantities<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Quantities, Quantities, i32); 6] = [
            (&[], &[], 1000),
            (&[], &[("cpu", "1"), ("memory", "1Gi")], -997),
            // 1 GiB of 4 GiB requested: 1000 - 250.
            (&[("memory", "1Gi")], &[], 750),
            // All of the machine requested: still above Guaranteed.
            (&[("memory", "4Gi")], &[], 3),
            (&[("memory", "8Gi")], &[("memory", "16Gi")], 3),
            // A CPU request only: just below BestEffort.
            (&[("cpu", "100m")], &[], 999),
        ];
        for (requests, limits, want) in cases {
            let pod = pod_with(requests, limits);
            let container = &pod.spec.as_ref().expect("spec").containers[0];
            assert_eq!(
                oom_score_adj(&pod, container, 4 * GIB),
                want,
                "{requests:?} {limits:?}"
            );
        }
        let mut critical = pod_with(&[("memory", "1Gi")], &[]);
        if let Some(spec) = critical.spec.as_mut() {
            spec.priority_class_name = Some("system-node-critical".into());
        }
        let container = critical.spec.as_ref().expect("spec").containers[0].clone();
        assert_eq!(oom_score_adj(&critical, &container, 4 * GIB), -997);
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:        8049560 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(8_049_560 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
