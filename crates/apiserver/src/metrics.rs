//! Minimal `/metrics`: request counts by verb and code, in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    watch_cache: std::sync::OnceLock<std::sync::Arc<crate::storage::cache::CacheMetrics>>,
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, method: &str, code: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_string(), code)).or_default() += 1;
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
            "# HELP apiserver_request_total Counter of apiserver requests broken out by verb and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        if let Ok(map) = self.requests.lock() {
            for ((method, code), n) in map.iter() {
                out.push_str(&format!(
                    "apiserver_request_total{{verb=\"{method}\",code=\"{code}\"}} {n}\n"
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
    fn requests_are_counted_by_verb_and_code() {
        let m = Metrics::default();
        m.observe("GET", 200);
        m.observe("GET", 200);
        m.observe("POST", 201);
        let text = m.render();
        assert!(text.contains("apiserver_request_total{verb=\"GET\",code=\"200\"} 2"));
        assert!(text.contains("apiserver_request_total{verb=\"POST\",code=\"201\"} 1"));
    }
}
