//! kube-proxy's watch-and-sync loop against a fake apiserver, with the recording nft fake: a
//! Service without endpoints is rejected, and an EndpointSlice arriving over the watch leads to
//! an incremental transaction with the DNAT; the Node watch brings the node's addresses.

mod fake_apiserver;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube_proxy::conntrack::RecordingConntrack;
use kube_proxy::nft::RecordingNftables;

async fn wait_for(fake: &RecordingNftables, needle: &str) -> anyhow::Result<Vec<String>> {
    for _ in 0..100 {
        let scripts = fake.scripts();
        if scripts.iter().any(|s| s.contains(needle)) {
            return Ok(scripts);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("no script contains {needle:?}: {:#?}", fake.scripts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_drive_syncs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let api = fake_apiserver::FakeApiserver::default();
    api.collection(
        "/api/v1/services",
        "ServiceList",
        vec![serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80, "protocol": "UDP"}]}
        })],
    );
    api.collection(
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSliceList",
        vec![],
    );
    api.collection(
        "/api/v1/nodes",
        "NodeList",
        vec![serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-a", "resourceVersion": "1",
                         "labels": {"topology.kubernetes.io/zone": "z1"}},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "192.0.2.77"},
                {"type": "Hostname", "address": "node-a"}
            ]}
        })],
    );
    let kubeconfig = api.start(dir.path()).await?;

    let options = kube_proxy::Options::try_parse_from([
        "kube-proxy",
        "--kubeconfig",
        kubeconfig.to_str().unwrap_or_default(),
        "--cluster-cidr",
        "10.244.0.0/16",
        "--hostname-override",
        "node-a",
        "--healthz-bind-address",
        "127.0.0.1:0",
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--min-sync-period",
        "10ms",
    ])?;
    let nft = RecordingNftables::new();
    let conntrack = RecordingConntrack::default();
    let proxy = tokio::spawn(kube_proxy::run_with(
        options,
        Arc::new(nft.clone()),
        Arc::new(conntrack.clone()),
    ));

    let scripts = wait_for(&nft, "10.96.0.20 . udp . 80 : goto reject-chain").await?;
    assert!(
        scripts[0].contains("delete table ip kube-proxy"),
        "first sync recreates"
    );

    api.event(
        "/apis/discovery.k8s.io/v1/endpointslices",
        "ADDED",
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "2",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 8080, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}}]
        }),
    );
    // The fast path: the endpoint is an element of the `service-endpoints` map.
    let scripts = wait_for(&nft, "10.96.0.20 . udp . 80 . 0 : 10.244.0.5 . 8080").await?;
    let last = scripts.last().map(String::as_str).unwrap_or_default();
    assert!(
        !last.contains("delete table"),
        "later syncs are incremental: {last}"
    );
    assert!(last
        .contains("delete element ip kube-proxy no-endpoint-services { 10.96.0.20 . udp . 80 }"));
    // The flush follows the apply; give it a moment.
    for _ in 0..100 {
        if !conntrack.flushes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        conntrack.flushes(),
        vec![kube_proxy::conntrack::Flush::Destination {
            ip: "10.96.0.20".parse()?,
            port: 80
        }],
        "UDP service that got its first endpoint has its stale flows cleared"
    );
    // The Node watch: NodePorts answer on the node's InternalIP (and localhost); unallocated
    // IPs of the default service range are dropped.
    let scripts = wait_for(&nft, "192.0.2.77").await?;
    let all = scripts.join("");
    assert!(all.contains("127.0.0.1"), "{all}");
    assert!(all.contains("ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"));
    assert!(all.contains("cluster-ips-check ip daddr 10.96.0.0/12 drop"));
    proxy.abort();
    Ok(())
}
