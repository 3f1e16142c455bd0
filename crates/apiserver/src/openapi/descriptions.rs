//! The descriptions of every served kind, of the types it refers to and of their fields, so
//! that `kubectl explain` prints what each field means. They come from the JSON schemas the
//! `k8s-openapi` types carry (its `schemars` feature), keyed by the upstream definition name
//! (`io.k8s.api.core.v1.PodSpec`) the generated documents use.
//!
//! List kinds (`PodList`) have no typed schema there; [`Descriptions::list`] describes them.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::schemars::SchemaGenerator;
use serde_json::Value;

/// What one definition says about itself and its properties.
#[derive(Default)]
pub(super) struct Described {
    pub description: Option<String>,
    pub properties: HashMap<String, String>,
}

/// Every definition reachable from a served kind.
pub(super) struct Descriptions {
    definitions: HashMap<String, Described>,
}

/// Registers `$t` and everything it refers to with the generator.
macro_rules! roots {
    ($gen:expr, $($t:ty),* $(,)?) => {
        $( $gen.subschema_for::<$t>(); )*
    };
}

fn generate() -> SchemaGenerator {
    use k8s_openapi::api::{
        apps, authentication, authorization, autoscaling, batch, coordination, core, discovery,
        events, networking, policy, rbac, scheduling, storage,
    };
    let mut gen = SchemaGenerator::default();
    roots!(
        gen,
        core::v1::Binding,
        core::v1::ConfigMap,
        core::v1::Endpoints,
        core::v1::Event,
        core::v1::LimitRange,
        core::v1::Namespace,
        core::v1::Node,
        core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim,
        core::v1::Pod,
        core::v1::PodTemplate,
        core::v1::ReplicationController,
        core::v1::ResourceQuota,
        core::v1::Secret,
        core::v1::Service,
        core::v1::ServiceAccount,
        apps::v1::ControllerRevision,
        apps::v1::DaemonSet,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        authentication::v1::SelfSubjectReview,
        authentication::v1::TokenRequest,
        authentication::v1::TokenReview,
        authorization::v1::LocalSubjectAccessReview,
        authorization::v1::SelfSubjectAccessReview,
        authorization::v1::SelfSubjectRulesReview,
        authorization::v1::SubjectAccessReview,
        autoscaling::v1::HorizontalPodAutoscaler,
        autoscaling::v1::Scale,
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::CronJob,
        batch::v1::Job,
        coordination::v1::Lease,
        discovery::v1::EndpointSlice,
        events::v1::Event,
        networking::v1::Ingress,
        networking::v1::IngressClass,
        networking::v1::NetworkPolicy,
        policy::v1::Eviction,
        policy::v1::PodDisruptionBudget,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        scheduling::v1::PriorityClass,
        storage::v1::StorageClass,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent<Value>,
    );
    gen
}

impl Descriptions {
    fn build() -> Descriptions {
        let gen = generate();
        let definitions = gen
            .definitions()
            .iter()
            .map(|(name, schema)| {
                let text = |v: &Value| v.get("description")?.as_str().map(str::to_string);
                let properties = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| {
                        props
                            .iter()
                            .filter_map(|(field, s)| Some((field.clone(), text(s)?)))
                            .collect()
                    })
                    .unwrap_or_default();
                let described = Described {
                    description: text(schema),
                    properties,
                };
                (name.clone(), described)
            })
            .collect();
        Descriptions { definitions }
    }

    /// What the definition `name` says, if it is known.
    pub fn get(&self, name: &str) -> Option<&Described> {
        self.definitions.get(name)
    }

    /// The description of the list kind `list` (`PodList`) and of its fields.
    pub fn list(list: &str) -> Described {
        let kind = list.strip_suffix("List").unwrap_or(list);
        let properties = [
            ("apiVersion", "The version of the schema of this list."),
            ("kind", "The kind of this list."),
            ("items", "The objects of the list."),
            (
                "metadata",
                "The list's metadata: its resourceVersion, and the continue token of a paged list.",
            ),
        ]
        .into_iter()
        .map(|(f, d)| (f.to_string(), d.to_string()))
        .collect();
        Described {
            description: Some(format!("{list} is a list of {kind} objects.")),
            properties,
        }
    }
}

/// Built on first use (with the OpenAPI documents).
pub(super) static DESCRIPTIONS: LazyLock<Descriptions> = LazyLock::new(Descriptions::build);
