//! Serving connections. `axum::serve` reads a request's headers for as long as the client
//! takes and accepts every connection it is offered, so a few thousand slow clients (one header
//! byte every few seconds) hold a file descriptor and a task each for ever. Here each
//! connection is HTTP/1.1 through hyper with a timer: a request's headers must arrive within
//! `header_read_timeout` (10 s; the connection is closed otherwise), and at most
//! `max_connections` (4,096) are served at once; beyond that the accept loop waits for one to
//! end, so further clients wait in the kernel's listen backlog instead of costing memory here.
//! Graceful shutdown lets requests in progress finish.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tower::{Layer, ServiceExt};

use crate::config::ServeSettings;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the connections in
/// progress. `info` turns a peer address into the `ConnectInfo` the app's requests carry (the
/// client-address middleware reads `ConnectInfo<SocketAddr>` or `ConnectInfo<tls::PeerAddr>`).
pub async fn run<L, C>(
    mut listener: L,
    app: Router,
    settings: ServeSettings,
    info: fn(&L::Addr) -> C,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    C: Clone + Send + Sync + 'static,
{
    let permits = (settings.max_connections > 0).then(|| Arc::new(Semaphore::new(settings.max_connections as usize)));
    let (closing, open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = match &permits {
            Some(p) => tokio::select! {
                permit = p.clone().acquire_owned() => Some(permit.expect("the semaphore is never closed")),
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (io, addr) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let service = axum::Extension(ConnectInfo(info(&addr)))
            .layer(app.clone())
            .map_request(|req: hyper::Request<Incoming>| req.map(axum::body::Body::new));
        let service = TowerToHyperService::new(service);
        let mut stop = open.clone();
        let header_read_timeout = settings.header_read_timeout.as_duration();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(open);
    let _ = closing.send(());
    // Every connection task holds a receiver: this returns when the last one has finished.
    closing.closed().await;
}

/// `ConnectInfo` for plain TCP.
pub fn tcp_peer(addr: &std::net::SocketAddr) -> std::net::SocketAddr {
    *addr
}

/// `ConnectInfo` for the native TLS listener.
pub fn tls_peer(addr: &std::net::SocketAddr) -> crate::tls::PeerAddr {
    crate::tls::PeerAddr(*addr)
}
