//! Node IPAM against an in-process apiserver: nodes registering together each get a subnet of
//! their own, and a node that finds none left stays without one.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;

mod support;

use support::wait_for;

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(60);

/// Nodes whose `spec.podCIDR` is set, with it; fails when `podCIDRs` disagrees.
async fn assigned(nodes: &Api<Node>) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for node in nodes.list(&ListParams::default()).await?.items {
        let spec = node.spec.unwrap_or_default();
        if let Some(cidr) = spec.pod_cidr {
            anyhow::ensure!(
                spec.pod_cidrs.as_deref() == Some(std::slice::from_ref(&cidr)),
                "podCIDRs of {:?} disagree with podCIDR {cidr}",
                node.metadata.name
            );
            out.push((node.metadata.name.unwrap_or_default(), cidr));
        }
    }
    Ok(out)
}

/// Creates Node `name` as a kubelet registers it (no status yet).
async fn register(nodes: &Api<Node>, name: String) -> anyhow::Result<()> {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    nodes.create(&PostParams::default(), &node).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_registering_together_get_distinct_subnets_until_none_is_left() -> anyhow::Result<()>
{
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    // 10.244.0.0/20 holds 16 subnets of /24.
    kube_controller_manager::testing::start(
        client.clone(),
        Settings {
            cluster_cidr: Some("10.244.0.0/20".parse()?),
            allocate_node_cidrs: true,
            ..Settings::default()
        },
        &["nodeipam"],
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let created =
        futures::future::join_all((0..16).map(|i| register(&nodes, format!("node-{i}")))).await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    wait_for(WAIT, "16 nodes with a podCIDR", || async {
        Ok(assigned(&nodes).await?.len() == 16)
    })
    .await?;
    let cidrs: HashSet<String> = assigned(&nodes)
        .await?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    let want: HashSet<String> = (0..16).map(|i| format!("10.244.{i}.0/24")).collect();
    assert_eq!(cidrs, want, "each node has a subnet of its own");

    // The 17th node finds the range exhausted and stays without a subnet.
    register(&nodes, "node-16".to_string()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = nodes.get("node-16").await?;
    assert_eq!(late.spec.and_then(|s| s.pod_cidr), None);
    assert_eq!(assigned(&nodes).await?.len(), 16);
    Ok(())
}
