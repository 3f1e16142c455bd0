//! Bad input and write options over raw HTTP against the in-process apiserver: every case gets
//! the upstream status code and a `Status` body, nothing is stored, and the server keeps
//! serving. Also `dryRun=All` on every write path, `fieldValidation=Warn` warnings, and the
//! option checks and conflicts of server-side apply.

use http::Request;
use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

struct Answer {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body)?;
    let response = client.send(request.map(kube::client::Body::from)).await?;
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        code,
        body,
        warnings,
    })
}

async fn json_call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Answer> {
    call(
        client,
        method,
        path,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

/// Asserts a failure `Status` with `code` and `reason`.
fn failed(answer: &Answer, code: u16, reason: &str) {
    assert_eq!(answer.code, code, "{}", answer.body);
    assert_eq!(answer.body["kind"], "Status", "{}", answer.body);
    assert_eq!(answer.body["status"], "Failure", "{}", answer.body);
    assert_eq!(answer.body["reason"], reason, "{}", answer.body);
    assert_eq!(answer.body["code"], code, "{}", answer.body);
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn names(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let list = json_call(client, "GET", CMS, &Value::Null).await?;
    Ok(list.body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn bad_input_gets_upstream_statuses_and_stores_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;

    let a = call(
        &client,
        "POST",
        CMS,
        "application/json",
        b"{\"metadata\":".to_vec(),
    )
    .await?;
    failed(&a, 400, "BadRequest");
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/x?fieldManager=t"),
        "application/apply-patch+yaml",
        b"metadata: [unclosed".to_vec(),
    )
    .await?;
    failed(&a, 400, "BadRequest");
    let typo = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "typo"}, "datta": {"a": "b"}});
    let a = json_call(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        &typo,
    )
    .await?;
    failed(&a, 400, "BadRequest");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"datta\"")),
        "{}",
        a.body
    );
    let bad_name = json!({"metadata": {"name": "Bad_Name"}});
    let a = json_call(&client, "POST", CMS, &bad_name).await?;
    failed(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "metadata.name");
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w"}});
    let a = json_call(&client, "POST", CMS, &wrong_kind).await?;
    failed(&a, 400, "BadRequest");
    let big = json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(3 * 1024 * 1024 + 1)}});
    let a = json_call(&client, "POST", CMS, &big).await?;
    failed(&a, 413, "RequestEntityTooLarge");
    let a = json_call(
        &client,
        "GET",
        "/api/v1/namespaces/default/foos",
        &Value::Null,
    )
    .await?;
    failed(&a, 404, "NotFound");
    assert!(names(&client).await?.is_empty(), "nothing stored");

    // A stale resourceVersion is a conflict.
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
    let created = json_call(&client, "POST", CMS, &cm).await?;
    assert_eq!(created.code, 201, "{}", created.body);
    let mut first = created.body.clone();
    first["data"]["a"] = json!("2");
    assert_eq!(
        json_call(&client, "PUT", &format!("{CMS}/c"), &first)
            .await?
            .code,
        200
    );
    first["data"]["a"] = json!("3");
    let a = json_call(&client, "PUT", &format!("{CMS}/c"), &first).await?;
    failed(&a, 409, "Conflict");
    let now = json_call(&client, "GET", &format!("{CMS}/c"), &Value::Null).await?;
    assert_eq!(
        now.body["data"]["a"], "2",
        "the server keeps serving the stored object"
    );

    // A UID in the body names the object meant: a PUT naming another one is a failed
    // precondition (409), a patch naming another one tries to change an immutable field (422);
    // the object's own UID passes both.
    let uid = now.body["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let other = "4f0c1c2e-0000-4000-8000-000000000001";
    let mut put = json!({"metadata": {"name": "c", "uid": other}, "data": {"a": "4"}});
    let a = json_call(&client, "PUT", &format!("{CMS}/c"), &put).await?;
    failed(&a, 409, "Conflict");
    assert_eq!(
        a.body["message"],
        format!("Operation cannot be fulfilled on configmaps \"c\": Precondition failed: UID in precondition: {other}, UID in object meta: {uid}"),
    );
    let patch = |uid: &str| json!({"metadata": {"uid": uid}, "data": {"a": "5"}});
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/c"),
        "application/merge-patch+json",
        patch(other).to_string().into_bytes(),
    )
    .await?;
    failed(&a, 422, "Invalid");
    assert_eq!(
        a.body["message"],
        format!("ConfigMap \"c\" is invalid: metadata.uid: Invalid value: \"{other}\": field is immutable"),
    );
    assert_eq!(a.body["details"]["causes"][0]["field"], "metadata.uid");
    let now = json_call(&client, "GET", &format!("{CMS}/c"), &Value::Null).await?;
    assert_eq!(now.body["data"]["a"], "2", "neither write landed");
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/c"),
        "application/merge-patch+json",
        patch(&uid).to_string().into_bytes(),
    )
    .await?;
    assert_eq!(a.code, 200, "{}", a.body);
    put["metadata"]["uid"] = json!(uid);
    let a = json_call(&client, "PUT", &format!("{CMS}/c"), &put).await?;
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.body["data"]["a"], "4");
    Ok(())
}

#[tokio::test]
async fn dry_run_stores_nothing_on_any_write_path() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cm = json!({"metadata": {"name": "d"}, "data": {"a": "1"}});
    let a = json_call(&client, "POST", &format!("{CMS}?dryRun=All"), &cm).await?;
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(a.body["metadata"]["name"], "d");
    assert!(names(&client).await?.is_empty());
    let a = json_call(&client, "POST", &format!("{CMS}?dryRun=Bogus"), &cm).await?;
    failed(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "dryRun");

    let created = json_call(&client, "POST", CMS, &cm).await?;
    let rv = created.body["metadata"]["resourceVersion"].clone();
    let mut changed = created.body.clone();
    changed["data"]["a"] = json!("2");
    let a = json_call(&client, "PUT", &format!("{CMS}/d?dryRun=All"), &changed).await?;
    assert_eq!((a.code, a.body["data"]["a"].clone()), (200, json!("2")));
    let merge = br#"{"data":{"a":"3"}}"#.to_vec();
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/d?dryRun=All"),
        "application/merge-patch+json",
        merge,
    )
    .await?;
    assert_eq!((a.code, a.body["data"]["a"].clone()), (200, json!("3")));
    let applied =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"a":"4"}}"#;
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/d?dryRun=All&fieldManager=m&force=true"),
        "application/apply-patch+yaml",
        applied.to_vec(),
    )
    .await?;
    assert_eq!((a.code, a.body["data"]["a"].clone()), (200, json!("4")));
    let a = json_call(
        &client,
        "DELETE",
        &format!("{CMS}/d?dryRun=All"),
        &Value::Null,
    )
    .await?;
    assert_eq!(a.code, 200, "{}", a.body);
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]});
    let a = json_call(&client, "DELETE", &format!("{CMS}/d"), &body).await?;
    assert_eq!(a.code, 200, "{}", a.body);
    let a = json_call(
        &client,
        "DELETE",
        &format!("{CMS}?dryRun=All"),
        &Value::Null,
    )
    .await?;
    assert_eq!(a.code, 200, "{}", a.body);
    let now = json_call(&client, "GET", &format!("{CMS}/d"), &Value::Null).await?;
    assert_eq!(now.code, 200);
    assert_eq!(now.body["data"]["a"], "1");
    assert_eq!(now.body["metadata"]["resourceVersion"], rv);
    Ok(())
}

#[tokio::test]
async fn field_validation_warn_and_apply_options() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let typo = json!({"metadata": {"name": "w"}, "datta": {"a": "b"}});
    let a = json_call(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Warn"),
        &typo,
    )
    .await?;
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(
        a.warnings,
        vec!["299 - \"unknown field \\\"datta\\\"\"".to_string()]
    );
    let a = json_call(
        &client,
        "POST",
        &format!("{CMS}?fieldValidation=Ignore"),
        &json!({"metadata": {"name": "i"}, "datta": {}}),
    )
    .await?;
    assert_eq!(a.code, 201, "{}", a.body);
    assert!(a.warnings.is_empty());

    let applied = |replicas: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  r: \"{replicas}\"\n"
        )
        .into_bytes()
    };
    let apply = "application/apply-patch+yaml";
    let a = call(&client, "PATCH", &format!("{CMS}/s"), apply, applied("1")).await?;
    failed(&a, 422, "Invalid");
    assert_eq!(
        a.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let merge = "application/merge-patch+json";
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/w?force=true"),
        merge,
        b"{}".to_vec(),
    )
    .await?;
    failed(&a, 422, "Invalid");
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/s?fieldManager=one"),
        apply,
        applied("1"),
    )
    .await?;
    assert_eq!(a.code, 201, "apply creates: {}", a.body);
    let entry = &a.body["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "one");
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:r": {}}}));
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/s?fieldManager=two"),
        apply,
        applied("2"),
    )
    .await?;
    failed(&a, 409, "Conflict");
    assert_eq!(
        a.body["message"],
        "Apply failed with 1 conflict: conflict with \"one\": .data.r"
    );
    assert_eq!(
        a.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"one\"", "field": ".data.r"}])
    );
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/s?fieldManager=two&force=true"),
        apply,
        applied("2"),
    )
    .await?;
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.body["data"]["r"], "2");
    // A plain update records its manager from the User-Agent-less request's fieldManager.
    let a = call(
        &client,
        "PATCH",
        &format!("{CMS}/s?fieldManager=editor"),
        merge,
        br#"{"data":{"e":"1"}}"#.to_vec(),
    )
    .await?;
    let managers: Vec<(String, String)> = a.body["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        managers,
        vec![
            ("two".to_string(), "Apply".to_string()),
            ("editor".to_string(), "Update".to_string())
        ]
    );
    Ok(())
}
