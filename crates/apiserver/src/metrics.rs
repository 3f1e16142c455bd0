//! Minimal `/metrics`: request counts by verb, resource and code, in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a request addressed, as upstream's `apiserver_request_total` labels it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `DELETECOLLECTION`,
    /// `CONNECT`, or the method of a non-resource request.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural (`""` for non-resource paths).
    pub resource: String,
    /// Subresource, or `""`.
    pub subresource: String,
}

impl RequestLabels {
    /// Labels for a request with no resource (or one refused before it was understood).
    pub fn method(method: &str) -> Self {
        Self {
            verb: method.to_string(),
            ..Self::default()
        }
    }

    /// Labels from the authorizer's verb (`get`, `list`, `create`, ...) as upstream reports
    /// them: creates as `POST`, updates as `PUT`, server-side apply as `APPLY`, exec and the
    /// other streams as `CONNECT`.
    pub fn resource(verb: &str, apply: bool, group: &str, resource: &str, sub: &str) -> Self {
        let stream = matches!(sub, "exec" | "attach" | "portforward" | "proxy");
        let verb = match verb {
            "create" | "get" if stream => "CONNECT",
            "create" => "POST",
            "update" => "PUT",
            "patch" if apply => "APPLY",
            other => return Self::with_verb(other.to_ascii_uppercase(), group, resource, sub),
        };
        Self::with_verb(verb.to_string(), group, resource, sub)
    }

    fn with_verb(verb: String, group: &str, resource: &str, sub: &str) -> Self {
        Self {
            verb,
            group: group.to_string(),
            resource: resource.to_string(),
            subresource: sub.to_string(),
        }
    }
}

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(RequestLabels, u16), u64>>,
    watch_cache: std::sync::OnceLock<std::sync::Arc<crate::storage::cache::CacheMetrics>>,
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, labels: RequestLabels, code: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((labels, code)).or_default() += 1;
        }
    }

    /// Adds the watch cache's counters to the exposition.
    pub fn set_watch_cache(&self, metrics: std::sync::Arc<crate::storage::cache::CacheMetrics>) {
        if self.watch_cache.set(metrics).is_err() {
            tracing::debug!("watch cache metrics were already set");
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out by verb, group, resource, subresource and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        if let Ok(map) = self.requests.lock() {
            for ((l, code), n) in map.iter() {
                out.push_str(&format!(
                    "apiserver_request_total{{verb=\"{}\",group=\"{}\",resource=\"{}\",subresource=\"{}\",code=\"{code}\"}} {n}\n",
                    l.verb, l.group, l.resource, l.subresource
                ));
            }
        }
        if let Some(cache) = self.watch_cache.get() {
            out.push_str(&cache.render());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb_resource_and_code() {
        let m = Metrics::default();
        m.observe(RequestLabels::resource("get", false, "", "pods", ""), 200);
        m.observe(RequestLabels::resource("get", false, "", "pods", ""), 200);
        m.observe(RequestLabels::resource("list", false, "", "pods", ""), 200);
        m.observe(
            RequestLabels::resource("create", false, "", "pods", ""),
            201,
        );
        m.observe(
            RequestLabels::resource("patch", true, "apps", "deployments", "status"),
            200,
        );
        m.observe(
            RequestLabels::resource("create", false, "", "pods", "exec"),
            101,
        );
        m.observe(RequestLabels::method("GET"), 401);
        let text = m.render();
        let line = |verb: &str, group: &str, resource: &str, sub: &str, code: u16, n: u64| {
            format!("apiserver_request_total{{verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",code=\"{code}\"}} {n}\n")
        };
        assert!(
            text.contains(&line("GET", "", "pods", "", 200, 2)),
            "{text}"
        );
        assert!(
            text.contains(&line("LIST", "", "pods", "", 200, 1)),
            "{text}"
        );
        assert!(
            text.contains(&line("POST", "", "pods", "", 201, 1)),
            "{text}"
        );
        assert!(
            text.contains(&line("APPLY", "apps", "deployments", "status", 200, 1)),
            "{text}"
        );
        assert!(
            text.contains(&line("CONNECT", "", "pods", "exec", 101, 1)),
            "{text}"
        );
        assert!(text.contains(&line("GET", "", "", "", 401, 1)), "{text}");
    }
}
