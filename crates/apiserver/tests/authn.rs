//! Authentication end to end on the in-process apiserver: `--token-auth-file` users,
//! service-account tokens from TokenRequest (they authenticate; expired, tampered, foreign and
//! wrong-audience tokens get the upstream 401; deleting the bound pod invalidates them),
//! TokenReview, SelfSubjectReview, impersonation allowed and forbidden, and the upstream
//! `kubectl create token`, `kubectl auth whoami` and `kubectl --as`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use kube_apiserver::auth::serviceaccount::Claims;
use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::code;

const KUBECTL: &str = "/usr/bin/kubectl";

/// Key material and files the servers of these tests are started with.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = rcgen::KeyPair::generate()?;
        std::fs::write(dir.path().join("sa.key"), key.serialize_pem())?;
        std::fs::write(dir.path().join("sa.pub"), key.public_key_pem())?;
        std::fs::write(
            dir.path().join("tokens.csv"),
            "alice-token,alice,1001,\"devs,ops\"\nbob-token,bob,1002\n",
        )?;
        Ok(Keys { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn server(keys: &Keys, rbac: bool) -> anyhow::Result<TestServer> {
    Ok(TestServer::start_with(|o| {
        o.service_account_key_file = vec![keys.path("sa.pub")];
        o.service_account_signing_key_file = Some(keys.path("sa.key"));
        o.service_account_issuer = Some("https://kubernetes.default.svc.cluster.local".into());
        o.authn.token_auth_file = Some(keys.path("tokens.csv"));
        if rbac {
            o.authorization_mode = vec!["RBAC".into()];
        }
    })
    .await?)
}

/// A kubeconfig that authenticates with `token` (no client certificate).
fn token_kubeconfig(server: &TestServer, name: &str, token: &str) -> anyhow::Result<PathBuf> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&server.pki.ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {b64}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n    namespace: default\ncurrent-context: test\n",
        server.url
    );
    let path = server.dir().join(format!("{name}.token.kubeconfig"));
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn token_client(server: &TestServer, token: &str) -> anyhow::Result<kube::Client> {
    let path = token_kubeconfig(server, "client", token)?;
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

fn api_error(r: &Result<Value, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn whoami(client: &kube::Client) -> Result<Value, kube::Error> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    call(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(review),
    )
    .await
}

async fn token_review(client: &kube::Client, token: &str, audiences: &[&str]) -> Value {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences}});
    call(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        Some(review),
    )
    .await
    .expect("token review")
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Ok(std::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Creates service account `sa` and a pod `pod` running as it; returns the pod uid.
async fn sa_and_pod(admin: &kube::Client, sa: &str, pod: &str) -> anyhow::Result<String> {
    let r = call(
        admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}})),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let p = call(
        admin,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
            "spec": {"serviceAccountName": sa,
                "containers": [{"name": "c", "image": "busybox:1.35"}]}}),
        ),
    )
    .await?;
    Ok(p["metadata"]["uid"].as_str().unwrap_or("").to_string())
}

async fn request_token(admin: &kube::Client, sa: &str, spec: Value) -> Result<Value, kube::Error> {
    call(
        admin,
        "POST",
        &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": spec}),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_users_authenticate_and_bad_tokens_get_401() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = server(&keys, false).await?;
    let alice = token_client(&server, "alice-token").await?;
    let me = whoami(&alice).await?;
    assert_eq!(me["kind"], "SelfSubjectReview");
    assert_eq!(
        me["status"]["userInfo"],
        json!({"username": "alice", "uid": "1001",
            "groups": ["devs", "ops", "system:authenticated"]})
    );
    let nobody = token_client(&server, "no-such-token").await?;
    let r = call(&nobody, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(
        api_error(&r),
        (401, "Unauthorized".into(), "Unauthorized".into())
    );
    // A bad token is a 401 even where anonymous requests are allowed.
    assert_eq!(code(&call(&nobody, "GET", "/version", None).await), 401);

    // The upstream kubectl with --token, and `auth whoami`.
    let out = kubectl(
        &token_kubeconfig(&server, "bob", "bob-token")?,
        &["auth", "whoami", "-o", "json"],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let review: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(review["status"]["userInfo"]["username"], "bob");
    let out = kubectl(
        &token_kubeconfig(&server, "bad", "garbage.garbage.garbage")?,
        &["get", "pods"],
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: You must be logged in to the server"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_from_token_requests() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = server(&keys, false).await?;
    let admin = server.client().await?;
    let pod_uid = sa_and_pod(&admin, "robot", "worker").await?;

    // Too short a lifetime is refused as upstream.
    let r = request_token(&admin, "robot", json!({"expirationSeconds": 60})).await;
    let (status, reason, message) = api_error(&r);
    assert_eq!((status, reason.as_str()), (422, "Invalid"), "{message}");
    assert!(message.contains("may not specify a duration less than 10 minutes"));
    let r = request_token(&admin, "nobody", json!({})).await;
    assert_eq!(code(&r), 404);

    let tr = request_token(
        &admin,
        "robot",
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker"}}),
    )
    .await?;
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        tr["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(tr["spec"]["boundObjectRef"]["uid"], pod_uid.as_str());
    assert!(tr["status"]["expirationTimestamp"].is_string());
    let token = tr["status"]["token"].as_str().unwrap_or("").to_string();

    // The token authenticates as the service account, with the pod in `extra`.
    let robot = token_client(&server, &token).await?;
    let me = whoami(&robot).await?;
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["worker"])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    assert!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("JTI="))
    );
    assert_eq!(code(&call(&robot, "GET", "/api/v1/pods", None).await), 200);

    // TokenReview agrees, for the API audience but not another one.
    let review = token_review(&admin, &token, &[]).await;
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    let review = token_review(&admin, &token, &["vault"]).await;
    assert_ne!(review["status"]["authenticated"], true);
    assert!(review["status"]["error"].is_string());

    // A token for another audience does not work against the API, but reviews for it.
    let vault = request_token(&admin, "robot", json!({"audiences": ["vault"]})).await?;
    let vault_token = vault["status"]["token"].as_str().unwrap_or("");
    let r = whoami(&token_client(&server, vault_token).await?).await;
    assert_eq!(code(&r), 401);
    let review = token_review(&admin, vault_token, &["vault"]).await;
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(review["status"]["audiences"], json!(["vault"]));

    // Tampered: the payload rewritten to claim another account.
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Claims = serde_json::from_slice(&b64.decode(parts[1])?)?;
    claims.sub = "system:serviceaccount:default:default".into();
    claims.kubernetes.serviceaccount.name = "default".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&claims)?),
        parts[2]
    );
    let r = whoami(&token_client(&server, &forged).await?).await;
    assert_eq!(
        api_error(&r),
        (401, "Unauthorized".into(), "Unauthorized".into())
    );

    // Expired: correctly signed, but past `exp`.
    let signer = server.state.authn.signer.as_ref().expect("signer");
    let mut old: Claims = serde_json::from_slice(&b64.decode(parts[1])?)?;
    old.iat -= 7200;
    old.nbf -= 7200;
    old.exp = old.iat + 600;
    let expired = signer.sign(&old)?;
    assert_eq!(
        code(&whoami(&token_client(&server, &expired).await?).await),
        401
    );
    // Signed by a key the server does not trust.
    let other = kube_apiserver::auth::serviceaccount::Signer::from_pkcs8(
        &rcgen::KeyPair::generate()?.serialize_der(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let foreign = other.sign(&claims)?;
    assert_eq!(
        code(&whoami(&token_client(&server, &foreign).await?).await),
        401
    );

    // Deleting the bound pod invalidates the token.
    let r = call(
        &admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/worker?gracePeriodSeconds=0",
        None,
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let mut last = 0;
    for _ in 0..50 {
        last = code(&whoami(&robot).await);
        if last == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 401);
    let review = token_review(&admin, &token, &[]).await;
    assert_ne!(review["status"]["authenticated"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_kubectl_create_token_whoami_and_can_i() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = server(&keys, true).await?;
    let admin = server.client().await?;
    sa_and_pod(&admin, "robot", "worker").await?;
    let out = kubectl(
        &server.kubeconfig,
        &["create", "token", "robot", "--duration", "20m"],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let review = token_review(&admin, &token, &[]).await;
    assert_eq!(review["status"]["authenticated"], true);

    let sa_config = token_kubeconfig(&server, "robot", &token)?;
    let out = kubectl(&sa_config, &["auth", "whoami"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("system:serviceaccount:default:robot"),
        "{}",
        stdout(&out)
    );
    // RBAC: the service account may not list pods until bound.
    let out = kubectl(&sa_config, &["get", "pods"])?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pods is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{}",
        stderr(&out)
    );
    let out = kubectl(
        &server.kubeconfig,
        &[
            "auth",
            "can-i",
            "list",
            "pods",
            "--as=system:serviceaccount:default:robot",
        ],
    )?;
    assert_eq!(stdout(&out).trim(), "no", "{}", stderr(&out));
    let out = kubectl(
        &server.kubeconfig,
        &[
            "create",
            "rolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=default:robot",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let mut ok = false;
    for _ in 0..50 {
        if kubectl(&sa_config, &["get", "pods"])?.status.success() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a bound service account lists pods");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_is_authorized_per_attribute() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = server(&keys, true).await?;
    // The admin may impersonate anyone.
    let out = kubectl(
        &server.kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "json",
            "--as",
            "carol",
            "--as-group",
            "devs",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let review: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "carol", "groups": ["devs", "system:authenticated"]})
    );

    // Uid and extra are impersonated too; groups without a user are a 400.
    let admin = server.client().await?;
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = |headers: &[(&str, &str)]| {
        let mut r = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
            .header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(serde_json::to_vec(&review).expect("json"))
            .expect("request")
    };
    let text = admin
        .request_text(request(&[
            ("Impersonate-User", "dave"),
            ("Impersonate-Uid", "u-42"),
            ("Impersonate-Extra-Scopes", "read"),
            ("Impersonate-Extra-Scopes", "write"),
        ]))
        .await?;
    let me: Value = serde_json::from_str(&text)?;
    assert_eq!(
        me["status"]["userInfo"],
        json!({"username": "dave", "uid": "u-42", "groups": ["system:authenticated"],
            "extra": {"scopes": ["read", "write"]}})
    );
    let r = admin
        .request_text(request(&[("Impersonate-Group", "devs")]))
        .await;
    match r {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 400, "{s:?}"),
        other => panic!("groups without a user: {other:?}"),
    }

    // alice (token file) may not, until granted `impersonate` on users named carol.
    let alice = token_kubeconfig(&server, "alice", "alice-token")?;
    // (`get --raw` sends no discovery requests, whose 403 kubectl prints as "unknown".)
    let raw = "/api/v1/namespaces/default/configmaps";
    let out = kubectl(&alice, &["get", "--raw", raw, "--as", "carol"])?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("users \"carol\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{}",
        stderr(&out)
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "impersonate-carol"},
        "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"],
            "resourceNames": ["carol"]}]});
    let r = call(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        Some(role),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": "alice-impersonates"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "impersonate-carol"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    let r = call(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        Some(binding),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    let mut who = String::new();
    for _ in 0..50 {
        let out = kubectl(&alice, &["auth", "whoami", "--as", "carol"])?;
        if out.status.success() {
            who = stdout(&out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(who.contains("carol"), "{who}");
    // Still not groups.
    let out = kubectl(
        &alice,
        &[
            "get",
            "--raw",
            raw,
            "--as",
            "carol",
            "--as-group",
            "system:masters",
        ],
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("groups \"system:masters\" is forbidden"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_admission_mounts_a_projected_token() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = TestServer::start_with(|o| {
        o.service_account_signing_key_file = Some(keys.path("sa.key"));
        o.disable_admission_plugins.clear();
    })
    .await?;
    let admin = server.client().await?;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "busybox:1.35"}]);
        spec["initContainers"] = json!([{"name": "i", "image": "busybox:1.35"}]);
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    };
    let r = call(
        &admin,
        "POST",
        pods,
        Some(pod("ghostly", json!({"serviceAccountName": "ghost"}))),
    )
    .await;
    let (status, reason, message) = api_error(&r);
    assert_eq!((status, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "pods \"ghostly\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
    );
    let r = call(
        &admin,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        Some(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        ),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");

    let created = call(&admin, "POST", pods, Some(pod("plain", json!({})))).await?;
    let spec = &created["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let name = volumes[0]["name"].as_str().unwrap_or("");
    assert!(name.starts_with("kube-api-access-"), "{name}");
    assert_eq!(
        volumes[0]["projected"]["sources"],
        json!([
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ])
    );
    let mount = json!([{"name": name, "readOnly": true,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(spec["containers"][0]["volumeMounts"], mount);
    assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);

    let opted_out = call(
        &admin,
        "POST",
        pods,
        Some(pod("quiet", json!({"automountServiceAccountToken": false}))),
    )
    .await?;
    assert!(opted_out["spec"].get("volumes").is_none());
    assert_eq!(opted_out["spec"]["serviceAccountName"], "default");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_are_capped_by_the_max_expiration_flag() -> anyhow::Result<()> {
    let keys = Keys::new()?;
    let server = TestServer::start_with(|o| {
        o.service_account_signing_key_file = Some(keys.path("sa.key"));
        o.authn.service_account_max_token_expiration = Some(Duration::from_secs(1800));
        o.authn.api_audiences = vec!["api".into(), "other-api".into()];
    })
    .await?;
    let admin = server.client().await?;
    sa_and_pod(&admin, "robot", "worker").await?;
    let tr = request_token(&admin, "robot", json!({"expirationSeconds": 7200})).await?;
    assert_eq!(tr["spec"]["expirationSeconds"], 1800);
    assert_eq!(tr["spec"]["audiences"], json!(["api", "other-api"]));
    let token = tr["status"]["token"].as_str().unwrap_or("");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Claims =
        serde_json::from_slice(&b64.decode(token.split('.').nth(1).unwrap_or(""))?)?;
    assert_eq!(claims.exp - claims.iat, 1800);
    assert_eq!(claims.iss, "https://kubernetes.default.svc.cluster.local");
    // Without --service-account-key-file the signing key's public half verifies tokens.
    let me = whoami(&token_client(&server, token).await?).await?;
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    Ok(())
}
