// Migrations are embedded at compile time by `sqlx::migrate!`: rebuild when one is added.
//
// `PORTCULLIS_TEST_POSTGRES_URL` (set and non-empty) turns on `cfg(portcullis_postgres_tests)`:
// the integration tests' Postgres variants run; without it they are compiled as ignored, so
// `cargo test` lists them as ignored instead of passing them without running. Setting, changing
// or clearing the variable re-runs this script and rebuilds the package's crates (not its
// dependencies).
fn main() {
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_TEST_POSTGRES_URL");
    println!("cargo::rustc-check-cfg=cfg(portcullis_postgres_tests)");
    if std::env::var("PORTCULLIS_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=portcullis_postgres_tests");
    }
}
