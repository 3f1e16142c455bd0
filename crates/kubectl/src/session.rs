//! One kubectl invocation's shared state: the global flags, where output goes, and the lazily built
//! client (from `--kubeconfig` / `$KUBECONFIG` / `~/.kube/config`, `--context`) and discovery catalog.

use std::io::Write;
use std::sync::{Arc, Mutex};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::cli::GlobalFlags;
use crate::discovery::Catalog;
use crate::duration::parse_duration;
use crate::error::{Error, Result};

/// Where a command writes: stdout and stderr, swappable for buffers in tests.
pub struct Io {
    /// Standard output (what scripts parse).
    pub out: Box<dyn Write + Send + Sync>,
    /// Standard error (warnings, "No resources found", errors).
    pub err: Box<dyn Write + Send + Sync>,
}

impl Io {
    /// The process's real stdout and stderr.
    pub fn stdio() -> Self {
        Io {
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
        }
    }

    /// In-memory stdout and stderr; the returned handles read what was written.
    pub fn buffers() -> (Self, SharedBuf, SharedBuf) {
        let out = SharedBuf::default();
        let err = SharedBuf::default();
        (
            Io {
                out: Box::new(out.clone()),
                err: Box::new(err.clone()),
            },
            out,
            err,
        )
    }
}

/// A cloneable in-memory writer (for tests and for capturing output).
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        match self.0.lock() {
            Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
            Err(poisoned) => String::from_utf8_lossy(&poisoned.into_inner()).into_owned(),
        }
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut buf) => buf.extend_from_slice(data),
            Err(poisoned) => poisoned.into_inner().extend_from_slice(data),
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The state of one invocation.
pub struct Session {
    /// The global flags.
    pub flags: GlobalFlags,
    /// Output streams.
    pub io: Io,
    connection: OnceCell<(Client, Config)>,
    catalog: OnceCell<Catalog>,
}

impl Session {
    /// A session that connects lazily according to `flags`.
    pub fn new(flags: GlobalFlags, io: Io) -> Self {
        Session {
            flags,
            io,
            connection: OnceCell::new(),
            catalog: OnceCell::new(),
        }
    }

    /// A session over an already built client (used by tests).
    pub fn with_client(flags: GlobalFlags, io: Io, client: Client, config: Config) -> Self {
        Session {
            flags,
            io,
            connection: OnceCell::new_with(Some((client, config))),
            catalog: OnceCell::new(),
        }
    }

    async fn connection(&self) -> Result<&(Client, Config)> {
        self.connection
            .get_or_try_init(|| async {
                let config = load_config(&self.flags).await?;
                let client = Client::try_from(config.clone())?;
                Ok((client, config))
            })
            .await
    }

    /// The API client.
    pub async fn client(&self) -> Result<Client> {
        Ok(self.connection().await?.0.clone())
    }

    /// The client configuration (server URL, default namespace).
    pub async fn config(&self) -> Result<Config> {
        Ok(self.connection().await?.1.clone())
    }

    /// The namespace for this request: `-n`, else the context's namespace, else `default`.
    pub async fn namespace(&self) -> Result<String> {
        if let Some(ns) = &self.flags.namespace {
            return Ok(ns.clone());
        }
        Ok(self.connection().await?.1.default_namespace.clone())
    }

    /// Whether `-n` was given explicitly (apply/create then insist manifests agree).
    pub fn namespace_explicit(&self) -> bool {
        self.flags.namespace.is_some()
    }

    /// The server's resource catalog, discovered once per invocation.
    pub async fn catalog(&self) -> Result<&Catalog> {
        let client = self.client().await?;
        self.catalog
            .get_or_try_init(|| async move { Catalog::discover(&client).await })
            .await
    }

    /// Writes `text` to stdout.
    pub fn print(&mut self, text: &str) -> Result<()> {
        self.io
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.io.out.flush())
            .map_err(|e| Error::io("writing output", e))
    }

    /// Writes `text` to stderr.
    pub fn eprint(&mut self, text: &str) -> Result<()> {
        self.io
            .err
            .write_all(text.as_bytes())
            .and_then(|()| self.io.err.flush())
            .map_err(|e| Error::io("writing output", e))
    }
}

/// Loads the kubeconfig named by the flags (or `$KUBECONFIG` / `~/.kube/config`) and the context.
pub async fn load_config(flags: &GlobalFlags) -> Result<Config> {
    let mut kubeconfig = match read_kubeconfig(flags) {
        Ok(config) => config,
        // `--server` alone is enough without any kubeconfig file.
        Err(_) if flags.server.is_some() && flags.kubeconfig.is_none() => Kubeconfig::default(),
        Err(e) => return Err(e),
    };
    let context = crate::overrides::apply(&mut kubeconfig, flags)?;
    if let Some(context) = &flags.context {
        if !kubeconfig.contexts.iter().any(|c| &c.name == context) {
            return Err(Error::Configuration(format!(
                "context was not found for specified context: {context}"
            )));
        }
    }
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    // --as, --as-group, --as-uid: impersonation headers on every request.
    if flags.as_user.is_some() {
        config.auth_info.impersonate = flags.as_user.clone();
    }
    if !flags.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(flags.as_group.clone());
    }
    if flags.as_uid.is_some() {
        config.auth_info.impersonate_uid = flags.as_uid.clone();
    }
    // Streams (logs -f, get -w, exec) must not be cut by a read timeout unless the user asks.
    config.read_timeout = None;
    // A one-shot CLI reports a 503 (e.g. "log proxy not available") instead of retrying for minutes.
    config.default_retry = false;
    let timeout = parse_duration(&flags.request_timeout, true)?;
    if !timeout.is_zero() {
        config.read_timeout = Some(timeout);
        config.connect_timeout = Some(timeout);
    }
    Ok(config)
}

/// Reads the kubeconfig file(s) the flags point at.
pub fn read_kubeconfig(flags: &GlobalFlags) -> Result<Kubeconfig> {
    check_parses(flags)?;
    match &flags.kubeconfig {
        Some(path) if !std::path::Path::new(path).exists() => {
            return Err(Error::Kubeconfig(format!(
                "stat {path}: no such file or directory"
            )))
        }
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| Error::Kubeconfig(e.to_string()))
}

/// Fails with upstream's one-line message when a kubeconfig file named by `--kubeconfig` or
/// `$KUBECONFIG` is not valid YAML (kube-rs would report a multi-line parser excerpt).
fn check_parses(flags: &GlobalFlags) -> Result<()> {
    let paths: Vec<String> = match &flags.kubeconfig {
        Some(path) => vec![path.clone()],
        None => std::env::var("KUBECONFIG")
            .map(|v| {
                v.split(':')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) {
            return Err(Error::Kubeconfig(format!(
                "error loading config file \"{path}\": {}",
                yaml_error(&e)
            )));
        }
    }
    Ok(())
}

/// A YAML parser error the way go-yaml words it: `yaml: line N: problem`.
pub fn yaml_error(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    let problem = text.split(" at line ").next().unwrap_or(&text);
    match e.location() {
        Some(at) => format!("yaml: line {}: {problem}", at.line()),
        None => format!("yaml: {problem}"),
    }
}
