//! Request routing information: what a path and method ask for (as upstream's RequestInfo), and
//! the parsed query string.

use std::collections::HashMap;

use api_types::registry::{self, Resource};

/// What a path addresses.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// `/api`
    Api,
    /// `/apis`
    Apis,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion(String, String),
    /// A resource path.
    Resource(ResourcePath),
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and sub-paths)
    Health,
    /// `/metrics`
    Metrics,
    /// `/openapi/v2` or `/openapi/v3...`
    OpenApi,
    /// Nothing served here.
    NotFound,
}

/// A path under a group version naming a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePath {
    /// The resource.
    pub resource: &'static Resource,
    /// Namespace from the path (`None` for cluster-scoped or all-namespaces requests).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `log`, ...).
    pub subresource: Option<String>,
    /// The path had the legacy `/watch/` segment.
    pub watch: bool,
}

/// Parses a request path.
pub fn route(path: &str) -> Route {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["version"] => Route::Version,
        ["healthz", ..] | ["livez", ..] | ["readyz", ..] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["openapi", ..] => Route::OpenApi,
        ["api", "v1"] => Route::GroupVersion(String::new(), "v1".into()),
        ["apis", group] => {
            if registry::groups().iter().any(|g| g.name == *group) {
                Route::Group((*group).to_string())
            } else {
                Route::NotFound
            }
        }
        ["apis", group, version] => {
            if registry::resources_in(group, version).is_empty() {
                Route::NotFound
            } else {
                Route::GroupVersion((*group).to_string(), (*version).to_string())
            }
        }
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, parts: &[&str]) -> Route {
    let mut parts = parts;
    let mut watch = false;
    if parts.first() == Some(&"watch") {
        watch = true;
        parts = &parts[1..];
    }
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = &parts[2..];
        }
    }
    let Some(plural) = parts.first() else {
        return Route::NotFound;
    };
    let Some(resource) = registry::find(group, version, plural) else {
        return Route::NotFound;
    };
    let (namespace, name, subresource) = if resource.plural == "namespaces" && namespace.is_some() {
        // `/api/v1/namespaces/<name>[/<sub>]`
        (None, namespace, parts.get(2).map(|s| s.to_string()))
    } else {
        (
            namespace,
            parts.get(1).map(|s| s.to_string()),
            parts.get(2).map(|s| s.to_string()),
        )
    };
    if parts.len() > 3 && subresource.as_deref() != Some("proxy") {
        return Route::NotFound;
    }
    if !resource.namespaced && namespace.is_some() {
        return Route::NotFound;
    }
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        resource,
        namespace,
        name,
        subresource,
        watch,
    })
}

/// A parsed query string: the last value of every key, plus all values.
#[derive(Clone, Debug, Default)]
pub struct Query {
    values: HashMap<String, Vec<String>>,
}

impl Query {
    /// Parses `a=b&c=d` (percent- and plus-decoding).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            values.entry(decode(k)).or_default().push(decode(v));
        }
        Query { values }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.values.get(key).cloned().unwrap_or_default()
    }

    /// `key` as a boolean (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }

    /// `key` as an integer, if present and valid.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// The raw query pairs for forwarding.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, vs) in &self.values {
            for v in vs {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a query component (`+` is a space).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_object_paths_parse() {
        let r = res("/api/v1/namespaces/default/pods/web-1/status");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web-1"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn namespaces_are_objects_not_scopes() {
        let r = res("/api/v1/namespaces/default");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("default"));
        assert_eq!(r.namespace, None);
        let r = res("/api/v1/namespaces/kube-system/finalize");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res("/api/v1/namespaces");
        assert_eq!(r.name, None);
    }

    #[test]
    fn watch_prefix_and_groups_parse() {
        let r = res("/apis/apps/v1/watch/namespaces/default/deployments");
        assert!(r.watch);
        assert_eq!(r.resource.kind, "Deployment");
        let r = res("/api/v1/pods");
        assert_eq!(r.namespace, None);
        assert_eq!(r.name, None);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(route("/api/v1/foos"), Route::NotFound);
        assert_eq!(route("/apis/nope/v1"), Route::NotFound);
        assert_eq!(route("/api/v1/nodes/n/status/x"), Route::NotFound);
        assert_eq!(route("/api/v1/namespaces/x/nodes/n"), Route::NotFound);
    }

    #[test]
    fn discovery_paths_parse() {
        assert_eq!(route("/api"), Route::Api);
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
    }

    #[test]
    fn query_values_are_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x=%",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), Some("%"));
        assert_eq!(encode("a=b c"), "a%3Db%20c");
    }
}
