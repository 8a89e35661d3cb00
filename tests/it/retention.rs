//! Storage bounds (the round-two review's item 5, in part): audit events are kept for
//! `audit_retention` and deleted in batches after, and no audit row keeps a request's oversized
//! actor or client id whole.

use portcullis::store::audit::{self, Event, MAX_FIELD};

use crate::helpers::{Engine, TestDb, count_rows, db_tests};

db_tests!(old_audit_events_are_swept_in_batches, audit_rows_keep_bounded_fields);

async fn old_audit_events_are_swept_in_batches(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    for at in [10, 20, 30, 40, 50, 1000, 2000] {
        audit::record(&db, &Event { event: "login_failed", ..Default::default() }, at).await.unwrap();
    }
    // Two statements of two rows each: four of the five old events, the newest old one left.
    assert_eq!(audit::sweep(&db, 100, 2, 2).await.unwrap(), 4);
    assert_eq!(count_rows(&db, "audit_events").await, 3);
    // The next run finishes; newer events stay.
    assert_eq!(audit::sweep(&db, 100, 2, 10).await.unwrap(), 1);
    assert_eq!(audit::sweep(&db, 100, 2, 10).await.unwrap(), 0);
    let left: Vec<i64> = audit::list(&db, None, 10).await.unwrap().iter().map(|e| e.at).collect();
    assert_eq!(left, vec![2000, 1000]);
}

async fn audit_rows_keep_bounded_fields(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let huge = format!("é{}", "x".repeat(64 * 1024));
    let client = format!("https://example.com/{}", "y".repeat(8 * 1024));
    let e = Event { event: "login_failed", actor: Some(&huge), client_id: Some(&client), ..Default::default() };
    audit::record(&db, &e, 1).await.unwrap();
    let row = audit::list(&db, None, 1).await.unwrap().remove(0);
    let actor = row.actor.unwrap();
    assert!(actor.len() <= MAX_FIELD + 3 && actor.starts_with("éxxx") && actor.ends_with('…'), "{}", actor.len());
    let client_id = row.client_id.unwrap();
    assert!(client_id.len() <= MAX_FIELD + 3 && client_id.starts_with("https://example.com/yyy"));
}
