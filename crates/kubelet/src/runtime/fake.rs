//! A recording fake [`ContainerRuntime`] for unit tests and hollow nodes.
//!
//! Containers "run" instantly: `start_container` makes them `Running`, `stop_container` makes
//! them `Exited`. Tests can preload images, make containers exit on start with a given code,
//! set states directly, script exec results and inject a failure into the next call of any
//! method. Every call is recorded ([`FakeRuntime::calls`]). Port-forward connects to a target
//! set with [`FakeRuntime::set_port_target`], or else to an in-memory echo.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use tokio::sync::watch;

use super::{
    normalize_image, AttachRequest, ContainerConfig, ContainerRuntime, ContainerState,
    ContainerSummary, ExecRequest, ExecSession, ImageInfo, PortStream, PullPolicy,
    RegistryCredential, RuntimeError, RuntimeVersion,
};

/// The trait methods, to name where a failure is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`ContainerRuntime::version`]
    Version,
    /// [`ContainerRuntime::import_image_archive`]
    ImportImageArchive,
    /// [`ContainerRuntime::list_images`]
    ListImages,
    /// [`ContainerRuntime::image_present`]
    ImagePresent,
    /// [`ContainerRuntime::ensure_image`]
    EnsureImage,
    /// [`ContainerRuntime::pull_image`]
    PullImage,
    /// [`ContainerRuntime::remove_image`]
    RemoveImage,
    /// [`ContainerRuntime::create_container`]
    CreateContainer,
    /// [`ContainerRuntime::start_container`]
    StartContainer,
    /// [`ContainerRuntime::stop_container`]
    StopContainer,
    /// [`ContainerRuntime::remove_container`]
    RemoveContainer,
    /// [`ContainerRuntime::container_status`]
    ContainerStatus,
    /// [`ContainerRuntime::list_containers`]
    ListContainers,
    /// [`ContainerRuntime::recover`]
    Recover,
    /// [`ContainerRuntime::exec`]
    Exec,
    /// [`ContainerRuntime::attach`]
    Attach,
    /// [`ContainerRuntime::port_forward`]
    PortForward,
}

/// One recorded call with its arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `version()`
    Version,
    /// `import_image_archive(path)`
    ImportImageArchive(PathBuf),
    /// `list_images()`
    ListImages,
    /// `image_present(image)` (as given)
    ImagePresent(String),
    /// `ensure_image(image, policy)` (image as given)
    EnsureImage(String, PullPolicy),
    /// `pull_image(image, credentials)` (image as given)
    PullImage(String, Vec<RegistryCredential>),
    /// `remove_image(image)` (image as given)
    RemoveImage(String),
    /// `create_container(config)`
    CreateContainer(Box<ContainerConfig>),
    /// `start_container(id)`
    StartContainer(String),
    /// `stop_container(id, grace)`
    StopContainer(String, Duration),
    /// `remove_container(id)`
    RemoveContainer(String),
    /// `container_status(id)`
    ContainerStatus(String),
    /// `list_containers()`
    ListContainers,
    /// `recover()`
    Recover,
    /// `exec(id, request)`
    Exec(String, ExecRequest),
    /// `attach(id, request)`
    Attach(String, AttachRequest),
    /// `port_forward(netns, port)`
    PortForward(Option<PathBuf>, u16),
}

/// What a scripted exec produces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Bytes on stdout.
    pub stdout: Vec<u8>,
    /// Bytes on stderr.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit_code: i32,
}

type ExecHandler = Arc<dyn Fn(&str, &ExecRequest) -> ExecResult + Send + Sync>;

/// One fake container.
#[derive(Clone, Debug)]
pub struct FakeContainer {
    /// The config it was created with.
    pub config: ContainerConfig,
    /// Normalised image.
    pub image: String,
    /// Current state.
    pub state: ContainerState,
    /// Creation time.
    pub created_at: Timestamp,
    exit: watch::Sender<Option<i32>>,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    images: BTreeMap<String, ImageInfo>,
    archives: HashMap<PathBuf, Vec<String>>,
    containers: BTreeMap<String, FakeContainer>,
    next_id: u64,
    next_pid: u32,
    failures: HashMap<Method, VecDeque<String>>,
    exit_on_start: HashMap<String, i32>,
    stop_exit_code: i32,
    auto_pull: bool,
    exec_handler: Option<ExecHandler>,
    port_targets: HashMap<u16, SocketAddr>,
    /// Calls are not recorded (hollow nodes: their pod workers call the runtime every resync).
    no_record: bool,
}

/// The fake runtime. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime").finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// An empty runtime: no images, no containers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A runtime where every image is "pulled" on demand by `ensure_image` (unless the policy is
    /// `Never`): what hollow nodes want.
    pub fn with_auto_pull() -> Self {
        let fake = Self::new();
        fake.lock().auto_pull = true;
        fake
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the fake's state from the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an image (name normalised).
    pub fn add_image(&self, image: &str) {
        let name = normalize_image(image);
        let info = ImageInfo {
            names: vec![name.clone()],
            digest: format!("sha256:{:064x}", self.lock().images.len() + 1),
            size: 1 << 20,
        };
        self.lock().images.insert(name, info);
    }

    /// Makes `import_image_archive(path)` add and return these images.
    pub fn set_archive_images(&self, path: impl Into<PathBuf>, images: &[&str]) {
        let images = images.iter().map(|i| normalize_image(i)).collect();
        self.lock().archives.insert(path.into(), images);
    }

    /// Containers with this Kubernetes name exit with `code` as soon as they start.
    pub fn set_exit_on_start(&self, container_name: &str, code: i32) {
        self.lock()
            .exit_on_start
            .insert(container_name.to_string(), code);
    }

    /// The exit code `stop_container` gives (default 0).
    pub fn set_stop_exit_code(&self, code: i32) {
        self.lock().stop_exit_code = code;
    }

    /// Scripts exec: the handler gets the container id and request and says what happens.
    /// Without a handler every exec exits 0 with no output.
    pub fn set_exec_handler(
        &self,
        handler: impl Fn(&str, &ExecRequest) -> ExecResult + Send + Sync + 'static,
    ) {
        self.lock().exec_handler = Some(Arc::new(handler));
    }

    /// The next call of `method` fails with [`RuntimeError::Injected`]`(message)`. Several
    /// injections for one method fail that many calls in order.
    pub fn fail_next(&self, method: Method, message: &str) {
        self.lock()
            .failures
            .entry(method)
            .or_default()
            .push_back(message.to_string());
    }

    /// Sets a container's state (e.g. to make it exit). Unknown ids are ignored.
    pub fn set_state(&self, id: &str, state: ContainerState) {
        let mut guard = self.lock();
        if let Some(container) = guard.containers.get_mut(id) {
            set_container_state(container, state);
        }
    }

    /// Makes a running container exit with `code` now.
    pub fn exit_container(&self, id: &str, code: i32) {
        let mut guard = self.lock();
        if let Some(container) = guard.containers.get_mut(id) {
            let started_at = match container.state {
                ContainerState::Running { started_at, .. } => started_at,
                _ => Timestamp::now(),
            };
            set_container_state(
                container,
                ContainerState::Exited {
                    exit_code: code,
                    started_at,
                    finished_at: Timestamp::now(),
                    oom_killed: false,
                },
            );
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Forgets the recorded calls and records no more (a long-running hollow node would
    /// otherwise keep every call of every pod worker); containers created from then on keep
    /// no environment, mounts, command or args in their config.
    pub fn stop_recording(&self) {
        let mut state = self.lock();
        state.calls = Vec::new();
        state.no_record = true;
    }

    /// A snapshot of every container, by id.
    pub fn containers(&self) -> BTreeMap<String, FakeContainer> {
        self.lock().containers.clone()
    }

    /// A snapshot of one container.
    pub fn container(&self, id: &str) -> Option<FakeContainer> {
        self.lock().containers.get(id).cloned()
    }

    /// Makes port-forwards to `port` connect to `target` (instead of the in-memory echo).
    pub fn set_port_target(&self, port: u16, target: SocketAddr) {
        self.lock().port_targets.insert(port, target);
    }

    /// Records the call and pops an injected failure for the method, if any.
    fn enter(&self, method: Method, call: Call) -> Result<MutexGuard<'_, State>, RuntimeError> {
        let mut guard = self.lock();
        if !guard.no_record {
            guard.calls.push(call);
        }
        if let Some(message) = guard
            .failures
            .get_mut(&method)
            .and_then(VecDeque::pop_front)
        {
            return Err(RuntimeError::Injected(message));
        }
        Ok(guard)
    }
}

fn set_container_state(container: &mut FakeContainer, state: ContainerState) {
    if let ContainerState::Exited { exit_code, .. } = state {
        container.exit.send_replace(Some(exit_code));
    }
    container.state = state;
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::ContainerNotFound { id: id.to_string() }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        drop(self.enter(Method::Version, Call::Version)?);
        Ok(RuntimeVersion {
            runtime_name: "fake".to_string(),
            runtime_version: "0.1.0".to_string(),
        })
    }

    async fn import_image_archive(&self, path: &Path) -> Result<Vec<String>, RuntimeError> {
        let names = {
            let guard = self.enter(
                Method::ImportImageArchive,
                Call::ImportImageArchive(path.to_path_buf()),
            )?;
            guard.archives.get(path).cloned().unwrap_or_default()
        };
        for name in &names {
            self.add_image(name);
        }
        Ok(names)
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let guard = self.enter(Method::ListImages, Call::ListImages)?;
        Ok(guard.images.values().cloned().collect())
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        let guard = self.enter(Method::ImagePresent, Call::ImagePresent(image.to_string()))?;
        Ok(guard.images.contains_key(&normalize_image(image)))
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<(), RuntimeError> {
        let guard = self.enter(
            Method::EnsureImage,
            Call::EnsureImage(image.to_string(), policy),
        )?;
        let name = normalize_image(image);
        if guard.images.contains_key(&name) {
            return Ok(());
        }
        if policy == PullPolicy::Never {
            return Err(RuntimeError::ImageNeverPull { image: name });
        }
        if !guard.auto_pull {
            return Err(RuntimeError::ImageNotFound { image: name });
        }
        drop(guard);
        self.add_image(&name);
        Ok(())
    }

    /// Succeeds when auto-pull is on (adding the image) or the image is already present (its
    /// "registry" holds what the node holds); otherwise the image is not found.
    async fn pull_image(
        &self,
        image: &str,
        credentials: &[RegistryCredential],
    ) -> Result<u64, RuntimeError> {
        let guard = self.enter(
            Method::PullImage,
            Call::PullImage(image.to_string(), credentials.to_vec()),
        )?;
        let name = normalize_image(image);
        if let Some(info) = guard.images.get(&name) {
            return Ok(info.size);
        }
        if !guard.auto_pull {
            return Err(RuntimeError::Pull {
                reason: format!("failed to resolve reference \"{name}\": {name}: not found"),
                image: name,
            });
        }
        drop(guard);
        self.add_image(&name);
        Ok(0)
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let mut guard = self.enter(Method::RemoveImage, Call::RemoveImage(image.to_string()))?;
        guard.images.remove(&normalize_image(image));
        Ok(())
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let mut guard = self.enter(
            Method::CreateContainer,
            Call::CreateContainer(Box::new(config.clone())),
        )?;
        let image = normalize_image(&config.image);
        if !guard.images.contains_key(&image) {
            return Err(RuntimeError::ImageNotFound { image });
        }
        guard.next_id += 1;
        let id = format!("fake-{:06}-{}", guard.next_id, config.name);
        let (exit, _) = watch::channel(None);
        let mut config = config.clone();
        if guard.no_record {
            // A hollow node keeps what listing and inspecting need: at 150,000 pods the
            // environment and mounts of every container would be gigabytes nobody reads.
            config.env = Vec::new();
            config.mounts = Vec::new();
            config.command = Vec::new();
            config.args = Vec::new();
        }
        guard.containers.insert(
            id.clone(),
            FakeContainer {
                config,
                image,
                state: ContainerState::Created,
                created_at: Timestamp::now(),
                exit,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut guard = self.enter(Method::StartContainer, Call::StartContainer(id.to_string()))?;
        guard.next_pid += 1;
        let pid = 10_000 + guard.next_pid;
        let state = &mut *guard;
        let container = state.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        let now = Timestamp::now();
        let new_state = match state.exit_on_start.get(&container.config.name) {
            Some(code) => ContainerState::Exited {
                exit_code: *code,
                started_at: now,
                finished_at: now,
                oom_killed: false,
            },
            None => ContainerState::Running {
                started_at: now,
                pid,
            },
        };
        set_container_state(container, new_state);
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let mut guard = self.enter(
            Method::StopContainer,
            Call::StopContainer(id.to_string(), grace),
        )?;
        let code = guard.stop_exit_code;
        let container = guard.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        if let ContainerState::Running { started_at, .. } = container.state {
            set_container_state(
                container,
                ContainerState::Exited {
                    exit_code: code,
                    started_at,
                    finished_at: Timestamp::now(),
                    oom_killed: false,
                },
            );
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut guard = self.enter(
            Method::RemoveContainer,
            Call::RemoveContainer(id.to_string()),
        )?;
        if let Some(container) = guard.containers.remove(id) {
            container.exit.send_replace(Some(137));
        }
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let guard = self.enter(
            Method::ContainerStatus,
            Call::ContainerStatus(id.to_string()),
        )?;
        guard
            .containers
            .get(id)
            .map(|c| c.state.clone())
            .ok_or_else(|| not_found(id))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let guard = self.enter(Method::ListContainers, Call::ListContainers)?;
        Ok(guard
            .containers
            .iter()
            .map(|(id, c)| ContainerSummary {
                id: id.clone(),
                labels: c.config.labels.clone(),
                image: c.image.clone(),
                created_at: c.created_at,
                state: c.state.clone(),
            })
            .collect())
    }

    async fn recover(&self) -> Result<(), RuntimeError> {
        drop(self.enter(Method::Recover, Call::Recover)?);
        Ok(())
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        let guard = self.enter(Method::Exec, Call::Exec(id.to_string(), request.clone()))?;
        let container = guard.containers.get(id).ok_or_else(|| not_found(id))?;
        if !matches!(container.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::ContainerNotRunning { id: id.to_string() });
        }
        let handler = guard.exec_handler.clone();
        drop(guard);
        let result = match handler {
            Some(handler) => handler(id, &request),
            None => ExecResult::default(),
        };
        let (resize, mut resizes) = tokio::sync::mpsc::channel(4);
        // Drain resizes so senders never block.
        tokio::spawn(async move { while resizes.recv().await.is_some() {} });
        Ok(ExecSession {
            stdin: request.stdin.then(|| Box::new(tokio::io::sink()) as Box<_>),
            stdout: request
                .stdout
                .then(|| Box::new(std::io::Cursor::new(result.stdout)) as Box<_>),
            stderr: (request.stderr && !request.tty)
                .then(|| Box::new(std::io::Cursor::new(result.stderr)) as Box<_>),
            exit: futures::future::ready(Ok(result.exit_code)).boxed(),
            resize: request.tty.then_some(resize),
        })
    }

    async fn attach(&self, id: &str, request: AttachRequest) -> Result<ExecSession, RuntimeError> {
        let guard = self.enter(
            Method::Attach,
            Call::Attach(id.to_string(), request.clone()),
        )?;
        let container = guard.containers.get(id).ok_or_else(|| not_found(id))?;
        if !matches!(container.state, ContainerState::Running { .. }) {
            return Err(RuntimeError::ContainerNotRunning { id: id.to_string() });
        }
        let mut exit = container.exit.subscribe();
        let id = id.to_string();
        drop(guard);
        let exit = async move {
            loop {
                if let Some(code) = *exit.borrow_and_update() {
                    return Ok(code);
                }
                if exit.changed().await.is_err() {
                    return Err(RuntimeError::ContainerNotFound { id });
                }
            }
        };
        Ok(ExecSession {
            stdin: request.stdin.then(|| Box::new(tokio::io::sink()) as Box<_>),
            stdout: request
                .stdout
                .then(|| Box::new(tokio::io::empty()) as Box<_>),
            stderr: (request.stderr && !request.tty)
                .then(|| Box::new(tokio::io::empty()) as Box<_>),
            exit: exit.boxed(),
            resize: None,
        })
    }

    async fn port_forward(
        &self,
        netns: Option<&Path>,
        port: u16,
    ) -> Result<Box<dyn PortStream>, RuntimeError> {
        let target = {
            let guard = self.enter(
                Method::PortForward,
                Call::PortForward(netns.map(Path::to_path_buf), port),
            )?;
            guard.port_targets.get(&port).copied()
        };
        if let Some(target) = target {
            let stream = tokio::net::TcpStream::connect(target)
                .await
                .map_err(|source| RuntimeError::Io {
                    step: "connecting the port-forward target",
                    path: PathBuf::from(target.to_string()),
                    source,
                })?;
            return Ok(Box::new(stream));
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let (mut reader, mut writer) = tokio::io::split(theirs);
            if let Err(error) = tokio::io::copy(&mut reader, &mut writer).await {
                tracing::debug!(%error, "fake port-forward echo ended");
            }
        });
        Ok(Box::new(ours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn config(name: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.to_string(),
            image: "busybox:1.35".to_string(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn fake_runs_a_container_through_its_lifecycle() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox:1.35");
        let id = fake.create_container(&config("web")).await.expect("create");
        assert_eq!(
            fake.container_status(&id).await.expect("status"),
            ContainerState::Created
        );
        fake.start_container(&id).await.expect("start");
        assert!(matches!(
            fake.container_status(&id).await.expect("status"),
            ContainerState::Running { .. }
        ));
        fake.stop_container(&id, Duration::from_secs(30))
            .await
            .expect("stop");
        assert!(matches!(
            fake.container_status(&id).await.expect("status"),
            ContainerState::Exited { exit_code: 0, .. }
        ));
        fake.remove_container(&id).await.expect("remove");
        fake.remove_container(&id).await.expect("remove twice");
        assert!(fake.list_containers().await.expect("list").is_empty());
        assert!(matches!(fake.calls()[0], Call::CreateContainer(_)));
    }

    #[tokio::test]
    async fn fake_that_stopped_recording_still_runs_containers() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox:1.35");
        fake.create_container(&config("first"))
            .await
            .expect("create");
        fake.stop_recording();
        assert!(fake.calls().is_empty(), "earlier calls are forgotten");
        let mut web = config("web");
        web.env = vec![("A".into(), "1".into())];
        web.args = vec!["sleep".into()];
        web.labels =
            BTreeMap::from([(crate::runtime::LABEL_POD_UID.to_string(), "u1".to_string())]);
        let id = fake.create_container(&web).await.expect("create");
        let kept = &fake.containers()[&id].config;
        assert!(kept.env.is_empty() && kept.args.is_empty(), "{kept:?}");
        assert_eq!(
            kept.labels, web.labels,
            "listing still finds the pod's containers"
        );
        fake.start_container(&id).await.expect("start");
        assert!(matches!(
            fake.container_status(&id).await.expect("status"),
            ContainerState::Running { .. }
        ));
        assert!(fake.calls().is_empty(), "no call is recorded any more");
    }

    #[tokio::test]
    async fn fake_refuses_missing_images_per_policy() {
        let fake = FakeRuntime::new();
        let err = fake
            .ensure_image("nginx", PullPolicy::IfNotPresent)
            .await
            .expect_err("missing");
        assert!(
            matches!(err, RuntimeError::ImageNotFound { image } if image == "docker.io/library/nginx:latest")
        );
        let err = fake
            .ensure_image("nginx", PullPolicy::Never)
            .await
            .expect_err("missing");
        assert!(matches!(err, RuntimeError::ImageNeverPull { .. }));
        let auto = FakeRuntime::with_auto_pull();
        auto.ensure_image("nginx", PullPolicy::Always)
            .await
            .expect("auto pull");
        assert!(auto.image_present("nginx:latest").await.expect("present"));
    }

    #[tokio::test]
    async fn fake_injected_failure_hits_only_the_next_call() {
        let fake = FakeRuntime::new();
        fake.fail_next(Method::Version, "boom");
        assert!(matches!(
            fake.version().await,
            Err(RuntimeError::Injected(m)) if m == "boom"
        ));
        fake.version().await.expect("second call succeeds");
    }

    #[tokio::test]
    async fn fake_exit_on_start_and_exec_handler_are_honoured() {
        let fake = FakeRuntime::new();
        fake.set_archive_images("/images/busybox.tar", &["busybox:1.35"]);
        let names = fake
            .import_image_archive(Path::new("/images/busybox.tar"))
            .await
            .expect("import");
        assert_eq!(names, vec!["docker.io/library/busybox:1.35".to_string()]);
        fake.set_exit_on_start("crash", 3);
        let id = fake
            .create_container(&config("crash"))
            .await
            .expect("create");
        fake.start_container(&id).await.expect("start");
        assert!(matches!(
            fake.container_status(&id).await.expect("status"),
            ContainerState::Exited { exit_code: 3, .. }
        ));

        fake.set_exec_handler(|_, req| ExecResult {
            stdout: req.command.join(" ").into_bytes(),
            stderr: Vec::new(),
            exit_code: 7,
        });
        let id = fake.create_container(&config("web")).await.expect("create");
        fake.start_container(&id).await.expect("start");
        let request = ExecRequest {
            command: vec!["echo".into(), "hi".into()],
            stdout: true,
            ..Default::default()
        };
        let mut session = fake.exec(&id, request).await.expect("exec");
        let mut out = String::new();
        session
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        assert_eq!(out, "echo hi");
        assert_eq!(session.exit.await.expect("exit"), 7);
    }

    #[tokio::test]
    async fn fake_attach_resolves_when_the_container_exits() {
        let fake = FakeRuntime::new();
        fake.add_image("busybox:1.35");
        let id = fake.create_container(&config("web")).await.expect("create");
        fake.start_container(&id).await.expect("start");
        let session = fake
            .attach(
                &id,
                AttachRequest {
                    stdout: true,
                    ..Default::default()
                },
            )
            .await
            .expect("attach");
        fake.exit_container(&id, 5);
        assert_eq!(session.exit.await.expect("exit"), 5);
    }
}
