//! Clearing stale UDP conntrack entries after a sync, as upstream kube-proxy does: UDP has no
//! connection end, so an entry created while a Service had no endpoints (or pointing at an
//! endpoint that is gone) would keep black-holing a client's packets until it times out. DNS
//! clients reusing a source port are the usual victims.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::model::UdpDestinations;

/// One deletion of conntrack entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    /// Every UDP entry to `ip:port` (the destination just got its first endpoints).
    Destination {
        /// ClusterIP or external IP.
        ip: Ipv4Addr,
        /// Service port.
        port: u16,
    },
    /// UDP entries to `ip` that were DNATed to `endpoint` (an endpoint that went away).
    Endpoint {
        /// ClusterIP or external IP.
        ip: Ipv4Addr,
        /// The removed endpoint IP.
        endpoint: Ipv4Addr,
    },
}

/// What to flush when going from `previous` (None: unknown, as at start) to `desired`.
pub fn stale_flows(previous: Option<&UdpDestinations>, desired: &UdpDestinations) -> Vec<Flush> {
    let empty = BTreeSet::new();
    let mut flushes = BTreeSet::new();
    for ((ip, port), backends) in desired {
        let before = previous
            .and_then(|p| p.get(&(*ip, *port)))
            .unwrap_or(&empty);
        if before.is_empty() && !backends.is_empty() {
            flushes.insert(Flush::Destination {
                ip: *ip,
                port: *port,
            });
        }
    }
    if let Some(previous) = previous {
        for ((ip, port), before) in previous {
            let now = desired.get(&(*ip, *port)).unwrap_or(&empty);
            for endpoint in before.difference(now) {
                flushes.insert(Flush::Endpoint {
                    ip: *ip,
                    endpoint: *endpoint,
                });
            }
        }
    }
    flushes.into_iter().collect()
}

/// Deletes conntrack entries.
pub trait Conntrack: Send + Sync {
    /// Performs one flush; failures are logged by the caller, never fatal.
    fn flush(&self, flush: Flush) -> Result<(), ConntrackError>;
}

/// Why a flush failed.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The `conntrack` tool could not be run.
    #[error("running conntrack: {0}")]
    Spawn(#[source] std::io::Error),
    /// It ran and failed.
    #[error("conntrack failed: {0}")]
    Failed(String),
}

/// Runs the `conntrack` tool (conntrack-tools).
#[derive(Debug, Clone, Default)]
pub struct ConntrackCommand;

impl Conntrack for ConntrackCommand {
    fn flush(&self, flush: Flush) -> Result<(), ConntrackError> {
        let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
        match flush {
            Flush::Destination { ip, port } => {
                args.extend(["--orig-dst".into(), ip.to_string()]);
                args.extend(["--orig-port-dst".into(), port.to_string()]);
            }
            Flush::Endpoint { ip, endpoint } => {
                args.extend(["--orig-dst".into(), ip.to_string()]);
                args.extend(["--dst-nat".into(), endpoint.to_string()]);
            }
        }
        let output = Command::new("conntrack")
            .args(&args)
            .output()
            .map_err(ConntrackError::Spawn)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
        if output.status.success() || stderr.contains("0 flow entries") {
            return Ok(());
        }
        Err(ConntrackError::Failed(stderr.trim().to_string()))
    }
}

/// A fake that records flushes.
#[derive(Debug, Clone, Default)]
pub struct RecordingConntrack {
    flushes: std::sync::Arc<std::sync::Mutex<Vec<Flush>>>,
}

impl RecordingConntrack {
    /// The flushes so far, oldest first.
    pub fn flushes(&self) -> Vec<Flush> {
        self.flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Conntrack for RecordingConntrack {
    fn flush(&self, flush: Flush) -> Result<(), ConntrackError> {
        self.flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(flush);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(entries: &[((u8, u16), &[u8])]) -> UdpDestinations {
        let mut r = UdpDestinations::new();
        for ((vip, port), backends) in entries {
            r.insert(
                (Ipv4Addr::new(10, 96, 0, *vip), *port),
                backends
                    .iter()
                    .map(|b| Ipv4Addr::new(10, 244, 0, *b))
                    .collect(),
            );
        }
        r
    }

    #[test]
    fn first_endpoints_flush_the_destination_and_removed_endpoints_their_flows() {
        let before = ruleset(&[((10, 53), &[]), ((11, 53), &[5, 6])]);
        let after = ruleset(&[((10, 53), &[7]), ((11, 53), &[6])]);
        assert_eq!(
            stale_flows(Some(&before), &after),
            vec![
                Flush::Destination {
                    ip: Ipv4Addr::new(10, 96, 0, 10),
                    port: 53
                },
                Flush::Endpoint {
                    ip: Ipv4Addr::new(10, 96, 0, 11),
                    endpoint: Ipv4Addr::new(10, 244, 0, 5)
                },
            ]
        );
        assert!(stale_flows(Some(&after), &after).is_empty());
    }

    #[test]
    fn at_start_every_udp_destination_with_endpoints_is_flushed() {
        let after = ruleset(&[((10, 53), &[7]), ((12, 53), &[])]);
        assert_eq!(
            stale_flows(None, &after),
            vec![Flush::Destination {
                ip: Ipv4Addr::new(10, 96, 0, 10),
                port: 53
            }]
        );
    }
}
