//! `kubectl port-forward TYPE/NAME [LOCAL:]REMOTE...`: listens on local ports and forwards every
//! accepted connection to the pod through the `portforward` subresource (WebSocket
//! `v4.channel.k8s.io`, via kube-rs; one WebSocket per connection). A workload or service resolves
//! to one of its pods; a service port is translated to the pod's target port, and named ports to
//! the container port of that name, as upstream does. Runs until interrupted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::logs::resolve_pod;
use crate::cli::PortForwardArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// One `[LOCAL:]REMOTE` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Local port (`Some(0)`: pick a free one; `None`: same as the remote number).
    pub local: Option<u16>,
    /// Remote port: a number or a container/service port name.
    pub remote: String,
}

/// Parses `8080`, `18080:8080`, `:8080` (and names for the remote side).
pub fn parse_port_spec(arg: &str) -> Result<PortSpec> {
    let bad = || Error::Usage(format!("Error parsing local port '{arg}': invalid syntax"));
    let (local, remote) = match arg.split_once(':') {
        Some(("", remote)) => (Some(0), remote),
        Some((local, remote)) => (Some(local.parse::<u16>().map_err(|_| bad())?), remote),
        None => (None, arg),
    };
    if remote.is_empty() {
        return Err(Error::Usage(format!(
            "Error parsing remote port '{arg}': invalid syntax"
        )));
    }
    if let Ok(0) = remote.parse::<u16>() {
        return Err(Error::Usage(format!("Remote port must be > 0: {remote}")));
    }
    Ok(PortSpec {
        local,
        remote: remote.to_string(),
    })
}

/// The container port named `name` in `pod`.
fn named_container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// The pod port behind a service port, as upstream translates it.
pub fn service_target_port(service: &Service, pod: &Pod, port: &str) -> Result<u16> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let found = match port.parse::<i32>() {
        Ok(number) => ports.iter().find(|p| p.port == number),
        Err(_) => ports.iter().find(|p| p.name.as_deref() == Some(port)),
    }
    .ok_or_else(|| {
        Error::Usage(format!(
            "Service {name} does not have a service port {port}"
        ))
    })?;
    match &found.target_port {
        None => u16::try_from(found.port).map_err(|_| Error::Usage(format!("invalid port {port}"))),
        Some(IntOrString::Int(0)) => {
            u16::try_from(found.port).map_err(|_| Error::Usage(format!("invalid port {port}")))
        }
        Some(IntOrString::Int(n)) => {
            u16::try_from(*n).map_err(|_| Error::Usage(format!("invalid port {n}")))
        }
        Some(IntOrString::String(target)) => named_container_port(pod, target).ok_or_else(|| {
            Error::Usage(format!(
                "Pod '{}' does not have a named port '{target}'",
                pod.metadata.name.clone().unwrap_or_default()
            ))
        }),
    }
}

/// The addresses `--address` names.
fn listen_addresses(addresses: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for address in addresses {
        if address == "localhost" {
            out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            out.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        } else {
            out.push(
                address
                    .parse()
                    .map_err(|_| Error::Usage(format!("{address} is not a valid IP")))?,
            );
        }
    }
    Ok(out)
}

/// Runs `kubectl port-forward` until interrupted.
pub async fn run(s: &mut Session, args: PortForwardArgs) -> Result<()> {
    let specs = args
        .ports
        .iter()
        .map(|p| parse_port_spec(p))
        .collect::<Result<Vec<_>>>()?;
    let client = s.client().await?;
    let namespace = s.namespace().await?;
    let pod_name = resolve_pod(s, &client, &namespace, &args.target).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = pods.get(&pod_name).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|st| st.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(Error::Usage(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let service = service_of(&client, &namespace, &args.target).await?;
    let mut forwards = Vec::new();
    for spec in &specs {
        let remote = match &service {
            Some(service) => service_target_port(service, &pod, &spec.remote)?,
            None => match spec.remote.parse::<u16>() {
                Ok(port) => port,
                Err(_) => named_container_port(&pod, &spec.remote).ok_or_else(|| {
                    Error::Usage(format!(
                        "Pod '{pod_name}' does not have a named port '{}'",
                        spec.remote
                    ))
                })?,
            },
        };
        let local = match spec.local {
            Some(local) => local,
            None => spec.remote.parse::<u16>().unwrap_or(remote),
        };
        forwards.push((local, remote));
    }
    let (events, mut rx) = mpsc::channel::<String>(64);
    let mut bound = 0;
    let addresses = listen_addresses(&args.address)?;
    for (local, remote) in forwards {
        // A port picked for the first address is reused for the others.
        let mut port = local;
        let mut failures = Vec::new();
        for ip in &addresses {
            let listener = match TcpListener::bind(SocketAddr::new(*ip, port)).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::debug!(%ip, port, error = %e, "listening failed");
                    failures.push(format!(
                        "unable to create listener: Error listen tcp{} {}: {e}",
                        if ip.is_ipv4() { "4" } else { "6" },
                        SocketAddr::new(*ip, port)
                    ));
                    continue;
                }
            };
            let addr = listener
                .local_addr()
                .map_err(|e| Error::io("reading the listener address", e))?;
            port = addr.port();
            s.print(&format!("Forwarding from {addr} -> {remote}\n"))?;
            bound += 1;
            tokio::spawn(accept_loop(
                listener,
                pods.clone(),
                pod_name.clone(),
                remote,
                events.clone(),
            ));
        }
        if failures.len() == addresses.len() {
            return Err(Error::Usage(format!(
                "Unable to listen on port {local}: Listeners failed to create with the following errors: [{}]",
                failures.join(" ")
            )));
        }
    }
    if bound == 0 {
        return Err(Error::Usage(
            "unable to listen on any of the requested ports".into(),
        ));
    }
    drop(events);
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(line) => s.print(&line)?,
                None => return Ok(()),
            },
            signal = tokio::signal::ctrl_c() => {
                signal.map_err(|e| Error::io("waiting for an interrupt", e))?;
                return Ok(());
            }
        }
    }
}

/// The service named by `target` (`svc/NAME`, `service/NAME`, `services/NAME`), if it is one.
async fn service_of(client: &Client, namespace: &str, target: &str) -> Result<Option<Service>> {
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(None);
    };
    if !matches!(
        kind,
        "svc" | "service" | "services" | "service.v1" | "services.v1"
    ) {
        return Ok(None);
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    Ok(Some(services.get(name).await?))
}

async fn accept_loop(
    listener: TcpListener,
    pods: Api<Pod>,
    pod: String,
    remote: u16,
    events: mpsc::Sender<String>,
) {
    let local = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a local connection failed");
                continue;
            }
        };
        if events
            .send(format!("Handling connection for {local}\n"))
            .await
            .is_err()
        {
            return;
        }
        let pods = pods.clone();
        let pod = pod.clone();
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(message) = forward(conn, &pods, &pod, remote).await {
                let line = format!(
                    "E0000 portforward.go] \"Unhandled Error\" err=\"an error occurred forwarding {local} -> {remote}: {message}\"\n"
                );
                if events.send(line).await.is_err() {
                    tracing::debug!("port-forward ended before an error was reported");
                }
            }
        });
    }
}

/// Forwards one local connection over a fresh port-forward session.
async fn forward(
    mut conn: TcpStream,
    pods: &Api<Pod>,
    pod: &str,
    remote: u16,
) -> std::result::Result<(), String> {
    let mut forwarder = pods
        .portforward(pod, &[remote])
        .await
        .map_err(|e| e.to_string())?;
    let mut upstream = forwarder
        .take_stream(remote)
        .ok_or_else(|| "no stream for the port".to_string())?;
    let error = forwarder.take_error(remote);
    if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await {
        tracing::debug!(error = %e, "port-forward copy ended");
    }
    drop(upstream);
    let message = match error {
        Some(error) => error.await,
        None => None,
    };
    forwarder.abort();
    match message {
        Some(message) if !message.is_empty() => Err(message),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_specs_parse_like_upstream() {
        let spec = |l: Option<u16>, r: &str| PortSpec {
            local: l,
            remote: r.to_string(),
        };
        assert_eq!(parse_port_spec("8080").ok(), Some(spec(None, "8080")));
        assert_eq!(
            parse_port_spec("18080:8080").ok(),
            Some(spec(Some(18080), "8080"))
        );
        assert_eq!(parse_port_spec(":8080").ok(), Some(spec(Some(0), "8080")));
        assert_eq!(
            parse_port_spec("9000:http").ok(),
            Some(spec(Some(9000), "http"))
        );
        assert!(parse_port_spec("x:80").is_err());
        assert!(parse_port_spec("80:").is_err());
        assert!(parse_port_spec("0").is_err());
    }

    #[test]
    fn service_ports_translate_to_target_ports() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [
                {"name": "a", "port": 80, "targetPort": 8080},
                {"name": "b", "port": 81, "targetPort": "metrics"},
                {"name": "c", "port": 82}
            ]}
        }))
        .expect("service");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "metrics", "containerPort": 9090}]}]}
        }))
        .expect("pod");
        assert_eq!(service_target_port(&service, &pod, "80").ok(), Some(8080));
        assert_eq!(service_target_port(&service, &pod, "81").ok(), Some(9090));
        assert_eq!(service_target_port(&service, &pod, "c").ok(), Some(82));
        let err = service_target_port(&service, &pod, "99").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("Service web does not have a service port 99")
        );
        assert_eq!(
            listen_addresses(&["localhost".into(), "0.0.0.0".into()]).ok(),
            Some(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            ])
        );
    }
}
