//! What a node spends on fetching metadata documents, and what it remembers of failed fetches.
//!
//! A host's budget (`cimd_fetches_per_host_per_minute`) protects the host; alone it let anyone
//! spend it on made-up paths and so block re-fetches of the host's real documents. So each
//! requesting address also has a budget (`cimd_fetches_per_address_per_minute`), checked first
//! (a refused request spends nothing of the host's), and a failed fetch is remembered for
//! `cimd_failure_cache` (30 s): asking again for the same missing document costs no fetch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries a map keeps before it drops what has expired (and, if still full, everything).
const MAX_ENTRIES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

/// Per-key counts in one-minute windows.
#[derive(Default)]
struct Windows(Mutex<HashMap<String, (Instant, u64)>>);

impl Windows {
    fn count(&self, key: &str, now: Instant) -> u64 {
        self.0
            .lock()
            .expect("budget lock")
            .get(key)
            .filter(|(start, _)| now.duration_since(*start) < WINDOW)
            .map_or(0, |(_, n)| *n)
    }

    fn spend(&self, key: &str, now: Instant) {
        let mut w = self.0.lock().expect("budget lock");
        if w.len() > MAX_ENTRIES {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = w.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// A node's fetch budgets and its memory of failed fetches.
#[derive(Default)]
pub struct FetchBudget {
    hosts: Windows,
    addresses: Windows,
    failures: Mutex<HashMap<String, (Instant, String)>>,
}

impl FetchBudget {
    /// Spends one fetch for `host` asked for by `from` (an address key; `None` when no address
    /// is known), if both have budget left (0: no limit). Both are checked before either is spent.
    pub fn allow(&self, from: Option<&str>, host: &str, per_address: u64, per_host: u64) -> bool {
        let now = Instant::now();
        let from = from.filter(|_| per_address > 0);
        if from.is_some_and(|a| self.addresses.count(a, now) >= per_address) {
            return false;
        }
        if per_host > 0 && self.hosts.count(host, now) >= per_host {
            return false;
        }
        // Two requests may both pass the checks before either spends: a per-node budget may be
        // overrun by the requests in flight at one instant, never more.
        if let Some(a) = from {
            self.addresses.spend(a, now);
        }
        self.hosts.spend(host, now);
        true
    }

    /// The public message of a fetch of `client_id` that failed less than `ttl` ago.
    pub fn recent_failure(&self, client_id: &str, ttl: Duration) -> Option<String> {
        let failures = self.failures.lock().expect("failure cache lock");
        failures.get(client_id).filter(|(at, _)| at.elapsed() < ttl).map(|(_, m)| m.clone())
    }

    /// Remembers a failed fetch for `ttl` (nothing when `ttl` is zero).
    pub fn remember_failure(&self, client_id: &str, message: String, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut failures = self.failures.lock().expect("failure cache lock");
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, (at, _)| at.elapsed() < ttl);
            if failures.len() >= MAX_ENTRIES {
                failures.clear();
            }
        }
        failures.insert(client_id.to_string(), (Instant::now(), message));
    }

    pub fn forget_failure(&self, client_id: &str) {
        self.failures.lock().expect("failure cache lock").remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_spends_only_its_share_of_a_host() {
        let b = FetchBudget::default();
        for _ in 0..3 {
            assert!(b.allow(Some("198.51.100.1"), "host", 3, 5));
        }
        assert!(!b.allow(Some("198.51.100.1"), "host", 3, 5), "the address's budget is spent");
        // The refusal spent nothing of the host's: two more from elsewhere fit.
        assert!(b.allow(Some("198.51.100.2"), "host", 3, 5));
        assert!(b.allow(Some("198.51.100.3"), "host", 3, 5));
        assert!(!b.allow(Some("198.51.100.4"), "host", 3, 5), "the host's budget is spent");
        assert!(b.allow(Some("198.51.100.4"), "other-host", 3, 5));
        assert!(b.allow(None, "third-host", 3, 5), "no address known: the host's budget only");
        assert!(b.allow(Some("198.51.100.1"), "x", 0, 0), "0: no limit");
    }

    #[test]
    fn failures_are_remembered_briefly() {
        let b = FetchBudget::default();
        let ttl = Duration::from_secs(30);
        assert_eq!(b.recent_failure("https://a.example/c", ttl), None);
        b.remember_failure("https://a.example/c", "not found".into(), ttl);
        assert_eq!(b.recent_failure("https://a.example/c", ttl).as_deref(), Some("not found"));
        assert_eq!(b.recent_failure("https://a.example/c", Duration::ZERO), None, "expired");
        b.forget_failure("https://a.example/c");
        assert_eq!(b.recent_failure("https://a.example/c", ttl), None);
        b.remember_failure("https://a.example/d", "not found".into(), Duration::ZERO);
        assert_eq!(b.recent_failure("https://a.example/d", ttl), None, "0: not remembered");
    }
}
