//! A small HTTP server for `/healthz`, `/livez` and `/readyz` (and `/metrics` when a registry is
//! given), which every component exposes on its own port.
//!
//! `/healthz` runs the named [`HealthCheck`]s a component registered with [`Health::add_check`]
//! and answers as upstream's `healthz` handler does: `ok` when all pass; 500 with one
//! `[+]name ok` / `[-]name failed: reason withheld` line per check and `healthz check failed`
//! when one fails (the reason goes to the log, and to `/healthz/<name>`); the per-check list on
//! success too with `?verbose`; `?exclude=<name>` skips a check. With no check registered, a
//! `ping` check that always passes stands in, as upstream. `/livez` is a plain liveness answer
//! and `/readyz` reflects [`Health::set_ready`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Why a health check failed; shown only at `/healthz/<name>` and in the log.
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

/// One named check behind `/healthz` (upstream's `healthz.HealthChecker`).
pub trait HealthCheck: Send + Sync {
    /// The name in the `[+]<name> ok` line and the `/healthz/<name>` path.
    fn name(&self) -> &str;
    /// `Ok` while healthy. Called on every request, so it must be cheap and must not block.
    fn check(&self) -> Result<(), CheckError>;
}

/// Readiness and the `/healthz` checks, shared between a component and its health server.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    checks: Arc<RwLock<Vec<Arc<dyn HealthCheck>>>>,
}

impl Health {
    /// Marks the component ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the component said it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Adds `check` to `/healthz` (also after the server started: clones share the list).
    pub fn add_check(&self, check: impl HealthCheck + 'static) {
        let mut checks = match self.checks.write() {
            Ok(checks) => checks,
            Err(poisoned) => poisoned.into_inner(),
        };
        checks.push(Arc::new(check));
    }

    /// The registered checks, or the stand-in `ping` when there are none.
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        let checks = match self.checks.read() {
            Ok(checks) => checks.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if checks.is_empty() {
            vec![Arc::new(Ping)]
        } else {
            checks
        }
    }
}

/// Upstream's `ping` check: the server answers, so it passes.
struct Ping;

impl HealthCheck for Ping {
    fn name(&self) -> &str {
        "ping"
    }

    fn check(&self) -> Result<(), CheckError> {
        Ok(())
    }
}

/// Why the health server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The address could not be bound (often: the port is already taken).
    #[error("binding health server to {addr}: {source} (is the port already in use?)")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What a `/healthz` query string asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    verbose: bool,
    exclude: Vec<String>,
}

impl Query {
    /// `verbose` counts with or without a value (`?verbose`, `?verbose=true`), as upstream;
    /// `exclude` may repeat.
    fn parse(raw: Option<&str>) -> Self {
        let mut query = Query::default();
        for pair in raw.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "verbose" => query.verbose = true,
                "exclude" if !value.is_empty() => query.exclude.push(value.to_string()),
                _ => {}
            }
        }
        query
    }
}

/// Runs `checks` and renders upstream's `/healthz` answer.
fn evaluate(checks: &[Arc<dyn HealthCheck>], query: &Query) -> (StatusCode, String) {
    let mut unmatched: Vec<&str> = query.exclude.iter().map(String::as_str).collect();
    let mut lines = String::new();
    let mut reasons = Vec::new();
    for check in checks {
        let name = check.name();
        if let Some(at) = unmatched.iter().position(|e| *e == name) {
            unmatched.remove(at);
            lines.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match check.check() {
            Ok(()) => lines.push_str(&format!("[+]{name} ok\n")),
            Err(error) => {
                // The endpoint is unauthenticated: the reason goes to the log only.
                lines.push_str(&format!("[-]{name} failed: reason withheld\n"));
                reasons.push(format!("{name}: {error}"));
            }
        }
    }
    if !unmatched.is_empty() {
        let quoted: Vec<String> = unmatched.iter().map(|e| format!("{e:?}")).collect();
        lines.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    if !reasons.is_empty() {
        tracing::info!(failed = ?reasons, "healthz check failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{lines}healthz check failed\n"),
        )
    } else if query.verbose {
        (StatusCode::OK, format!("{lines}healthz check passed\n"))
    } else {
        (StatusCode::OK, "ok".to_string())
    }
}

async fn healthz(State(health): State<Health>, RawQuery(raw): RawQuery) -> (StatusCode, String) {
    evaluate(&health.checks(), &Query::parse(raw.as_deref()))
}

/// `/healthz/<name>`: one check, with its reason when it fails.
async fn healthz_one(
    State(health): State<Health>,
    Path(name): Path<String>,
) -> (StatusCode, String) {
    let checks = health.checks();
    let Some(check) = checks.iter().find(|c| c.name() == name) else {
        return (StatusCode::NOT_FOUND, "404 page not found\n".to_string());
    };
    match check.check() {
        Ok(()) => (StatusCode::OK, "ok".to_string()),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {error}\n"),
        ),
    }
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// The health routes, to be merged into a component's own router or served alone.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{name}", get(healthz_one))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Binds `addr` now (so a taken port is reported at start-up) and serves the health routes in a
/// background task.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<SocketAddr, HealthError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HealthError::Bind { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(health)).await {
            tracing::error!(%error, "health server stopped");
        }
    });
    Ok(local)
}

/// The raw HTTP/1.1 response (status line, headers, body) to a plain `GET <path>` on the health
/// server at `addr`: what a probe reads, and what the components' tests check.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A check whose result the test flips.
    struct Switch {
        name: &'static str,
        healthy: Arc<AtomicBool>,
    }

    impl HealthCheck for Switch {
        fn name(&self) -> &str {
            self.name
        }

        fn check(&self) -> Result<(), CheckError> {
            if self.healthy.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("the switch is off".into())
            }
        }
    }

    fn health_with(checks: &[(&'static str, bool)]) -> Health {
        let health = Health::default();
        for (name, healthy) in checks {
            health.add_check(Switch {
                name,
                healthy: Arc::new(AtomicBool::new(*healthy)),
            });
        }
        health
    }

    /// Registered checks (name, passes), query string, wanted status and body.
    type Case = (
        &'static [(&'static str, bool)],
        Option<&'static str>,
        StatusCode,
        &'static str,
    );

    #[test]
    fn healthz_answers_like_upstream_for_each_query() {
        let cases: &[Case] = &[
            (&[], None, StatusCode::OK, "ok"),
            (
                &[],
                Some("verbose"),
                StatusCode::OK,
                "[+]ping ok\nhealthz check passed\n",
            ),
            (&[("leaderElection", true)], None, StatusCode::OK, "ok"),
            (
                &[("leaderElection", true)],
                Some("verbose=true"),
                StatusCode::OK,
                "[+]leaderElection ok\nhealthz check passed\n",
            ),
            (
                &[("leaderElection", false)],
                None,
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]leaderElection failed: reason withheld\nhealthz check failed\n",
            ),
            (
                &[("a", true), ("leaderElection", false)],
                Some("verbose"),
                StatusCode::INTERNAL_SERVER_ERROR,
                "[+]a ok\n[-]leaderElection failed: reason withheld\nhealthz check failed\n",
            ),
            (
                &[("a", true), ("leaderElection", false)],
                Some("exclude=leaderElection"),
                StatusCode::OK,
                "ok",
            ),
            (
                &[("a", true), ("leaderElection", false)],
                Some("verbose&exclude=leaderElection"),
                StatusCode::OK,
                "[+]a ok\n[+]leaderElection excluded: ok\nhealthz check passed\n",
            ),
            (
                &[("a", true)],
                Some("verbose&exclude=nope"),
                StatusCode::OK,
                "[+]a ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nhealthz check passed\n",
            ),
        ];
        for (checks, query, want_status, want_body) in cases {
            let health = health_with(checks);
            let (status, body) = evaluate(&health.checks(), &Query::parse(*query));
            assert_eq!(
                (status, body.as_str()),
                (*want_status, *want_body),
                "{checks:?} {query:?}"
            );
        }
    }

    #[test]
    fn a_check_added_after_cloning_is_seen_by_every_clone() {
        let health = Health::default();
        let served = health.clone();
        let healthy = Arc::new(AtomicBool::new(true));
        health.add_check(Switch {
            name: "leaderElection",
            healthy: healthy.clone(),
        });
        let verbose = Query::parse(Some("verbose"));
        assert_eq!(evaluate(&served.checks(), &verbose).0, StatusCode::OK);
        healthy.store(false, Ordering::Relaxed);
        assert_eq!(
            evaluate(&served.checks(), &verbose).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn the_server_names_a_failed_check_and_gives_its_reason_only_on_its_own_path(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let health = health_with(&[("leaderElection", false)]);
        let addr = serve(SocketAddr::from(([127, 0, 0, 1], 0)), health).await?;

        let all = http_get(addr, "/healthz").await?;
        assert!(all.starts_with("HTTP/1.1 500"), "{all}");
        assert!(
            all.ends_with(
                "\r\n\r\n[-]leaderElection failed: reason withheld\nhealthz check failed\n"
            ),
            "{all}"
        );
        assert!(
            all.contains("content-type: text/plain; charset=utf-8"),
            "{all}"
        );

        let one = http_get(addr, "/healthz/leaderElection").await?;
        assert!(one.starts_with("HTTP/1.1 500"), "{one}");
        assert!(
            one.ends_with("internal server error: the switch is off\n"),
            "{one}"
        );

        assert!(http_get(addr, "/healthz/nope")
            .await?
            .starts_with("HTTP/1.1 404"));
        // Liveness does not depend on the checks, as upstream's /livez has none of them.
        assert!(http_get(addr, "/livez").await?.starts_with("HTTP/1.1 200"));
        Ok(())
    }
}
