//! What the apiserver creates at start: the namespaces `default`, `kube-system`, `kube-public`
//! and `kube-node-lease`, and the `kubernetes` Service in `default` (first IP of the service
//! range, port 443 -> the secure port) with its Endpoints and EndpointSlice pointing at the
//! advertise address; with RBAC enabled, the bootstrap policy ([`crate::authz::policy`]).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::auth::User;
use crate::handlers::{self, Ctx, Output};
use crate::request::{Query, ResourcePath};
use crate::state::ApiState;
use crate::status::ApiError;
use crate::table::IncludeObject;

fn ctx(
    state: &Arc<ApiState>,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Ctx, ApiError> {
    let resource = api_types::registry::find(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    Ok(Ctx {
        state: state.clone(),
        user: User {
            name: "system:apiserver".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
        path: ResourcePath {
            resource,
            namespace: namespace.map(str::to_string),
            name: None,
            subresource: None,
            watch: false,
        },
        query: Query::default(),
        output: Output {
            table: false,
            metadata_only: false,
            include_object: IncludeObject::Metadata,
        },
    })
}

/// Creates `object` unless it exists (or replaces it when `replace` is set).
async fn ensure(
    state: &Arc<ApiState>,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    object: Value,
    replace: bool,
) -> Result<(), ApiError> {
    let mut c = ctx(state, group, plural, namespace)?;
    let body = serde_json::to_vec(&object).map_err(ApiError::internal)?;
    match handlers::create_internal(&c, &body).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => {
            if replace {
                c.path.name = crate::objects::name(&object).map(str::to_string);
                handlers::update_internal(&c, &body).await.map(|_| ())
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates the bootstrap objects.
pub async fn bootstrap(state: &Arc<ApiState>) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            state,
            "",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
            false,
        )
        .await?;
    }
    for class in crate::admission::priority::system_classes() {
        ensure(
            state,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            class,
            false,
        )
        .await?;
    }
    let ip = state.services.first_ip().to_string();
    let port = state.secure_port;
    ensure(
        state,
        "",
        "services",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        }),
        false,
    )
    .await?;
    let address = state.advertise_address.to_string();
    ensure(
        state,
        "",
        "endpoints",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
        true,
    )
    .await?;
    ensure(
        state,
        "discovery.k8s.io",
        "endpointslices",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "kube-apiserver"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
        true,
    )
    .await?;
    if state.authorizer.rbac().is_some() {
        for role in crate::authz::policy::cluster_roles() {
            ensure(
                state,
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
                role,
                false,
            )
            .await?;
        }
        for binding in crate::authz::policy::cluster_role_bindings() {
            ensure(
                state,
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                None,
                binding,
                false,
            )
            .await?;
        }
    }
    tracing::info!(service_ip = %ip, %address, "bootstrap objects ensured");
    // The cache may have filled before these writes: serving starts once it holds them, so a
    // client's first `resourceVersion=0` list or streaming watch sees the namespaces just made.
    if let Some(cache) = &state.watch_cache {
        if let Err(e) = cache.wait_consistent().await {
            tracing::warn!(error = %e, "watch cache has not caught up with the bootstrap objects");
        }
    }
    Ok(())
}
