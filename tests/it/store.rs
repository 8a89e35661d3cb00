//! The store on both engines: each entity's create/read/update/delete, unique keys turned into
//! clear errors, transactions rolled back on error.

use portcullis::clients::ClientId;
use portcullis::oauth::scope::ScopeSet;
use portcullis::store::clients::{ClientKind, NewClient};
use portcullis::store::resources::{NewResource, ScopeRow};
use portcullis::store::{
    self, StoreError, audit, clients, codes, grants, keys, refresh, resources, revocations, users,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Engine, TestDb, db_tests};

db_tests!(
    users_crud_and_unique_names,
    resources_crud_and_scope_catalogue,
    resource_with_duplicate_scope_writes_nothing,
    clients_crud,
    grants_approve_revoke,
    codes_single_use_and_replay_revokes,
    refresh_rotation_grace_and_reuse,
    keys_and_audit,
    sessions_round_trip,
    corrupt_rows_are_errors_not_defaults,
    long_scope_sets_are_read_back,
);

async fn users_crud_and_unique_names(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let u = users::create(&db, "alice", "$argon2id$x", 100).await.unwrap();
    assert_eq!(u.username, "alice");
    assert!(!u.disabled);
    let e = users::create(&db, "alice", "$argon2id$y", 101).await.unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(m) if m.contains("alice")), "{e:?}");
    users::set_disabled(&db, "alice", true, 102).await.unwrap();
    users::set_password(&db, "alice", "$argon2id$z", 103).await.unwrap();
    users::set_profile(&db, "alice", Some("Alice A."), Some("alice@example.com"), 104).await.unwrap();
    let again = users::by_username(&db, "alice").await.unwrap().unwrap();
    assert!(again.disabled);
    assert_eq!(again.password_hash, "$argon2id$z");
    assert_eq!(again.email.as_deref(), Some("alice@example.com"));
    assert_eq!(users::by_id(&db, u.id).await.unwrap().unwrap().username, "alice");
    assert!(matches!(users::set_disabled(&db, "nobody", true, 1).await, Err(StoreError::NotFound)));
    assert_eq!(users::count(&db).await.unwrap(), 1);
    assert_eq!(users::list(&db).await.unwrap().len(), 1);
}

fn scope(name: &str, default: bool) -> ScopeRow {
    ScopeRow {
        name: name.into(),
        description: format!("{name} description"),
        is_default: default,
        groups: Default::default(),
    }
}

async fn resources_crud_and_scope_catalogue(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let new = NewResource {
        uri: "https://mcp.example.com".into(),
        name: "Example".into(),
        token_lifetime: Some(300),
        allowed_groups: Default::default(),
        scopes: vec![scope("b:read", true), scope("a:write", false)],
    };
    let r = resources::create(&db, &new, 1).await.unwrap();
    assert_eq!(r.scopes.len(), 2);
    let loaded = resources::by_uri(&db, "https://mcp.example.com").await.unwrap().unwrap();
    assert_eq!(loaded.scopes, new.scopes, "one joined query keeps the catalogue's order");
    assert_eq!(loaded.row.id, r.row.id);
    let bare = NewResource { uri: "https://bare.example.com".into(), scopes: vec![], ..new.clone() };
    resources::create(&db, &bare, 1).await.unwrap();
    let loaded = resources::by_uri(&db, "https://bare.example.com").await.unwrap().unwrap();
    assert!(loaded.scopes.is_empty() && loaded.row.name == "Example");
    assert!(resources::by_uri(&db, "https://none.example.com").await.unwrap().is_none());
    let e = resources::create(&db, &new, 2).await.unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(m) if m.contains("already registered")), "{e:?}");
    // Upsert keeps the id (grants survive) and replaces the catalogue.
    let replaced =
        resources::upsert(&db, &NewResource { scopes: vec![scope("c:x", true)], ..new.clone() }, 3).await.unwrap();
    assert_eq!(replaced.row.id, r.row.id);
    let loaded = resources::by_uri(&db, "https://mcp.example.com").await.unwrap().unwrap();
    assert_eq!(loaded.scopes, vec![scope("c:x", true)]);
    assert_eq!(loaded.row.token_lifetime, Some(300));
    assert_eq!(resources::all_scope_names(&db).await.unwrap(), vec!["c:x".to_string()]);
    resources::remove(&db, "https://mcp.example.com").await.unwrap();
    assert!(resources::by_id(&db, r.row.id).await.unwrap().is_none());
    assert!(matches!(resources::remove(&db, "https://mcp.example.com").await, Err(StoreError::NotFound)));
}

async fn resource_with_duplicate_scope_writes_nothing(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let bad = NewResource {
        uri: "https://mcp.example.com".into(),
        name: "Example".into(),
        token_lifetime: None,
        allowed_groups: Default::default(),
        scopes: vec![scope("x", true), scope("x", false)],
    };
    let e = resources::create(&db, &bad, 1).await.unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(m) if m.contains("twice")), "{e:?}");
    assert!(resources::list(&db).await.unwrap().is_empty(), "the transaction must roll back");
}

/// A scope set written as its space-separated form.
fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).expect("scope")
}

fn client(id: &str) -> NewClient {
    NewClient {
        client_id: id.into(),
        kind: ClientKind::Dynamic,
        client_name: Some("C".into()),
        metadata: json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none" }),
        secret_hash: None,
        registration_token_hash: Some(vec![1, 2, 3]),
        metadata_expires_at: None,
        registered_ip: None,
    }
}

async fn clients_crud(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let c = clients::create(&db, &client("c1"), 10).await.unwrap();
    assert_eq!(c.kind, ClientKind::Dynamic);
    assert!(matches!(clients::create(&db, &client("c1"), 11).await, Err(StoreError::Conflict(_))));
    clients::touch(&db, "c1", 100).await.unwrap();
    assert_eq!(clients::get(&db, "c1").await.unwrap().unwrap().last_used_at, Some(100));
    let updated = clients::update_metadata(&db, "c1", Some("New"), &json!({"a": 1}), Some(&[9]), 12).await.unwrap();
    assert_eq!(updated.client_name.as_deref(), Some("New"));
    assert_eq!(updated.secret_hash, Some(vec![9]));
    assert_eq!(clients::count_by_kind(&db, ClientKind::Dynamic).await.unwrap(), 1);
    clients::upsert(&db, &NewClient { kind: ClientKind::Static, ..client("c1") }, 13).await.unwrap();
    assert_eq!(clients::get(&db, "c1").await.unwrap().unwrap().kind, ClientKind::Static);
    clients::remove(&db, "c1").await.unwrap();
    assert!(clients::get(&db, "c1").await.unwrap().is_none());
    assert!(matches!(clients::remove(&db, "c1").await, Err(StoreError::NotFound)));
    // Registration writes the client and its audit row together, or neither.
    let event = audit::Event { event: "client_registered", client_id: Some("c2"), ..Default::default() };
    clients::register(&db, &client("c2"), None, &event, 20).await.unwrap();
    let again = clients::register(&db, &client("c2"), None, &event, 21).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let rows = audit::list(&db, Some("client_registered"), 10).await.unwrap();
    assert_eq!(rows.len(), 1, "the refused registration left no audit row");
    assert_eq!((rows[0].client_id.as_deref(), rows[0].at), (Some("c2"), 20));
}

/// A user, client and resource to hang grants on.
async fn parties(db: &store::Db) -> (Uuid, ClientId, Uuid) {
    let u = users::create(db, "alice", "h", 1).await.unwrap();
    clients::create(db, &client("c1"), 1).await.unwrap();
    let r = resources::create(
        db,
        &NewResource {
            uri: "https://mcp.example.com".into(),
            name: "M".into(),
            token_lifetime: None,
            allowed_groups: Default::default(),
            scopes: vec![],
        },
        1,
    )
    .await
    .unwrap();
    (u.id, "c1".into(), r.row.id)
}

async fn grants_approve_revoke(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let (user, client_id, resource) = parties(&db).await;
    let g = grants::approve(&db, user, &client_id, resource, &scopes("a"), 10).await.unwrap();
    let widened = grants::approve(&db, user, &client_id, resource, &scopes("a b"), 11).await.unwrap();
    assert_eq!(g.id, widened.id, "one live grant per person, client and resource");
    assert_eq!(live_grant(&db, user, &client_id, resource).await.unwrap().scope.to_string(), "a b");
    assert!(grants::revoke(&db, g.id, 12).await.unwrap());
    assert!(!grants::revoke(&db, g.id, 13).await.unwrap(), "already revoked");
    assert!(live_grant(&db, user, &client_id, resource).await.is_none());
    let fresh = grants::approve(&db, user, &client_id, resource, &scopes("a"), 14).await.unwrap();
    assert_ne!(fresh.id, g.id, "consent after revocation starts a new grant");
    assert_eq!(grants::list_for_user(&db, user).await.unwrap().len(), 1);
    // The authorization endpoint's one query: the person's standing and the live grant.
    let standing = grants::standing(&db, user, &client_id, resource).await.unwrap().unwrap();
    assert!(standing.enabled);
    assert_eq!(standing.grant.map(|g| g.id), Some(fresh.id));
    let none = grants::standing(&db, user, &"other".into(), resource).await.unwrap().unwrap();
    assert!(none.enabled && none.grant.is_none());
    assert!(grants::standing(&db, Uuid::now_v7(), &client_id, resource).await.unwrap().is_none());
    // Introspection's one query: not revoked, person enabled, live grant no newer than the token.
    resources::set_introspection(&db, "https://mcp.example.com", "rs-1", &[7], 14).await.unwrap();
    let live = async |jti: &str, iat| {
        let facts = resources::TokenFacts { jti, user_id: user, client_id: "c1", issued_at: iat };
        let (row, live) = resources::for_introspection(&db, "rs-1", Some(&facts)).await.unwrap().unwrap();
        assert_eq!(row.introspection_secret_hash, Some(vec![7]));
        Ok::<_, ()>(live)
    };
    assert!(resources::for_introspection(&db, "rs-2", None).await.unwrap().is_none(), "unknown caller");
    assert!(!resources::for_introspection(&db, "rs-1", None).await.unwrap().unwrap().1, "no facts: not live");
    assert!(live("t1", 14).await.unwrap());
    assert!(!live("t1", 13).await.unwrap(), "issued before this grant: under a revoked one");
    revocations::revoke_access_token(&db, "t1", 1000).await.unwrap();
    assert!(!live("t1", 14).await.unwrap(), "revoked by jti");
    assert!(live("t2", 14).await.unwrap());
    users::set_disabled(&db, "alice", true, 15).await.unwrap();
    assert!(!live("t2", 14).await.unwrap(), "the person is disabled");
    let standing = grants::standing(&db, user, &client_id, resource).await.unwrap().unwrap();
    assert!(!standing.enabled);
}

async fn live_grant(db: &store::Db, user: Uuid, client_id: &ClientId, resource: Uuid) -> Option<grants::Grant> {
    grants::standing(db, user, client_id, resource).await.unwrap().unwrap().grant
}

fn code_row(grant_id: Uuid, user_id: Uuid, resource_id: Uuid, now: i64) -> codes::Code {
    codes::Code {
        grant_id,
        client_id: "c1".into(),
        user_id,
        resource_id,
        redirect_uri: "https://app.example/cb".into(),
        scope: scopes("a"),
        code_challenge: "x".repeat(43),
        nonce: None,
        auth_time: now,
        created_at: now,
        expires_at: now + 60,
        dpop_jkt: None,
    }
}

fn refresh_row(grant_id: Uuid, hash: &[u8], family: Option<(Uuid, Uuid)>, now: i64) -> refresh::NewRefreshToken {
    let id = Uuid::now_v7();
    refresh::NewRefreshToken {
        id,
        token_hash: hash.to_vec(),
        grant_id,
        family_id: family.map(|f| f.0).unwrap_or(id),
        parent_id: family.map(|f| f.1),
        client_id: "c1".into(),
        scope: scopes("a"),
        created_at: now,
        expires_at: now + 1000,
        family_started_at: now,
        dpop_jkt: None,
    }
}

async fn codes_single_use_and_replay_revokes(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let (user, client_id, resource) = parties(&db).await;
    let g = grants::approve(&db, user, &client_id, resource, &scopes("a"), 10).await.unwrap();
    codes::insert(&db, b"code-1", &code_row(g.id, user, resource, 10)).await.unwrap();
    let issued_refresh = refresh_row(g.id, b"rt-1", None, 11);
    let family = issued_refresh.family_id;
    let planned = |jti: &str, family_id| codes::Planned { jti: jti.into(), family_id };
    let first = codes::redeem(
        &db,
        b"code-1",
        11,
        &planned("jti-1", family),
        |_| Ok(()),
        |c, ctx| {
            assert_eq!(ctx.resource_uri, "https://mcp.example.com");
            assert_eq!(c.scope.to_string(), "a");
            Ok::<_, ()>((Some(issued_refresh), "ok"))
        },
    )
    .await
    .unwrap();
    assert!(matches!(first, codes::Redeemed::Ok(_, "ok")));
    let used = grants::by_id(&db, g.id).await.unwrap().unwrap().last_used_at;
    assert_eq!(used, Some(11), "the first use is recorded");
    let second = codes::redeem(
        &db,
        b"code-1",
        12,
        &planned("j2", uuid::Uuid::now_v7()),
        |_| Ok(()),
        |_, _| Ok::<_, ()>((None, "again")),
    )
    .await
    .unwrap();
    assert!(matches!(second, codes::Redeemed::Replayed { .. }), "{second:?}");
    let rt = refresh::by_hash(&db, b"rt-1").await.unwrap().unwrap();
    assert!(rt.revoked_at.is_some(), "the replay revokes what the first redemption issued");
    assert_eq!(rt.family_id, family);
    assert!(revocations::is_revoked(&db, "jti-1").await.unwrap(), "and its access token");
    assert!(!revocations::is_revoked(&db, "j2").await.unwrap(), "the replay itself issued nothing");
    // Expired and unknown codes are invalid; a refused check still spends the code.
    let nothing = || planned("j", uuid::Uuid::now_v7());
    codes::insert(&db, b"code-2", &code_row(g.id, user, resource, 10)).await.unwrap();
    let late =
        codes::redeem(&db, b"code-2", 500, &nothing(), |_| Ok(()), |_, _| Ok::<_, ()>((None, ()))).await.unwrap();
    assert!(matches!(late, codes::Redeemed::Invalid));
    codes::insert(&db, b"code-3", &code_row(g.id, user, resource, 10)).await.unwrap();
    let refused =
        codes::redeem(&db, b"code-3", 11, &nothing(), |_| Ok(()), |_, _| Err::<(Option<_>, ()), _>("wrong verifier"))
            .await
            .unwrap();
    assert!(matches!(refused, codes::Redeemed::Refused("wrong verifier")));
    let after =
        codes::redeem(&db, b"code-3", 12, &nothing(), |_| Ok(()), |_, _| Ok::<_, ()>((None, ()))).await.unwrap();
    assert!(matches!(after, codes::Redeemed::Replayed { .. }));
    assert!(!revocations::is_revoked(&db, "j").await.unwrap(), "a refused redemption records nothing it issued");
    // `last_used_at` moves at most once a minute, then again.
    for (code, at) in [(b"code-4", 40), (b"code-5", 11 + grants::LAST_USED_RESOLUTION)] {
        codes::insert(&db, code, &code_row(g.id, user, resource, at)).await.unwrap();
        let ok = codes::redeem(&db, code, at, &nothing(), |_| Ok(()), |_, _| Ok::<_, ()>((None, ()))).await.unwrap();
        assert!(matches!(ok, codes::Redeemed::Ok(..)));
    }
    let used = grants::by_id(&db, g.id).await.unwrap().unwrap().last_used_at;
    assert_eq!(used, Some(11 + grants::LAST_USED_RESOLUTION));
    // A code refused before spending (by `keep`: a DPoP-bound code without its key) stays usable.
    codes::insert(&db, b"code-7", &code_row(g.id, user, resource, 70)).await.unwrap();
    let kept =
        codes::redeem(&db, b"code-7", 71, &nothing(), |_| Err("wrong key"), |_, _| Ok((None, ()))).await.unwrap();
    assert!(matches!(kept, codes::Redeemed::Kept("wrong key")));
    let then = codes::redeem(&db, b"code-7", 72, &nothing(), |_| Ok(()), |_, _| Ok::<_, ()>((None, ()))).await.unwrap();
    assert!(matches!(then, codes::Redeemed::Ok(..)), "{then:?}");
    // A revoked grant's code is invalid.
    codes::insert(&db, b"code-6", &code_row(g.id, user, resource, 80)).await.unwrap();
    grants::revoke(&db, g.id, 81).await.unwrap();
    let gone = codes::redeem(&db, b"code-6", 82, &nothing(), |_| Ok(()), |_, _| Ok::<_, ()>((None, ()))).await.unwrap();
    assert!(matches!(gone, codes::Redeemed::Invalid));
}

async fn refresh_rotation_grace_and_reuse(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let (user, client_id, resource) = parties(&db).await;
    let g = grants::approve(&db, user, &client_id, resource, &scopes("a"), 10).await.unwrap();
    let root = refresh_row(g.id, b"t0", None, 10);
    refresh::insert(&db, &root).await.unwrap();
    let next = |parent: &refresh::RefreshToken, hash: &[u8]| {
        Ok::<_, ()>((
            refresh::Successor {
                token: refresh_row(parent.grant_id, hash, Some((parent.family_id, parent.id)), 20),
                sealed: hash.to_vec(),
            },
            (),
        ))
    };
    // Another client presenting the token changes nothing.
    assert!(matches!(
        refresh::rotate(&db, b"t0", &"other".into(), 20, 60, |r| next(r, b"x")).await.unwrap(),
        refresh::Rotated::Invalid
    ));
    let first = refresh::rotate(&db, b"t0", &"c1".into(), 20, 60, |r| next(r, b"t1")).await.unwrap();
    assert!(matches!(first, refresh::Rotated::Fresh(..)));
    // Inside the window: the same successor, sealed.
    match refresh::rotate(&db, b"t0", &"c1".into(), 50, 60, |r| next(r, b"t1-bis")).await.unwrap() {
        refresh::Rotated::Grace(_, sealed) => assert_eq!(sealed, b"t1"),
        other => panic!("expected grace, got {other:?}"),
    }
    // After the window: reuse revokes the whole grant.
    let reused = refresh::rotate(&db, b"t0", &"c1".into(), 200, 60, |r| next(r, b"t1-ter")).await.unwrap();
    assert!(matches!(reused, refresh::Rotated::Reused { .. }));
    assert!(live_grant(&db, user, &client_id, resource).await.is_none());
    let t1 = refresh::rotate(&db, b"t1", &"c1".into(), 201, 60, |r| next(r, b"t2")).await.unwrap();
    assert!(matches!(t1, refresh::Rotated::Invalid), "the successor died with the grant");
    // A refused check rolls back: the token is not rotated.
    let g2 = grants::approve(&db, user, &client_id, resource, &scopes("a"), 300).await.unwrap();
    refresh::insert(&db, &refresh_row(g2.id, b"u0", None, 300)).await.unwrap();
    let refused =
        refresh::rotate(&db, b"u0", &"c1".into(), 301, 60, |_| Err::<(refresh::Successor, ()), _>("bad scope"))
            .await
            .unwrap();
    assert!(matches!(refused, refresh::Rotated::Refused("bad scope")));
    assert!(refresh::by_hash(&db, b"u0").await.unwrap().unwrap().rotated_at.is_none());
}

async fn keys_and_audit(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let row = keys::KeyRow {
        kid: "k1".into(),
        alg: "ES256".into(),
        public_jwk: "{}".into(),
        private_key: vec![1, 2],
        encrypted: false,
        created_at: 1,
        activates_at: 1,
    };
    keys::insert(&db, &row).await.unwrap();
    assert!(matches!(keys::insert(&db, &row).await, Err(StoreError::Conflict(_))));
    assert_eq!(keys::list(&db).await.unwrap().len(), 1);
    keys::delete(&db, "k1").await.unwrap();
    assert!(keys::list(&db).await.unwrap().is_empty());
    audit::record(&db, &audit::Event { event: "login", actor: Some("alice"), ..Default::default() }, 5).await.unwrap();
    audit::record(&db, &audit::Event { event: "login_failed", ip: Some("127.0.0.1"), ..Default::default() }, 6)
        .await
        .unwrap();
    assert_eq!(audit::list(&db, None, 10).await.unwrap().len(), 2);
    let failed = audit::list(&db, Some("login_failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].ip.as_deref(), Some("127.0.0.1"));
}

async fn sessions_round_trip(engine: Engine) {
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let anonymous = store::sessions::AnonymousSessions { lifetime: 900, pending_per_address: 0 };
    let s = store::sessions::DbSessionStore::new(db.clone(), anonymous);
    let mut record = Record {
        id: Id::default(),
        data: [("k".to_string(), json!("v"))].into_iter().collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    s.create(&mut record).await.unwrap();
    assert_eq!(s.load(&record.id).await.unwrap().unwrap().data["k"], json!("v"));
    record.data.insert("k".into(), json!("w"));
    s.save(&record).await.unwrap();
    assert_eq!(s.load(&record.id).await.unwrap().unwrap().data["k"], json!("w"));
    s.delete(&record.id).await.unwrap();
    assert!(s.load(&record.id).await.unwrap().is_none());
    // A request that loaded the session before it was deleted (a sign-out it raced) saves it at
    // its end: the session stays deleted (item 14 of the round-two review: `save` was an upsert).
    s.save(&record).await.unwrap();
    assert!(s.load(&record.id).await.unwrap().is_none(), "a deleted session came back");
    assert_eq!(crate::helpers::count_rows(&db, "web_sessions").await, 0);
    // Expired sessions are not loaded, and the sweep removes them.
    let mut old = Record { expiry_date: time::OffsetDateTime::now_utc() - time::Duration::hours(1), ..record.clone() };
    old.id = Id::default();
    s.create(&mut old).await.unwrap();
    assert!(s.load(&old.id).await.unwrap().is_none());
    assert!(db.sweep_expired(store::now()).await.unwrap() >= 1);
}

/// A row edited into something its type cannot hold (a scope with a forbidden character, client
/// metadata that is not JSON) is an error when read, never an empty scope or null metadata. (An
/// unknown client kind cannot be written: a CHECK constraint refuses it.)
async fn corrupt_rows_are_errors_not_defaults(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let (user, client_id, resource) = parties(&db).await;
    grants::approve(&db, user, &client_id, resource, &scopes("a"), 10).await.unwrap();
    assert_eq!(grants::list_for_user(&db, user).await.unwrap().len(), 1);
    for (sql, what) in [
        ("UPDATE grants SET scope = 'a \"b'", "a scope with a quote"),
        ("UPDATE clients SET metadata = 'not json'", "metadata that is not JSON"),
    ] {
        execute(&db, sql).await;
        let grants = grants::list_for_user(&db, user).await;
        let client = clients::get(&db, "c1").await;
        assert!(grants.is_err() || client.is_err(), "{what} was read without an error");
        // Put the row right again for the next case.
        execute(&db, "UPDATE grants SET scope = 'a'").await;
        execute(&db, "UPDATE clients SET metadata = '{}'").await;
    }
}

async fn execute(db: &store::Db, sql: &str) {
    match db {
        store::Db::Sqlite(s) => sqlx::query(sql).execute(&mut *s.write().await.unwrap()).await.map(|_| ()),
        store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A scope set this server built (a large catalogue's defaults, a grant widened at consent) may be
/// longer than a request may send; it is read back all the same.
async fn long_scope_sets_are_read_back(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let (user, client_id, resource) = parties(&db).await;
    let long = ScopeSet::from_iter((0..200).map(|i| format!("tools:read-and-write-{i:03}")));
    assert!(
        long.to_string().len() > 2000 && ScopeSet::parse(&long.to_string()).is_err(),
        "longer than a request may send"
    );
    grants::approve(&db, user, &client_id, resource, &long, 10).await.unwrap();
    let grants = grants::list_for_user(&db, user).await.unwrap();
    assert_eq!(grants[0].scope, long);
}
