//! The connection flags that override the kubeconfig, as upstream's `clientcmd` applies them:
//! `--cluster` and `--user` pick other entries than the context's, `--server`,
//! `--certificate-authority`, `--insecure-skip-tls-verify`, `--tls-server-name` change the
//! cluster, `--token`, `--client-certificate`, `--client-key`, `--username`, `--password` the
//! user. With no kubeconfig at all, `--server` alone is enough.

use kube::config::{AuthInfo, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use serde_json::json;

use crate::cli::GlobalFlags;
use crate::error::{Error, Result};

/// The context name used when the flags describe a connection the kubeconfig lacks.
const OVERRIDE_CONTEXT: &str = "kubectl-flags";

/// Applies the flags to `config` and returns the context to use.
pub fn apply(config: &mut Kubeconfig, flags: &GlobalFlags) -> Result<Option<String>> {
    let overrides_cluster = flags.server.is_some()
        || flags.certificate_authority.is_some()
        || flags.insecure_skip_tls_verify.is_some()
        || flags.tls_server_name.is_some();
    let overrides_user = flags.token.is_some()
        || flags.client_certificate.is_some()
        || flags.client_key.is_some()
        || flags.username.is_some()
        || flags.password.is_some();
    let user_flag = flags.user.last();
    if !overrides_cluster && !overrides_user && flags.cluster.is_none() && user_flag.is_none() {
        return Ok(flags.context.clone());
    }
    let context_name = flags
        .context
        .clone()
        .or_else(|| config.current_context.clone())
        .filter(|c| !c.is_empty());
    let base = context_name
        .as_ref()
        .and_then(|name| config.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.clone())
        .unwrap_or_default();
    let cluster_name = flags
        .cluster
        .clone()
        .unwrap_or_else(|| base.cluster.clone());
    let user_name = user_flag
        .cloned()
        .or_else(|| base.user.clone())
        .unwrap_or_default();

    let mut cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .unwrap_or_default();
    if let Some(server) = &flags.server {
        cluster.server = Some(server.clone());
    }
    if let Some(ca) = &flags.certificate_authority {
        cluster.certificate_authority = Some(ca.clone());
        cluster.certificate_authority_data = None;
    }
    if let Some(insecure) = flags.insecure_skip_tls_verify {
        cluster.insecure_skip_tls_verify = Some(insecure);
    }
    if let Some(name) = &flags.tls_server_name {
        cluster.tls_server_name = Some(name.clone());
    }
    let mut auth = config
        .auth_infos
        .iter()
        .find(|a| a.name == user_name)
        .and_then(|a| a.auth_info.clone())
        .unwrap_or_default();
    // Secret fields are built through serde: their type lives in a crate we do not depend on.
    let secrets: AuthInfo = serde_json::from_value(json!({
        "token": flags.token,
        "password": flags.password,
    }))
    .map_err(|e| Error::Usage(format!("invalid credentials: {e}")))?;
    if flags.token.is_some() {
        auth.token = secrets.token;
        auth.token_file = None;
    }
    if flags.password.is_some() {
        auth.password = secrets.password;
    }
    if let Some(username) = &flags.username {
        auth.username = Some(username.clone());
    }
    if let Some(cert) = &flags.client_certificate {
        auth.client_certificate = Some(cert.clone());
        auth.client_certificate_data = None;
    }
    if let Some(key) = &flags.client_key {
        auth.client_key = Some(key.clone());
        auth.client_key_data = None;
    }
    if cluster.server.is_none() {
        return Ok(flags.context.clone());
    }
    config.clusters.push(NamedCluster {
        name: OVERRIDE_CONTEXT.into(),
        cluster: Some(cluster),
        ..Default::default()
    });
    config.auth_infos.push(NamedAuthInfo {
        name: OVERRIDE_CONTEXT.into(),
        auth_info: Some(auth),
        ..Default::default()
    });
    config.contexts.push(NamedContext {
        name: OVERRIDE_CONTEXT.into(),
        context: Some(Context {
            cluster: OVERRIDE_CONTEXT.into(),
            user: Some(OVERRIDE_CONTEXT.into()),
            namespace: base.namespace.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    Ok(Some(OVERRIDE_CONTEXT.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig() -> Kubeconfig {
        serde_yaml_ng::from_str(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://a:1\n    certificate-authority-data: Q0E=\nusers:\n- name: u\n  user:\n    token: t1\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: ns\ncurrent-context: x\n",
        )
        .expect("kubeconfig")
    }

    #[test]
    fn no_connection_flags_leave_the_kubeconfig_alone() -> anyhow::Result<()> {
        let mut config = kubeconfig();
        assert_eq!(apply(&mut config, &GlobalFlags::default())?, None);
        assert_eq!(config.contexts.len(), 1);
        Ok(())
    }

    #[test]
    fn server_and_token_override_the_current_context() -> anyhow::Result<()> {
        let mut config = kubeconfig();
        let flags = GlobalFlags {
            server: Some("https://b:2".into()),
            token: Some("t2".into()),
            ..Default::default()
        };
        let context = apply(&mut config, &flags)?;
        assert_eq!(context.as_deref(), Some(OVERRIDE_CONTEXT));
        let cluster = config
            .clusters
            .iter()
            .find(|c| c.name == OVERRIDE_CONTEXT)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| anyhow::anyhow!("no cluster"))?;
        assert_eq!(cluster.server.as_deref(), Some("https://b:2"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let ctx = config
            .contexts
            .iter()
            .find(|c| c.name == OVERRIDE_CONTEXT)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| anyhow::anyhow!("no context"))?;
        assert_eq!(ctx.namespace.as_deref(), Some("ns"));
        Ok(())
    }

    #[test]
    fn server_alone_works_without_a_kubeconfig() -> anyhow::Result<()> {
        let mut config = Kubeconfig::default();
        let flags = GlobalFlags {
            server: Some("http://127.0.0.1:8080".into()),
            ..Default::default()
        };
        assert_eq!(
            apply(&mut config, &flags)?.as_deref(),
            Some(OVERRIDE_CONTEXT)
        );
        Ok(())
    }
}
