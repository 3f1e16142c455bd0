//! persistentVolumeClaim volumes: the pod manager resolves each claim to its bound
//! PersistentVolume and, for `hostPath` and `local` volumes (the kinds a single node can
//! serve), hands the pod worker a copy of the pod whose claim volume is a `hostPath` volume
//! on the volume's path (`subPath` then works as for any host directory). A claim that is
//! missing, pending or bound to another kind of volume stays in the pod, so the worker's volume
//! set-up fails with `FailedMount` and the pod stays `ContainerCreating` until the claim is
//! bound ([`crate::pod::volumes::VolumeError::ClaimNotBound`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::{Api, Client};

/// Why a claim cannot be used yet.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The claim does not exist.
    #[error("persistentvolumeclaims \"{0}\" not found")]
    NotFound(String),
    /// The claim is not bound.
    #[error("PVC {0} is not bound")]
    NotBound(String),
    /// The volume is neither hostPath nor local.
    #[error("persistentvolume \"{0}\" is neither hostPath nor local")]
    Unsupported(String),
    /// Reading the claim or volume failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Where a bound claim's data lives on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// The host directory.
    pub path: String,
    /// The hostPath `type` of a hostPath volume (`DirectoryOrCreate`...).
    pub kind: Option<String>,
}

/// Resolves claims to host paths.
#[async_trait::async_trait]
pub trait ClaimResolver: Send + Sync + 'static {
    /// The host path of claim `namespace/claim`.
    async fn resolve(&self, namespace: &str, claim: &str) -> Result<ClaimPath, ClaimError>;
}

/// [`ClaimResolver`] over the API.
pub struct KubeClaimResolver {
    client: Client,
}

impl KubeClaimResolver {
    /// Reads claims and volumes through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// The host path of a bound volume, if it is a hostPath or local volume.
pub fn volume_path(volume: &PersistentVolume) -> Option<ClaimPath> {
    let spec = volume.spec.as_ref()?;
    if let Some(host) = &spec.host_path {
        return Some(ClaimPath {
            path: host.path.clone(),
            kind: host.type_.clone(),
        });
    }
    spec.local.as_ref().map(|local| ClaimPath {
        path: local.path.clone(),
        kind: None,
    })
}

#[async_trait::async_trait]
impl ClaimResolver for KubeClaimResolver {
    async fn resolve(&self, namespace: &str, claim: &str) -> Result<ClaimPath, ClaimError> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let key = format!("{namespace}/{claim}");
        let found = claims
            .get_opt(claim)
            .await
            .map_err(|source| ClaimError::Read {
                what: format!("persistentvolumeclaim {key}"),
                source: Box::new(source),
            })?
            .ok_or_else(|| ClaimError::NotFound(claim.to_string()))?;
        let bound = found
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Bound");
        let Some(volume_name) = found
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| bound && !v.is_empty())
        else {
            return Err(ClaimError::NotBound(key));
        };
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume = volumes
            .get_opt(&volume_name)
            .await
            .map_err(|source| ClaimError::Read {
                what: format!("persistentvolume {volume_name}"),
                source: Box::new(source),
            })?
            .ok_or_else(|| ClaimError::NotBound(key))?;
        volume_path(&volume).ok_or(ClaimError::Unsupported(volume_name))
    }
}

/// The claim names of the pod's persistentVolumeClaim volumes, by volume name.
pub fn claims_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            Some((v.name.clone(), claim.claim_name.clone()))
        })
        .collect()
}

/// `pod` with each claim volume found in `resolved` (by volume name) turned into a
/// `hostPath` volume.
pub fn with_resolved_claims(pod: &Pod, resolved: &BTreeMap<String, ClaimPath>) -> Pod {
    let mut pod = pod.clone();
    for volume in pod
        .spec
        .iter_mut()
        .flat_map(|s| s.volumes.iter_mut().flatten())
    {
        if volume.persistent_volume_claim.is_none() {
            continue;
        }
        if let Some(path) = resolved.get(&volume.name) {
            volume.persistent_volume_claim = None;
            volume.host_path = Some(HostPathVolumeSource {
                path: path.path.clone(),
                type_: path.kind.clone(),
            });
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LocalVolumeSource, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PodSpec, Volume,
    };

    #[test]
    fn resolved_claims_become_host_paths_and_pending_ones_stay() {
        let claim = |name: &str, claim: &str| Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![claim("data", "data-claim"), claim("logs", "pending")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(claims_of(&pod).len(), 2);
        let local = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                local: Some(LocalVolumeSource {
                    path: "/mnt/disks/ssd1".into(),
                    fs_type: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resolved: BTreeMap<String, ClaimPath> =
            [("data".to_string(), volume_path(&local).expect("local path"))].into();
        let rewritten = with_resolved_claims(&pod, &resolved);
        let volumes = rewritten.spec.and_then(|s| s.volumes).expect("volumes");
        assert_eq!(
            volumes[0].host_path.as_ref().map(|h| h.path.as_str()),
            Some("/mnt/disks/ssd1")
        );
        assert!(volumes[0].persistent_volume_claim.is_none());
        assert!(volumes[1].persistent_volume_claim.is_some());
        assert_eq!(volume_path(&PersistentVolume::default()), None);
    }
}
