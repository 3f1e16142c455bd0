//! Starts the controller-manager inside a test (or another in-process harness such as kube-perf):
//! the same controllers as the binary, on a client the caller already has.

use std::sync::Arc;

use kube::Client;

use crate::context::{Context, Settings};
use crate::events::Recorder;
use crate::informer::Informers;

/// Starts `controllers` (e.g. [`crate::KNOWN_CONTROLLERS`]) on `client` with `settings`; they run
/// on the current tokio runtime until it shuts down. Returns the shared context.
pub fn start(client: Client, settings: Settings, controllers: &[&str]) -> Arc<Context> {
    let ctx = Arc::new(Context {
        informers: Informers::new(client.clone()),
        recorder: Recorder::new(client.clone(), "controller-manager"),
        client,
        settings,
    });
    crate::start_controllers(ctx.clone(), controllers);
    ctx
}
