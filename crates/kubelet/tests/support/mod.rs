//! What the kubelet's integration tests share: polling until a condition holds, a kubelet on
//! fakes against the in-process apiserver, a TLS client for the kubelet's API, a private
//! containerd with the test images, and a whole real node (private containerd, CNI bridge,
//! in-process apiserver, kubelet). Each test binary uses only some of it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use kube_apiserver::testing::TestServer;
use kubelet::app::{start, Dependencies, RunningKubelet};
use kubelet::network::cni::{check_plugins, CniNetwork};
use kubelet::network::fake::FakeNetwork;
use kubelet::network::Network;
use kubelet::node::status::NodeConfig;
use kubelet::pod::files::DnsSettings;
use kubelet::pod::mounts::Mounter;
use kubelet::pod::PodSettings;
use kubelet::runtime::containerd::testing::{unavailable_reason, TestContainerd};
use kubelet::runtime::containerd::{ContainerdOptions, ContainerdRuntime};
use kubelet::runtime::fake::FakeRuntime;
use kubelet::runtime::ContainerRuntime;
use kubelet::server::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

/// The node name of the fake-runtime kubelets.
pub const NODE: &str = "node-0";

/// Where the CNI plugins are installed.
pub const CNI_BIN: &str = "/usr/lib/cni";

/// Polls `check` (every `interval`, for at most `timeout`) until it yields a value; panics
/// with `what` when time runs out.
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

/// Polls `check` every 100ms, for at most 30 seconds.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        check,
    )
    .await
}

/// Polls `check` every 200ms, for at most `seconds` (the real-node tests).
pub async fn eventually_secs<T, F, Fut>(what: &str, seconds: u64, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(
        what,
        Duration::from_secs(seconds),
        Duration::from_millis(200),
        check,
    )
    .await
}

/// An in-process apiserver and an admin client for it.
pub async fn apiserver() -> (TestServer, Client) {
    let server = TestServer::start().await.expect("apiserver");
    let client = server.client().await.expect("client");
    (server, client)
}

/// The events recorded about Node `node` (in `default`, where upstream's kubelet puts them),
/// oldest first, as `type reason: message`.
pub async fn node_events(client: &Client, node: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let Ok(list) = events.list(&Default::default()).await else {
        return Vec::new();
    };
    let mut items: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            let object = &e.involved_object;
            object.kind.as_deref() == Some("Node") && object.name.as_deref() == Some(node)
        })
        .collect();
    items.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

/// A fake runtime that has `busybox:1.35` and pulls any other image.
pub fn fake_runtime() -> Arc<FakeRuntime> {
    let runtime = Arc::new(FakeRuntime::with_auto_pull());
    runtime.add_image("busybox:1.35");
    runtime
}

/// The dependencies of a kubelet for [`NODE`] on `runtime`, a ready fake network and fake
/// mounts, with its files under `dir` ([`kubelet::testing::fake_dependencies`]), computing its
/// node status every `status_period`.
pub fn fake_dependencies(
    client: Client,
    runtime: Arc<FakeRuntime>,
    dir: &Path,
    status_period: Duration,
) -> Dependencies {
    let mut deps = kubelet::testing::fake_dependencies(
        client,
        runtime,
        Arc::new(FakeNetwork::ready_network()),
        NODE,
        dir,
    );
    deps.status_period = status_period;
    deps
}

/// The client side of a kubelet API test PKI (see [`write_pki`]).
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// A client certificate the CA signed (CN `kube-apiserver-kubelet-client`).
    pub client_cert: String,
    /// Its key.
    pub client_key: String,
}

impl Pki {
    /// A connector trusting the CA, presenting the client certificate if `with_cert`.
    pub fn connector(&self, with_cert: bool) -> TlsConnector {
        connector(
            &self.ca_pem,
            with_cert.then(|| (self.client_cert.clone(), self.client_key.clone())),
        )
    }
}

/// Writes a CA (`ca.crt`) and the kubelet's serving pair for `localhost` (`kubelet.crt`,
/// `kubelet.key`) into `dir`, and issues a client certificate from the CA.
pub fn write_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client cert");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
    std::fs::write(dir.join("kubelet.crt"), server.pem()).expect("write");
    std::fs::write(dir.join("kubelet.key"), server_key.serialize_pem()).expect("write");
    Pki {
        ca_pem: ca.pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A TLS connector trusting `ca_pem`, presenting `client` (certificate PEM, key PEM) if given.
pub fn connector(ca_pem: &str, client: Option<(String, String)>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca")).expect("add");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr`, verified as `localhost`.
pub async fn tls(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls")
}

/// GET `path` over TLS (with a bearer `token` if given): the status code and the body.
pub async fn get(
    addr: SocketAddr,
    connector: &TlsConnector,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let stream = tls(addr, connector).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// Builds the test images (`hack/images/build.sh`) into `out`; the busybox archive.
pub fn build_images(out: &Path) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/images/build.sh");
    let output = Command::new("bash").arg(&script).arg(out).output()?;
    if !output.status.success() {
        bail!(
            "build.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(out.join("busybox.tar"))
}

/// A runtime client of the private containerd.
pub async fn connect(containerd: &TestContainerd) -> Result<ContainerdRuntime> {
    Ok(ContainerdRuntime::connect(ContainerdOptions::new(
        containerd.endpoint(),
        containerd.state_dir(),
    ))
    .await?)
}

/// Ends a containerd scenario: prints the containerd log if it failed and removes whatever
/// containers it left behind.
pub async fn finish(
    runtime: &ContainerdRuntime,
    containerd: &TestContainerd,
    result: Result<()>,
) -> Result<()> {
    if result.is_err() {
        eprintln!("containerd log:\n{}", containerd.log());
    }
    if let Ok(containers) = runtime.list_containers().await {
        for c in containers {
            if let Err(error) = runtime.remove_container(&c.id).await {
                eprintln!("removing container {}: {error}", c.id);
            }
        }
    }
    result
}

/// The test images built under `work/images` (the busybox archive), a private containerd and
/// a runtime client of it.
pub async fn containerd_and_archive(
    work: &Path,
) -> Result<(PathBuf, TestContainerd, ContainerdRuntime)> {
    let archive = build_images(&work.join("images"))?;
    let containerd = TestContainerd::start()?;
    let runtime = connect(&containerd).await?;
    Ok((archive, containerd, runtime))
}

/// A private containerd with the test images (built under `dir/images`) imported.
pub async fn containerd_with_images(dir: &Path) -> (TestContainerd, Arc<dyn ContainerRuntime>) {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    build_images(&images).expect("build.sh");
    let containerd = TestContainerd::start().expect("containerd");
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(connect(&containerd).await.expect("connect"));
    kubelet::app::import_archives(runtime.as_ref(), &images).await;
    (containerd, runtime)
}

/// Why a real node cannot run here (no root, containerd, runc or CNI plugins), if it cannot.
pub fn real_node_unavailable() -> Option<String> {
    if let Some(reason) = unavailable_reason() {
        return Some(reason);
    }
    check_plugins(Path::new(CNI_BIN))
        .err()
        .map(|error| error.to_string())
}

/// Deletes a test bridge however the test ends.
pub struct BridgeGuard(pub &'static str);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        if let Err(error) = Command::new("ip").args(["link", "delete", self.0]).status() {
            eprintln!("deleting bridge {}: {error}", self.0);
        }
    }
}

/// A real node: the in-process apiserver, a private containerd with the test images, the CNI
/// bridge network and a kubelet whose serving certificate the apiserver trusts. Fields drop
/// in order: the kubelet first, the bridge last.
pub struct RealNode {
    /// The kubelet.
    pub kubelet: RunningKubelet,
    /// The CNI network.
    pub network: Arc<dyn Network>,
    /// The containerd runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// An admin client.
    pub client: Client,
    /// The apiserver.
    pub server: TestServer,
    /// The private containerd.
    pub containerd: TestContainerd,
    /// The bridge, deleted on drop.
    pub bridge: BridgeGuard,
}

/// How a [`RealNode`] is set up.
pub struct RealNodeConfig {
    /// The node's name.
    pub name: &'static str,
    /// Its CNI bridge (unique per test binary).
    pub bridge: &'static str,
    /// Its pod CIDR (unique per test binary).
    pub subnet: &'static str,
    /// How volumes are mounted.
    pub mounter: Arc<dyn Mounter>,
}

impl RealNode {
    /// Starts everything with the files under `dir`, sets the node's pod CIDR (as node IPAM
    /// would) and waits for the network to be configured.
    pub async fn start(dir: &Path, config: RealNodeConfig) -> RealNode {
        let bridge = BridgeGuard(config.bridge);
        let (containerd, runtime) = containerd_with_images(dir).await;
        let (server, client) = apiserver().await;
        let network: Arc<dyn Network> = Arc::new(
            CniNetwork::new(CNI_BIN.into(), &dir.join("root/cni")).with_bridge(config.bridge),
        );
        let node_ip = "127.0.0.1".parse().expect("ip");
        // A serving certificate the apiserver trusts.
        let (cert_pem, key_pem) = server
            .pki
            .issue(config.name, &[], &["127.0.0.1", config.name])
            .expect("kubelet cert");
        let kubelet_cert = dir.join("kubelet.crt");
        let kubelet_key = dir.join("kubelet.key");
        std::fs::write(&kubelet_cert, cert_pem).expect("write cert");
        std::fs::write(&kubelet_key, key_pem).expect("write key");
        // The apiserver reaches the kubelet at the port the node status reports: a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let kubelet = start(Dependencies {
            client: client.clone(),
            runtime: runtime.clone(),
            network: network.clone(),
            node: NodeConfig {
                name: config.name.into(),
                node_ip,
                port,
                max_pods: 110,
            },
            pods: PodSettings {
                node_name: config.name.into(),
                node_ip,
                root_dir: dir.join("root"),
                pod_logs_dir: dir.join("logs"),
                dns: DnsSettings {
                    cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
                    cluster_domain: "cluster.local".into(),
                    host_resolv_conf: String::new(),
                },
            },
            api_addr: SocketAddr::new(node_ip, port),
            tls: TlsFiles {
                cert: Some(kubelet_cert),
                key: Some(kubelet_key),
                // The test apiserver presents no client certificate: trust every caller.
                client_ca: None,
                self_signed_names: vec![],
            },
            status_period: Duration::from_secs(10),
            status_report_period: Duration::from_secs(300),
            mounter: config.mounter,
        })
        .await
        .expect("kubelet");
        let subnet = config.subnet;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                config.name,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"spec": {"podCIDR": subnet, "podCIDRs": [subnet]}}),
                ),
            )
            .await
            .expect("set pod CIDR");
        eventually_secs("network configured", 10, || {
            let network = network.clone();
            async move { network.ready().then_some(()) }
        })
        .await;
        RealNode {
            kubelet,
            network,
            runtime,
            client,
            server,
            containerd,
            bridge,
        }
    }
}

/// The pod `web` (one container `c`, busybox) bound to node `n1`, with a fixed uid.
pub fn web_pod() -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("0a1b2c3d-4e5f-6789-abcd-ef0123456789".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1.35".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Serves the kubelet API over TLS (a certificate from `server`'s PKI, written under `dir`) for
/// `pod` on `runtime`, registers node `n1` pointing at it and creates `pod` in the apiserver as
/// Running, so the apiserver proxies the pod's subresources to this kubelet. `containers` maps
/// container names to runtime ids.
pub async fn serve_node_with_pod(
    server: &TestServer,
    dir: &Path,
    runtime: Arc<FakeRuntime>,
    pod: k8s_openapi::api::core::v1::Pod,
    containers: std::collections::BTreeMap<String, String>,
) -> SocketAddr {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PostParams;
    use kubelet::pod::{PodEntry, PodStore};
    use kubelet::server::{serve, ServerState};

    let (cert, key) = server
        .pki
        .issue("kubelet", &[], &["127.0.0.1"])
        .expect("kubelet cert");
    std::fs::write(dir.join("kubelet.crt"), cert).expect("write");
    std::fs::write(dir.join("kubelet.key"), key).expect("write");
    std::fs::write(dir.join("ca.crt"), &server.pki.ca_pem).expect("write");
    let store = PodStore::new();
    store.upsert(
        pod.metadata.uid.as_deref().unwrap_or_default(),
        PodEntry {
            pod: pod.clone(),
            containers,
        },
    );
    let files = TlsFiles {
        cert: Some(dir.join("kubelet.crt")),
        key: Some(dir.join("kubelet.key")),
        client_ca: Some(dir.join("ca.crt")),
        self_signed_names: vec![],
    };
    let kubelet = serve(
        "127.0.0.1:0".parse().expect("addr"),
        &files,
        ServerState {
            store,
            runtime,
            pod_logs_dir: dir.join("logs"),
        },
    )
    .await
    .expect("kubelet serve");

    let client = server.client().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port()}}}})),
        )
        .await
        .expect("node status");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut api_pod = pod;
    api_pod.metadata.uid = None;
    pods.create(&PostParams::default(), &api_pod)
        .await
        .expect("create pod");
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");
    kubelet
}
