//! `kubectl cluster-info`: the control plane URL and the `kubernetes.io/cluster-service=true`
//! services in `kube-system`, coloured as upstream prints them.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};

use crate::error::Result;
use crate::session::Session;

const GREEN: &str = "\x1b[0;32m";
const YELLOW: &str = "\x1b[0;33m";
const RESET: &str = "\x1b[0m";

/// One `NAME is running at URL` line, coloured when stdout is a terminal (as go-colortext does).
pub fn service_line(name: &str, link: &str, color: bool) -> String {
    if color {
        format!("{GREEN}{name}{RESET} is running at {YELLOW}{link}{RESET}\n")
    } else {
        format!("{name} is running at {link}\n")
    }
}

/// Runs `kubectl cluster-info`.
pub async fn run(s: &mut Session) -> Result<()> {
    let config = s.config().await?;
    let client = s.client().await?;
    let host = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut text = service_line("Kubernetes control plane", &host, color);
    let services: Api<Service> = Api::namespaced(client, "kube-system");
    let list = services
        .list(&ListParams::default().labels("kubernetes.io/cluster-service=true"))
        .await?;
    for svc in list.items {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let display = svc
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/name").cloned())
            .unwrap_or_else(|| name.clone());
        for port in svc.spec.and_then(|sp| sp.ports).unwrap_or_default() {
            let mut target = name.clone();
            if let Some(port_name) = port.name.filter(|n| !n.is_empty()) {
                if port_name == "https" {
                    target = format!("https:{name}:{port_name}");
                } else {
                    target = format!("{name}:{port_name}");
                }
            }
            let link = format!("{host}/api/v1/namespaces/kube-system/services/{target}/proxy");
            text.push_str(&service_line(&display, &link, color));
        }
    }
    text.push_str(
        "\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n",
    );
    s.print(&text)
}
