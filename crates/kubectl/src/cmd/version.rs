//! `kubectl version [--client] [-o json|yaml]`.

use serde_json::{json, Value};

use crate::cli::VersionArgs;
use crate::error::{Error, Result};
use crate::printers::object::{to_json, to_yaml};
use crate::session::Session;

/// The Kubernetes release whose API and behaviour this kubectl follows.
pub const CLIENT_GIT_VERSION: &str = "v1.33.0";

fn client_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": CLIENT_GIT_VERSION,
        "gitCommit": "", "gitTreeState": "", "buildDate": "",
        "goVersion": "", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Runs `kubectl version`.
pub async fn run(s: &mut Session, args: VersionArgs) -> Result<()> {
    let mut doc = json!({"clientVersion": client_info()});
    let mut server_error = None;
    if !args.client {
        match s.client().await {
            Ok(client) => match client.apiserver_version().await {
                Ok(info) => {
                    doc["serverVersion"] = serde_json::to_value(info).unwrap_or(Value::Null)
                }
                Err(e) => server_error = Some(Error::from(e)),
            },
            Err(e) => server_error = Some(e),
        }
    }
    match args.output.as_deref() {
        Some("json") => s.print(&to_json(&doc)?)?,
        Some("yaml") => s.print(&to_yaml(&doc)?)?,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--output must be 'yaml' or 'json', got {other:?}"
            )))
        }
        None => {
            let mut text = format!("Client Version: {CLIENT_GIT_VERSION}\n");
            if let Some(server) = doc["serverVersion"]["gitVersion"].as_str() {
                text.push_str(&format!("Server Version: {server}\n"));
            }
            s.print(&text)?;
        }
    }
    match server_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
