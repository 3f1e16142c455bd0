//! The HTTPS server: accepts TCP connections, completes TLS (client certificates optional),
//! reads the certificate user once per connection and serves HTTP/1.1 or HTTP/2 (with upgrades)
//! through [`crate::auth::serve`] (per-request bearer tokens and impersonation), which calls
//! [`crate::handlers::handle`].

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::state::ApiState;

/// Serves `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                tracing::warn!(%error, "accepting connection");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "setting TCP_NODELAY");
            }
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let user = auth::user_from_certs(tls.get_ref().1.peer_certificates());
            let service = service_fn(move |req| {
                let state = state.clone();
                let user = user.clone();
                async move { Ok::<_, std::convert::Infallible>(auth::serve(state, user, req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with error");
            }
        });
    }
}
