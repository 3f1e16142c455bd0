//! `--authorization-mode=RBAC` end to end on the in-process apiserver: the bootstrap policy lets
//! the admin (system:masters), a scheduler-like, a kubelet-like, a kube-proxy-like and a
//! controller-manager-like client do their jobs; an unprivileged user gets the upstream 403; a
//! RoleBinding grants exactly its verbs; escalation is refused; aggregated ClusterRoles fill in;
//! the access reviews and the upstream `kubectl auth can-i` answer accordingly.

use std::path::Path;
use std::time::Duration;

use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::{code, message};

const KUBECTL: &str = "/usr/bin/kubectl";

async fn client_for(
    server: &TestServer,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    let path = server.kubeconfig_for(user, groups)?;
    Ok(component_base::client::from_kubeconfig(Some(&path)).await?)
}

async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, kube::Error> {
    let body = body
        .map(|b| serde_json::to_vec(&b).expect("json"))
        .unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let text = client.request_text(request).await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Retries `f` until it gives `want` (the RBAC index follows storage through a watch).
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

async fn rbac_server() -> anyhow::Result<TestServer> {
    Ok(
        TestServer::start_with(|o| o.authorization_mode = vec!["Node".into(), "RBAC".into()])
            .await?,
    )
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
}

#[tokio::test]
async fn components_can_do_their_jobs_and_strangers_get_403() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let admin = server.client().await?;
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(
        code(&call(&admin, "POST", pods, Some(pod("p1"))).await),
        200
    );

    // kubelet-like: registers its Node, updates status, reads pods, heartbeats a Lease.
    let kubelet = client_for(&server, "system:node:n1", &["system:nodes"]).await?;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    assert_eq!(
        code(&call(&kubelet, "POST", "/api/v1/nodes", Some(node)).await),
        200
    );
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let r = call(&kubelet, "PATCH", "/api/v1/nodes/n1/status", Some(status)).await;
    assert!(code(&r) == 200 || code(&r) == 415, "{r:?}");
    assert_eq!(
        code(
            &call(
                &kubelet,
                "GET",
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
                None
            )
            .await
        ),
        200
    );
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    assert_eq!(
        code(&call(&kubelet, "POST", leases, Some(lease)).await),
        200
    );
    assert_eq!(
        code(&call(&kubelet, "DELETE", "/api/v1/nodes/n1", None).await),
        403
    );

    // scheduler-like: lists nodes and pods, binds a pod, records an event.
    let scheduler = client_for(&server, "system:kube-scheduler", &[]).await?;
    assert_eq!(
        code(&call(&scheduler, "GET", "/api/v1/nodes", None).await),
        200
    );
    assert_eq!(
        code(&call(&scheduler, "GET", "/api/v1/pods?watch=false", None).await),
        200
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
        "target": {"kind": "Node", "name": "n1"}});
    let r = call(
        &scheduler,
        "POST",
        &format!("{pods}/p1/binding"),
        Some(binding),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p1.1"},
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default"},
        "reason": "Scheduled", "message": "bound", "type": "Normal"});
    let r = call(
        &scheduler,
        "POST",
        "/api/v1/namespaces/default/events",
        Some(event),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    assert_eq!(
        code(
            &call(
                &scheduler,
                "GET",
                "/api/v1/namespaces/default/secrets",
                None
            )
            .await
        ),
        403
    );

    // kube-proxy-like and controller-manager-like.
    let proxy = client_for(&server, "system:kube-proxy", &[]).await?;
    assert_eq!(
        code(&call(&proxy, "GET", "/api/v1/services", None).await),
        200
    );
    assert_eq!(
        code(
            &call(
                &proxy,
                "GET",
                "/apis/discovery.k8s.io/v1/endpointslices",
                None
            )
            .await
        ),
        200
    );
    let cm = client_for(&server, "system:kube-controller-manager", &[]).await?;
    assert_eq!(
        code(&call(&cm, "GET", "/apis/apps/v1/replicasets", None).await),
        200
    );
    assert_eq!(
        code(&call(&cm, "DELETE", &format!("{pods}/p1"), None).await),
        200
    );

    // A stranger: discovery works, resources are forbidden with the upstream wording.
    let alice = client_for(&server, "alice", &[]).await?;
    assert_eq!(code(&call(&alice, "GET", "/apis", None).await), 200);
    let r = call(&alice, "GET", pods, None).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let r = call(&alice, "GET", "/api/v1/nodes/n1", None).await;
    assert_eq!(
        message(&r),
        "nodes \"n1\" is forbidden: User \"alice\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
    );
    assert_eq!(code(&call(&alice, "GET", "/metrics", None).await), 403);
    Ok(())
}

#[tokio::test]
async fn bindings_grant_exactly_their_verbs_and_escalation_is_refused() -> anyhow::Result<()> {
    let server = rbac_server().await?;
    let admin = server.client().await?;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]});
    let r = call(
        &admin,
        "POST",
        &format!("{rbac}/namespaces/default/roles"),
        Some(role),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "alice"}]});
    let r = call(
        &admin,
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(rb),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let alice = client_for(&server, "alice", &[]).await?;
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(
        code(&eventually(200, || call(&alice, "GET", pods, None)).await),
        200
    );
    assert_eq!(code(&call(&alice, "POST", pods, Some(pod("x"))).await), 403);
    assert_eq!(
        code(&call(&alice, "GET", "/api/v1/namespaces/kube-system/pods", None).await),
        403
    );

    // Aggregation: `admin` collects the rules of edit, view and system:aggregate-to-*.
    let mut admin_role = Value::Null;
    for _ in 0..100 {
        admin_role = call(&admin, "GET", &format!("{rbac}/clusterroles/admin"), None).await?;
        if admin_role["rules"].as_array().map(Vec::len).unwrap_or(0) > 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rules = admin_role["rules"].to_string();
    assert!(
        rules.contains("rolebindings")
            && rules.contains("deployments")
            && rules.contains("secrets")
    );

    // bob administers `default` (admin ClusterRole through a RoleBinding).
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bob-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "bob"}]});
    let r = call(
        &admin,
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(rb),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let bob = client_for(&server, "bob", &[]).await?;
    let roles = format!("{rbac}/namespaces/default/roles");
    let ok_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    let r = eventually(200, || call(&bob, "POST", &roles, Some(ok_role.clone()))).await;
    assert_eq!(code(&r), 200, "{r:?}");
    let bad_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "all"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    let r = call(&bob, "POST", &roles, Some(bad_role)).await;
    assert_eq!(code(&r), 403, "{r:?}");
    assert!(message(&r).contains("attempting to grant RBAC permissions not currently held"));
    let bad_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bob-root"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": "bob"}]});
    let r = call(
        &bob,
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(bad_binding),
    )
    .await;
    assert_eq!(code(&r), 403, "{r:?}");

    // Access reviews.
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}});
    let r = call(
        &alice,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(ssar),
    )
    .await?;
    assert_eq!(r["status"]["allowed"], json!(true));
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {"verb": "delete", "resource": "pods", "namespace": "default"}}});
    let r = call(
        &admin,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(sar.clone()),
    )
    .await?;
    assert_eq!(r["status"]["allowed"], json!(false));
    assert_eq!(
        code(
            &call(
                &alice,
                "POST",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                Some(sar)
            )
            .await
        ),
        403
    );

    // The upstream kubectl.
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping kubectl auth can-i: {KUBECTL} not installed");
        return Ok(());
    }
    let kubeconfig = server.kubeconfig_for("alice", &[])?;
    let can_i = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("auth")
            .arg("can-i")
            .args(args);
        async move { cmd.output().await }
    };
    let out = can_i(&["list", "pods"]).await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = can_i(&["delete", "pods"]).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert!(!out.status.success());
    let out = can_i(&["list", "pods", "-n", "kube-system"]).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let out = can_i(&["--list"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("pods") && text.contains("selfsubjectaccessreviews"),
        "{text}"
    );
    let admin_can = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["auth", "can-i", "*", "*"])
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&admin_can.stdout).trim(), "yes");
    Ok(())
}

#[tokio::test]
async fn unknown_modes_are_refused() {
    let r = TestServer::start_with(|o| o.authorization_mode = vec!["Bogus".into()]).await;
    assert!(r.is_err());
}

#[tokio::test]
async fn always_deny_forbids_even_reviews() -> anyhow::Result<()> {
    let server =
        TestServer::start_with(|o| o.authorization_mode = vec!["AlwaysDeny".into()]).await?;
    let alice = client_for(&server, "alice", &[]).await?;
    assert_eq!(
        code(&call(&alice, "GET", "/api/v1/namespaces/default/pods", None).await),
        403
    );
    // system:masters is always allowed, as upstream.
    let admin = server.client().await?;
    assert_eq!(
        code(&call(&admin, "GET", "/api/v1/namespaces/default/pods", None).await),
        200
    );
    Ok(())
}
