//! The one OS effect of kube-proxy: handing an nftables script to `nft -f -`, which applies it as
//! one atomic transaction. [`NftCommand`] runs the real binary; [`RecordingNftables`] records the
//! scripts (and can be told to fail) for tests.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Why an nftables call failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started.
    #[error("running {binary}: {source}")]
    Spawn {
        /// The binary that was run.
        binary: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the script to `nft`'s stdin failed.
    #[error("writing the ruleset to nft: {0}")]
    Write(#[source] std::io::Error),
    /// `nft` ran and refused the script (nothing was applied).
    #[error("nft exited with {status}: {stderr}")]
    Rejected {
        /// Exit status.
        status: String,
        /// What nft printed on stderr.
        stderr: String,
    },
    /// A failure injected by the test fake.
    #[error("injected failure: {0}")]
    Injected(String),
}

/// Applies nftables scripts.
pub trait Nftables: Send + Sync {
    /// Applies `script` (nft's text syntax) atomically: all of it or none.
    fn apply(&self, script: &str) -> Result<(), NftError>;

    /// Returns `nft list table ip <table>` output.
    fn list_table(&self, table: &str) -> Result<String, NftError>;
}

/// The real implementation: runs `nft` (default `/usr/sbin/nft`).
#[derive(Debug, Clone)]
pub struct NftCommand {
    binary: PathBuf,
}

impl Default for NftCommand {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("/usr/sbin/nft"),
        }
    }
}

impl NftCommand {
    /// Uses the `nft` binary at `binary`.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let binary = self.binary.display().to_string();
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NftError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(script.as_bytes()).map_err(NftError::Write)?;
        }
        let output = child
            .wait_with_output()
            .map_err(|source| NftError::Spawn { binary, source })?;
        if !output.status.success() {
            return Err(NftError::Rejected {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Nftables for NftCommand {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).map(|_| ())
    }

    fn list_table(&self, table: &str) -> Result<String, NftError> {
        self.run(&["list", "table", crate::model::FAMILY, table], None)
    }
}

/// A fake that records every script and fails when told to.
#[derive(Debug, Clone, Default)]
pub struct RecordingNftables {
    scripts: Arc<Mutex<Vec<String>>>,
    fail_next: Arc<Mutex<Option<String>>>,
}

impl RecordingNftables {
    /// A fake with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The scripts applied so far (failed ones included), oldest first.
    pub fn scripts(&self) -> Vec<String> {
        self.scripts
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Makes the next `apply` fail with `message`.
    pub fn fail_next(&self, message: &str) {
        let mut slot = self
            .fail_next
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(message.to_string());
    }
}

impl Nftables for RecordingNftables {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        self.scripts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(script.to_string());
        let injected = self
            .fail_next
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match injected {
            Some(message) => Err(NftError::Injected(message)),
            None => Ok(()),
        }
    }

    fn list_table(&self, _table: &str) -> Result<String, NftError> {
        Ok(self.scripts().join(""))
    }
}
