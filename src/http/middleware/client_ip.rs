//! Resolves the client's IP address (see [`crate::net`]) once per request and puts it in the
//! request's extensions.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::HttpState;
use crate::net::client_ip;

/// The resolved client address, put in request extensions by [`resolve`].
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

pub async fn resolve(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let ext = req.extensions();
    let peer = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| ext.get::<ConnectInfo<crate::tls::PeerAddr>>().map(|c| c.0.0.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let ip = client_ip(peer, req.headers(), &state.settings.trusted_proxies, &state.settings.client_ip_header);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}
