//! The "Done" list of the security issue, the items not already proven elsewhere, on the
//! in-process apiserver with `--authorization-mode=Node,RBAC`:
//! no credentials get the upstream 401 `Status` on every kind of path; a RoleBinding grants
//! exactly its verbs (every verb of every resource, in and out of its namespace, tried for
//! real); the upstream `kubectl auth can-i`, asked by the user herself (SelfSubjectAccessReview)
//! and by the admin with `--as` (SubjectAccessReview), answers exactly what the requests then
//! do; refusals carry the upstream message. PodSecurity also judges significant pod updates
//! (a new image) but not metadata or status changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube_apiserver::testing::TestServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

const KUBECTL: &str = "/usr/bin/kubectl";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

async fn server() -> anyhow::Result<TestServer> {
    Ok(
        TestServer::start_with(|o| o.authorization_mode = vec!["Node".into(), "RBAC".into()])
            .await?,
    )
}

/// Sends a request; answers (status, JSON body or Null).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.into_bytes()))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// An anonymous request over a fresh TLS connection (no certificate, no token).
async fn anonymous(server: &TestServer, method: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.pki.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn no_credentials_get_401_with_the_upstream_status_body() -> anyhow::Result<()> {
    let server = server().await?;
    for (method, path) in [
        ("GET", "/api/v1/namespaces/default/pods"),
        ("GET", "/api/v1/namespaces/default/secrets/x"),
        ("POST", "/api/v1/namespaces/default/configmaps"),
        ("DELETE", "/api/v1/nodes/n1"),
        ("GET", "/apis/apps/v1/deployments?watch=true"),
        ("POST", "/api/v1/namespaces/default/pods/p/exec?command=ls"),
        ("GET", "/api/v1/nodes/n1/proxy/pods"),
    ] {
        let (code, body) = anonymous(&server, method, path).await?;
        assert_eq!(code, 401, "{method} {path}: {body}");
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "{method} {path}"
        );
    }
    Ok(())
}

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Whether the pod-and-secret reader role below allows `verb` on `resource` in `namespace`.
fn expected(verb: &str, resource: &str, namespace: &str) -> bool {
    namespace == "default"
        && match resource {
            "pods" => matches!(verb, "get" | "list" | "watch"),
            "secrets" => verb == "get",
            _ => false,
        }
}

fn object(resource: &str, name: &str) -> Value {
    match resource {
        "pods" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}),
        _ => json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"k": "v"}}),
    }
}

/// Does `verb` for real (writes as dry runs, on a missing object where one is named) and
/// answers (status, body). Authorization comes before existence, so a 403 means "denied".
async fn attempt(
    client: &kube::Client,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> anyhow::Result<(u16, Value)> {
    let collection = format!("/api/v1/namespaces/{namespace}/{resource}");
    let item = format!("{collection}/missing");
    let json = "application/json";
    match verb {
        "get" => send(client, "GET", &item, json, None).await,
        "list" => send(client, "GET", &collection, json, None).await,
        "watch" => {
            let path = format!("{collection}?watch=true&timeoutSeconds=1");
            send(client, "GET", &path, json, None).await
        }
        "create" => {
            let path = format!("{collection}?dryRun=All");
            send(client, "POST", &path, json, Some(object(resource, "new"))).await
        }
        "update" => {
            let path = format!("{item}?dryRun=All");
            send(
                client,
                "PUT",
                &path,
                json,
                Some(object(resource, "missing")),
            )
            .await
        }
        "patch" => {
            let path = format!("{item}?dryRun=All");
            let patch = json!({"metadata": {"labels": {"a": "b"}}});
            send(
                client,
                "PATCH",
                &path,
                "application/merge-patch+json",
                Some(patch),
            )
            .await
        }
        "delete" => send(client, "DELETE", &format!("{item}?dryRun=All"), json, None).await,
        _ => {
            let path = format!("{collection}?dryRun=All");
            send(client, "DELETE", &path, json, None).await
        }
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = std::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// `kubectl auth can-i` as yes/no (it exits 1 on "no").
fn can_i(
    kubeconfig: &Path,
    verb: &str,
    resource: &str,
    ns: &str,
    extra: &[&str],
) -> anyhow::Result<bool> {
    let mut args = vec!["auth", "can-i", verb, resource, "-n", ns];
    args.extend_from_slice(extra);
    let (_, stdout, stderr) = kubectl(kubeconfig, &args)?;
    match stdout.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => anyhow::bail!("kubectl auth can-i {verb} {resource} -n {ns}: {other:?} {stderr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_binding_grants_exactly_its_verbs_and_kubectl_can_i_agrees() -> anyhow::Result<()> {
    let server = server().await?;
    let admin = server.client().await?;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    let path = format!("{RBAC}/namespaces/default/roles");
    let (code, body) = send(&admin, "POST", &path, "application/json", Some(role)).await?;
    assert_eq!(code, 201, "{body}");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    let path = format!("{RBAC}/namespaces/default/rolebindings");
    let (code, body) = send(&admin, "POST", &path, "application/json", Some(binding)).await?;
    assert_eq!(code, 201, "{body}");

    let alice_config = server.kubeconfig_for("alice", &[])?;
    let alice = component_base::client::from_kubeconfig(Some(&alice_config)).await?;
    // The RBAC index follows storage through a watch: wait for the binding to apply.
    let mut bound = false;
    for _ in 0..100 {
        if attempt(&alice, "list", "pods", "default").await?.0 == 200 {
            bound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bound, "the binding never applied");

    for namespace in ["default", "kube-system"] {
        for resource in ["pods", "secrets"] {
            for verb in VERBS {
                let want = expected(verb, resource, namespace);
                let what = format!("{verb} {resource} in {namespace}");
                let (code, body) = attempt(&alice, verb, resource, namespace).await?;
                if want {
                    assert_ne!(code, 403, "{what} should be allowed: {body}");
                    assert!(code < 500, "{what}: {code} {body}");
                } else {
                    assert_eq!(code, 403, "{what} should be forbidden: {body}");
                    assert_eq!(body["reason"], "Forbidden", "{what}: {body}");
                }
                assert_eq!(
                    can_i(&alice_config, verb, resource, namespace, &[])?,
                    want,
                    "kubectl auth can-i {what} (as alice)"
                );
                assert_eq!(
                    can_i(
                        &server.kubeconfig,
                        verb,
                        resource,
                        namespace,
                        &["--as=alice"]
                    )?,
                    want,
                    "kubectl auth can-i {what} --as=alice"
                );
            }
        }
    }

    // The refusals read as upstream's.
    let (_, body) = attempt(&alice, "list", "pods", "kube-system").await?;
    assert_eq!(
        body["message"],
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
    );
    let (_, body) = attempt(&alice, "delete", "pods", "default").await?;
    assert_eq!(
        body["message"],
        "pods \"missing\" is forbidden: User \"alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(body["details"], json!({"name": "missing", "kind": "pods"}));
    let (_, stdout, stderr) = kubectl(&alice_config, &["get", "secrets"])?;
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("Error from server (Forbidden): secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""),
        "{stderr}"
    );
    // Unbound: another user can do none of it.
    let bob_config = server.kubeconfig_for("bob", &[])?;
    assert!(!can_i(&bob_config, "get", "pods", "default", &[])?);
    Ok(())
}

#[tokio::test]
async fn pod_security_judges_significant_pod_updates_only() -> anyhow::Result<()> {
    let server = server().await?;
    let admin = server.client().await?;
    let json = "application/json";
    let merge = "application/merge-patch+json";
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "psa"}});
    assert_eq!(
        send(&admin, "POST", "/api/v1/namespaces", json, Some(ns))
            .await?
            .0,
        201
    );
    // A host-network pod, admitted while the namespace has no PodSecurity label.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
        "spec": {"hostNetwork": true,
                 "containers": [{"name": "c", "image": "busybox:1.35"}]}});
    let (code, body) = send(
        &admin,
        "POST",
        "/api/v1/namespaces/psa/pods",
        json,
        Some(pod),
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    let label = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}});
    let (code, body) = send(
        &admin,
        "PATCH",
        "/api/v1/namespaces/psa",
        merge,
        Some(label),
    )
    .await?;
    assert_eq!(code, 200, "{body}");

    let pod_path = "/api/v1/namespaces/psa/pods/hostnet";
    // Metadata changes are not judged.
    let relabel = json!({"metadata": {"labels": {"tier": "web"}}});
    let (code, body) = send(&admin, "PATCH", pod_path, merge, Some(relabel)).await?;
    assert_eq!(code, 200, "{body}");
    // A new image is: the pod now violates the namespace's level.
    let image = json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let (code, body) = send(&admin, "PATCH", pod_path, merge, Some(image)).await?;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert_eq!(
        body["message"],
        "pods \"hostnet\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
    );
    // Status updates (the kubelet's) are not judged either.
    let status = json!({"status": {"phase": "Running"}});
    let (code, body) = send(
        &admin,
        "PATCH",
        &format!("{pod_path}/status"),
        merge,
        Some(status),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    let (_, stored) = send(&admin, "GET", pod_path, json, None).await?;
    assert_eq!(stored["spec"]["containers"][0]["image"], "busybox:1.35");
    assert_eq!(stored["metadata"]["labels"]["tier"], "web");
    Ok(())
}
