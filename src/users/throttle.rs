//! Password checks under the sign-in throttle: the login form and the account page's password
//! change both go through [`check_password`], so both meet the same limits and the same bounded
//! hashing. The policy (after the OWASP Authentication Cheat Sheet: slow guessing down without
//! handing anyone a way to lock a person out) counts failures three ways, in the database, so
//! every node enforces the same limits:
//!
//! - **per account and address** (the address an IPv4 address or an IPv6 /64, see
//!   [`AddressKey`]): from `login_max_failures` failures on, that account is locked *for that
//!   address* for `login_lockout`, doubling with each further failure up to a day;
//! - **per account**, from every address: from `login_max_failures` failures on, each attempt on
//!   the account waits before its password is checked, 1 s doubling per further failure up to
//!   [`MAX_DELAY`]. A delay, never a lock: the right password from another address still gets in;
//! - **per address**, over every account: from [`ADDRESS_FACTOR`] × `login_max_failures`
//!   failures on, the address is locked (same durations) for the accounts it has failed on. The
//!   accounts it never guessed stay open to it, so one guesser behind a NAT does not lock out
//!   everyone else behind it.
//!
//! An attempt is counted before its password is checked, in one transaction with the lock check
//! (`store::throttle::reserve`), and taken back when it succeeds: a parallel burst gets no more
//! guesses checked than the limit, and a right password inside a burst that locked the account
//! is refused like the rest.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::LoginSettings;
use crate::net::AddressKey;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::throttle::{self, Counts, Decision, Keys};

/// The longest an attempt on an account under attack waits before its password is checked.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// An address may fail this many times `login_max_failures` over all accounts before it is locked
/// for the accounts it failed on (many people may share one address).
pub const ADDRESS_FACTOR: i64 = 5;
/// The longest lock.
const MAX_LOCK: i64 = 86_400;
/// Names longer than this are keyed by their hash, so a 64 KB "username" stores 64 bytes.
const MAX_KEYED_NAME: usize = 128;

/// The keys one attempt is counted under.
#[derive(Clone, Debug)]
pub struct AttemptKeys {
    pair: String,
    account: String,
    address: String,
}

impl AttemptKeys {
    /// The account is keyed by the name as typed, lower-cased, whether or not it exists (the
    /// answer reveals nothing about which names exist).
    pub fn new(username: &str, ip: IpAddr, ipv6_prefix: u8) -> AttemptKeys {
        // (Postgres text cannot hold NUL.)
        let name = username.to_lowercase().replace('\0', "\u{fffd}");
        let name = match name.len() > MAX_KEYED_NAME {
            true => {
                use base64::Engine;
                let digest = crate::tokens::secrets::hash(&name);
                format!("#{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
            }
            false => name,
        };
        let address = AddressKey::new(ip, ipv6_prefix);
        AttemptKeys {
            pair: format!("pair:{address}|{name}"),
            account: format!("user:{name}"),
            address: format!("ip:{address}"),
        }
    }

    fn keys(&self) -> Keys<'_> {
        Keys { pair: &self.pair, account: &self.account, address: &self.address }
    }
}

/// The limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub max_failures: i64,
    /// The first lock, in seconds.
    pub lockout: i64,
}

impl Policy {
    pub fn new(settings: &LoginSettings) -> Policy {
        Policy { max_failures: i64::from(settings.max_failures.max(1)), lockout: settings.lockout.as_i64() }
    }

    /// Admits or refuses an attempt whose counts include it.
    pub fn decide(&self, c: &Counts, now: i64) -> Decision {
        if c.pair.locked_until > now {
            return Decision::Refuse(c.pair.locked_until);
        }
        // Failed on this account before (the attempt itself is the one failure counted so far).
        let guessed = c.pair.failures > 1;
        if guessed && c.address.locked_until > now {
            return Decision::Refuse(c.address.locked_until);
        }
        Decision::Admit {
            pair_lock: self.lock(c.pair.failures, self.max_failures, now),
            address_lock: self.lock(c.address.failures, self.max_failures * ADDRESS_FACTOR, now),
        }
    }

    /// The lock that `failures` (this attempt included) earn: from `limit` on, `lockout` doubled
    /// per failure past it, up to a day.
    fn lock(&self, failures: i64, limit: i64, now: i64) -> Option<i64> {
        let over = failures - limit;
        (over >= 0).then(|| now + self.lockout.saturating_mul(1 << over.min(20)).min(MAX_LOCK))
    }

    /// How long an admitted attempt waits before its password is checked: none until the account
    /// has `max_failures` failures (before this attempt), then 1 s doubling per failure.
    pub fn delay(&self, c: &Counts) -> Duration {
        let over = c.account.failures - 1 - self.max_failures;
        if over < 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(1 << over.min(8)).min(MAX_DELAY)
    }
}

/// The outcome of a throttled password check.
#[derive(Debug)]
pub enum Outcome {
    /// Refused before the password was checked: locked until then (unix seconds).
    Locked {
        until: i64,
    },
    Checked(Checked),
}

/// A password that was checked. Its attempt stays counted as a failure unless [`Checked::accept`]
/// takes it back.
#[derive(Debug)]
#[must_use = "a success must be accepted, or it stays counted as a failure"]
pub struct Checked {
    pub matches: bool,
    /// The account's failures from every address, this attempt included.
    pub account_failures: i64,
    /// A lock this attempt set (unix seconds), if it stands as a failure.
    pub locked_until: Option<i64>,
    keys: AttemptKeys,
    counts: Counts,
    decision: Decision,
}

impl Checked {
    /// The sign-in succeeded: forget the attempt and the account's failures.
    pub async fn accept(self, state: &AppState) -> Result<(), StoreError> {
        throttle::succeeded(&state.db, self.keys.keys(), &self.counts, &self.decision).await
    }
}

/// Checks `password` for `username` from `ip` against `stored` (`None`: no such person; a dummy
/// hash keeps the time the same) under the throttle, on the process's bounded hasher.
pub async fn check_password(
    state: &AppState,
    ip: IpAddr,
    username: &str,
    password: String,
    stored: Option<String>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let keys = AttemptKeys::new(username, ip, state.settings.ipv6_prefix_length);
    let policy = Policy::new(&state.settings.login);
    let (counts, decision) = throttle::reserve(&state.db, keys.keys(), now, |c| policy.decide(c, now)).await?;
    let (pair_lock, address_lock) = match &decision {
        Decision::Refuse(until) => return Ok(Outcome::Locked { until: *until }),
        Decision::Admit { pair_lock, address_lock } => (*pair_lock, *address_lock),
    };
    let delay = policy.delay(&counts);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let matches = state.hasher.verify(password, stored).await;
    Ok(Outcome::Checked(Checked {
        matches,
        account_failures: counts.account.failures,
        locked_until: pair_lock.max(address_lock),
        keys,
        counts,
        decision,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::throttle::Count;

    const NOW: i64 = 1_000_000;

    fn counts(pair: (i64, i64), account: i64, address: (i64, i64)) -> Counts {
        Counts {
            pair: Count { failures: pair.0, locked_until: pair.1 },
            account: Count { failures: account, locked_until: 0 },
            address: Count { failures: address.0, locked_until: address.1 },
        }
    }

    #[test]
    fn the_pair_locks_at_the_limit_and_doubles() {
        let p = Policy { max_failures: 5, lockout: 60 };
        let admit = |pair| p.decide(&counts((pair, 0), pair, (1, 0)), NOW);
        assert_eq!(admit(4), Decision::Admit { pair_lock: None, address_lock: None });
        assert_eq!(admit(5), Decision::Admit { pair_lock: Some(NOW + 60), address_lock: None });
        assert_eq!(admit(6), Decision::Admit { pair_lock: Some(NOW + 120), address_lock: None });
        assert_eq!(admit(40), Decision::Admit { pair_lock: Some(NOW + 86_400), address_lock: None }, "a day at most");
        assert_eq!(p.decide(&counts((6, NOW + 1), 6, (6, 0)), NOW), Decision::Refuse(NOW + 1));
    }

    #[test]
    fn a_locked_address_refuses_only_accounts_it_guessed() {
        let p = Policy { max_failures: 5, lockout: 60 };
        let locked = (30, NOW + 600);
        assert_eq!(p.decide(&counts((2, 0), 2, locked), NOW), Decision::Refuse(NOW + 600), "guessed before");
        assert!(matches!(p.decide(&counts((1, 0), 1, locked), NOW), Decision::Admit { .. }), "never guessed");
        assert_eq!(
            p.decide(&counts((1, 0), 1, (25, 0)), NOW),
            Decision::Admit { pair_lock: None, address_lock: Some(NOW + 60) },
            "the address locks at five times the limit"
        );
    }

    #[test]
    fn the_account_is_slowed_never_locked() {
        let p = Policy { max_failures: 5, lockout: 60 };
        let delay = |account| p.delay(&counts((1, 0), account, (1, 0)));
        assert_eq!(delay(5), Duration::ZERO, "four failures before this attempt");
        assert_eq!(delay(6), Duration::from_secs(1));
        assert_eq!(delay(8), Duration::from_secs(4));
        assert_eq!(delay(1000), MAX_DELAY);
        assert!(matches!(p.decide(&counts((1, 0), 1000, (1, 0)), NOW), Decision::Admit { .. }));
    }

    #[test]
    fn keys_count_ipv6_by_network_and_bound_long_names() {
        let a = AttemptKeys::new("Alice", "2001:db8:1:2::1".parse().unwrap(), 64);
        let b = AttemptKeys::new("alice", "2001:db8:1:2:ffff::9".parse().unwrap(), 64);
        assert_eq!((a.pair.as_str(), a.account.as_str()), (b.pair.as_str(), b.account.as_str()));
        assert_eq!(a.address, "ip:2001:db8:1:2::/64");
        let long = AttemptKeys::new(&"x".repeat(65_536), "192.0.2.1".parse().unwrap(), 64);
        assert!(long.pair.len() < 200 && long.account.len() < 200, "{}", long.pair);
    }
}
