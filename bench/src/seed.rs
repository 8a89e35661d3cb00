//! `--seed`: a company's worth of rows, written straight through SQL into the freshly migrated
//! database before the server starts, so that every scenario runs against tables of the size an
//! operator's database reaches, and the expiry sweeps have work to do during the measured runs.
//!
//! Set-based: each table is filled by `INSERT ... SELECT` over a row series (`generate_series`
//! on Postgres, a recursive CTE on SQLite), in chunks of [`CHUNK`] rows, one transaction each.
//! Every value is a function of the row's number, so both engines get the same data (except
//! the SQLite hashes, which are random blobs: SQLite has no hash function); foreign keys stay on,
//! so the rows are consistent by construction. Afterwards `ANALYZE` (Postgres: `VACUUM
//! (ANALYZE)`, what autovacuum would have done for an operator) gives the planner its statistics,
//! and a checkpoint puts the seed on disk before the server starts.
//!
//! What `company` holds (every count overridable, see [`Sizes::parse`]):
//! - 50,000 people: 1 in 10 with a local password (a hash that never verifies), the rest signing
//!   in through the company IdP (an upstream identity each); 1 in 200 disabled; two groups each.
//! - 20 MCP servers with three scopes each and introspection credentials.
//! - 100,000 clients: 70 % dynamically registered (public, a loopback redirect URI approved,
//!   used in the last 60 days; 1 in 1,000 never used and older than a day, which the client
//!   clean-up deletes at its first run), 25 % metadata-document clients, 5 % pre-registered (half
//!   of them machine clients with a `client_credentials` reach).
//! - 1,000,000 grants: 20 per person (5 clients x 4 MCP servers), 1 in 10 revoked.
//! - 1,000,000 refresh tokens, one per grant: 25 % live (the current token of its chain), 55 %
//!   rotated (used, kept until they expire), 15 % expired more than a day ago (past the sweep's
//!   margin: a backlog the first sweep deletes) and 5 % expired within the last day.
//! - 100,000 authorization codes (a day's sign-ins): 1 % live, 59 % redeemed or expired within
//!   the last day, 40 % expired more than a day ago (swept).
//! - 100,000 browser sessions: 40 % signed in, 10 % anonymous with a pending request, 50 % expired.
//! - 20,000 revoked access tokens (70 % past expiry), 20,000 used client-assertion ids (50 %
//!   past expiry), 5,000 sign-in throttle rows (80 % older than a day).
//! - 5,000,000 audit events spread evenly over the last 90 days (sign-ins, registrations,
//!   machine tokens, failures, revocations).

use std::time::Instant;

use sqlx::{Connection, Executor};

use crate::Res;

/// Rows per statement (and transaction): large enough that the per-statement cost vanishes,
/// small enough that SQLite's WAL and Postgres's memory stay modest.
const CHUNK: u64 = 250_000;
/// MCP servers in the seeded company.
const RESOURCES: u64 = 20;
const DAY: i64 = 86_400;

/// How many rows of each kind to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub people: u64,
    pub clients: u64,
    pub grants: u64,
    pub refresh_tokens: u64,
    pub codes: u64,
    pub sessions: u64,
    pub revoked: u64,
    pub assertions: u64,
    pub throttle: u64,
    pub audit: u64,
}

impl Sizes {
    pub fn company() -> Sizes {
        Sizes {
            people: 50_000,
            clients: 100_000,
            grants: 1_000_000,
            refresh_tokens: 1_000_000,
            codes: 100_000,
            sessions: 100_000,
            revoked: 20_000,
            assertions: 20_000,
            throttle: 5_000,
            audit: 5_000_000,
        }
    }

    /// `company`, optionally followed by overrides: `company,audit=1000000,people=10000`
    /// (keys: people, clients, grants, refresh_tokens, codes, sessions, revoked, assertions,
    /// throttle, audit).
    pub fn parse(spec: &str) -> Res<Sizes> {
        let mut parts = spec.split(',').map(str::trim);
        if parts.next() != Some("company") {
            return Err(format!("--seed {spec:?}: expected company, optionally followed by ,KEY=N overrides"));
        }
        let mut s = Sizes::company();
        for part in parts {
            let (key, n) = part.split_once('=').ok_or_else(|| format!("--seed: expected KEY=N, found {part:?}"))?;
            let n: u64 = n.trim().parse().map_err(|_| format!("--seed: {key} needs a whole number, found {n:?}"))?;
            let slot = match key.trim() {
                "people" => &mut s.people,
                "clients" => &mut s.clients,
                "grants" => &mut s.grants,
                "refresh_tokens" => &mut s.refresh_tokens,
                "codes" => &mut s.codes,
                "sessions" => &mut s.sessions,
                "revoked" => &mut s.revoked,
                "assertions" => &mut s.assertions,
                "throttle" => &mut s.throttle,
                "audit" => &mut s.audit,
                other => return Err(format!("--seed: unknown size {other:?}")),
            };
            *slot = n;
        }
        if s.people == 0 || s.clients == 0 {
            return Err("--seed: people and clients must be at least 1".into());
        }
        if (s.refresh_tokens > 0 || s.codes > 0) && s.grants == 0 {
            return Err("--seed: refresh tokens and codes need grants".into());
        }
        // A person's grants go to distinct (client, MCP server) pairs: 4 servers per client.
        if s.grants.div_ceil(s.people).div_ceil(4) > s.clients {
            return Err("--seed: too many grants per person for the number of clients".into());
        }
        Ok(s)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// SQL text for one engine. Every number is formatted in by this module (nothing from outside).
struct Sql {
    d: Dialect,
    now: i64,
    s: Sizes,
}

impl Sql {
    fn now(&self) -> String {
        format!("CAST({} AS BIGINT)", self.now)
    }

    /// `e` as `width` lower-case hex digits.
    fn hex(&self, e: &str, width: u32) -> String {
        match self.d {
            Dialect::Sqlite => format!("printf('%0{width}x', {e})"),
            Dialect::Postgres => format!("lpad(to_hex({e}), {width}, '0')"),
        }
    }

    /// A UUIDv7-shaped id: the creation time in ms, a per-table tag, the row number.
    fn uuid(&self, tag: u16, ms: &str, i: &str) -> String {
        match self.d {
            Dialect::Sqlite => format!("unhex(printf('%012x7{tag:03x}8000%012x', {ms}, {i}))"),
            Dialect::Postgres => format!(
                "CAST({} || '7{tag:03x}8000' || {} AS UUID)",
                self.hex(&format!("({ms})"), 12),
                self.hex(&format!("({i})"), 12)
            ),
        }
    }

    /// 32 bytes that no other row has (a SHA-256 on Postgres, random on SQLite).
    fn hash32(&self, salt: &str, i: &str) -> String {
        match self.d {
            Dialect::Sqlite => "randomblob(32)".into(),
            Dialect::Postgres => format!("sha256(convert_to('{salt}' || ({i}), 'UTF8'))"),
        }
    }

    /// `16 * blocks` bytes of noise.
    fn noise(&self, blocks: u32, salt: &str, i: &str) -> String {
        match self.d {
            Dialect::Sqlite => format!("randomblob({})", 16 * blocks),
            Dialect::Postgres => format!("decode(repeat(md5('{salt}' || ({i})), {blocks}), 'hex')"),
        }
    }

    fn text_blob(&self, e: &str) -> String {
        match self.d {
            Dialect::Sqlite => format!("CAST({e} AS BLOB)"),
            Dialect::Postgres => format!("convert_to({e}, 'UTF8')"),
        }
    }

    /// A well-spread number in 0..2^32 from a row number (multiplicative hashing).
    fn h(&self, i: &str, mul: u64) -> String {
        format!("((({i}) * {mul} + 12345) % 4294967296)")
    }

    // --- the entities every table refers to, as functions of their row number ---

    fn user_created(&self, u: &str) -> String {
        let span = 730 * DAY;
        format!("({} - {span} + ({u}) * {} / {})", self.now(), span - DAY, self.s.people)
    }
    fn user_id(&self, u: &str) -> String {
        self.uuid(0x001, &format!("{} * 1000", self.user_created(u)), u)
    }
    fn username(&self, u: &str) -> String {
        format!("('person' || ({u}))")
    }
    fn resource_id(&self, r: &str) -> String {
        let ms = (self.now - 800 * DAY) * 1000;
        self.uuid(0x002, &format!("CAST({ms} AS BIGINT) + ({r})"), r)
    }
    /// Clients 0..70 % are dynamic, then 25 % metadata documents, then 5 % pre-registered.
    fn dynamic_below(&self) -> u64 {
        self.s.clients * 70 / 100
    }
    fn document_below(&self) -> u64 {
        self.s.clients * 95 / 100
    }
    fn client_created(&self, c: &str) -> String {
        let span = 730 * DAY;
        format!("({} - {span} + ({c}) * {} / {})", self.now(), span - 2 * DAY, self.s.clients)
    }
    fn client_id(&self, c: &str) -> String {
        format!(
            "(CASE WHEN ({c}) < {d} THEN {h} || {n} WHEN ({c}) < {m} THEN 'https://app' || (({c}) % 5000) || \
             '.example.com/oauth/client-' || ({c}) || '.json' ELSE 'corp-app-' || ({c}) END)",
            d = self.dynamic_below(),
            m = self.document_below(),
            h = self.hex(&self.h(c, 2654435761), 8),
            n = self.hex(&format!("({c})"), 14),
        )
    }
    /// A grant's person, client and MCP server: person `g % people`, and for the k-th grant of
    /// that person client group `k / 4` and server `(u + k) % 20`, so a person's live grants are
    /// distinct (client, server) pairs.
    fn grant_lets(&self, g: &str) -> Vec<(&'static str, String)> {
        let per_person = self.s.grants.div_ceil(self.s.people).max(1);
        let step = (self.s.clients / per_person.div_ceil(4)).max(1);
        vec![
            ("gu", format!("({g}) % {}", self.s.people)),
            ("gk", format!("({g}) / {}", self.s.people)),
            ("gc", format!("(gu * 7 + (gk / 4) * {step}) % {}", self.s.clients)),
            ("gr", format!("(gu + gk) % {RESOURCES}")),
        ]
    }
    fn grant_created(&self, g: &str) -> String {
        format!("({} - {} % {})", self.now(), self.h(g, 2246822519), 180 * DAY)
    }
    fn grant_id(&self, g: &str) -> String {
        self.uuid(0x003, &format!("{} * 1000 + ({g}) % 1000", self.grant_created(g)), g)
    }
    fn scope(&self, k: &str) -> String {
        format!(
            "(CASE WHEN ({k}) % 3 = 0 THEN 'tools' WHEN ({k}) % 3 = 1 THEN 'tools resources' ELSE 'tools resources prompts' END)"
        )
    }

    /// `INSERT INTO table (columns) SELECT values` over rows `lo..=hi` (`i`), with `lets` as
    /// named columns computed in nested subqueries (each may use the ones before it).
    fn fill(&self, table: &str, columns: &str, lets: &[(&str, String)], values: &[String], lo: u64, hi: u64) -> String {
        let mut from = match self.d {
            Dialect::Sqlite => "s".to_string(),
            Dialect::Postgres => format!("generate_series(CAST({lo} AS BIGINT), CAST({hi} AS BIGINT)) AS s(i)"),
        };
        for (n, (name, expr)) in lets.iter().enumerate() {
            from = format!("(SELECT *, {expr} AS {name} FROM {from}) AS l{n}");
        }
        let insert = format!("INSERT INTO {table} ({columns}) SELECT {} FROM {from}", values.join(", "));
        match self.d {
            Dialect::Sqlite => {
                format!("WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i < {hi}) {insert}")
            }
            Dialect::Postgres => insert,
        }
    }
}

/// The statement that fills rows `lo..=hi` of a table.
type Fill = fn(&Sql, u64, u64) -> String;

/// One table's fill.
struct Table {
    name: &'static str,
    rows: u64,
    fill: Fill,
}

/// Every table in dependency order.
fn tables(q: &Sql) -> Vec<Table> {
    let s = &q.s;
    let mut out = Vec::new();
    let mut add = |name: &'static str, rows: u64, fill: Fill| out.push(Table { name, rows, fill });
    add("users", s.people, |q, lo, hi| {
        let created = q.user_created("i");
        q.fill(
            "users",
            "id, username, password_hash, display_name, email, disabled, created_at, updated_at, is_admin, \
                 sessions_not_before",
            &[],
            &[
                q.user_id("i"),
                q.username("i"),
                // A PHC string that never verifies (no password behind it), for 1 in 10.
                "(CASE WHEN i % 10 = 0 THEN '$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVkc2VlZA$\
                     AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' ELSE '' END)"
                    .into(),
                "('Person ' || i)".into(),
                format!("({} || '@example.com')", q.username("i")),
                "(i % 200 = 199)".into(),
                created.clone(),
                created,
                "(i < 5)".into(),
                "CAST(0 AS BIGINT)".into(),
            ],
            lo,
            hi,
        )
    });
    add("user_identities", s.people, |q, lo, hi| {
        let created = q.user_created("i");
        let sql = q.fill(
            "user_identities",
            "provider, subject, user_id, email, session_id, created_at, last_login_at",
            &[],
            &[
                "'corp'".into(),
                format!("('00u' || {})", q.hex(&q.h("i", 3266489917), 8)),
                q.user_id("i"),
                format!("({} || '@example.com')", q.username("i")),
                "NULL".into(),
                created,
                format!("({} - {} % {})", q.now(), q.h("i", 668265263), 30 * DAY),
            ],
            lo,
            hi,
        );
        // People with a local password have no upstream identity.
        format!("{sql} WHERE i % 10 <> 0")
    });
    add("user_groups", s.people * 2, |q, lo, hi| {
        q.fill(
            "user_groups",
            "user_id, name, source",
            &[("u", "i / 2".into())],
            &[
                q.user_id("u"),
                "(CASE WHEN i % 2 = 0 THEN 'all-staff' ELSE 'dept-' || (u % 40) END)".into(),
                "'corp'".into(),
            ],
            lo,
            hi,
        )
    });
    add("resources", RESOURCES, |q, lo, hi| {
        let at = format!("({} - {})", q.now(), 800 * DAY);
        q.fill(
            "resources",
            "id, uri, name, token_lifetime, created_at, updated_at, introspection_id, introspection_secret_hash, \
                 allowed_groups",
            &[],
            &[
                q.resource_id("i"),
                "('https://mcp' || i || '.example.com/mcp')".into(),
                "('MCP server ' || i)".into(),
                "NULL".into(),
                at.clone(),
                at,
                "('rs-seed-' || i)".into(),
                q.hash32("rs", "i"),
                "'[]'".into(),
            ],
            lo,
            hi,
        )
    });
    add("resource_scopes", RESOURCES * 3, |q, lo, hi| {
        q.fill(
            "resource_scopes",
            "resource_id, name, description, is_default, position, groups",
            &[("r", "i / 3".into()), ("n", "i % 3".into())],
            &[
                q.resource_id("r"),
                "(CASE n WHEN 0 THEN 'tools' WHEN 1 THEN 'resources' ELSE 'prompts' END)".into(),
                "(CASE n WHEN 0 THEN 'Use the tools' WHEN 1 THEN 'Read the resources' ELSE 'Use the prompts' END)"
                    .into(),
                "(n < 2)".into(),
                "n".into(),
                "'[]'".into(),
            ],
            lo,
            hi,
        )
    });
    add("clients", s.clients, |q, lo, hi| {
        let (d, m) = (q.dynamic_below(), q.document_below());
        let created = q.client_created("i");
        let port = "(49152 + i % 16000)";
        let name = "('App ' || i)";
        let kind =
            format!("(CASE WHEN i < {d} THEN 'dynamic' WHEN i < {m} THEN 'metadata_document' ELSE 'static' END)");
        let redirect = format!(
            "(CASE WHEN i < {d} THEN 'http://127.0.0.1:' || {port} || '/callback' \
                 WHEN i < {m} THEN 'https://app' || (i % 5000) || '.example.com/oauth/callback' \
                 ELSE 'https://tool' || i || '.corp.example.com/callback' END)"
        );
        let metadata = format!(
            "('{{\"redirect_uris\":[\"' || {redirect} || '\"],\"token_endpoint_auth_method\":\"' || \
                 (CASE WHEN i >= {m} AND i % 2 = 0 THEN 'client_secret_basic' ELSE 'none' END) || \
                 '\",\"grant_types\":[\"authorization_code\",\"refresh_token\"],\"response_types\":[\"code\"],\
                 \"application_type\":\"' || (CASE WHEN i < {d} THEN 'native' ELSE 'web' END) || \
                 '\",\"client_name\":\"' || {name} || '\",\"client_uri\":\"https://app' || (i % 5000) || \
                 '.example.com\",\"scope\":\"tools resources\",\"software_id\":\"app-' || (i % 5000) || \
                 '\",\"software_version\":\"1.' || (i % 40) || '.0\"}}')"
        );
        // Used in the last 60 days, except 1 in 1,000 dynamic clients never used since
        // registering (over a day ago): the client clean-up's work at its first run.
        let last_used = format!(
            "(CASE WHEN i < {d} AND i % 1000 = 999 THEN NULL ELSE {} - {} % {} END)",
            q.now(),
            q.h("i", 374761393),
            60 * DAY
        );
        q.fill(
            "clients",
            "client_id, kind, client_name, metadata, secret_hash, registration_token_hash, created_at, \
                 updated_at, last_used_at, metadata_expires_at, registered_ip, registered_net",
            &[],
            &[
                q.client_id("i"),
                kind,
                name.into(),
                metadata,
                format!("(CASE WHEN i >= {m} AND i % 2 = 0 THEN {} END)", q.hash32("cs", "i")),
                format!("(CASE WHEN i < {d} THEN {} END)", q.hash32("rat", "i")),
                created.clone(),
                created,
                last_used,
                format!("(CASE WHEN i >= {d} AND i < {m} THEN {} + i % {} END)", q.now(), DAY),
                format!("(CASE WHEN i < {d} THEN '10.' || (i % 200) || '.' || (i / 200 % 250) || '.7' END)"),
                format!("(CASE WHEN i < {d} THEN '10.' || (i % 200) || '.' || (i / 200 % 250) || '.7' END)"),
            ],
            lo,
            hi,
        )
    });
    add("approved_redirects", q.dynamic_below(), |q, lo, hi| {
        q.fill(
            "approved_redirects",
            "client_id, redirect_uri, approved_at",
            &[],
            &[
                q.client_id("i"),
                "('http://127.0.0.1:' || (49152 + i % 16000) || '/callback')".into(),
                q.client_created("i"),
            ],
            lo,
            hi,
        )
    });
    add("client_resources", s.clients - q.document_below(), |q, lo, hi| {
        // The pre-registered clients come last; every other one is a machine client.
        let base = q.document_below();
        let sql = q.fill(
            "client_resources",
            "client_id, resource_id, scope, created_at",
            &[("c", format!("i + {base}"))],
            &[q.client_id("c"), q.resource_id(&format!("c % {RESOURCES}")), "'tools'".into(), q.client_created("c")],
            lo,
            hi,
        );
        format!("{sql} WHERE c % 2 = 0")
    });
    add("grants", s.grants, |q, lo, hi| {
        let created = q.grant_created("i");
        let m = q.document_below();
        q.fill(
            "grants",
            "id, user_id, client_id, resource_id, scope, created_at, updated_at, last_used_at, revoked_at, \
                 client_fingerprint",
            &q.grant_lets("i"),
            &[
                q.grant_id("i"),
                q.user_id("gu"),
                q.client_id("gc"),
                q.resource_id("gr"),
                q.scope("i"),
                created.clone(),
                created.clone(),
                format!("({} - {} % {})", q.now(), q.h("i", 3432918353), 30 * DAY),
                format!("(CASE WHEN i % 10 = 9 THEN {created} + {} END)", DAY),
                format!(
                    "(CASE WHEN gc >= {} AND gc < {m} THEN {} END)",
                    q.dynamic_below(),
                    q.hex(&q.h("gc", 2654435761), 8)
                ),
            ],
            lo,
            hi,
        )
    });
    add("refresh_tokens", s.refresh_tokens, |q, lo, hi| {
        let now = q.now();
        let mut lets = vec![("g", format!("i % {}", s_grants(q)))];
        lets.extend(q.grant_lets("g"));
        // 0..25 live, 25..80 rotated, 80..95 expired over a day ago, 95..100 expired today.
        lets.push(("kind", format!("{} % 100", q.h("i", 2654435769))));
        lets.push((
            "created",
            format!(
                "(CASE WHEN kind < 80 THEN {now} - {h} % {live} \
                     WHEN kind < 95 THEN {now} - {exp} - {h} % {old} ELSE {now} - {lifetime} - {h} % {day} END)",
                h = q.h("i", 1597334677),
                live = 29 * DAY,
                exp = 32 * DAY,
                old = 60 * DAY,
                lifetime = 30 * DAY + 1,
                day = DAY - 2,
            ),
        ));
        q.fill(
            "refresh_tokens",
            "id, token_hash, grant_id, family_id, parent_id, client_id, scope, created_at, expires_at, rotated_at, \
                 successor_id, successor_sealed, revoked_at, family_started_at, dpop_jkt",
            &lets,
            &[
                q.uuid(0x004, "created * 1000 + i % 1000", "i"),
                q.hash32("rt", "i"),
                q.grant_id("g"),
                q.uuid(0x005, &format!("{} * 1000", q.grant_created("g")), "g"),
                "NULL".into(),
                q.client_id("gc"),
                q.scope("g"),
                "created".into(),
                format!("created + {}", 30 * DAY),
                "(CASE WHEN kind >= 25 AND kind < 80 THEN created + 3600 END)".into(),
                format!(
                    "(CASE WHEN kind >= 25 AND kind < 80 THEN {} END)",
                    q.uuid(0x004, "(created + 3600) * 1000", "i + 4000000000")
                ),
                format!("(CASE WHEN kind >= 25 AND kind < 80 THEN {} END)", q.noise(4, "seal", "i")),
                format!("(CASE WHEN g % 10 = 9 THEN {} + {} END)", q.grant_created("g"), DAY),
                "created".into(),
                "(CASE WHEN i % 20 = 0 THEN 'dpop-jkt-' || i END)".into(),
            ],
            lo,
            hi,
        )
    });
    add("authorization_codes", s.codes, |q, lo, hi| {
        let now = q.now();
        let mut lets = vec![("g", format!("(i * 48271) % {}", s_grants(q)))];
        lets.extend(q.grant_lets("g"));
        // 0 live, 1..60 redeemed or expired today, 60..100 expired over a day ago.
        lets.push(("kind", format!("{} % 100", q.h("i", 2246822507))));
        lets.push((
            "created",
            format!(
                "(CASE WHEN kind < 1 THEN {now} - 10 WHEN kind < 60 THEN {now} - 120 - {h} % {day} \
                     ELSE {now} - {day2} - {h} % {week} END)",
                h = q.h("i", 3266489909),
                day = DAY - 200,
                day2 = DAY + 120,
                week = 6 * DAY,
            ),
        ));
        q.fill(
            "authorization_codes",
            "code_hash, grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, \
                 auth_time, created_at, expires_at, redeemed_at, issued_family_id, issued_jti, dpop_jkt",
            &lets,
            &[
                q.hash32("code", "i"),
                q.grant_id("g"),
                q.client_id("gc"),
                q.user_id("gu"),
                q.resource_id("gr"),
                "('http://127.0.0.1:' || (49152 + gc % 16000) || '/callback')".into(),
                q.scope("g"),
                format!(
                    "({} || {} || {})",
                    q.hex(&q.h("i", 1), 8),
                    q.hex(&q.h("i", 3), 8),
                    "'AbCdEfGhIjKlMnOpQrStUvWxYz0'"
                ),
                "NULL".into(),
                "created - 30".into(),
                "created".into(),
                "created + 60".into(),
                "(CASE WHEN kind >= 1 AND i % 4 <> 0 THEN created + 2 END)".into(),
                format!(
                    "(CASE WHEN kind >= 1 AND i % 4 <> 0 THEN {} END)",
                    q.uuid(0x005, "(created + 2) * 1000", "i + 4000000000")
                ),
                format!("(CASE WHEN kind >= 1 AND i % 4 <> 0 THEN 'jti-' || {} END)", q.hex("i", 16)),
                "NULL".into(),
            ],
            lo,
            hi,
        )
    });
    add("web_sessions", s.sessions, |q, lo, hi| {
        let now = q.now();
        let id = format!("({} || {})", q.hex(&q.h("i", 2654435761), 8), q.hex("i", 14));
        q.fill(
                "web_sessions",
                "id, data, expires_at, pending_from",
                &[("kind", "i % 10".into())],
                &[
                    id.clone(),
                    q.text_blob(&format!(
                        "('{{\"id\":\"' || {id} || '\",\"data\":{{\"user\":\"' || {u} || '\",\"auth_time\":' || \
                         ({now} - 3600) || ',\"csrf\":\"' || {c} || {c} || '\"}},\"expiry_date\":' || ({now} + 43200) || '}}')",
                        u = q.hex(&format!("i % {}", q.s.people), 32),
                        c = q.hex(&q.h("i", 40503), 8),
                    )),
                    format!(
                        "(CASE WHEN kind < 4 THEN {now} + {h} % {half} WHEN kind < 5 THEN {now} + 900 \
                         ELSE {now} - 1 - {h} % {week} END)",
                        h = q.h("i", 2246822519),
                        half = 12 * 3600,
                        week = 7 * DAY,
                    ),
                    "(CASE WHEN kind = 4 THEN '198.51.100.' || (i % 250) END)".into(),
                ],
                lo,
                hi,
            )
    });
    add("revoked_access_tokens", s.revoked, |q, lo, hi| {
        let now = q.now();
        q.fill(
            "revoked_access_tokens",
            "jti, expires_at",
            &[],
            &[
                format!("('jti-' || {})", q.hex("i", 16)),
                format!("(CASE WHEN i % 10 < 3 THEN {now} + i % 900 ELSE {now} - 1 - i % {} END)", 30 * DAY),
            ],
            lo,
            hi,
        )
    });
    add("used_client_assertions", s.assertions, |q, lo, hi| {
        let now = q.now();
        q.fill(
            "used_client_assertions",
            "id, expires_at",
            &[],
            &[
                format!("('corp-app-' || (i % 1000) || ':' || {})", q.hex(&q.h("i", 2654435761), 8)),
                format!("(CASE WHEN i % 2 = 0 THEN {now} + i % 300 ELSE {now} - 1 - i % {} END)", 7 * DAY),
            ],
            lo,
            hi,
        )
    });
    add("login_throttle", s.throttle, |q, lo, hi| {
        let now = q.now();
        q.fill(
            "login_throttle",
            "key, failures, locked_until, updated_at",
            &[],
            &[
                "(CASE i % 3 WHEN 0 THEN 'ip:203.0.113.' || (i % 250) || '.' || i \
                     WHEN 1 THEN 'user:person' || i ELSE 'pair:person' || i || '|203.0.113.' || (i % 250) END)"
                    .into(),
                "(1 + i % 7)".into(),
                format!("(CASE WHEN i % 7 >= 5 THEN {now} - {} + 120 ELSE 0 END)", 2 * DAY),
                format!("(CASE WHEN i % 5 = 0 THEN {now} - i % 3600 ELSE {now} - {} - i % {} END)", 2 * DAY, 20 * DAY),
            ],
            lo,
            hi,
        )
    });
    add("audit_events", s.audit, |q, lo, hi| {
        let span = 90 * DAY;
        let at = format!("({} - {span} + i * {span} / {})", q.now(), q.s.audit.max(1));
        let lets = vec![
            ("at0", at),
            ("e", format!("{} % 100", q.h("i", 2654435761))),
            ("u", format!("{} % {}", q.h("i", 40503), q.s.people)),
            ("c", format!("{} % {}", q.h("i", 69069), q.s.clients)),
        ];
        let event = "(CASE WHEN e < 45 THEN 'login' WHEN e < 60 THEN 'client_registered' \
                         WHEN e < 90 THEN 'client_credentials' WHEN e < 95 THEN 'login_failed' \
                         WHEN e < 97 THEN 'grant_revoked' WHEN e < 99 THEN 'client_deleted' ELSE 'cli_change' END)";
        let ip = "('10.' || (u % 200) || '.' || (u / 200 % 250) || '.' || (i % 250))";
        q.fill(
                "audit_events",
                "id, at, event, actor, user_id, client_id, ip, details",
                &lets,
                &[
                    q.uuid(0x006, "at0 * 1000 + i % 1000", "i"),
                    "at0".into(),
                    event.into(),
                    format!(
                        "(CASE WHEN e < 45 OR (e >= 90 AND e < 97) THEN {} WHEN e >= 99 THEN 'cli' END)",
                        q.username("u")
                    ),
                    format!("(CASE WHEN e < 45 OR (e >= 95 AND e < 97) THEN {} END)", q.user_id("u")),
                    format!("(CASE WHEN e >= 45 AND e < 90 OR e >= 95 AND e < 99 THEN {} END)", q.client_id("c")),
                    format!("(CASE WHEN e < 99 THEN {ip} END)"),
                    "(CASE WHEN e < 45 THEN '{\"method\":\"password\",\"session\":\"rotated\"}' \
                     WHEN e < 60 THEN '{\"client_name\":\"App ' || c || '\",\"redirect_uris\":[\"http://127.0.0.1:' || (49152 + c % 16000) || '/callback\"]}' \
                     WHEN e < 90 THEN '{\"resource\":\"https://mcp' || (c % 20) || '.example.com/mcp\",\"scope\":\"tools\"}' \
                     WHEN e < 95 THEN '{\"reason\":\"wrong password\"}' ELSE '{}' END)"
                        .into(),
                ],
                lo,
                hi,
            )
    });
    out
}

fn s_grants(q: &Sql) -> u64 {
    q.s.grants.max(1)
}

/// Fills the database at `url` (just migrated, nothing else in it) and gathers statistics.
pub async fn seed(url: &str, sizes: &Sizes) -> Res<()> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() as i64;
    let started = Instant::now();
    if url.starts_with("sqlite:") {
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().map_err(|e| format!("{url}: {e}"))?;
        // The server made the file a WAL database; speed over durability while seeding (a crash
        // here only loses a benchmark's fixture), foreign keys checked.
        let opts = opts
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
            .foreign_keys(true)
            .pragma("cache_size", "-262144")
            .pragma("temp_store", "memory");
        let mut c = sqlx::sqlite::SqliteConnection::connect_with(&opts).await.map_err(|e| format!("{url}: {e}"))?;
        let q = Sql { d: Dialect::Sqlite, now, s: sizes.clone() };
        for t in tables(&q) {
            fill_table(&mut c, &q, &t).await?;
        }
        timed("ANALYZE", &mut c, "ANALYZE").await?;
        // Everything into the file and onto the disk (the checkpoint syncs unless synchronous is
        // off), and back to a short WAL, so the measured runs do not pay for the seed's writes.
        timed("checkpoint and sync", &mut c, "PRAGMA synchronous = NORMAL; PRAGMA wal_checkpoint(TRUNCATE)").await?;
        c.close().await.map_err(|e| e.to_string())?;
    } else {
        let mut c = sqlx::postgres::PgConnection::connect(url).await.map_err(|e| format!("Postgres: {e}"))?;
        sqlx::raw_sql("SET synchronous_commit = off; SET statement_timeout = 0; SET maintenance_work_mem = '256MB'")
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let q = Sql { d: Dialect::Postgres, now, s: sizes.clone() };
        for t in tables(&q) {
            fill_table(&mut c, &q, &t).await?;
        }
        // What autovacuum would have done on an operator's database: statistics, and the
        // visibility map that index-only scans rely on.
        timed("VACUUM (ANALYZE)", &mut c, "VACUUM (ANALYZE)").await?;
        // The seed's pages written out now, not by the checkpointer during the measured runs.
        timed("CHECKPOINT", &mut c, "CHECKPOINT").await?;
        c.close().await.map_err(|e| e.to_string())?;
    }
    eprintln!("seeded the database in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn fill_table<C>(c: &mut C, q: &Sql, t: &Table) -> Res<()>
where
    for<'c> &'c mut C: Executor<'c>,
{
    let started = Instant::now();
    let mut lo = 0;
    while lo < t.rows {
        let hi = (lo + CHUNK).min(t.rows) - 1;
        let sql = (t.fill)(q, lo, hi);
        // One statement per chunk: its own transaction on both engines (autocommit).
        sqlx::raw_sql(&sql).execute(&mut *c).await.map_err(|e| format!("seeding {} rows {lo}..={hi}: {e}", t.name))?;
        lo = hi + 1;
    }
    eprintln!("  {:<24} {:>10} rows in {:>6.1} s", t.name, t.rows, started.elapsed().as_secs_f64());
    Ok(())
}

async fn timed<C>(what: &str, c: &mut C, sql: &str) -> Res<()>
where
    for<'c> &'c mut C: Executor<'c>,
{
    let started = Instant::now();
    sqlx::raw_sql(sql).execute(&mut *c).await.map_err(|e| format!("{what}: {e}"))?;
    eprintln!("  {what:<24} {:>17.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_overrides() {
        assert_eq!(Sizes::parse("company").unwrap(), Sizes::company());
        let s = Sizes::parse("company, audit=1000,people=10").unwrap();
        assert_eq!((s.audit, s.people, s.clients), (1000, 10, 100_000));
        assert!(Sizes::parse("startup").is_err());
        assert!(Sizes::parse("company,bogus=1").is_err());
        assert!(Sizes::parse("company,people=x").is_err());
        assert!(Sizes::parse("company,people=1,clients=1").is_err(), "a million grants for one person");
    }
}
