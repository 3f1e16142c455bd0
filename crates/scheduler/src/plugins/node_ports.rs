//! NodePorts: the host ports a pod asks for must be free on the node.

use crate::framework::{CycleState, FilterPlugin, HostPort, NodeInfo, PodInfo, Unfit};

fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    let wildcard = |ip: &str| ip == "0.0.0.0" || ip.is_empty();
    a.port == b.port
        && a.protocol == b.protocol
        && (a.ip == b.ip || wildcard(&a.ip) || wildcard(&b.ip))
}

/// Whether none of `wanted` collides with `used`.
pub fn fits(wanted: &[HostPort], used: &[HostPort]) -> bool {
    !wanted.iter().any(|w| used.iter().any(|u| conflicts(w, u)))
}

/// The NodePorts filter.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(&pod.host_ports, &node.used_ports) {
            Ok(())
        } else {
            Err(vec![
                "node(s) didn't have free ports for the requested pod ports".into(),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, protocol: &str, port: i32) -> HostPort {
        HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port,
        }
    }

    #[test]
    fn ports_conflict_on_same_protocol_port_and_overlapping_ip() {
        let used = [port("0.0.0.0", "TCP", 80), port("10.0.0.1", "UDP", 53)];
        let cases = [
            (port("0.0.0.0", "TCP", 80), false),
            (port("10.0.0.2", "TCP", 80), false),
            (port("0.0.0.0", "UDP", 80), true),
            (port("10.0.0.1", "UDP", 53), false),
            (port("10.0.0.2", "UDP", 53), true),
            (port("0.0.0.0", "UDP", 53), false),
            (port("0.0.0.0", "TCP", 8080), true),
        ];
        for (wanted, expected) in cases {
            assert_eq!(
                fits(std::slice::from_ref(&wanted), &used),
                expected,
                "{wanted:?}"
            );
        }
    }
}
