//! PodSecurity admission (Pod Security Standards), as upstream's: a namespace's
//! `pod-security.kubernetes.io/{enforce,warn,audit}` labels (with `-version`) pick the
//! `privileged`, `baseline` or `restricted` level; a new pod that violates the `enforce` level
//! is refused with 403 `violates PodSecurity "<level>:<version>": ...`, one that violates the
//! `warn` level gets a `would violate PodSecurity ...` warning; workloads with a pod template
//! (Deployments, Jobs, ...) get warnings for both levels. The checks ([`violations`]) are
//! the upstream ones, in upstream (check id) order and with upstream wording. Pod updates are
//! checked as upstream's: only a significant one ([`significant_update`]: a changed image, a
//! changed seccomp annotation, added or removed containers, the `ephemeralcontainers`
//! subresource) is evaluated, so metadata changes to a pod that predates its namespace's label
//! still go through; a workload is judged on every update of its main resource. The warnings
//! of creates and updates go back as `Warning` headers. Audit annotations are not written.

use serde_json::Value;

use super::plugins::{forbidden, Operation, Request};
use crate::status::ApiError;

/// Label prefix of the namespace labels.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    /// Parses a label value; an invalid value is the most restrictive level, as upstream.
    pub fn parse(v: &str) -> Level {
        match v {
            "privileged" => Level::Privileged,
            "baseline" => Level::Baseline,
            _ => Level::Restricted,
        }
    }

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers_phrase(names: &[String]) -> String {
    if names.len() == 1 {
        format!("container {}", quoted(names))
    } else {
        format!("containers {}", quoted(names))
    }
}

fn containers(spec: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            out.push((name, c));
        }
    }
    out
}

fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext").and_then(|s| s.get(field))
}

/// The violations of `level` by `pod`, as `"<reason> (<detail>)"` strings in upstream order.
pub fn violations(level: Level, pod: &Value) -> Vec<String> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let restricted = level == Level::Restricted;
    let cs = containers(spec);
    let mut out: Vec<(&str, String, String)> = Vec::new();
    let mut push = |id: &'static str, reason: &str, detail: String| {
        out.push((id, reason.to_string(), detail));
    };

    // allowPrivilegeEscalation (restricted)
    if restricted {
        let bad: Vec<String> = cs
            .iter()
            .filter(|(_, c)| {
                sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if !bad.is_empty() {
            push(
                "allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
                format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    containers_phrase(&bad)
                ),
            );
        }
    }

    // appArmorProfile (baseline)
    let mut apparmor = Vec::new();
    if let Some(a) = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in a {
            if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
                let v = v.as_str().unwrap_or("");
                if v != "runtime/default" && !v.starts_with("localhost/") {
                    apparmor.push(format!("{k}={v:?}"));
                }
            }
        }
    }
    let pod_apparmor = spec.pointer("/securityContext/appArmorProfile/type");
    if pod_apparmor.and_then(Value::as_str) == Some("Unconfined") {
        apparmor
            .push("pod must not set securityContext.appArmorProfile.type to \"Unconfined\"".into());
    }
    for (n, c) in &cs {
        if c.pointer("/securityContext/appArmorProfile/type")
            .and_then(Value::as_str)
            == Some("Unconfined")
        {
            apparmor.push(format!("container {n:?} must not set securityContext.appArmorProfile.type to \"Unconfined\""));
        }
    }
    if !apparmor.is_empty() {
        push(
            "appArmorProfile",
            "forbidden AppArmor profile",
            apparmor.join(", "),
        );
    }

    // capabilities
    if restricted {
        let mut details = Vec::new();
        let no_drop: Vec<String> = cs
            .iter()
            .filter(|(_, c)| {
                !c.pointer("/securityContext/capabilities/drop")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if !no_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                containers_phrase(&no_drop)
            ));
        }
        let (names, caps) = added_caps(&cs, &["NET_BIND_SERVICE"]);
        if !names.is_empty() {
            details.push(format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&names),
                quoted(&caps)
            ));
        }
        if !details.is_empty() {
            push(
                "capabilities_restricted",
                "unrestricted capabilities",
                details.join("; "),
            );
        }
    } else {
        let (names, caps) = added_caps(&cs, BASELINE_CAPS);
        if !names.is_empty() {
            push(
                "capabilities_baseline",
                "non-default capabilities",
                format!(
                    "{} must not include {} in securityContext.capabilities.add",
                    containers_phrase(&names),
                    quoted(&caps)
                ),
            );
        }
    }

    // hostNamespaces
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    if !host.is_empty() {
        push("hostNamespaces", "host namespaces", host.join(", "));
    }

    // hostPathVolumes
    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let vol_name = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let host_path: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| vol_name(v))
        .collect();
    if !host_path.is_empty() {
        let word = if host_path.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        push(
            "hostPathVolumes",
            "hostPath volumes",
            format!("{word} {}", quoted(&host_path)),
        );
    }

    // hostPorts
    let mut port_names = Vec::new();
    let mut ports = Vec::new();
    for (n, c) in &cs {
        let mut uses = false;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0)
            {
                uses = true;
                let hp = hp.to_string();
                if !ports.contains(&hp) {
                    ports.push(hp);
                }
            }
        }
        if uses {
            port_names.push(n.clone());
        }
    }
    if !port_names.is_empty() {
        let (verb, noun) = if port_names.len() == 1 {
            ("uses", "hostPort")
        } else {
            ("use", "hostPorts")
        };
        let noun = if ports.len() == 1 && port_names.len() == 1 {
            noun
        } else {
            "hostPorts"
        };
        push(
            "hostPorts",
            "hostPort",
            format!(
                "{} {verb} {noun} {}",
                containers_phrase(&port_names),
                ports.join(", ")
            ),
        );
    }

    // privileged
    let privileged: Vec<String> = cs
        .iter()
        .filter(|(_, c)| sc(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(|(n, _)| n.clone())
        .collect();
    if !privileged.is_empty() {
        push(
            "privileged",
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&privileged)
            ),
        );
    }

    // procMount
    let proc: Vec<String> = cs
        .iter()
        .filter(|(_, c)| {
            sc(c, "procMount")
                .and_then(Value::as_str)
                .is_some_and(|m| m != "Default")
        })
        .map(|(n, _)| n.clone())
        .collect();
    if !proc.is_empty() {
        push(
            "procMount",
            "procMount",
            format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                containers_phrase(&proc)
            ),
        );
    }

    // restrictedVolumes (restricted)
    if restricted {
        let mut names = Vec::new();
        let mut types = Vec::new();
        for v in &volumes {
            let Some(o) = v.as_object() else { continue };
            for k in o.keys().filter(|k| *k != "name") {
                if !RESTRICTED_VOLUME_TYPES.contains(&k.as_str()) {
                    names.push(vol_name(v));
                    if !types.contains(k) {
                        types.push(k.clone());
                    }
                }
            }
        }
        if !names.is_empty() {
            let detail = if names.len() == 1 {
                format!(
                    "volume {} uses restricted volume type {}",
                    quoted(&names),
                    quoted(&types)
                )
            } else {
                let noun = if types.len() == 1 { "type" } else { "types" };
                format!(
                    "volumes {} use restricted volume {noun} {}",
                    quoted(&names),
                    quoted(&types)
                )
            };
            push("restrictedVolumes", "restricted volume types", detail);
        }
    }

    // runAsNonRoot (restricted)
    if restricted {
        let pod_value = spec
            .pointer("/securityContext/runAsNonRoot")
            .and_then(Value::as_bool);
        let mut details = Vec::new();
        if pod_value == Some(false) {
            details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
        }
        let explicit_false: Vec<String> = cs
            .iter()
            .filter(|(_, c)| sc(c, "runAsNonRoot").and_then(Value::as_bool) == Some(false))
            .map(|(n, _)| n.clone())
            .collect();
        if !explicit_false.is_empty() {
            details.push(format!(
                "{} must not set securityContext.runAsNonRoot=false",
                containers_phrase(&explicit_false)
            ));
        }
        if pod_value != Some(true) {
            let unset: Vec<String> = cs
                .iter()
                .filter(|(_, c)| sc(c, "runAsNonRoot").is_none())
                .map(|(n, _)| n.clone())
                .collect();
            if !unset.is_empty() {
                details.push(format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_phrase(&unset)
                ));
            }
        }
        if !details.is_empty() {
            push("runAsNonRoot", "runAsNonRoot != true", details.join("; "));
        }

        // runAsUser
        let mut details = Vec::new();
        if spec
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
        {
            details.push("pod must not set runAsUser=0".to_string());
        }
        let root: Vec<String> = cs
            .iter()
            .filter(|(_, c)| sc(c, "runAsUser").and_then(Value::as_i64) == Some(0))
            .map(|(n, _)| n.clone())
            .collect();
        if !root.is_empty() {
            details.push(format!(
                "{} must not set runAsUser=0",
                containers_phrase(&root)
            ));
        }
        if !details.is_empty() {
            push("runAsUser", "runAsUser=0", details.join("; "));
        }
    }

    // seLinuxOptions (baseline)
    let selinux_bad = |o: Option<&Value>| {
        o.is_some_and(|o| {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("");
            !SELINUX_TYPES.contains(&t)
                || o.get("user")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                || o.get("role")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
    };
    let mut selinux = Vec::new();
    if selinux_bad(spec.pointer("/securityContext/seLinuxOptions")) {
        selinux.push("pod".to_string());
    }
    let bad: Vec<String> = cs
        .iter()
        .filter(|(_, c)| selinux_bad(sc(c, "seLinuxOptions")))
        .map(|(n, _)| n.clone())
        .collect();
    if !bad.is_empty() {
        selinux.push(containers_phrase(&bad));
    }
    if !selinux.is_empty() {
        push(
            "seLinuxOptions",
            "seLinuxOptions",
            format!(
                "{} set forbidden securityContext.seLinuxOptions",
                selinux.join(" and ")
            ),
        );
    }

    // seccompProfile
    let pod_seccomp = spec
        .pointer("/securityContext/seccompProfile/type")
        .and_then(Value::as_str);
    let mut details = Vec::new();
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    if let Some(t) = pod_seccomp {
        if (restricted && !allowed(t)) || t == "Unconfined" {
            details.push(format!(
                "pod must not set securityContext.seccompProfile.type to {t:?}"
            ));
        }
    }
    let mut bad_types = Vec::new();
    let bad: Vec<String> = cs
        .iter()
        .filter_map(|(n, c)| {
            let t = c
                .pointer("/securityContext/seccompProfile/type")
                .and_then(Value::as_str)?;
            ((restricted && !allowed(t)) || t == "Unconfined").then(|| {
                if !bad_types.contains(&t.to_string()) {
                    bad_types.push(t.to_string());
                }
                n.clone()
            })
        })
        .collect();
    if !bad.is_empty() {
        details.push(format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            containers_phrase(&bad),
            quoted(&bad_types)
        ));
    }
    if restricted && !pod_seccomp.is_some_and(allowed) {
        let unset: Vec<String> = cs
            .iter()
            .filter(|(_, c)| c.pointer("/securityContext/seccompProfile/type").is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&unset)
            ));
        }
    }
    if !details.is_empty() {
        push("seccompProfile", "seccompProfile", details.join("; "));
    }

    // sysctls (baseline)
    let sysctls: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(str::to_string)
        .collect();
    if !sysctls.is_empty() {
        push("sysctls", "forbidden sysctls", sysctls.join(", "));
    }

    out.sort_by(|a, b| a.0.cmp(b.0));
    out.into_iter()
        .map(|(_, reason, detail)| format!("{reason} ({detail})"))
        .collect()
}

fn added_caps(cs: &[(String, &Value)], allowed: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut caps = Vec::new();
    for (n, c) in cs {
        let mut bad = false;
        for cap in c
            .pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !allowed.contains(&cap) {
                bad = true;
                if !caps.iter().any(|c| c == cap) {
                    caps.push(cap.to_string());
                }
            }
        }
        if bad {
            names.push(n.clone());
        }
    }
    (names, caps)
}

/// The (level, version) a namespace's labels set for `mode` (`enforce`, `warn`, `audit`).
pub fn policy(labels: Option<&serde_json::Map<String, Value>>, mode: &str) -> (Level, String) {
    let get = |k: String| labels.and_then(|l| l.get(&k)).and_then(Value::as_str);
    let level = get(format!("{LABEL_PREFIX}{mode}"))
        .map(Level::parse)
        .unwrap_or(Level::Privileged);
    let version = get(format!("{LABEL_PREFIX}{mode}-version"))
        .filter(|v| !v.is_empty())
        .unwrap_or("latest")
        .to_string();
    (level, version)
}

/// Where the pod template of a workload resource sits (`None`: not a pod-template owner).
fn template_path(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("", "podtemplates") => Some("/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// The pod seccomp annotation (deprecated, still checked by upstream).
const SECCOMP_POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
/// The per-container seccomp annotation prefix.
const SECCOMP_CONTAINER: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Whether a pod update can change what PodSecurity judges, as upstream decides it: the seccomp
/// annotations, the number of (init, ephemeral) containers, or a container's image (the rest of
/// a pod spec is immutable).
pub fn significant_update(new: &Value, old: &Value) -> bool {
    let annotation = |pod: &Value, key: &str| -> Option<String> {
        pod.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if annotation(new, SECCOMP_POD) != annotation(old, SECCOMP_POD) {
        return true;
    }
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        let list = |pod: &Value| -> Vec<Value> {
            pod.pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (new_list, old_list) = (list(new), list(old));
        if new_list.len() != old_list.len() {
            return true;
        }
        for (n, o) in new_list.iter().zip(&old_list) {
            if n.get("image") != o.get("image") {
                return true;
            }
            let name = n.get("name").and_then(Value::as_str).unwrap_or_default();
            let key = format!("{SECCOMP_CONTAINER}{name}");
            if annotation(new, &key) != annotation(old, &key) {
                return true;
            }
        }
    }
    false
}

/// Checks a pod being created (or significantly updated) against its namespace's labels (403
/// on an `enforce` violation); for a workload's pod template being created or updated,
/// violations of the `enforce` and `warn` levels are warnings only, as upstream. Returns the
/// warnings.
pub async fn admit(req: &Request<'_>, object: &Value) -> Result<Vec<String>, ApiError> {
    let is_pod = req.is("", "pods");
    match (req.operation, req.subresource) {
        (Operation::Create, None) => {}
        (Operation::Update, None | Some("ephemeralcontainers")) if is_pod => {
            if let Some(old) = req.old {
                if req.subresource.is_none() && !significant_update(object, old) {
                    return Ok(Vec::new());
                }
            }
        }
        // Workloads are judged on every update of the main resource, as upstream's
        // ValidatePodController (their warnings go back with the update).
        (Operation::Update, None) => {}
        _ => return Ok(Vec::new()),
    }
    let template = match template_path(req.resource.group, req.resource.plural) {
        Some(path) => match object.pointer(path) {
            Some(t) => Some(t),
            None => return Ok(Vec::new()),
        },
        None if is_pod => None,
        None => return Ok(Vec::new()),
    };
    let pod = template.unwrap_or(object);
    let Some(ns) = req.namespace else {
        return Ok(Vec::new());
    };
    let Some(ns_resource) = api_types::registry::find("", "v1", "namespaces") else {
        return Ok(Vec::new());
    };
    let namespace = super::lister::get(req.state, &crate::objects::key(ns_resource, None, ns))
        .await
        .map_err(ApiError::internal)?;
    let Some(namespace) = namespace else {
        return Ok(Vec::new());
    };
    let labels = namespace
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    let (enforce, enforce_version) = policy(labels, "enforce");
    let found = violations(enforce, pod);
    let mut warnings = Vec::new();
    if !found.is_empty() && template.is_some() {
        warnings.push(format!(
            "would violate PodSecurity \"{}:{enforce_version}\": {}",
            enforce.as_str(),
            found.join(", ")
        ));
    } else if !found.is_empty() {
        return Err(forbidden(
            req,
            req.name,
            format!(
                "violates PodSecurity \"{}:{enforce_version}\": {}",
                enforce.as_str(),
                found.join(", ")
            ),
        ));
    }
    let (warn, warn_version) = policy(labels, "warn");
    if template.is_some() && (warn, &warn_version) == (enforce, &enforce_version) {
        return Ok(warnings);
    }
    let found = violations(warn, pod);
    if !found.is_empty() {
        warnings.push(format!(
            "would violate PodSecurity \"{}:{warn_version}\": {}",
            warn.as_str(),
            found.join(", ")
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_plain_pod_passes_baseline_and_fails_restricted_as_upstream_words_it() {
        let p = pod(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        assert!(violations(Level::Baseline, &p).is_empty());
        assert_eq!(
            violations(Level::Restricted, &p),
            vec![
                "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"])",
                "runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true)",
                "seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            ]
        );
    }

    #[test]
    fn baseline_catches_host_namespaces_privileged_and_host_paths() {
        let p = pod(json!({"hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "securityContext": {"privileged": true,
                "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
        assert_eq!(
            violations(Level::Baseline, &p),
            vec![
                "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                "host namespaces (hostNetwork=true, hostPID=true)",
                "hostPath volumes (volume \"h\")",
                "hostPort (container \"a\" uses hostPort 8080)",
                "privileged (container \"a\" must not set securityContext.privileged=true)",
            ]
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let p = pod(json!({"securityContext": {"runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "s", "secret": {"secretName": "x"}}],
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}));
        assert!(violations(Level::Restricted, &p).is_empty());
    }

    #[test]
    fn only_image_seccomp_and_container_count_changes_are_significant() {
        let old = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}});
        let mut relabeled = old.clone();
        relabeled["metadata"]["labels"]["a"] = json!("2");
        relabeled["spec"]["activeDeadlineSeconds"] = json!(5);
        assert!(!significant_update(&relabeled, &old));
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("busybox:1.36");
        assert!(significant_update(&image, &old));
        let mut seccomp = old.clone();
        seccomp["metadata"]["annotations"] =
            json!({"container.seccomp.security.alpha.kubernetes.io/c": "unconfined"});
        assert!(significant_update(&seccomp, &old));
        let mut pod_seccomp = old.clone();
        pod_seccomp["metadata"]["annotations"] =
            json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"});
        assert!(significant_update(&pod_seccomp, &old));
        let mut debug = old.clone();
        debug["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "busybox:1.35"}]);
        assert!(significant_update(&debug, &old));
    }

    #[test]
    fn labels_pick_level_and_version() {
        let l = json!({"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.30",
            "pod-security.kubernetes.io/warn": "bogus"});
        let l = l.as_object();
        assert_eq!(policy(l, "enforce"), (Level::Baseline, "v1.30".into()));
        assert_eq!(policy(l, "warn"), (Level::Restricted, "latest".into()));
        assert_eq!(policy(l, "audit"), (Level::Privileged, "latest".into()));
    }
}
