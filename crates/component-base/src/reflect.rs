//! Watches kept in a reflector store, as every component's informers keep them.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// The shortest watch a reflector asks the apiserver for (upstream's `minWatchTimeout`).
const MIN_WATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// A watch configuration whose server-side timeout is picked at random between 5 and 10
/// minutes, as upstream's reflectors pick theirs: many clients started together (a fleet of
/// kubelets) then end and resume their watches at different moments instead of all together
/// (kube-runtime's default is a fixed 290 s). Bookmarks keep such a watch's resume revision
/// fresh.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(watch_timeout_secs(rand::random()))
}

/// The watch timeout for `unit` (uniform in [0, 1)): from 300 s up to, not including, 600 s.
fn watch_timeout_secs(unit: f64) -> u32 {
    let timeout = crate::jitter::at(MIN_WATCH_TIMEOUT, 1.0, unit.min(0.999));
    u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX)
}

/// Runs the watch of `api` into `writer` until the runtime stops: each object's managedFields
/// are dropped ([`crate::trim::strip_managed_fields`]), the store applies each event before
/// `after` sees it, and a failed watch is logged and restarted with backoff.
pub fn spawn<K, F>(api: Api<K>, config: watcher::Config, mut writer: Writer<K>, after: F)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    F: Fn(&Event<K>) + Send + 'static,
{
    tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(mut event) => {
                    crate::trim::strip_managed_fields(&mut event);
                    writer.apply_watcher_event(&event);
                    after(&event);
                }
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_timeouts_spread_between_five_and_ten_minutes() {
        assert_eq!(watch_timeout_secs(0.0), 300);
        assert_eq!(watch_timeout_secs(0.5), 450);
        assert_eq!(watch_timeout_secs(1.0), 599);
        let picked: Vec<u32> = (0..200)
            .map(|_| watch_config().timeout.expect("a timeout"))
            .collect();
        assert!(picked.iter().all(|t| (300..600).contains(t)), "{picked:?}");
        let early = picked.iter().filter(|t| **t < 450).count();
        assert!((40..=160).contains(&early), "{early} of 200 below 450 s");
    }
}
