//! Proxies to the kubelet: `pods/log` (streamed) and `pods/exec|attach|portforward` (the
//! WebSocket/SPDY upgrade is forwarded to the kubelet over TLS, its `101` relayed to the client,
//! then bytes are copied both ways).
//!
//! The kubelet is found at the node's `InternalIP` and `status.daemonEndpoints.kubeletEndpoint`
//! port (10250 by default), authenticated with `--kubelet-client-certificate/-key` and verified
//! against `--kubelet-certificate-authority`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::handlers::{read, Ctx};
use crate::objects;
use crate::request::encode;
use crate::status::ApiError;

/// Headers that describe the upgrade and are forwarded both ways.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "x-stream-protocol-version",
    "x-accepted-stream-protocol-version",
];

fn containers(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request addresses (the only one when not named).
fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let main = containers(pod, "containers");
    let init = containers(pod, "initContainers");
    let ephemeral = containers(pod, "ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if main.iter().chain(&init).chain(&ephemeral).any(|x| x == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if main.len() == 1 => Ok(main[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where a node's kubelet listens.
async fn kubelet_of(ctx: &Ctx, pod: &Value, pod_name: &str) -> Result<(IpAddr, u16), ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {pod_name} does not have a host assigned"))
        })?;
    let nodes = api_types::registry::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
    let kv = ctx
        .state
        .storage
        .get(&objects::key(nodes, None, node_name))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("nodes", "", node_name))?;
    let node = objects::decode(&kv)?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                .and_then(|x| x.get("address").and_then(Value::as_str))
        })
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no InternalIP address")))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Ok((address, port))
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Opens an HTTP/1.1 connection to a kubelet over TLS.
async fn connect(ctx: &Ctx, address: IpAddr, port: u16) -> Result<Sender, ApiError> {
    let tls = ctx
        .state
        .kubelet_tls
        .clone()
        .ok_or_else(|| ApiError::unavailable("the apiserver has no kubelet client certificate configured (--kubelet-client-certificate)"))?;
    let tcp = tokio::net::TcpStream::connect((address, port))
        .await
        .map_err(|e| ApiError::internal(format!("dialing kubelet {address}:{port}: {e}")))?;
    let server_name = rustls_pki_types::ServerName::IpAddress(address.into());
    let stream = TlsConnector::from(Arc::clone(&tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| ApiError::internal(format!("TLS to kubelet {address}:{port}: {e}")))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::internal(format!("HTTP to kubelet {address}:{port}: {e}")))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "kubelet connection ended");
        }
    });
    Ok(sender)
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// GET `pods/<name>/log`.
pub async fn logs(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let (pod, _) = read::load(ctx, &name).await?;
    let container = container_of(&pod, &name, ctx.query.get("container"))?;
    let (address, port) = kubelet_of(ctx, &pod, &name).await?;
    let namespace = ctx.path.namespace.clone().unwrap_or_default();
    let pairs: Vec<(String, String)> = ctx
        .query
        .pairs()
        .into_iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "follow"
                    | "tailLines"
                    | "timestamps"
                    | "sinceSeconds"
                    | "sinceTime"
                    | "limitBytes"
                    | "previous"
            )
        })
        .collect();
    let uri = format!(
        "/containerLogs/{}/{}/{}?{}",
        encode(&namespace),
        encode(&name),
        encode(&container),
        query_string(&pairs)
    );
    let mut sender = connect(ctx, address, port).await?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::HOST, format!("{address}:{port}"))
        .body(http_body_util::Empty::new())
        .map_err(ApiError::internal)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::internal(format!("kubelet log request: {e}")))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static("text/plain"));
    if !status.is_success() {
        use http_body_util::BodyExt;
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(ApiError {
            code: status.as_u16(),
            reason: if status == StatusCode::NOT_FOUND {
                "NotFound"
            } else {
                "BadRequest"
            },
            message: String::from_utf8_lossy(&body).trim().to_string(),
            details: None,
        });
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::new(response.into_body()))
        .map_err(ApiError::internal)
}

fn copy_upgrade_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in UPGRADE_HEADERS {
        for value in from.get_all(*name) {
            to.append(http::HeaderName::from_static(name), value.clone());
        }
    }
}

/// The kubelet's `port` parameters for a `pods/portforward` query: `ports=80,8080` (what
/// `PodPortForwardOptions` calls them) becomes `port=80&port=8080`, as upstream sends them.
fn kubelet_ports(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(k, _)| k == "ports" || k == "port")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| ("port".to_string(), p.to_string()))
        .collect()
}

/// `pods/<name>/exec|attach|portforward`: forwards the upgrade to the kubelet. Port-forward
/// passes every transport through unchanged: plain SPDY (`Upgrade: SPDY/3.1`), SPDY tunnelled
/// over WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.32's default; our kubelet accepts
/// it directly, where upstream's apiserver would translate it to SPDY) and the WebSocket
/// channel protocol (`v4.channel.k8s.io`, kube-rs).
pub async fn upgrade(
    ctx: &Ctx,
    sub: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let (pod, _) = read::load(ctx, &name).await?;
    let namespace = ctx.path.namespace.clone().unwrap_or_default();
    let (address, port) = kubelet_of(ctx, &pod, &name).await?;
    let uri = if sub == "portforward" {
        format!(
            "/portForward/{}/{}?{}",
            encode(&namespace),
            encode(&name),
            query_string(&kubelet_ports(&ctx.query.pairs()))
        )
    } else {
        let container = container_of(&pod, &name, ctx.query.get("container"))?;
        let pairs: Vec<(String, String)> = ctx
            .query
            .pairs()
            .into_iter()
            .filter(|(k, _)| k != "container")
            .collect();
        format!(
            "/{sub}/{}/{}/{}?{}",
            encode(&namespace),
            encode(&name),
            encode(&container),
            query_string(&pairs)
        )
    };
    if !req.headers().contains_key(header::UPGRADE) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let mut sender = connect(ctx, address, port).await?;
    let mut forward = Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .header(header::HOST, format!("{address}:{port}"))
        .body(http_body_util::Empty::new())
        .map_err(ApiError::internal)?;
    copy_upgrade_headers(req.headers(), forward.headers_mut());
    let mut upstream = sender
        .send_request(forward)
        .await
        .map_err(|e| ApiError::internal(format!("kubelet {sub} request: {e}")))?;
    let status = upstream.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        use http_body_util::BodyExt;
        let body = upstream
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut response = Response::builder()
            .status(status)
            .body(Body::from(body))
            .map_err(ApiError::internal)?;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        return Ok(response);
    }
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    copy_upgrade_headers(upstream.headers(), response.headers_mut());
    let client_upgrade = hyper::upgrade::on(&mut req);
    let kubelet_upgrade = hyper::upgrade::on(&mut upstream);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::try_join!(client_upgrade, kubelet_upgrade) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut kubelet = TokioIo::new(kubelet);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!(%error, "stream proxy ended");
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_the_default() {
        let pod = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container_of(&pod, "p", None).expect("default"), "web");
    }

    #[test]
    fn portforward_ports_become_kubelet_port_parameters() {
        let pairs = vec![
            ("ports".to_string(), "80,8080".to_string()),
            ("timeout".to_string(), "1s".to_string()),
        ];
        assert_eq!(
            kubelet_ports(&pairs),
            vec![
                ("port".to_string(), "80".to_string()),
                ("port".to_string(), "8080".to_string())
            ]
        );
    }

    #[test]
    fn several_containers_need_a_name() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "i"}]}});
        let e = container_of(&pod, "p", None).expect_err("ambiguous");
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]");
        assert!(container_of(&pod, "p", Some("zz")).is_err());
        assert_eq!(container_of(&pod, "p", Some("i")).expect("init"), "i");
    }
}
