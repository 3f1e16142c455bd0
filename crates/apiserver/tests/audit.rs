//! The audit log (`--audit-policy-file`, `--audit-log-path`) end to end on the in-process
//! apiserver: a policy with level None for some users and paths, Metadata for secrets and
//! Request for one user; the JSON lines written honour the levels (no line for None, no body at
//! Metadata, the request body at Request), and carry the user, verb, objectRef, response code
//! and reason, the impersonated user, ResponseStarted/ResponseComplete for a watch, and one
//! ResponseStarted event with no user for a request whose authentication failed.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube_apiserver::testing::TestServer;
use serde_json::Value;

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["quiet"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/api", "/apis*", "/openapi*"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
- level: Request
  users: ["loud"]
- level: Metadata
"#;

async fn client_for(server: &TestServer, user: &str) -> anyhow::Result<kube::Client> {
    let path = server.kubeconfig_for(user, &["system:masters"])?;
    Ok(component_base::client::from_kubeconfig(Some(&path)).await?)
}

/// The events logged so far, once at least `n` of them match `wanted`.
async fn events_when(
    log: &Path,
    n: usize,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    for _ in 0..500 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        if events.iter().filter(|e| wanted(e)).count() >= n {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the audit log never showed the expected events")
}

fn by<'a>(events: &'a [Value], user: &str, verb: &str, resource: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["user"]["username"] == user
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
        })
        .collect()
}

#[tokio::test]
async fn the_policy_decides_what_is_logged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let log = dir.path().join("logs/audit.log");
    let log_path = log.clone();
    let server = TestServer::start_with(move |o| {
        o.audit_policy_file = Some(policy);
        o.audit_log_path = Some(log_path);
    })
    .await?;

    // Admin: a secret (Metadata by the secrets rule).
    let admin = server.client().await?;
    let mut secret = Secret::default();
    secret.metadata.name = Some("token".into());
    secret.string_data = Some([("k".to_string(), "hidden-value".to_string())].into());
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await?;

    // quiet: nothing logged.
    let quiet = client_for(&server, "quiet").await?;
    Api::<Pod>::namespaced(quiet, "default")
        .list(&ListParams::default())
        .await?;

    // loud: Request level, request bodies logged.
    let loud = client_for(&server, "loud").await?;
    let configmaps = Api::<ConfigMap>::namespaced(loud.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some([("mode".to_string(), "fast".to_string())].into());
    configmaps.create(&PostParams::default(), &cm).await?;
    let missing = configmaps.get("absent").await;
    assert!(missing.is_err());
    // A secret read by loud is at Metadata: the secrets rule comes first.
    Api::<Secret>::namespaced(loud, "default")
        .get("token")
        .await?;

    // Admin impersonating loud: the policy sees the admin, the event names both.
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&server.kubeconfig)?,
        &Default::default(),
    )
    .await?;
    config.auth_info.impersonate = Some("loud".into());
    let impersonating = kube::Client::try_from(config)?;
    Api::<ConfigMap>::namespaced(impersonating, "default")
        .list(&ListParams::default())
        .await?;

    // A token nobody issued: the policy sees no user; one ResponseStarted event with 401.
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&server.kubeconfig)?,
        &Default::default(),
    )
    .await?;
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key_data = None;
    config.auth_info.client_certificate = None;
    config.auth_info.client_key = None;
    config.auth_info.token = Some("made-up-token".to_string().into());
    let stranger = kube::Client::try_from(config)?;
    let refused = Api::<Pod>::namespaced(stranger, "default")
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 401),
        "{refused:?}"
    );

    // A watch that ends after a second: ResponseStarted then ResponseComplete.
    let request =
        http::Request::get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
            .body(Vec::new())?;
    admin.request_text(request).await?;

    let events = events_when(&log, 2, |e| {
        e["verb"] == "watch" && e["objectRef"]["resource"] == "configmaps"
    })
    .await?;

    // Only the stages the policy keeps; every line a v1 Event.
    for e in &events {
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["kind"], "Event");
        assert_ne!(e["stage"], "RequestReceived");
        assert!(e["auditID"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(e["stageTimestamp"].is_string());
        assert!(e["requestReceivedTimestamp"].is_string());
    }
    assert!(
        events.iter().all(|e| e["user"]["username"] != "quiet"),
        "quiet is at level None"
    );
    assert!(
        events.iter().all(|e| !e["requestURI"]
            .as_str()
            .unwrap_or("")
            .starts_with("/healthz")),
        "non-resource paths at level None"
    );

    let created = by(&events, "kubernetes-admin", "create", "secrets");
    assert_eq!(created.len(), 1, "{events:#?}");
    let created = created[0];
    assert_eq!(created["level"], "Metadata");
    assert_eq!(created["stage"], "ResponseComplete");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["objectRef"]["apiVersion"], "v1");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(created["requestURI"]
        .as_str()
        .is_some_and(|uri| uri.starts_with("/api/v1/namespaces/default/secrets")));
    assert!(created.get("requestObject").is_none());
    assert!(!created.to_string().contains("hidden-value"));
    assert!(created["user"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:masters")));

    let cm_create = by(&events, "loud", "create", "configmaps");
    assert_eq!(cm_create.len(), 1);
    assert_eq!(cm_create[0]["level"], "Request");
    assert_eq!(cm_create[0]["responseStatus"]["code"], 201);
    assert_eq!(cm_create[0]["requestObject"]["data"]["mode"], "fast");
    assert!(cm_create[0].get("responseObject").is_none());

    let not_found: Vec<_> = by(&events, "loud", "get", "configmaps");
    assert_eq!(not_found.len(), 1);
    assert_eq!(not_found[0]["objectRef"]["name"], "absent");
    assert_eq!(not_found[0]["responseStatus"]["code"], 404);
    assert_eq!(not_found[0]["responseStatus"]["reason"], "NotFound");

    let secret_get = by(&events, "loud", "get", "secrets");
    assert_eq!(secret_get.len(), 1);
    assert_eq!(secret_get[0]["level"], "Metadata");

    let impersonated = by(&events, "kubernetes-admin", "list", "configmaps");
    assert_eq!(impersonated.len(), 1);
    assert_eq!(impersonated[0]["level"], "Metadata");
    assert_eq!(impersonated[0]["impersonatedUser"]["username"], "loud");

    let unauthenticated: Vec<&Value> = events
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 401)
        .collect();
    assert_eq!(unauthenticated.len(), 1, "{events:#?}");
    let refused = unauthenticated[0];
    assert_eq!(refused["stage"], "ResponseStarted");
    assert_eq!(refused["level"], "Metadata");
    assert_eq!(refused["verb"], "list");
    assert_eq!(refused["objectRef"]["resource"], "pods");
    assert_eq!(refused["user"], serde_json::json!({}));
    assert_eq!(
        refused["responseStatus"]["message"],
        "Authentication failed, attempted: bearer"
    );
    assert!(refused["auditID"].as_str().is_some_and(|id| !id.is_empty()));

    let watch = by(&events, "kubernetes-admin", "watch", "configmaps");
    let stages: Vec<&Value> = watch.iter().map(|e| &e["stage"]).collect();
    assert_eq!(stages, ["ResponseStarted", "ResponseComplete"]);
    assert_eq!(watch[0]["auditID"], watch[1]["auditID"]);
    assert_eq!(watch[0]["responseStatus"]["code"], 200);
    Ok(())
}

#[tokio::test]
async fn a_bad_policy_stops_the_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
    )?;
    let log = dir.path().join("audit.log");
    let err = match TestServer::start_with(move |o| {
        o.audit_policy_file = Some(policy);
        o.audit_log_path = Some(log);
    })
    .await
    {
        Ok(_) => panic!("the server started with a bad policy"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("invalid audit policy"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    Ok(())
}
