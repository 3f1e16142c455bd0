//! The `healthCheckNodePort` servers of `externalTrafficPolicy: Local` services: one HTTP server
//! per port (on every address, as upstream), answering any path with the number of ready
//! endpoints of the service on this node: 200 when there is at least one and kube-proxy is
//! healthy, else 503, so external load balancers only send traffic to nodes that have endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::task::JoinHandle;

use crate::model::HealthCheck;
use crate::status::Health;

type Table = Arc<Mutex<BTreeMap<u16, HealthCheck>>>;

#[derive(Clone)]
struct ServerState {
    port: u16,
    table: Table,
    health: Health,
}

/// The running health-check servers, started and stopped to match the services.
pub struct HealthCheckServers {
    bind_ip: IpAddr,
    health: Health,
    table: Table,
    servers: BTreeMap<u16, JoinHandle<()>>,
}

impl HealthCheckServers {
    /// Servers bound on `bind_ip` (upstream: every address), reporting `health` too.
    pub fn new(bind_ip: IpAddr, health: Health) -> Self {
        Self {
            bind_ip,
            health,
            table: Arc::default(),
            servers: BTreeMap::new(),
        }
    }

    /// Ports with a running server.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Starts servers for new ports, stops those of ports no longer wanted and updates the
    /// endpoint counts. A port that cannot be bound is logged and retried on the next call.
    pub async fn sync(&mut self, wanted: &BTreeMap<u16, HealthCheck>) {
        {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            *table = wanted.clone();
        }
        let gone: Vec<u16> = self
            .servers
            .keys()
            .filter(|port| !wanted.contains_key(port))
            .copied()
            .collect();
        for port in gone {
            if let Some(server) = self.servers.remove(&port) {
                server.abort();
                tracing::info!(port, "stopped health check server");
            }
        }
        for (port, check) in wanted {
            if self.servers.contains_key(port) {
                continue;
            }
            let addr = SocketAddr::new(self.bind_ip, *port);
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, %addr, service = %check.name, "cannot open health check port");
                    continue;
                }
            };
            let state = ServerState {
                port: *port,
                table: self.table.clone(),
                health: self.health.clone(),
            };
            let router = Router::new().fallback(answer).with_state(state);
            let server = tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, %addr, "health check server stopped");
                }
            });
            tracing::info!(%addr, namespace = %check.namespace, service = %check.name, "started health check server");
            self.servers.insert(*port, server);
        }
    }
}

impl Drop for HealthCheckServers {
    fn drop(&mut self) {
        for server in self.servers.values() {
            server.abort();
        }
    }
}

/// Upstream's answer: JSON with the service, its local endpoint count and proxy health, the
/// count also in `X-Load-Balancing-Endpoint-Weight`.
async fn answer(State(state): State<ServerState>) -> Response {
    let check = {
        let table = state.table.lock().unwrap_or_else(|p| p.into_inner());
        table.get(&state.port).cloned()
    };
    let Some(check) = check else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let healthy = state.health.is_healthy();
    let body = render(&check, healthy);
    let code = if check.local_endpoints > 0 && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (code, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "x-load-balancing-endpoint-weight",
        HeaderValue::from(check.local_endpoints),
    );
    response
}

/// The body, laid out as upstream prints it.
fn render(check: &HealthCheck, healthy: bool) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        quote(&check.namespace),
        quote(&check.name),
        check.local_endpoints,
        healthy
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(port: u16) -> anyhow::Result<(u16, String, String)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        let code = reply
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let weight = reply
            .lines()
            .find_map(|l| l.strip_prefix("x-load-balancing-endpoint-weight: "))
            .unwrap_or_default()
            .to_string();
        let body = reply
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        Ok((code, weight, body))
    }

    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    #[tokio::test]
    async fn servers_follow_the_services_and_report_local_endpoints() -> anyhow::Result<()> {
        let health = Health::new(Duration::from_secs(60));
        health.updated();
        let mut servers = HealthCheckServers::new("127.0.0.1".parse()?, health);
        let port = free_port()?;
        let mut wanted = BTreeMap::from([(
            port,
            HealthCheck {
                namespace: "default".into(),
                name: "web".into(),
                local_endpoints: 2,
            },
        )]);
        servers.sync(&wanted).await;
        assert_eq!(servers.ports(), vec![port]);
        let (code, weight, body) = get(port).await?;
        assert_eq!((code, weight.as_str()), (200, "2"));
        assert_eq!(
            body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let json: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(json["localEndpoints"], 2);

        if let Some(check) = wanted.get_mut(&port) {
            check.local_endpoints = 0;
        }
        servers.sync(&wanted).await;
        let (code, weight, _) = get(port).await?;
        assert_eq!((code, weight.as_str()), (503, "0"));

        servers.sync(&BTreeMap::new()).await;
        assert!(servers.ports().is_empty());
        let mut closed = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "server still listening after its service went away");
        Ok(())
    }
}
