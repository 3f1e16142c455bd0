//! `kubectl create -f FILE` and the `create deployment` / `create namespace` generators.

use kube::api::{DynamicObject, PostParams};
use kube::Client;
use serde_json::{json, Value};

use super::dynamic_api;
use crate::cli::{CreateArgs, CreateCommand, CreateDeploymentArgs};
use crate::discovery::{Catalog, ResourceInfo};
use crate::error::{Error, Result};
use crate::manifest::{read_manifests, Manifest};
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

/// Runs `kubectl create`.
pub async fn run(s: &mut Session, args: CreateArgs) -> Result<()> {
    match args.generator {
        Some(CreateCommand::Deployment(d)) => {
            let object = deployment(&d);
            super::generators::create_or_print(s, object, d.output, d.dry_run).await
        }
        Some(CreateCommand::Namespace(n)) => {
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n.name}});
            super::generators::create_or_print(s, object, n.output, n.dry_run).await
        }
        Some(generator) => super::generators::run(s, generator).await,
        None => {
            if args.filenames.is_empty() {
                return Err(Error::Usage("must specify one of -f and -k".into()));
            }
            let format = OutputFormat::parse(args.output.as_deref())?;
            let dry_run = super::apply::DryRun::parse(args.dry_run.as_deref())?;
            let params = PostParams {
                field_manager: Some("kubectl-create".into()),
                dry_run: dry_run == super::apply::DryRun::Server,
            };
            let manifests = read_manifests(&args.filenames)?;
            let client = s.client().await?;
            let catalog = s.catalog().await?.clone();
            let mut errors = Vec::new();
            for manifest in manifests {
                let result = async {
                    let (info, ns) = placement(s, &catalog, &manifest).await?;
                    if dry_run == super::apply::DryRun::Client {
                        return Ok(manifest.object.clone());
                    }
                    create_object_with(&client, &info, ns.as_deref(), &manifest.object, &params)
                        .await
                }
                .await;
                match result {
                    Ok(created) => {
                        let operation = format!("created{}", dry_run.suffix());
                        s.print(&print_result(&format, &created, &operation)?)?
                    }
                    Err(Error::Api(mut status)) => {
                        status.message = format!(
                            "error when creating \"{}\": {}",
                            manifest.source, status.message
                        );
                        errors.push(Error::Api(status));
                    }
                    Err(e) => errors.push(e),
                }
            }
            finish(errors)
        }
    }
}

/// Turns collected per-object failures into the command's result.
pub fn finish(mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

/// Resolves a manifest's resource and the namespace it goes to, rejecting a `-n` that disagrees.
pub async fn placement(
    s: &Session,
    catalog: &Catalog,
    manifest: &Manifest,
) -> Result<(ResourceInfo, Option<String>)> {
    let object = &manifest.object;
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let info = match catalog.by_kind(api_version, kind) {
        Ok(info) => info,
        Err(Error::Usage(message)) if message.starts_with("resource mapping not found") => {
            return Err(Error::Usage(format!(
                "resource mapping not found for name: \"{}\" namespace: \"{}\" from \"{}\": no matches for kind \"{kind}\" in version \"{api_version}\"\nensure CRDs are installed first",
                object["metadata"]["name"].as_str().unwrap_or(""),
                object["metadata"]["namespace"].as_str().unwrap_or(""),
                manifest.source
            )))
        }
        Err(e) => return Err(e),
    };
    if !info.namespaced {
        return Ok((info, None));
    }
    let session_ns = s.namespace().await?;
    let ns = match object["metadata"]["namespace"].as_str() {
        Some(obj_ns) if !obj_ns.is_empty() => {
            if s.namespace_explicit() && obj_ns != session_ns {
                return Err(Error::Usage(format!(
                    "the namespace from the provided object \"{obj_ns}\" does not match the namespace \"{session_ns}\". You must pass '--namespace={obj_ns}' to perform this operation."
                )));
            }
            obj_ns.to_string()
        }
        _ => session_ns,
    };
    Ok((info, Some(ns)))
}

/// POSTs an object (field manager `kubectl-create`) and returns what the server stored.
pub async fn create_object(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    object: &Value,
) -> Result<Value> {
    let params = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..PostParams::default()
    };
    create_object_with(client, info, ns, object, &params).await
}

/// POSTs an object with `params` (field manager, dry run) and returns the server's answer.
pub async fn create_object_with(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    object: &Value,
    params: &PostParams,
) -> Result<Value> {
    let api = dynamic_api(client.clone(), info, ns);
    let dynamic: DynamicObject = serde_json::from_value(object.clone())
        .map_err(|e| Error::Usage(format!("invalid object: {e}")))?;
    let created = api.create(params, &dynamic).await?;
    Ok(super::to_value(created, info))
}

/// Creates a generated object in the session's namespace and prints the result.
pub async fn create_value(s: &mut Session, object: Value, format: &OutputFormat) -> Result<()> {
    let created = create_generated(s, object).await?;
    s.print(&print_result(format, &created, "created")?)
}

/// Creates a generated object in the session's namespace and returns what the server stored.
pub async fn create_generated(s: &mut Session, object: Value) -> Result<Value> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let manifest = Manifest {
        source: "generated".into(),
        object,
    };
    let (info, ns) = placement(s, &catalog, &manifest).await?;
    create_object(&client, &info, ns.as_deref(), &manifest.object).await
}

/// The container name upstream derives from an image: last path part, without tag or digest.
pub fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    let last = last.split(':').next().unwrap_or(last);
    last.replace('_', "-").to_lowercase()
}

/// The Deployment `kubectl create deployment` builds.
pub fn deployment(args: &CreateDeploymentArgs) -> Value {
    let mut names: Vec<String> = Vec::new();
    let containers: Vec<Value> = args
        .images
        .iter()
        .map(|image| {
            let base = container_name(image);
            let mut name = base.clone();
            let mut n = 1;
            while names.contains(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            names.push(name.clone());
            let mut container = json!({"name": name, "image": image, "resources": {}});
            if let Some(port) = args.port {
                container["ports"] = json!([{"containerPort": port}]);
            }
            if !args.command.is_empty() {
                container["command"] = json!(args.command);
            }
            container
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": args.name, "labels": {"app": args.name}},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": args.name}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": args.name}},
                "spec": {"containers": containers}
            }
        },
        "status": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_images() {
        let cases = [
            ("busybox:1.35", "busybox"),
            ("docker.io/library/busybox:1.35", "busybox"),
            ("registry:5000/team/my_app@sha256:abc", "my-app"),
            ("nginx", "nginx"),
        ];
        for (image, want) in cases {
            assert_eq!(container_name(image), want, "{image}");
        }
    }

    #[test]
    fn create_deployment_builds_the_upstream_object() {
        let args = CreateDeploymentArgs {
            name: "web".into(),
            images: vec!["busybox:1.35".into(), "busybox:1.36".into()],
            replicas: 3,
            port: Some(8080),
            output: None,
            dry_run: None,
            command: vec!["httpd".into(), "-f".into()],
        };
        let d = deployment(&args);
        assert_eq!(d["spec"]["replicas"], json!(3));
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], json!("busybox"));
        assert_eq!(containers[1]["name"], json!("busybox-2"));
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 8080}]));
        assert_eq!(containers[0]["command"], json!(["httpd", "-f"]));
    }
}
