//! Service-account tokens of projected volumes (`serviceAccountToken` sources): what to ask the
//! TokenRequest API for (bound to the pod), a per-pod cache that says when a token must be
//! renewed (as upstream's token manager: once 80% of its lifetime has passed, or when it is
//! older than 24 hours), and atomic file writes (temporary file + rename, so a container never
//! reads a half-written token).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// `expirationSeconds` when a source does not say (the API default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Tokens older than this are renewed whatever their lifetime.
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A TokenRequest for a pod's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAsk {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's service account.
    pub service_account: String,
    /// The pod (the token is bound to it).
    pub pod_name: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The audience (None: the API server's audiences).
    pub audience: Option<String>,
    /// Requested lifetime.
    pub expiration_seconds: i64,
}

/// A token the API issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its expiry, Unix seconds.
    pub expiration: i64,
}

/// Which token a projection wants: (audience, expirationSeconds).
pub type TokenKey = (Option<String>, i64);

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    issued: Instant,
    lifetime: Duration,
}

/// Whether a token issued at `issued` with `lifetime` must be renewed at `now`.
pub fn needs_refresh(issued: Instant, lifetime: Duration, now: Instant) -> bool {
    let age = now.saturating_duration_since(issued);
    age >= lifetime.mul_f64(0.8) || age > MAX_TOKEN_AGE
}

/// The tokens of one pod.
#[derive(Debug, Default)]
pub struct PodTokens {
    cached: BTreeMap<TokenKey, Cached>,
}

impl PodTokens {
    /// The cached token for `key` unless it is due for renewal at `now`.
    pub fn fresh(&self, key: &TokenKey, now: Instant) -> Option<&str> {
        self.cached
            .get(key)
            .filter(|c| !needs_refresh(c.issued, c.lifetime, now))
            .map(|c| c.token.as_str())
    }

    /// Remembers `issued` (asked for at `now`, wall clock `unix_now`).
    pub fn store(&mut self, key: TokenKey, issued: &IssuedToken, now: Instant, unix_now: i64) {
        let lifetime =
            Duration::from_secs(u64::try_from(issued.expiration - unix_now).unwrap_or(0));
        self.cached.insert(
            key,
            Cached {
                token: issued.token.clone(),
                issued: now,
                lifetime,
            },
        );
    }

    /// How long until the first cached token is due for renewal (None: nothing cached).
    pub fn next_refresh(&self, now: Instant) -> Option<Duration> {
        self.cached
            .values()
            .map(|c| {
                let due = c.issued + c.lifetime.mul_f64(0.8).min(MAX_TOKEN_AGE);
                due.saturating_duration_since(now)
            })
            .min()
    }
}

/// Writes `content` to `path` atomically: a temporary file in the same directory, then a
/// rename over the target.
pub fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        if let Err(error) = std::fs::remove_file(&tmp) {
            tracing::debug!(path = %tmp.display(), %error, "removing temporary file");
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_are_renewed_after_80_percent_of_their_lifetime() {
        let mut tokens = PodTokens::default();
        let key: TokenKey = (None, 3600);
        let start = Instant::now();
        assert!(tokens.fresh(&key, start).is_none());
        let issued = IssuedToken {
            token: "t1".into(),
            expiration: 1000 + 3600,
        };
        tokens.store(key.clone(), &issued, start, 1000);
        assert_eq!(tokens.fresh(&key, start), Some("t1"));
        assert_eq!(tokens.next_refresh(start), Some(Duration::from_secs(2880)));
        tokio::time::advance(Duration::from_secs(2879)).await;
        assert_eq!(tokens.fresh(&key, Instant::now()), Some("t1"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(tokens.fresh(&key, Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn long_lived_tokens_are_renewed_after_a_day() {
        let start = Instant::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert!(!needs_refresh(
            start,
            year,
            start + Duration::from_secs(3600)
        ));
        assert!(needs_refresh(
            start,
            year,
            start + MAX_TOKEN_AGE + Duration::from_secs(1)
        ));
    }

    #[test]
    fn atomic_writes_replace_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub").join("token");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let entries = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .count();
        assert_eq!(entries, 1, "no temporary files are left behind");
    }
}
