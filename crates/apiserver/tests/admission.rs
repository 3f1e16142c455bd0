//! The admission chain end to end on the in-process apiserver (upstream default plugins):
//! NamespaceLifecycle, LimitRanger defaults and max violations, PodSecurity enforce and warn
//! (the warning as the upstream kubectl prints it), ResourceQuota exceeded and concurrent
//! creates, DefaultTolerationSeconds, and the plugin flags.

use std::path::Path;

use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::{call, code, message};

const KUBECTL: &str = "/usr/bin/kubectl";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}})
}

async fn namespace(client: &kube::Client, name: &str, labels: Value) {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}});
    let r = call(client, "POST", "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code(&r), 200, "{r:?}");
}

#[tokio::test]
async fn namespace_lifecycle_guards_missing_terminating_and_immortal_namespaces(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/nope/pods",
        Some(pod("p")),
    )
    .await;
    assert_eq!(code(&r), 404);
    assert_eq!(message(&r), "namespaces \"nope\" not found");
    namespace(&admin, "doomed", json!({})).await;
    let r = call(&admin, "DELETE", "/api/v1/namespaces/doomed", None).await;
    assert_eq!(code(&r), 200, "{r:?}");
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/doomed/pods",
        Some(pod("p")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"p\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    for ns in ["default", "kube-system", "kube-public"] {
        let r = call(&admin, "DELETE", &format!("/api/v1/namespaces/{ns}"), None).await;
        assert_eq!(code(&r), 403);
        assert_eq!(
            message(&r),
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
    }
    Ok(())
}

#[tokio::test]
async fn limit_ranges_default_and_bound_container_resources() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    namespace(&admin, "lr", json!({})).await;
    let range = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"},
            "defaultRequest": {"cpu": "200m"}}]}});
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/lr/limitranges",
        Some(range),
    )
    .await?;
    assert_eq!(r["spec"]["limits"][0]["default"]["cpu"], "1");
    let created = call(
        &admin,
        "POST",
        "/api/v1/namespaces/lr/pods",
        Some(pod("small")),
    )
    .await?;
    let resources = &created["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "200m");
    assert_eq!(resources["limits"]["cpu"], "1");
    assert_eq!(
        created["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
    );
    let mut big = pod("big");
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}});
    let r = call(&admin, "POST", "/api/v1/namespaces/lr/pods", Some(big)).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
    Ok(())
}

async fn kubectl_create(kubeconfig: &Path, dir: &Path, object: &Value) -> (bool, String) {
    let file = dir.join("object.json");
    std::fs::write(&file, serde_json::to_vec(object).expect("json")).expect("write");
    let out = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("create")
        .arg("-f")
        .arg(&file)
        .output()
        .await
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn pod_security_enforces_and_warns_per_namespace_labels() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    namespace(
        &admin,
        "base",
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await;
    let mut privileged = pod("priv");
    privileged["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    privileged["spec"]["hostNetwork"] = json!(true);
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/base/pods",
        Some(privileged),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"
    );
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/base/pods",
        Some(pod("ok")),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");

    namespace(
        &admin,
        "strict",
        json!({"pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.32"}),
    )
    .await;
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/strict/pods",
        Some(pod("p")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert!(message(&r).starts_with(
        "pods \"p\" is forbidden: violates PodSecurity \"restricted:v1.32\": allowPrivilegeEscalation != false"
    ));
    let mut hardened = pod("hard");
    hardened["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    hardened["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/strict/pods",
        Some(hardened),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");

    namespace(
        &admin,
        "warned",
        json!({"pod-security.kubernetes.io/warn": "restricted"}),
    )
    .await;
    let mut p = pod("w");
    p["metadata"]["namespace"] = json!("warned");
    let (ok, stderr) = kubectl_create(&server.kubeconfig, server.dir(), &p).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{stderr}"
    );
    // Workloads are not refused, only warned, for both the enforce and the warn level.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "base"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"hostPID": true,
                    "containers": [{"name": "c", "image": "busybox:1.35"}]}}}});
    let (ok, stderr) = kubectl_create(&server.kubeconfig, server.dir(), &deployment).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostPID=true)"
        ),
        "{stderr}"
    );
    Ok(())
}

async fn quota(client: &kube::Client, ns: &str, hard: Value, used: Value) {
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": hard.clone()}});
    let r = call(
        client,
        "POST",
        &format!("/api/v1/namespaces/{ns}/resourcequotas"),
        Some(q),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let status = json!({"status": {"hard": hard, "used": used}});
    let r = call(
        client,
        "PATCH",
        &format!("/api/v1/namespaces/{ns}/resourcequotas/q/status"),
        Some(status),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
}

#[tokio::test]
async fn resource_quota_refuses_creates_past_hard_limits() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    namespace(&admin, "q", json!({})).await;
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "fresh"},
        "spec": {"hard": {"pods": "2"}}});
    call(
        &admin,
        "POST",
        "/api/v1/namespaces/q/resourcequotas",
        Some(q),
    )
    .await?;
    let r = call(&admin, "POST", "/api/v1/namespaces/q/pods", Some(pod("p0"))).await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"p0\" is forbidden: status unknown for quota: fresh, resources: pods"
    );
    call(
        &admin,
        "DELETE",
        "/api/v1/namespaces/q/resourcequotas/fresh",
        None,
    )
    .await?;

    quota(
        &admin,
        "q",
        json!({"pods": "2", "limits.cpu": "1"}),
        json!({"pods": "0", "limits.cpu": "0"}),
    )
    .await;
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/q/pods",
        Some(pod("nolimit")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"nolimit\" is forbidden: failed quota: q: must specify limits.cpu for: c"
    );
    let limited = |name: &str| {
        let mut p = pod(name);
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "400m"}});
        p
    };
    for name in ["p1", "p2"] {
        let r = call(
            &admin,
            "POST",
            "/api/v1/namespaces/q/pods",
            Some(limited(name)),
        )
        .await;
        assert_eq!(code(&r), 200, "{r:?}");
    }
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/q/pods",
        Some(limited("p3")),
    )
    .await;
    assert_eq!(code(&r), 403);
    assert_eq!(
        message(&r),
        "pods \"p3\" is forbidden: exceeded quota: q, requested: limits.cpu=400m,pods=1, used: limits.cpu=800m,pods=2, limited: limits.cpu=1,pods=2"
    );
    let q = call(&admin, "GET", "/api/v1/namespaces/q/resourcequotas/q", None).await?;
    assert_eq!(q["status"]["used"]["pods"], "2");
    assert_eq!(q["status"]["used"]["limits.cpu"], "800m");
    Ok(())
}

#[tokio::test]
async fn concurrent_creates_cannot_both_take_the_last_quota_unit() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    namespace(&admin, "qc", json!({})).await;
    quota(
        &admin,
        "qc",
        json!({"count/configmaps": "5"}),
        json!({"count/configmaps": "0"}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = admin.clone();
        tasks.push(tokio::spawn(async move {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm{i}")}});
            code(
                &call(
                    &client,
                    "POST",
                    "/api/v1/namespaces/qc/configmaps",
                    Some(cm),
                )
                .await,
            )
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await?);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 7, "{codes:?}");
    let q = call(
        &admin,
        "GET",
        "/api/v1/namespaces/qc/resourcequotas/q",
        None,
    )
    .await?;
    assert_eq!(q["status"]["used"]["count/configmaps"], "5");
    Ok(())
}

#[tokio::test]
async fn new_pods_tolerate_not_ready_and_unreachable_for_300_seconds() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let created = call(
        &admin,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("t")),
    )
    .await?;
    let tolerations = created["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert!(
            tolerations.iter().any(|t| t["key"] == key
                && t["effect"] == "NoExecute"
                && t["operator"] == "Exists"
                && t["tolerationSeconds"] == 300),
            "{tolerations:?}"
        );
    }
    // Disabled by flag: no tolerations added.
    let server = TestServer::start_with(|o| {
        o.disable_admission_plugins
            .push("DefaultTolerationSeconds".into())
    })
    .await?;
    let admin = server.client().await?;
    let created = call(
        &admin,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("t")),
    )
    .await?;
    assert!(created["spec"]["tolerations"]
        .as_array()
        .is_none_or(|t| t.is_empty()));
    Ok(())
}
