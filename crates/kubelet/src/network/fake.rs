//! A recording [`Network`] for tests: hands out addresses from 10.244.0.2 on, remembers every
//! call, and fails on demand.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{
    netns_name, netns_path, Network, NetworkError, PodIpc, PodNetworkRequest, PodNetworkStatus,
};

/// Where the fake pretends pod IPC namespaces live.
pub const FAKE_IPC_DIR: &str = "/run/fake-ipc";

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCall {
    /// `configure(pod_cidr)`.
    Configure(String),
    /// `setup_pod` for this pod uid.
    Setup(String),
    /// `teardown(netns)`.
    Teardown(String),
    /// `setup_ipc` for this pod uid.
    SetupIpc(String),
    /// `teardown_ipc(name)`.
    TeardownIpc(String),
}

#[derive(Default)]
struct State {
    calls: Vec<NetworkCall>,
    namespaces: BTreeMap<String, IpAddr>,
    ipc: std::collections::BTreeSet<String>,
    next: u8,
    fail_setup: Option<String>,
}

/// The fake network.
#[derive(Default)]
pub struct FakeNetwork {
    state: Mutex<State>,
    ready: AtomicBool,
}

impl FakeNetwork {
    /// A fake that is not configured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that is already configured (ready).
    pub fn ready_network() -> Self {
        let network = Self::default();
        network.ready.store(true, Ordering::SeqCst);
        network
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<NetworkCall> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// The namespaces that currently exist.
    pub fn namespaces(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.namespaces.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The pod IPC namespaces that currently exist.
    pub fn ipc_namespaces(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.ipc.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Pretends a namespace exists (e.g. left over by an earlier run).
    pub fn add_namespace(&self, name: &str, ip: IpAddr) {
        if let Ok(mut state) = self.state.lock() {
            state.namespaces.insert(name.to_string(), ip);
        }
    }

    /// Makes every following `setup_pod` fail with `message` (None: succeed again).
    pub fn fail_setup(&self, message: Option<&str>) {
        if let Ok(mut state) = self.state.lock() {
            state.fail_setup = message.map(str::to_string);
        }
    }
}

fn poisoned() -> NetworkError {
    NetworkError::Injected("fake network lock poisoned".into())
}

#[async_trait::async_trait]
impl Network for FakeNetwork {
    async fn configure(&self, pod_cidr: &str) -> Result<(), NetworkError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state
            .calls
            .push(NetworkCall::Configure(pod_cidr.to_string()));
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    async fn setup_pod(&self, pod: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.calls.push(NetworkCall::Setup(pod.uid.clone()));
        if let Some(message) = &state.fail_setup {
            return Err(NetworkError::Injected(message.clone()));
        }
        if !self.ready() {
            return Err(NetworkError::NotConfigured);
        }
        let name = netns_name(&pod.uid);
        let ip = match state.namespaces.get(&name) {
            Some(ip) => *ip,
            None => {
                state.next = state.next.wrapping_add(1);
                let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 0, state.next.wrapping_add(1)));
                state.namespaces.insert(name.clone(), ip);
                ip
            }
        };
        Ok(PodNetworkStatus {
            netns_path: netns_path(&name),
            netns_name: name,
            ip,
        })
    }

    async fn teardown(&self, netns: &str) -> Result<(), NetworkError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.calls.push(NetworkCall::Teardown(netns.to_string()));
        state.namespaces.remove(netns);
        state.ipc.remove(netns);
        Ok(())
    }

    async fn list_netns(&self) -> Result<Vec<String>, NetworkError> {
        let mut names = self.namespaces();
        names.extend(self.ipc_namespaces());
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn setup_ipc(&self, pod_uid: &str) -> Result<PodIpc, NetworkError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.calls.push(NetworkCall::SetupIpc(pod_uid.to_string()));
        let name = netns_name(pod_uid);
        state.ipc.insert(name.clone());
        Ok(super::ipc::paths(std::path::Path::new(FAKE_IPC_DIR), &name))
    }

    async fn teardown_ipc(&self, name: &str) -> Result<(), NetworkError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.calls.push(NetworkCall::TeardownIpc(name.to_string()));
        state.ipc.remove(name);
        Ok(())
    }
}
