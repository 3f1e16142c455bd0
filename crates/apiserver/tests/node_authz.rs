//! The Node authorizer and NodeRestriction admission end to end on the in-process apiserver
//! (`--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction`): a kubelet's
//! client certificate (`system:node:<name>`, O=`system:nodes`) reads a secret used by a pod on
//! its node but not one used only on another node, changes its own Node but not another's nor
//! restricted labels, updates the status of its own pods only, creates only mirror pods and
//! only its own Lease.

use std::time::Duration;

use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::{call, code, message};

async fn client_for(
    server: &TestServer,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    let path = server.kubeconfig_for(user, groups)?;
    Ok(component_base::client::from_kubeconfig(Some(&path)).await?)
}

/// Retries `f` until it answers `want` (the graph follows storage through a watch).
async fn eventually<F, Fut>(want: u16, mut f: F) -> Result<Value, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, kube::Error>>,
{
    let mut last = f().await;
    for _ in 0..100 {
        if code(&last) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = f().await;
    }
    last
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": {"k": "v"}})
}

fn pod_on(name: &str, node: &str, secret: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node,
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
            "containers": [{"name": "c", "image": "busybox:1.35"}]}})
}

async fn server() -> anyhow::Result<TestServer> {
    Ok(TestServer::start_with(|o| {
        o.authorization_mode = vec!["Node".into(), "RBAC".into()];
        o.enable_admission_plugins = vec!["NodeRestriction".into()];
    })
    .await?)
}

#[tokio::test]
async fn a_node_reads_only_secrets_of_its_own_pods() -> anyhow::Result<()> {
    let server = server().await?;
    let admin = server.client().await?;
    let ns = "/api/v1/namespaces/default";
    for s in ["s1", "s2", "unused"] {
        assert_eq!(
            code(&call(&admin, "POST", &format!("{ns}/secrets"), Some(secret(s))).await),
            200
        );
    }
    for (p, n, s) in [("pa", "n1", "s1"), ("pb", "n2", "s2")] {
        let r = call(&admin, "POST", &format!("{ns}/pods"), Some(pod_on(p, n, s))).await;
        assert_eq!(code(&r), 200, "{r:?}");
    }
    let n1 = client_for(&server, "system:node:n1", &["system:nodes"]).await?;
    let n2 = client_for(&server, "system:node:n2", &["system:nodes"]).await?;
    let r = eventually(200, || {
        call(&n1, "GET", "/api/v1/namespaces/default/secrets/s1", None)
    })
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = eventually(200, || {
        call(&n2, "GET", "/api/v1/namespaces/default/secrets/s2", None)
    })
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(&n1, "GET", "/api/v1/namespaces/default/secrets/s2", None).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "secrets \"s2\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"
    );
    let r = call(
        &n1,
        "GET",
        "/api/v1/namespaces/default/secrets/unused",
        None,
    )
    .await;
    assert_eq!(code(&r), 403);
    let r = call(&n1, "GET", "/api/v1/namespaces/default/secrets", None).await;
    assert_eq!(code(&r), 403);
    // Pods may be listed and watched (NodeRestriction and field selectors limit, as upstream).
    let r = call(
        &n1,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        None,
    )
    .await;
    assert_eq!(code(&r), 200);
    // Once the pod is gone, so is the access.
    let r = call(
        &admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/pa?gracePeriodSeconds=0",
        None,
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = eventually(403, || {
        call(&n1, "GET", "/api/v1/namespaces/default/secrets/s1", None)
    })
    .await;
    assert_eq!(code(&r), 403);
    // Other identities are untouched by the Node authorizer: a plain user gets nothing.
    let alice = client_for(&server, "alice", &[]).await?;
    let r = call(&alice, "GET", "/api/v1/namespaces/default/secrets/s2", None).await;
    assert_eq!(code(&r), 403);
    Ok(())
}

#[tokio::test]
async fn a_node_changes_only_its_own_node_leases_and_pods() -> anyhow::Result<()> {
    let server = server().await?;
    let admin = server.client().await?;
    let n1 = client_for(&server, "system:node:n1", &["system:nodes"]).await?;
    let node = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
        "labels": {"kubernetes.io/hostname": name}}})
    };
    assert_eq!(
        code(&call(&n1, "POST", "/api/v1/nodes", Some(node("n1"))).await),
        200
    );
    let r = call(&n1, "POST", "/api/v1/nodes", Some(node("n3"))).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "nodes \"n3\" is forbidden: node \"n1\" is not allowed to modify node \"n3\""
    );
    assert_eq!(
        code(&call(&admin, "POST", "/api/v1/nodes", Some(node("n2"))).await),
        200
    );
    let label = |k: &str| json!({"metadata": {"labels": {k: "x"}}});
    let r = call(
        &n1,
        "PATCH",
        "/api/v1/nodes/n2",
        Some(label("example.com/a")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
    );
    let r = call(
        &n1,
        "PATCH",
        "/api/v1/nodes/n1",
        Some(label("example.com/a")),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(
        &n1,
        "PATCH",
        "/api/v1/nodes/n1",
        Some(label("node-role.kubernetes.io/control-plane")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify labels: node-role.kubernetes.io/control-plane"
    );
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let r = call(
        &n1,
        "PATCH",
        "/api/v1/nodes/n1/status",
        Some(status.clone()),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(&n1, "PATCH", "/api/v1/nodes/n2/status", Some(status)).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        code(&call(&n1, "DELETE", "/api/v1/nodes/n2", None).await),
        403
    );

    // Pods: status of its own pods only; no regular pods; deletes only of its own pods.
    let ns = "/api/v1/namespaces/default/pods";
    let plain = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name}, "spec": {"nodeName": node,
            "containers": [{"name": "c", "image": "busybox:1.35"}]}})
    };
    for (p, n) in [("mine", "n1"), ("theirs", "n2")] {
        assert_eq!(
            code(&call(&admin, "POST", ns, Some(plain(p, n))).await),
            200
        );
    }
    let running = json!({"status": {"phase": "Running"}});
    let r = call(
        &n1,
        "PATCH",
        &format!("{ns}/mine/status"),
        Some(running.clone()),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(&n1, "PATCH", &format!("{ns}/theirs/status"), Some(running)).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"theirs\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
    );
    let r = call(&n1, "POST", ns, Some(plain("made", "n1"))).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"made\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"
    );
    let mut mirror = plain("mirror", "n1");
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    let r = call(&n1, "POST", ns, Some(mirror)).await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(&n1, "DELETE", &format!("{ns}/theirs"), None).await;
    assert_eq!(code(&r), 403);
    let r = call(&n1, "DELETE", &format!("{ns}/mine"), None).await;
    assert_eq!(code(&r), 200, "{r:?}");

    // Leases: its own, in kube-node-lease.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name}, "spec": {"holderIdentity": name}})
    };
    assert_eq!(
        code(&call(&n1, "POST", leases, Some(lease("n1"))).await),
        200
    );
    assert_eq!(
        code(&call(&n1, "POST", leases, Some(lease("n2"))).await),
        403
    );
    assert_eq!(
        code(&call(&n1, "GET", &format!("{leases}/n1"), None).await),
        200
    );
    assert_eq!(
        code(&call(&admin, "POST", leases, Some(lease("n2"))).await),
        200
    );
    assert_eq!(
        code(&call(&n1, "GET", &format!("{leases}/n2"), None).await),
        403
    );
    Ok(())
}
