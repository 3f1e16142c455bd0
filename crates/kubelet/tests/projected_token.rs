//! A pod's projected service-account token end to end: the in-process apiserver (RBAC + Node
//! authorizer, ServiceAccount admission, service-account keys) adds the `kube-api-access-*`
//! volume, the kubelet (fake runtime, node credentials) requests the bound token and writes
//! `token`, `ca.crt` and `namespace`; the token authenticates as the service account and may
//! list pods only once the account is bound to a role that allows it.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::Api;
use kube_apiserver::testing::TestServer;
use kubelet::testing::start_fake;
use serde_json::json;

mod support;

use support::eventually;

/// The first `kube-api-access-*` volume directory of pod `uid` under the kubelet root.
fn token_dir(root: &Path, uid: &str) -> Option<PathBuf> {
    let projected = root
        .join("root/pods")
        .join(uid)
        .join("volumes/kubernetes.io~projected");
    std::fs::read_dir(projected)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kube-api-access-"))
        })
}

async fn token_client(server: &TestServer, token: &str) -> anyhow::Result<kube::Client> {
    let ca = server.dir().join("pod-token-ca.crt");
    std::fs::write(&ca, &server.pki.ca_pem)?;
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\n",
        server.url,
        ca.display()
    );
    let path = server.dir().join("pod-token.kubeconfig");
    std::fs::write(&path, text)?;
    Ok(component_base::client::from_kubeconfig(Some(&path)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_projected_token_authenticates_as_its_service_account() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let key = rcgen::KeyPair::generate()?;
    std::fs::write(keys.path().join("sa.key"), key.serialize_pem())?;
    std::fs::write(keys.path().join("sa.pub"), key.public_key_pem())?;
    let server = TestServer::start_with(|o| {
        o.service_account_key_file = vec![keys.path().join("sa.pub")];
        o.service_account_signing_key_file = Some(keys.path().join("sa.key"));
        o.authorization_mode = vec!["Node".into(), "RBAC".into()];
        o.disable_admission_plugins.clear();
    })
    .await?;
    let admin = server.client().await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "default"}}))?,
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "kube-root-ca.crt"},
            "data": {"ca.crt": server.pki.ca_pem}}))?,
    )
    .await?;

    let node_config = server.kubeconfig_for("system:node:node-0", &["system:nodes"])?;
    let node_client = component_base::client::from_kubeconfig(Some(&node_config)).await?;
    let dir = tempfile::tempdir()?;
    let _kubelet = start_fake(node_client, "node-0", dir.path()).await?;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"nodeName": "node-0",
            "containers": [{"name": "c", "image": "busybox:1.35"}]}}))?;
    let created = pods.create(&PostParams::default(), &pod).await?;
    let uid = created.metadata.uid.clone().unwrap_or_default();

    let volume = eventually("token file", || {
        let root = dir.path().to_path_buf();
        let uid = uid.clone();
        async move {
            let d = token_dir(&root, &uid)?;
            d.join("token").exists().then_some(d)
        }
    })
    .await;
    let read = |f: &str| std::fs::read_to_string(volume.join(f));
    assert_eq!(read("namespace")?, "default");
    assert_eq!(read("ca.crt")?, server.pki.ca_pem);
    let token = read("token")?;

    let as_pod = token_client(&server, &token).await?;
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review)?)?;
    let me: serde_json::Value = as_pod.request(request).await?;
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web"])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/node-name"],
        json!(["node-0"])
    );

    let pods_as_sa: Api<Pod> = Api::namespaced(as_pod.clone(), "default");
    match pods_as_sa.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("an unbound service account may not list pods: {other:?}"),
    }
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(admin.clone(), "default");
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "sa-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "default",
                    "namespace": "default"}]}))?,
        )
        .await?;
    eventually("the bound service account lists pods", || {
        let pods_as_sa = pods_as_sa.clone();
        async move { pods_as_sa.list(&ListParams::default()).await.ok() }
    })
    .await;
    Ok(())
}
