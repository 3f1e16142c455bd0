//! Watches kept in a reflector store, as every component's informers keep them.

use std::fmt::Debug;

use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

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
