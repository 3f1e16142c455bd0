//! The object generators of `kubectl create`: configmap, secret (generic, tls, docker-registry),
//! job, cronjob, serviceaccount, role, clusterrole, rolebinding and clusterrolebinding. Each builds
//! the object upstream builds (pure functions, unit tested) and creates it, or with
//! `--dry-run=client` only prints it.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::create::create_generated;
use super::get_object;
use crate::cli::{
    CreateBindingArgs, CreateCommand, CreateConfigMapArgs, CreateCronJobArgs, CreateJobArgs,
    CreateRoleArgs, CreateSecretCommand, CreateSecretDockerArgs, CreateSecretGenericArgs,
    CreateServiceCommand, CreateServiceTypeArgs, CreateTokenArgs,
};
use crate::discovery::Catalog;
use crate::error::{Error, Result};
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const VALID_VERBS: [&str; 13] = [
    "*",
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "use",
    "bind",
    "escalate",
    "impersonate",
];

/// Runs a generator other than `deployment` / `namespace` (those live in `create`).
pub async fn run(s: &mut Session, command: CreateCommand) -> Result<()> {
    let (object, output, dry_run) = match command {
        CreateCommand::Configmap(a) => (configmap(&a)?, a.output, a.dry_run),
        CreateCommand::Secret(a) => match a.command {
            CreateSecretCommand::Generic(g) => (secret_generic(&g)?, g.output, g.dry_run),
            CreateSecretCommand::Tls(t) => {
                let (cert, key) = match (&t.cert, &t.key) {
                    (Some(c), Some(k)) => (read(c)?, read(k)?),
                    _ => return Err(Error::Usage("key and cert must be specified".into())),
                };
                check_pem(&cert, "certificate")?;
                check_pem(&key, "key")?;
                (secret_tls(&t.name, &cert, &key), t.output, t.dry_run)
            }
            CreateSecretCommand::DockerRegistry(d) => (secret_docker(&d)?, d.output, d.dry_run),
        },
        CreateCommand::Job(a) => {
            let object = match &a.from {
                Some(from) => {
                    let cronjob_name = from
                        .strip_prefix("cronjob/")
                        .or_else(|| from.strip_prefix("cronjobs/"))
                        .or_else(|| from.strip_prefix("cj/"))
                        .or_else(|| from.strip_prefix("cronjob.batch/"))
                        .ok_or_else(|| {
                            Error::Usage(format!(
                                "from must be an existing cronjob: {}",
                                from.split('/').next().unwrap_or(from)
                            ))
                        })?;
                    let client = s.client().await?;
                    let catalog = s.catalog().await?.clone();
                    let info = catalog.resolve("cronjobs")?.clone();
                    let namespace = s.namespace().await?;
                    let cronjob =
                        get_object(&client, &info, Some(&namespace), cronjob_name).await?;
                    job_from_cronjob(&a.name, &cronjob)
                }
                None => job(&a)?,
            };
            (object, a.output, a.dry_run)
        }
        CreateCommand::Cronjob(a) => (cronjob(&a), a.output, a.dry_run),
        CreateCommand::Serviceaccount(a) => (
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": a.name}}),
            a.output,
            a.dry_run,
        ),
        CreateCommand::Role(a) => {
            let catalog = s.catalog().await?.clone();
            (role(&a, &catalog, false)?, a.output, a.dry_run)
        }
        CreateCommand::Clusterrole(a) => {
            let catalog = s.catalog().await?.clone();
            (role(&a, &catalog, true)?, a.output, a.dry_run)
        }
        CreateCommand::Rolebinding(a) => (binding(&a, false)?, a.output, a.dry_run),
        CreateCommand::Clusterrolebinding(a) => (binding(&a, true)?, a.output, a.dry_run),
        CreateCommand::Token(a) => return token(s, &a).await,
        CreateCommand::Service(a) => {
            let (kind, a) = match a.command {
                CreateServiceCommand::Clusterip(a) => ("ClusterIP", a),
                CreateServiceCommand::Nodeport(a) => ("NodePort", a),
                CreateServiceCommand::Loadbalancer(a) => ("LoadBalancer", a),
                CreateServiceCommand::Externalname(a) => ("ExternalName", a),
            };
            (service(kind, &a)?, a.output, a.dry_run)
        }
        CreateCommand::Deployment(_) | CreateCommand::Namespace(_) => {
            return Err(Error::Usage("handled by create".into()))
        }
    };
    create_or_print(s, object, output, dry_run).await
}

/// Creates a generated object (or with `--dry-run=client` only prints it) and prints the result
/// in `output`'s format.
pub async fn create_or_print(
    s: &mut Session,
    object: Value,
    output: Option<String>,
    dry_run: Option<String>,
) -> Result<()> {
    let format = OutputFormat::parse(output.as_deref())?;
    match dry_run.as_deref() {
        None | Some("none") => {
            // Upstream's generators wrap the server's error in their own words.
            let wrap = match object["kind"].as_str().unwrap_or("") {
                "Secret" => Some("failed to create secret "),
                "Deployment" => Some("failed to create deployment: "),
                "ConfigMap" => Some("failed to create configmap: "),
                "Job" => Some("failed to create job: "),
                "CronJob" => Some("failed to create cronjob: "),
                "ServiceAccount" => Some("failed to create serviceaccount: "),
                _ => None,
            };
            let created = match create_generated(s, object).await {
                Err(Error::Api(status)) if wrap.is_some() => {
                    return Err(Error::Usage(format!(
                        "{}{}",
                        wrap.unwrap_or_default(),
                        status.message
                    )))
                }
                other => other?,
            };
            s.print(&print_result(&format, &created, "created")?)
        }
        Some("client") => s.print(&print_result(
            &format,
            &as_go_client_prints(object),
            "created (dry run)",
        )?),
        Some("server") => Err(Error::Usage(
            "--dry-run=server is not supported by this kubectl".into(),
        )),
        Some(other) => Err(Error::Usage(format!(
            "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
        ))),
    }
}

/// A generated object as upstream prints it before it reaches a server: Go marshals the zero
/// `creationTimestamp` as `null` and empty status structs as `{}`.
pub fn as_go_client_prints(mut object: Value) -> Value {
    fn stamp(meta: &mut Value) {
        if !meta.is_object() {
            *meta = json!({});
        }
        meta["creationTimestamp"] = Value::Null;
    }
    stamp(&mut object["metadata"]);
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    match kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            stamp(&mut object["spec"]["template"]["metadata"]);
        }
        "CronJob" => {
            stamp(&mut object["spec"]["jobTemplate"]["metadata"]);
            stamp(&mut object["spec"]["jobTemplate"]["spec"]["template"]["metadata"]);
        }
        _ => {}
    }
    match kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" => {
            object["status"] = json!({});
        }
        "Service" => object["status"] = json!({"loadBalancer": {}}),
        "Namespace" => {
            if object.get("spec").is_none() {
                object["spec"] = json!({});
            }
            object["status"] = json!({});
        }
        _ => {}
    }
    object
}

/// The Service `kubectl create service TYPE` builds: `--tcp=port[:targetPort]` ports named
/// `port-targetPort`, selector `app=NAME` (none for ExternalName).
pub fn service(kind: &str, args: &CreateServiceTypeArgs) -> Result<Value> {
    let mut ports = Vec::new();
    for pair in &args.tcp {
        let (port, target) = pair.split_once(':').unwrap_or((pair, pair));
        let port: i32 = port
            .parse()
            .map_err(|_| Error::Usage(format!("invalid port: {pair}")))?;
        let target = match target.parse::<i32>() {
            Ok(n) => json!(n),
            Err(_) => json!(target),
        };
        let mut entry = json!({"name": pair.replace(':', "-"), "port": port, "protocol": "TCP", "targetPort": target});
        if let Some(node_port) = args.node_port.filter(|_| kind == "NodePort") {
            entry["nodePort"] = json!(node_port);
        }
        ports.push(entry);
    }
    if ports.is_empty() && kind != "ExternalName" {
        return Err(Error::Usage(
            "at least one tcp port specifier must be provided".into(),
        ));
    }
    let mut spec = json!({"type": kind});
    if !ports.is_empty() {
        spec["ports"] = json!(ports);
    }
    if kind == "ExternalName" {
        let name = args
            .external_name
            .as_ref()
            .ok_or_else(|| Error::Usage("external-name must be specified".into()))?;
        spec["externalName"] = json!(name);
    } else {
        spec["selector"] = json!({"app": args.name});
    }
    if let Some(ip) = args.clusterip.as_ref().filter(|_| kind == "ClusterIP") {
        spec["clusterIP"] = json!(ip);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": args.name, "labels": {"app": args.name}},
        "spec": spec,
    }))
}

/// The TokenRequest `kubectl create token` sends (flag checks as upstream).
pub fn token_request(a: &CreateTokenArgs) -> Result<Value> {
    let duration = crate::duration::parse_duration(&a.duration, false)?;
    if duration.subsec_nanos() != 0 {
        return Err(Error::Usage(
            "--duration cannot be expressed in units less than seconds".into(),
        ));
    }
    let mut spec = json!({"audiences": a.audiences});
    if !duration.is_zero() {
        spec["expirationSeconds"] = json!(duration.as_secs());
    }
    match &a.bound_object_kind {
        None => {
            if a.bound_object_name.is_some() {
                return Err(Error::Usage(
                    "--bound-object-name can only be set if --bound-object-kind is provided".into(),
                ));
            }
            if a.bound_object_uid.is_some() {
                return Err(Error::Usage(
                    "--bound-object-uid can only be set if --bound-object-kind is provided".into(),
                ));
            }
        }
        Some(kind) => {
            if !matches!(kind.as_str(), "Pod" | "Secret" | "Node") {
                return Err(Error::Usage(
                    "supported --bound-object-kind values are Node, Pod, Secret".into(),
                ));
            }
            let Some(name) = &a.bound_object_name else {
                return Err(Error::Usage(
                    "--bound-object-name is required if --bound-object-kind is provided".into(),
                ));
            };
            let mut bound = json!({"kind": kind, "apiVersion": "v1", "name": name});
            if let Some(uid) = &a.bound_object_uid {
                bound["uid"] = json!(uid);
            }
            spec["boundObjectRef"] = bound;
        }
    }
    Ok(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "metadata": {"name": a.name}, "spec": spec}),
    )
}

/// `kubectl create token`: prints the token (or the TokenRequest with `-o`).
async fn token(s: &mut Session, a: &CreateTokenArgs) -> Result<()> {
    let format = OutputFormat::parse(a.output.as_deref())?;
    let body = token_request(a)?;
    let namespace = s.namespace().await?;
    let client = s.client().await?;
    let url = format!(
        "/api/v1/namespaces/{namespace}/serviceaccounts/{}/token",
        a.name
    );
    let bytes = serde_json::to_vec(&body).map_err(|e| Error::Usage(format!("encoding: {e}")))?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .map_err(|e| Error::Usage(format!("building request: {e}")))?;
    let created = match super::request_json(&client, request, "application/json").await {
        Err(Error::Api(status)) => {
            return Err(Error::Usage(format!(
                "failed to create token: {}",
                status.message
            )))
        }
        other => other?,
    };
    if a.output.is_some() {
        return s.print(&print_result(&format, &created, "created")?);
    }
    let token = created
        .pointer("/status/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    s.print(&format!("{token}\n"))
}

/// Rejects TLS input without PEM data, as Go's `tls.X509KeyPair` does first.
fn check_pem(data: &[u8], what: &str) -> Result<()> {
    if String::from_utf8_lossy(data).contains("-----BEGIN ") {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "tls: failed to find any PEM data in {what} input"
        )))
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(format!("open {path}"), e))
}

/// Collected keys of a configmap or secret: text values and binary ones.
#[derive(Debug, Default, PartialEq)]
pub struct Sources {
    /// Key to bytes, in key order.
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl Sources {
    fn add(&mut self, key: &str, value: Vec<u8>, kind: &str, name: &str) -> Result<()> {
        if !valid_key(key) {
            return Err(Error::Usage(format!(
                "\"{key}\" is not a valid key name for a {kind}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            )));
        }
        if self.entries.contains_key(key) {
            return Err(Error::Usage(format!(
                "cannot add key {key}, another key by that name already exists in Data for {kind} \"{name}\""
            )));
        }
        self.entries.insert(key.to_string(), value);
        Ok(())
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Gathers `--from-literal`, `--from-file` and `--from-env-file` sources as upstream does.
pub fn gather(
    literals: &[String],
    files: &[String],
    env_files: &[String],
    kind: &str,
    name: &str,
) -> Result<Sources> {
    if !env_files.is_empty() && (!files.is_empty() || !literals.is_empty()) {
        return Err(Error::Usage(
            "from-env-file cannot be combined with from-file or from-literal".into(),
        ));
    }
    let mut sources = Sources::default();
    for literal in literals {
        let (key, value) = literal.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "invalid literal source {literal}, expected key=value"
            ))
        })?;
        sources.add(key, value.as_bytes().to_vec(), kind, name)?;
    }
    for file in files {
        let (key, path) = match file.split_once('=') {
            Some((k, p)) if k.is_empty() || p.is_empty() => {
                return Err(Error::Usage(format!(
                    "key names or file paths cannot be empty: {file}"
                )))
            }
            Some((k, p)) => (Some(k.to_string()), p.to_string()),
            None => (None, file.clone()),
        };
        let p = Path::new(&path);
        if p.is_dir() {
            if key.is_some() {
                return Err(Error::Usage(
                    "cannot give a key name for a directory path".into(),
                ));
            }
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .map_err(|e| Error::io(format!("error listing files in {path}"), e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let file_key = entry.file_name().to_string_lossy().into_owned();
                if !valid_key(&file_key) {
                    continue;
                }
                let data = read(&entry.path().display().to_string())?;
                sources.add(&file_key, data, kind, name)?;
            }
        } else {
            let file_key = key.unwrap_or_else(|| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            sources.add(&file_key, read(&path)?, kind, name)?;
        }
    }
    for env_file in env_files {
        let text = String::from_utf8_lossy(&read(env_file)?).into_owned();
        for (line_no, (key, value)) in parse_env_file(&text)
            .map_err(|line| {
                Error::Usage(format!(
                    "{env_file}: line {line}: invalid env file contents"
                ))
            })?
            .into_iter()
            .enumerate()
        {
            let _ = line_no;
            sources.add(&key, value.into_bytes(), kind, name)?;
        }
    }
    Ok(sources)
}

/// Parses an env file (`KEY=VALUE` lines; blank lines and `#` comments skipped; a bare `KEY` takes
/// the value from the environment). `Err(line)` names a bad line.
pub fn parse_env_file(text: &str) -> std::result::Result<Vec<(String, String)>, usize> {
    let mut out = Vec::new();
    for (i, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) => {
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(i + 1);
                }
                out.push((key.to_string(), value.to_string()));
            }
            None => {
                if let Ok(value) = std::env::var(line) {
                    out.push((line.to_string(), value));
                }
            }
        }
    }
    Ok(out)
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The ConfigMap `kubectl create configmap` builds (UTF-8 values in `data`, others in
/// `binaryData`).
pub fn configmap(args: &CreateConfigMapArgs) -> Result<Value> {
    let sources = gather(
        &args.from_literal,
        &args.from_file,
        &args.from_env_file,
        "ConfigMap",
        &args.name,
    )?;
    let mut object =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": args.name}});
    let mut data = Map::new();
    let mut binary = Map::new();
    for (key, value) in sources.entries {
        match String::from_utf8(value) {
            Ok(text) => data.insert(key, Value::String(text)),
            Err(e) => binary.insert(key, Value::String(b64(e.as_bytes()))),
        };
    }
    if !data.is_empty() {
        object["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        object["binaryData"] = Value::Object(binary);
    }
    Ok(object)
}

/// The Secret `kubectl create secret generic` builds.
pub fn secret_generic(args: &CreateSecretGenericArgs) -> Result<Value> {
    let sources = gather(
        &args.from_literal,
        &args.from_file,
        &args.from_env_file,
        "Secret",
        &args.name,
    )?;
    let mut object = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": args.name}});
    if let Some(t) = &args.secret_type {
        object["type"] = json!(t);
    }
    let data: Map<String, Value> = sources
        .entries
        .into_iter()
        .map(|(k, v)| (k, Value::String(b64(&v))))
        .collect();
    if !data.is_empty() {
        object["data"] = Value::Object(data);
    }
    Ok(object)
}

/// The Secret `kubectl create secret tls` builds.
pub fn secret_tls(name: &str, cert: &[u8], key: &[u8]) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "type": "kubernetes.io/tls",
           "data": {"tls.crt": b64(cert), "tls.key": b64(key)}})
}

/// The Secret `kubectl create secret docker-registry` builds (`.dockerconfigjson` as Go marshals it).
pub fn secret_docker(args: &CreateSecretDockerArgs) -> Result<Value> {
    let (Some(user), Some(password)) = (&args.docker_username, &args.docker_password) else {
        return Err(Error::Usage(
            "either --from-file or the combination of --docker-username, --docker-password and --docker-server is required".into(),
        ));
    };
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let email = match &args.docker_email {
        Some(e) if !e.is_empty() => format!(",\"email\":{}", quote(e)),
        _ => String::new(),
    };
    let config = format!(
        "{{\"auths\":{{{}:{{\"username\":{},\"password\":{}{email},\"auth\":{}}}}}}}",
        quote(&args.docker_server),
        quote(user),
        quote(password),
        quote(&b64(format!("{user}:{password}").as_bytes())),
    );
    Ok(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": args.name},
              "type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": b64(config.as_bytes())}}),
    )
}

/// The Job `kubectl create job NAME --image=I [-- CMD]` builds.
pub fn job(args: &CreateJobArgs) -> Result<Value> {
    let Some(image) = &args.image else {
        return Err(Error::Usage(
            "either --image or --from must be specified".into(),
        ));
    };
    let mut container = json!({"name": args.name, "image": image, "resources": {}});
    if !args.command.is_empty() {
        container["command"] = json!(args.command);
    }
    Ok(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": args.name},
              "spec": {"template": {"metadata": {}, "spec": {
                  "containers": [container], "restartPolicy": "Never"}}}}),
    )
}

/// The Job `kubectl create job NAME --from=cronjob/C` builds from the CronJob's job template.
pub fn job_from_cronjob(name: &str, cronjob: &Value) -> Value {
    let template = &cronjob["spec"]["jobTemplate"];
    let mut annotations = Map::new();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), json!("manual"));
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        for (k, v) in a {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob",
            "name": cronjob["metadata"]["name"], "uid": cronjob["metadata"]["uid"],
            "controller": true
        }]
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        metadata["labels"] = Value::Object(labels.clone());
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
           "spec": template["spec"].clone()})
}

/// The CronJob `kubectl create cronjob` builds.
pub fn cronjob(args: &CreateCronJobArgs) -> Value {
    let mut container = json!({"name": args.name, "image": args.image, "resources": {}});
    if !args.command.is_empty() {
        container["command"] = json!(args.command);
    }
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": args.name},
           "spec": {"schedule": args.schedule, "jobTemplate": {
               "metadata": {"name": args.name},
               "spec": {"template": {"metadata": {}, "spec": {
                   "containers": [container], "restartPolicy": args.restart}}}}}})
}

/// The Role or ClusterRole `kubectl create role|clusterrole` builds: one rule per API group.
pub fn role(args: &CreateRoleArgs, catalog: &Catalog, cluster: bool) -> Result<Value> {
    let kind = if cluster { "ClusterRole" } else { "Role" };
    let mut object = json!({"apiVersion": format!("{RBAC_GROUP}/v1"), "kind": kind,
                            "metadata": {"name": args.name}});
    if let Some(selector) = &args.aggregation_rule {
        if !cluster {
            return Err(Error::Usage("unknown flag: --aggregation-rule".into()));
        }
        let mut labels = Map::new();
        for pair in selector.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("invalid aggregation rule: {selector}")))?;
            labels.insert(k.into(), json!(v));
        }
        object["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": labels}]});
        return Ok(object);
    }
    if args.verbs.is_empty() {
        return Err(Error::Usage("at least one verb must be specified".into()));
    }
    for verb in &args.verbs {
        if !VALID_VERBS.contains(&verb.as_str()) {
            return Err(Error::Usage(format!("invalid verb: '{verb}'")));
        }
    }
    if !cluster && !args.non_resource_urls.is_empty() {
        return Err(Error::Usage("unknown flag: --non-resource-url".into()));
    }
    if args.resources.is_empty() && args.non_resource_urls.is_empty() {
        return Err(Error::Usage(
            "at least one resource must be specified".into(),
        ));
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for resource in &args.resources {
        let (base, sub) = match resource.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (resource.as_str(), None),
        };
        let (group, plural) = if base == "*" {
            (String::new(), "*".to_string())
        } else {
            let info = catalog.resolve(base)?;
            (info.group.clone(), info.plural.clone())
        };
        let full = match sub {
            Some(sub) => format!("{plural}/{sub}"),
            None => plural,
        };
        let entry = groups.entry(group).or_default();
        if !entry.contains(&full) {
            entry.push(full);
        }
    }
    let mut rules: Vec<Value> = groups
        .into_iter()
        .map(|(group, resources)| {
            let mut rule =
                json!({"verbs": args.verbs, "apiGroups": [group], "resources": resources});
            if !args.resource_names.is_empty() {
                rule["resourceNames"] = json!(args.resource_names);
            }
            rule
        })
        .collect();
    if !args.non_resource_urls.is_empty() {
        rules.push(json!({"verbs": args.verbs, "nonResourceURLs": args.non_resource_urls}));
    }
    object["rules"] = json!(rules);
    Ok(object)
}

/// The RoleBinding or ClusterRoleBinding `kubectl create rolebinding|clusterrolebinding` builds.
pub fn binding(args: &CreateBindingArgs, cluster: bool) -> Result<Value> {
    let role_ref = match (cluster, &args.role, &args.clusterrole) {
        (true, _, Some(cr)) => json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cr}),
        (true, _, None) => {
            return Err(Error::Usage(
                "required flag(s) \"clusterrole\" not set".into(),
            ))
        }
        (false, Some(r), None) => json!({"apiGroup": RBAC_GROUP, "kind": "Role", "name": r}),
        (false, None, Some(cr)) => {
            json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cr})
        }
        (false, _, _) => {
            return Err(Error::Usage(
                "exactly one of clusterrole or role must be specified".into(),
            ))
        }
    };
    let mut subjects: Vec<Value> = Vec::new();
    for user in &args.users {
        subjects.push(json!({"kind": "User", "apiGroup": RBAC_GROUP, "name": user}));
    }
    for group in &args.groups {
        subjects.push(json!({"kind": "Group", "apiGroup": RBAC_GROUP, "name": group}));
    }
    for sa in &args.serviceaccounts {
        match sa.split_once(':') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                subjects.push(json!({"kind": "ServiceAccount", "namespace": ns, "name": name}))
            }
            _ => {
                return Err(Error::Usage(
                    "serviceaccount must be <namespace>:<name>".to_string(),
                ))
            }
        }
    }
    let kind = if cluster {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let mut object = json!({"apiVersion": format!("{RBAC_GROUP}/v1"), "kind": kind,
                            "metadata": {"name": args.name}, "roleRef": role_ref});
    if !subjects.is_empty() {
        object["subjects"] = json!(subjects);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn configmaps_gather_literals_files_and_env_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("app.conf"), "x=1\n")?;
        std::fs::write(dir.path().join("blob"), [0xff, 0x00])?;
        let env = dir.path().join("vars.env");
        std::fs::write(&env, "# comment\n\nA=1\n  B=two words\n")?;
        let args = CreateConfigMapArgs {
            name: "cfg".into(),
            from_literal: strings(&["k=v=w"]),
            from_file: vec![
                dir.path().join("app.conf").display().to_string(),
                format!("renamed={}", dir.path().join("blob").display()),
            ],
            from_env_file: vec![],
            output: None,
            dry_run: None,
        };
        let cm = configmap(&args)?;
        assert_eq!(cm["data"], json!({"k": "v=w", "app.conf": "x=1\n"}));
        assert_eq!(cm["binaryData"], json!({"renamed": "/wA="}));
        let env_only = CreateConfigMapArgs {
            from_literal: vec![],
            from_file: vec![],
            from_env_file: vec![env.display().to_string()],
            ..args
        };
        assert_eq!(
            configmap(&env_only)?["data"],
            json!({"A": "1", "B": "two words"})
        );
        let mixed = CreateConfigMapArgs {
            from_literal: strings(&["a=b"]),
            ..env_only
        };
        assert!(configmap(&mixed).is_err());
        Ok(())
    }

    #[test]
    fn duplicate_and_invalid_keys_are_rejected() {
        let dup = gather(&strings(&["a=1", "a=2"]), &[], &[], "ConfigMap", "c");
        assert_eq!(
            dup.err().map(|e| e.report()).as_deref(),
            Some("error: cannot add key a, another key by that name already exists in Data for ConfigMap \"c\"")
        );
        assert!(gather(&strings(&["a b=1"]), &[], &[], "ConfigMap", "c").is_err());
        assert!(gather(&strings(&["novalue"]), &[], &[], "ConfigMap", "c").is_err());
    }

    #[test]
    fn secrets_are_base64_encoded() -> anyhow::Result<()> {
        let args = CreateSecretGenericArgs {
            name: "s".into(),
            from_literal: strings(&["user=admin"]),
            from_file: vec![],
            from_env_file: vec![],
            secret_type: None,
            output: None,
            dry_run: None,
        };
        let secret = secret_generic(&args)?;
        assert_eq!(secret["data"], json!({"user": "YWRtaW4="}));
        assert!(secret.get("type").is_none());
        let tls = secret_tls("t", b"C", b"K");
        assert_eq!(tls["type"], "kubernetes.io/tls");
        assert_eq!(tls["data"], json!({"tls.crt": "Qw==", "tls.key": "Sw=="}));
        Ok(())
    }

    #[test]
    fn docker_registry_secrets_carry_go_ordered_json() -> anyhow::Result<()> {
        let args = CreateSecretDockerArgs {
            name: "reg".into(),
            docker_server: "r.example".into(),
            docker_username: Some("u".into()),
            docker_password: Some("p".into()),
            docker_email: None,
            output: None,
            dry_run: None,
        };
        let secret = secret_docker(&args)?;
        let data = secret["data"][".dockerconfigjson"].as_str().unwrap_or("");
        let decoded = base64::engine::general_purpose::STANDARD.decode(data)?;
        assert_eq!(
            String::from_utf8(decoded)?,
            r#"{"auths":{"r.example":{"username":"u","password":"p","auth":"dTpw"}}}"#
        );
        Ok(())
    }

    #[test]
    fn jobs_and_cronjobs_match_upstream() -> anyhow::Result<()> {
        let args = CreateJobArgs {
            name: "j".into(),
            image: Some("busybox".into()),
            from: None,
            output: None,
            dry_run: None,
            command: strings(&["date"]),
        };
        let j = job(&args)?;
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "j", "image": "busybox", "command": ["date"], "resources": {}})
        );
        let cj = cronjob(&CreateCronJobArgs {
            name: "c".into(),
            image: "busybox".into(),
            schedule: "*/1 * * * *".into(),
            restart: "OnFailure".into(),
            output: None,
            dry_run: None,
            command: vec![],
        });
        assert_eq!(cj["spec"]["schedule"], "*/1 * * * *");
        let from = job_from_cronjob(
            "manual",
            &json!({"metadata": {"name": "c", "uid": "u1"}, "spec": cj["spec"]}),
        );
        assert_eq!(
            from["metadata"]["annotations"],
            json!({"cronjob.kubernetes.io/instantiate": "manual"})
        );
        assert_eq!(from["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(from["spec"], cj["spec"]["jobTemplate"]["spec"]);
        Ok(())
    }

    fn role_args(verbs: &[&str], resources: &[&str]) -> CreateRoleArgs {
        CreateRoleArgs {
            name: "r".into(),
            verbs: strings(verbs),
            resources: strings(resources),
            resource_names: vec![],
            non_resource_urls: vec![],
            aggregation_rule: None,
            output: None,
            dry_run: None,
        }
    }

    #[test]
    fn roles_group_rules_by_api_group() -> anyhow::Result<()> {
        let catalog = crate::discovery::fixtures::catalog();
        let r = role(
            &role_args(&["get", "list"], &["pods", "deployments", "pods/log"]),
            &catalog,
            false,
        )?;
        assert_eq!(
            r["rules"],
            json!([
                {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
                {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}
            ])
        );
        assert_eq!(
            role(&role_args(&["frob"], &["pods"]), &catalog, false)
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some("error: invalid verb: 'frob'")
        );
        assert!(role(&role_args(&["get"], &[]), &catalog, false).is_err());
        Ok(())
    }

    #[test]
    fn bindings_list_users_groups_then_service_accounts() -> anyhow::Result<()> {
        let args = CreateBindingArgs {
            name: "b".into(),
            role: None,
            clusterrole: Some("view".into()),
            users: strings(&["alice"]),
            groups: strings(&["devs"]),
            serviceaccounts: strings(&["default:robot"]),
            output: None,
            dry_run: None,
        };
        let b = binding(&args, false)?;
        assert_eq!(b["kind"], "RoleBinding");
        assert_eq!(b["roleRef"]["kind"], "ClusterRole");
        assert_eq!(b["subjects"][0]["kind"], "User");
        assert_eq!(b["subjects"][1]["kind"], "Group");
        assert_eq!(
            b["subjects"][2],
            json!({"kind": "ServiceAccount", "namespace": "default", "name": "robot"})
        );
        let bad = CreateBindingArgs {
            role: Some("x".into()),
            ..args
        };
        assert!(binding(&bad, false).is_err());
        Ok(())
    }

    #[test]
    fn env_files_skip_comments_and_reject_bad_keys() {
        assert_eq!(
            parse_env_file("\u{feff}A=1\n#x\n\n B=2\n"),
            Ok(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
        assert_eq!(parse_env_file("A B=1\n"), Err(1));
    }

    fn token_args(name: &str) -> CreateTokenArgs {
        CreateTokenArgs {
            name: name.into(),
            audiences: vec![],
            bound_object_kind: None,
            bound_object_name: None,
            bound_object_uid: None,
            duration: "0s".into(),
            output: None,
        }
    }

    #[test]
    fn token_requests_carry_audiences_duration_and_bound_objects() -> anyhow::Result<()> {
        let plain = token_request(&token_args("robot"))?;
        assert_eq!(plain["kind"], "TokenRequest");
        assert_eq!(plain["spec"], json!({"audiences": []}));
        let mut a = token_args("robot");
        a.audiences = strings(&["vault"]);
        a.duration = "1h".into();
        a.bound_object_kind = Some("Pod".into());
        a.bound_object_name = Some("p".into());
        let r = token_request(&a)?;
        assert_eq!(
            r["spec"],
            json!({"audiences": ["vault"], "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}})
        );
        a.bound_object_name = None;
        assert!(token_request(&a).is_err());
        let mut b = token_args("robot");
        b.bound_object_name = Some("p".into());
        assert!(token_request(&b).is_err());
        b.bound_object_name = None;
        b.duration = "1500ms".into();
        assert!(token_request(&b).is_err());
        Ok(())
    }
}
