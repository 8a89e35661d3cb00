//! Sign-in throttling under attack (the round-two review's items 2, 3 and 7): a parallel burst
//! gets no more guesses checked than the limit, the lock is per account and address (the right
//! password from elsewhere still signs in), a guessing address does not lock out its neighbours,
//! the account page's password change meets the same throttle, and IPv6 clients count by /64.
//! Addresses are chosen through `X-Forwarded-For` from a trusted proxy (the test's loopback).

use portcullis::config::{Config, RateLimits, Seconds};
use serde_json::{Value, json};

use crate::faults::count;
use crate::helpers::{Engine, PASSWORD, TestApp, browser, count_rows, db_tests, hidden};

db_tests!(
    a_parallel_burst_gets_no_more_guesses_than_the_limit,
    the_right_password_from_another_address_is_not_locked_out,
    a_guessing_address_does_not_lock_out_its_neighbours,
    the_password_change_meets_the_same_throttle,
    ipv6_clients_count_by_network,
    an_oversized_username_is_refused_and_writes_nothing,
);

/// Loopback is a trusted proxy, so `X-Forwarded-For` picks the address; no request rate limits
/// (the test sends more than a person would).
async fn app(engine: Engine, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(engine, "", |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.rate_limit_per_ip = RateLimits::off();
        tweak(c);
    })
    .await
    .with_defaults()
    .await
}

/// A browser with the login page loaded: its CSRF token.
async fn login_form(app: &TestApp, http: &reqwest::Client) -> String {
    let page = http.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    hidden(&page, "csrf_token")
}

/// Posts the login form as `user` from `address`: the status.
async fn login_from(app: &TestApp, http: &reqwest::Client, csrf: &str, address: &str, user: &str, pw: &str) -> u16 {
    http.post(app.url("/login"))
        .header("x-forwarded-for", address)
        .form(&[("username", user), ("password", pw), ("csrf_token", csrf), ("next", "")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn attempt(app: &TestApp, address: &str, user: &str, pw: &str) -> u16 {
    let http = browser();
    let csrf = login_form(app, &http).await;
    login_from(app, &http, &csrf, address, user, pw).await
}

async fn most_pair_failures(app: &TestApp) -> i64 {
    count(&app.db, "SELECT COALESCE(MAX(failures), 0) FROM login_throttle WHERE key LIKE 'pair:%'", &[]).await
}

async fn audit_count(app: &TestApp, event: &str) -> usize {
    portcullis::store::audit::list(&app.db, Some(event), 1000).await.unwrap().len()
}

/// Item 2: the lock is checked and the attempt counted in one step before the password is
/// hashed. Thirty wrong passwords at once from one address get five checked (the limit), the
/// other 25 are refused without hashing and without writing; a right password sent while the
/// burst's admitted hashes are still running is refused too.
async fn a_parallel_burst_gets_no_more_guesses_than_the_limit(engine: Engine) {
    let app = app(engine, |_| {}).await;
    let http = browser();
    let csrf = login_form(&app, &http).await;
    let burst: Vec<_> = (0..30)
        .map(|i| {
            let (http, csrf, base) = (http.clone(), csrf.clone(), app.base.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/login"))
                    .header("x-forwarded-for", "203.0.113.10")
                    .form(&[("username", "alice"), ("password", &format!("guess {i}")), ("csrf_token", &csrf)])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Once five attempts are counted the account is locked for this address: the right password
    // arriving now, while the burst is in flight, is refused before its hash is computed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(&app.db, "SELECT COALESCE(MAX(failures), 0) FROM login_throttle", &[]).await < 5 {
        assert!(std::time::Instant::now() < deadline, "the burst was never counted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(login_from(&app, &http, &csrf, "203.0.113.10", "alice", PASSWORD).await, 429, "signed in while locked");
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 25), "{statuses:?}");
    assert_eq!(most_pair_failures(&app).await, 5, "refused attempts are not counted");
    assert_eq!(audit_count(&app, "login_failed").await, 5, "one audit row per checked password");
    assert_eq!(audit_count(&app, "login_locked").await, 1);
    // Another burst on the locked account writes nothing at all.
    let rows = (count_rows(&app.db, "login_throttle").await, count_rows(&app.db, "audit_events").await);
    for _ in 0..3 {
        assert_eq!(login_from(&app, &http, &csrf, "203.0.113.10", "alice", "again").await, 429);
    }
    assert_eq!((count_rows(&app.db, "login_throttle").await, count_rows(&app.db, "audit_events").await), rows);
}

/// Item 3: five wrong passwords from one address lock the account for that address only; the
/// right password from another address signs in (after a short delay: the account is being
/// guessed), and the guessing address stays locked.
async fn the_right_password_from_another_address_is_not_locked_out(engine: Engine) {
    let app = app(engine, |c| c.login_lockout = Seconds(600)).await;
    for i in 0..5 {
        assert_eq!(attempt(&app, "203.0.113.20", "alice", &format!("guess {i}")).await, 401);
    }
    assert_eq!(attempt(&app, "203.0.113.20", "alice", PASSWORD).await, 429, "locked for the guessing address");
    let started = std::time::Instant::now();
    assert_eq!(attempt(&app, "198.51.100.5", "alice", PASSWORD).await, 200, "alice from her own address");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "an account under attack is slowed down");
    assert_eq!(attempt(&app, "203.0.113.20", "alice", PASSWORD).await, 429, "the guesser is still locked");
    // Her success forgot the account's failures: the next sign-in is not slowed.
    let started = std::time::Instant::now();
    assert_eq!(attempt(&app, "198.51.100.5", "alice", PASSWORD).await, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

/// Item 3: an address that fails on many accounts is locked for those accounts only; a person
/// behind the same address (a NAT) signing in to an account it never guessed is let in.
async fn a_guessing_address_does_not_lock_out_its_neighbours(engine: Engine) {
    // Two failures per account and address; the address locks at ten over all accounts.
    let app = app(engine, |c| {
        c.login_max_failures = 2;
        c.login_lockout = Seconds(600);
    })
    .await;
    app.add_user("bob").await;
    let nat = "192.0.2.44";
    assert_eq!(attempt(&app, nat, "alice", "guess").await, 401);
    for i in 0..9 {
        assert_eq!(attempt(&app, nat, &format!("user{i}"), "guess").await, 401);
    }
    // The address is locked now, for the accounts it guessed: alice's right password from it is
    // refused (one failure on her account from here), and so is any other guessed name.
    assert_eq!(attempt(&app, nat, "alice", PASSWORD).await, 429);
    assert_eq!(attempt(&app, nat, "user3", "guess").await, 429);
    assert_eq!(audit_count(&app, "login_locked").await, 1);
    // bob, behind the same address, never guessed from it: he signs in.
    assert_eq!(attempt(&app, nat, "bob", PASSWORD).await, 200, "a neighbour behind the NAT was locked out");
    // alice from elsewhere too.
    assert_eq!(attempt(&app, "198.51.100.6", "alice", PASSWORD).await, 200);
}

/// Item 3: the current password on `/account/password` is checked under the same throttle as a
/// sign-in; once locked, even the right one changes nothing.
async fn the_password_change_meets_the_same_throttle(engine: Engine) {
    let app = app(engine, |c| c.login_lockout = Seconds(600)).await;
    let http = browser();
    let csrf = login_form(&app, &http).await;
    assert_eq!(login_from(&app, &http, &csrf, "203.0.113.30", "alice", PASSWORD).await, 200);
    let page = http.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf_token");
    let change = |current: &str| {
        http.post(app.url("/account/password")).header("x-forwarded-for", "203.0.113.30").form(&[
            ("csrf_token", csrf.as_str()),
            ("current_password", current),
            ("new_password", "a brand new password"),
            ("confirm_password", "a brand new password"),
        ])
    };
    for i in 0..5 {
        let res = change(&format!("guess {i}")).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("The current password is wrong"));
    }
    let hash =
        || async { portcullis::store::users::by_username(&app.db, "alice").await.unwrap().unwrap().password_hash };
    let hash_before = hash().await;
    let res = change(PASSWORD).send().await.unwrap();
    assert_eq!(res.status(), 429, "the password was changed by a guesser holding the session");
    assert!(res.text().await.unwrap().contains("Too many failed sign-ins"));
    assert_eq!(audit_count(&app, "password_changed").await, 0);
    assert_eq!(audit_count(&app, "password_change_failed").await, 5);
    assert_eq!(hash().await, hash_before, "the password changed");
    // The lock is the one sign-in uses: the same address cannot sign in as alice either; the
    // old password still works from elsewhere.
    assert_eq!(attempt(&app, "203.0.113.30", "alice", PASSWORD).await, 429);
    assert_eq!(attempt(&app, "198.51.100.7", "alice", PASSWORD).await, 200);
}

/// Item 7: addresses in one IPv6 /64 are one address to the login throttle, the registration cap
/// and the request rate limits; the next /64 is another. `ipv6_prefix_length` changes the size.
async fn ipv6_clients_count_by_network(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.rate_limit_per_ip = RateLimits { register: 3, ..RateLimits::off() };
        c.registrations_per_ip_per_hour = 2;
        c.login_lockout = Seconds(600);
    })
    .await
    .with_defaults()
    .await;
    for i in 1..=5 {
        assert_eq!(attempt(&app, &format!("2001:db8:1:2::{i}"), "alice", "guess").await, 401);
    }
    assert_eq!(attempt(&app, "2001:db8:1:2:ffff::9", "alice", PASSWORD).await, 429, "same /64: locked");
    assert_eq!(attempt(&app, "2001:db8:1:3::1", "alice", PASSWORD).await, 200, "the next /64 is another address");

    let register = |address: &'static str| {
        app.http
            .post(app.url("/register"))
            .header("x-forwarded-for", address)
            .json(&json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none" }))
            .send()
    };
    assert_eq!(register("2001:db8:5:6::1").await.unwrap().status(), 201);
    assert_eq!(register("2001:db8:5:6::2").await.unwrap().status(), 201);
    let clients = count_rows(&app.db, "clients").await;
    let res = register("2001:db8:5:6:abcd::3").await.unwrap();
    assert_eq!(res.status(), 429, "the registration cap counts the /64");
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "slow_down");
    assert_eq!(count_rows(&app.db, "clients").await, clients, "nothing registered");
    // The fourth request from the /64 meets the per-address request limit (3 a minute) first.
    let res = register("2001:db8:5:6::4").await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert!(res.text().await.unwrap().contains("too many requests"), "the request limit, not the cap");
    assert_eq!(register("2001:db8:5:7::1").await.unwrap().status(), 201, "the next /64 has its own budgets");
}

/// Item 5: a "username" no account can have (kilobytes typed into the form) is refused at once:
/// no throttle row, no audit row keyed or labelled by it.
async fn an_oversized_username_is_refused_and_writes_nothing(engine: Engine) {
    let app = app(engine, |_| {}).await;
    let before = (count_rows(&app.db, "login_throttle").await, count_rows(&app.db, "audit_events").await);
    let http = browser();
    let csrf = login_form(&app, &http).await;
    let res = http
        .post(app.url("/login"))
        .form(&[("username", "x".repeat(60 * 1024).as_str()), ("password", "guess"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("at most 256 characters"));
    assert_eq!((count_rows(&app.db, "login_throttle").await, count_rows(&app.db, "audit_events").await), before);
}
