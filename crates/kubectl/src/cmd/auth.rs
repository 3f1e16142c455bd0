//! `kubectl auth whoami` (a SelfSubjectReview), `kubectl auth can-i` (a SelfSubjectAccessReview)
//! and `kubectl api-versions` (the server's group versions).

use serde_json::{json, Value};

use crate::cli::{AuthArgs, AuthCommand, CanIArgs, WhoamiArgs};
use crate::discovery::Catalog;
use crate::error::{Error, Result};
use crate::printers::object::print_objects;
use crate::printers::{tabwriter, OutputFormat};
use crate::session::Session;

/// Runs `kubectl auth`.
pub async fn run(s: &mut Session, args: AuthArgs) -> Result<()> {
    match args.command {
        AuthCommand::Whoami(a) => whoami(s, a).await,
        AuthCommand::CanI(a) => can_i(s, a).await,
    }
}

async fn post(s: &Session, url: &str, body: &Value) -> Result<Value> {
    let client = s.client().await?;
    let bytes =
        serde_json::to_vec(body).map_err(|e| Error::Usage(format!("encoding request: {e}")))?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .map_err(|e| Error::Usage(format!("building request: {e}")))?;
    super::request_json(&client, request, "application/json").await
}

/// The `ATTRIBUTE / VALUE` table `auth whoami` prints for a review's `status.userInfo`.
pub fn whoami_table(review: &Value) -> String {
    let user = &review["status"]["userInfo"];
    let list = |v: &Value| -> String {
        let items: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        format!("[{}]", items.join(" "))
    };
    let mut rows = vec![vec!["ATTRIBUTE".to_string(), "VALUE".to_string()]];
    if let Some(name) = user["username"].as_str().filter(|n| !n.is_empty()) {
        rows.push(vec!["Username".into(), name.into()]);
    }
    if let Some(uid) = user["uid"].as_str().filter(|n| !n.is_empty()) {
        rows.push(vec!["UID".into(), uid.into()]);
    }
    if user["groups"].as_array().is_some_and(|g| !g.is_empty()) {
        rows.push(vec!["Groups".into(), list(&user["groups"])]);
    }
    if let Some(extra) = user["extra"].as_object() {
        let mut keys: Vec<&String> = extra.keys().collect();
        keys.sort();
        for key in keys {
            rows.push(vec![format!("Extra: {key}"), list(&extra[key])]);
        }
    }
    tabwriter::align(&rows)
}

async fn whoami(s: &mut Session, args: WhoamiArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}, "status": {"userInfo": {}}});
    let review = match post(s, "/apis/authentication.k8s.io/v1/selfsubjectreviews", &body).await {
        Err(e) if e.is_not_found() => {
            return Err(Error::Usage(
                "the selfsubjectreviews API is not enabled in the cluster\nenable APISelfSubjectReview feature gate and authentication.k8s.io/v1alpha1 or authentication.k8s.io/v1beta1 API".into(),
            ))
        }
        other => other?,
    };
    let text = match format {
        OutputFormat::Default | OutputFormat::Wide => whoami_table(&review),
        other => print_objects(&other, vec![review], true, false)?,
    };
    s.print(&text)
}

/// The `resourceAttributes` / `nonResourceAttributes` of a can-i question, and an optional
/// warning (unknown resource type) upstream prints first.
pub fn access_spec(
    catalog: &Catalog,
    args: &[String],
    namespace: &str,
    subresource: Option<&str>,
) -> Result<(Value, Option<String>)> {
    let (verb, what, name) = match args {
        [verb, what] => (verb, what.as_str(), None),
        [verb, what, name] => (verb, what.as_str(), Some(name.as_str())),
        _ => return Err(Error::Usage(
            "you must specify two or three arguments: verb, resource, and optional resourceName"
                .to_string(),
        )),
    };
    if what.starts_with('/') {
        if name.is_some() {
            return Err(Error::Usage(
                "NonResourceURL does not take a resourceName".into(),
            ));
        }
        return Ok((
            json!({"nonResourceAttributes": {"verb": verb, "path": what}}),
            None,
        ));
    }
    let (typed, inline_name) = match what.split_once('/') {
        Some((t, n)) => (t, Some(n)),
        None => (what, None),
    };
    let name = name.or(inline_name).unwrap_or("");
    let mut warning = None;
    let (group, resource) = if typed == "*" {
        (String::new(), "*".to_string())
    } else {
        match catalog.resolve(typed) {
            Ok(info) => (info.group.clone(), info.plural.clone()),
            Err(_) => {
                warning = Some(format!(
                    "Warning: the server doesn't have a resource type '{typed}'\n\n"
                ));
                match typed.split_once('.') {
                    Some((r, g)) => (g.to_string(), r.to_string()),
                    None => (String::new(), typed.to_string()),
                }
            }
        }
    };
    let mut attributes =
        json!({"namespace": namespace, "verb": verb, "group": group, "resource": resource});
    if let Some(sub) = subresource {
        attributes["subresource"] = json!(sub);
    }
    if !name.is_empty() {
        attributes["name"] = json!(name);
    }
    Ok((json!({"resourceAttributes": attributes}), warning))
}

/// The answer line `auth can-i` prints for a review status.
pub fn answer(status: &Value) -> (String, bool) {
    if status["allowed"].as_bool().unwrap_or(false) {
        return ("yes\n".into(), true);
    }
    let mut line = "no".to_string();
    if let Some(reason) = status["reason"].as_str().filter(|r| !r.is_empty()) {
        line.push_str(&format!(" - {reason}"));
    }
    if let Some(err) = status["evaluationError"].as_str().filter(|r| !r.is_empty()) {
        line.push_str(&format!(" - {err}"));
    }
    line.push('\n');
    (line, false)
}

async fn can_i(s: &mut Session, args: CanIArgs) -> Result<()> {
    let catalog = s.catalog().await?.clone();
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        s.namespace().await?
    };
    let (spec, warning) = access_spec(
        &catalog,
        &args.args,
        &namespace,
        args.subresource.as_deref(),
    )?;
    if let (Some(w), false) = (warning, args.quiet) {
        s.eprint(&w)?;
    }
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "metadata": {}, "spec": spec});
    let review = post(
        s,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &body,
    )
    .await?;
    let (line, allowed) = answer(&review["status"]);
    if !args.quiet {
        s.print(&line)?;
    }
    if allowed {
        Ok(())
    } else {
        Err(Error::Silent(1))
    }
}

/// Runs `kubectl api-versions`: every served group version, sorted.
pub async fn api_versions(s: &mut Session) -> Result<()> {
    let client = s.client().await?;
    let mut versions: Vec<String> = client
        .list_core_api_versions()
        .await?
        .versions
        .into_iter()
        .collect();
    for group in client.list_api_groups().await?.groups {
        for v in group.versions {
            versions.push(v.group_version);
        }
    }
    versions.sort();
    versions.dedup();
    let text: String = versions.into_iter().map(|v| v + "\n").collect();
    s.print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whoami_prints_upstreams_table() {
        let review = json!({"status": {"userInfo": {"username": "kubernetes-admin",
            "groups": ["system:masters", "system:authenticated"]}}});
        assert_eq!(
            whoami_table(&review),
            "ATTRIBUTE   VALUE\nUsername    kubernetes-admin\nGroups      [system:masters system:authenticated]\n"
        );
    }

    #[test]
    fn can_i_questions_resolve_resources() -> anyhow::Result<()> {
        let catalog = crate::discovery::fixtures::catalog();
        let (spec, warning) = access_spec(&catalog, &strings(&["get", "deploy/web"]), "ns", None)?;
        assert_eq!(
            spec,
            json!({"resourceAttributes": {"namespace": "ns", "verb": "get", "group": "apps",
                                          "resource": "deployments", "name": "web"}})
        );
        assert!(warning.is_none());
        let (spec, _) = access_spec(&catalog, &strings(&["get", "/logs"]), "ns", None)?;
        assert_eq!(
            spec,
            json!({"nonResourceAttributes": {"verb": "get", "path": "/logs"}})
        );
        let (_, warning) = access_spec(&catalog, &strings(&["get", "frobs"]), "ns", None)?;
        assert_eq!(
            warning.as_deref(),
            Some("Warning: the server doesn't have a resource type 'frobs'\n\n")
        );
        assert!(access_spec(&catalog, &strings(&["get"]), "ns", None).is_err());
        Ok(())
    }

    #[test]
    fn answers_read_like_upstream() {
        assert_eq!(answer(&json!({"allowed": true})), ("yes\n".into(), true));
        assert_eq!(
            answer(&json!({"allowed": false, "reason": "RBAC says no"})),
            ("no - RBAC says no\n".into(), false)
        );
        assert_eq!(answer(&json!({})), ("no\n".into(), false));
    }
}
