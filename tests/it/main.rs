//! The one integration-test binary: the real app on 127.0.0.1:0 against real databases (SQLite
//! always; Postgres too when PORTCULLIS_TEST_POSTGRES_URL is set at build time, a fresh database
//! per test; without it the Postgres variants are ignored, never passed unrun).

mod helpers;

mod admin_api;
mod admin_console;
mod authorize;
mod cancellation;
mod cimd;
mod cli;
mod cli_groups;
mod client_credentials;
mod connections;
mod doctor;
mod dpop;
mod exposure;
mod faults;
mod federation;
mod fetch;
mod hardening;
mod hostile;
mod id_jag;
mod lockout;
mod logs;
mod metadata;
mod native_apps;
mod pages;
mod pending_requests;
mod properties;
mod reauthentication;
mod redirect_trust;
mod refresh_budget;
mod register;
mod resource_server;
mod retention;
mod scale_out;
mod sessions;
mod shared_egress;
mod startup;
mod store;
mod sweeps;
mod token;
