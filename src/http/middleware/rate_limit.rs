//! Per-address and overall request limits per endpoint, in fixed one-minute windows, per node
//! (several nodes multiply the overall limit; per-address limits hold per node behind a
//! balancer). An address is an IPv4 address or an IPv6 network ([`AddressKey`]).
//!
//! The token endpoint is keyed differently ([`limit_token`]): hosted clients (claude.ai, ChatGPT)
//! call it for all of a company's people from a handful of shared addresses, so a request that
//! was served counts against its (then authenticated) client (`rate_limit_per_client`), and only
//! one that failed counts against its address (`rate_limit_per_ip.token`): the address limit
//! stops guessing and other abuse without capping the clients behind the address. Failures are
//! not charged to the client they name: for a public client that name proves nothing, and anyone
//! could otherwise spend a hosted client's budget.
//! Answers 429 with `Retry-After`: JSON for API endpoints, a page for browser endpoints.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::clients::auth::claimed_client_id;
use crate::config::{RateLimitSettings, RateLimits};
use crate::http::HttpState;
use crate::http::error::{ApiError, PageError};
use crate::http::middleware::client_ip::ClientIp;
use crate::net::AddressKey;
use crate::oauth::params::Params;
use crate::oauth::{ErrorCode, OAuthError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    Authorize,
    Token,
    Register,
    Introspect,
    Login,
    Revoke,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Authorize => "authorize",
            Bucket::Token => "token",
            Bucket::Register => "register",
            Bucket::Introspect => "introspect",
            Bucket::Login => "login",
            Bucket::Revoke => "revoke",
        }
    }

    fn limit(self, limits: &RateLimits) -> u32 {
        match self {
            Bucket::Authorize => limits.authorize,
            Bucket::Token => limits.token,
            Bucket::Register => limits.register,
            Bucket::Introspect => limits.introspect,
            Bucket::Login => limits.login,
            Bucket::Revoke => limits.revoke,
        }
    }

    fn browser(self) -> bool {
        matches!(self, Bucket::Authorize | Bucket::Login)
    }
}

type Window = (u64, u32);

#[derive(Default)]
pub struct Limiter {
    per_ip: Mutex<HashMap<(Bucket, AddressKey), Window>>,
    total: Mutex<HashMap<Bucket, Window>>,
    /// Authenticated token requests per client.
    per_client: Mutex<HashMap<String, Window>>,
}

/// The current minute and the seconds left in it.
fn minute_now() -> (u64, u64) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    (secs / 60, 60 - secs % 60)
}

/// A window's count in `minute`, without counting.
fn seen(window: Option<&Window>, minute: u64) -> u32 {
    match window {
        Some((m, n)) if *m == minute => *n,
        _ => 0,
    }
}

fn count(window: &mut Window, minute: u64) -> u32 {
    if window.0 != minute {
        *window = (minute, 0);
    }
    window.1 = window.1.saturating_add(1);
    window.1
}

impl Limiter {
    /// Counts a request; `Err(seconds)` when a limit is exceeded, with the time left in the window.
    pub fn check(&self, bucket: Bucket, ip: AddressKey, per_ip: &RateLimits, total: &RateLimits) -> Result<(), u64> {
        let (minute, retry) = minute_now();
        let ip_limit = bucket.limit(per_ip);
        if ip_limit > 0 {
            let mut map = self.per_ip.lock().expect("rate limiter lock");
            if map.len() > 100_000 {
                map.retain(|_, w| w.0 == minute);
            }
            if count(map.entry((bucket, ip)).or_insert((minute, 0)), minute) > ip_limit {
                return Err(retry);
            }
        }
        self.count_total(bucket, total, minute).map_err(|_| retry)
    }

    fn count_total(&self, bucket: Bucket, total: &RateLimits, minute: u64) -> Result<(), ()> {
        let total_limit = bucket.limit(total);
        if total_limit > 0 {
            let mut map = self.total.lock().expect("rate limiter lock");
            if count(map.entry(bucket).or_insert((minute, 0)), minute) > total_limit {
                return Err(());
            }
        }
        Ok(())
    }

    /// Admits a token request from `ip` that says it is `client`: refused while the address's
    /// failed requests or the client's served ones have reached their limit this minute (looked at, not counted: [`Limiter::settle_token`] counts once the answer shows
    /// which it was), or the overall limit (counted here).
    pub fn admit_token(&self, ip: AddressKey, client: Option<&str>, limits: &RateLimitSettings) -> Result<(), u64> {
        let (minute, retry) = minute_now();
        let ip_limit = limits.per_ip.token;
        if ip_limit > 0
            && seen(self.per_ip.lock().expect("rate limiter lock").get(&(Bucket::Token, ip)), minute) >= ip_limit
        {
            return Err(retry);
        }
        if let Some(client) = client
            && limits.per_client > 0
            && seen(self.per_client.lock().expect("rate limiter lock").get(client), minute) >= limits.per_client
        {
            return Err(retry);
        }
        self.count_total(Bucket::Token, &limits.total, minute).map_err(|_| retry)
    }

    /// Counts an answered token request: against `served` (the client it was served to), or,
    /// when it failed, against its address.
    pub fn settle_token(&self, ip: AddressKey, served: Option<&str>) {
        let (minute, _) = minute_now();
        match served {
            Some(client) => {
                let mut map = self.per_client.lock().expect("rate limiter lock");
                if map.len() > 100_000 {
                    map.retain(|_, w| w.0 == minute);
                }
                match map.get_mut(client) {
                    Some(w) => count(w, minute),
                    None => count(map.entry(client.to_string()).or_insert((minute, 0)), minute),
                };
            }
            None => {
                let mut map = self.per_ip.lock().expect("rate limiter lock");
                if map.len() > 100_000 {
                    map.retain(|_, w| w.0 == minute);
                }
                count(map.entry((Bucket::Token, ip)).or_insert((minute, 0)), minute);
            }
        }
    }
}

/// The token endpoint's limits (see the module notes).
pub async fn limit_token(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ClientIp>().map(|c| c.0).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let key = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    // The body is read here to see which client the request names, and handed on as it came.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, state.settings.max_body_bytes).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let claimed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|b| Params::parse(b).ok())
        .and_then(|params| claimed_client_id(crate::http::authorization(&parts.headers), &params));
    if let Err(retry) = state.limiter.admit_token(key, claimed.as_deref(), &state.settings.rate_limits) {
        return refused(&state, Bucket::Token, ip, retry);
    }
    let res = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    state.limiter.settle_token(key, claimed.as_deref().filter(|_| res.status().is_success()));
    res
}

pub async fn limit(State((state, bucket)): State<(HttpState, Bucket)>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ClientIp>().map(|c| c.0).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let limits = &state.settings.rate_limits;
    let key = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    let Err(retry) = state.limiter.check(bucket, key, &limits.per_ip, &limits.total) else {
        return next.run(req).await;
    };
    refused(&state, bucket, ip, retry)
}

/// 429 with `Retry-After`: a page for browser endpoints, JSON for API endpoints.
fn refused(state: &HttpState, bucket: Bucket, ip: IpAddr, retry: u64) -> Response {
    state.metrics.rate_limited(bucket.as_str());
    tracing::info!(%ip, endpoint = bucket.as_str(), "rate limit exceeded");
    let mut res = if bucket.browser() {
        PageError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", "Please wait a minute and try again.")
            .into_response()
    } else {
        ApiError::from(OAuthError::new(ErrorCode::SlowDown, "too many requests; retry after the time in Retry-After"))
            .into_response()
    };
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_then_total() {
        let l = Limiter::default();
        let per_ip = RateLimits { token: 2, ..RateLimits::off() };
        let total = RateLimits { token: 3, ..RateLimits::off() };
        let a = AddressKey::new("192.0.2.1".parse().unwrap(), 64);
        let b = AddressKey::new("192.0.2.2".parse().unwrap(), 64);
        assert!(l.check(Bucket::Token, a, &per_ip, &total).is_ok());
        assert!(l.check(Bucket::Token, a, &per_ip, &total).is_ok());
        assert!(l.check(Bucket::Token, a, &per_ip, &total).is_err(), "third from a");
        assert!(l.check(Bucket::Token, b, &per_ip, &total).is_ok(), "b has its own window");
        assert!(l.check(Bucket::Token, b, &per_ip, &total).is_err(), "overall limit reached");
        assert!(l.check(Bucket::Login, a, &per_ip, &total).is_ok(), "other buckets unaffected; 0 is off");
    }

    #[test]
    fn served_token_requests_count_against_their_client() {
        let l = Limiter::default();
        let limits = RateLimitSettings {
            per_ip: RateLimits { token: 2, ..RateLimits::off() },
            total: RateLimits::off(),
            per_client: 3,
            per_refresh_family: 0,
        };
        let egress = AddressKey::new("192.0.2.1".parse().unwrap(), 64);
        // Many served requests from one address: each client has its own budget.
        for client in ["a", "b"] {
            for _ in 0..3 {
                assert!(l.admit_token(egress, Some(client), &limits).is_ok());
                l.settle_token(egress, Some(client));
            }
            assert!(l.admit_token(egress, Some(client), &limits).is_err(), "{client} is over its limit");
        }
        assert!(l.admit_token(egress, Some("c"), &limits).is_ok(), "the address is not");
        // Failed ones count against the address, whatever client they name.
        for _ in 0..2 {
            assert!(l.admit_token(egress, Some("c"), &limits).is_ok());
            l.settle_token(egress, None);
        }
        assert!(l.admit_token(egress, Some("c"), &limits).is_err());
        assert!(l.admit_token(egress, None, &limits).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_network_budget() {
        let l = Limiter::default();
        let per_ip = RateLimits { token: 2, ..RateLimits::off() };
        let off = RateLimits::off();
        let key = |s: &str| AddressKey::new(s.parse().unwrap(), 64);
        assert!(l.check(Bucket::Token, key("2001:db8:0:1::1"), &per_ip, &off).is_ok());
        assert!(l.check(Bucket::Token, key("2001:db8:0:1::2"), &per_ip, &off).is_ok());
        assert!(l.check(Bucket::Token, key("2001:db8:0:1:ffff::3"), &per_ip, &off).is_err(), "same /64");
        assert!(l.check(Bucket::Token, key("2001:db8:0:2::1"), &per_ip, &off).is_ok(), "another /64");
    }
}
