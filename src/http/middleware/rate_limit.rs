//! Per-address and overall request limits per endpoint, in fixed one-minute windows, per node
//! (several nodes multiply the overall limit; per-address limits hold per node behind a
//! balancer). An address is an IPv4 address or an IPv6 network ([`AddressKey`]).
//! Answers 429 with `Retry-After`: JSON for API endpoints, a page for browser endpoints.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::RateLimits;
use crate::http::HttpState;
use crate::http::error::{ApiError, PageError};
use crate::http::middleware::client_ip::ClientIp;
use crate::net::AddressKey;
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
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let minute = secs / 60;
        let retry = 60 - secs % 60;
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
        let total_limit = bucket.limit(total);
        if total_limit > 0 {
            let mut map = self.total.lock().expect("rate limiter lock");
            if count(map.entry(bucket).or_insert((minute, 0)), minute) > total_limit {
                return Err(retry);
            }
        }
        Ok(())
    }
}

pub async fn limit(State((state, bucket)): State<(HttpState, Bucket)>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ClientIp>().map(|c| c.0).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let limits = &state.settings.rate_limits;
    let key = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    let Err(retry) = state.limiter.check(bucket, key, &limits.per_ip, &limits.total) else {
        return next.run(req).await;
    };
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
