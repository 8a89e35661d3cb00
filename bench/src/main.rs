//! `portcullis-load`: the load benchmark. Targets a running Portcullis (`--target`) or starts the
//! `portcullis` binary next to it on a fresh SQLite file or a fresh Postgres database, sets up
//! users, clients (a machine client among them), resources and grants through the public
//! interfaces (the CLI, `/register`, the login and consent forms), runs each scenario for a fixed
//! time at a fixed concurrency, and
//! reports ops/s and latency percentiles: one JSON line per scenario on stdout, a table on stderr.
//!
//! It speaks HTTP/1.1 itself over keep-alive connections (one per worker, `TCP_NODELAY`), so the
//! generator costs little CPU per request; every run reports the generator's own CPU use, so a
//! saturated generator is visible. Every response is validated (status and body shape); failures
//! are counted, never timed.
//!
//! Modules, in the order a run uses them: `launch` (start the server, run its CLI) with `pg` (a
//! fresh Postgres database), `target` (discover the endpoints), `setup` (the person, the MCP
//! server and each worker's signed-in client) built on `flows` (the OAuth steps) and `http1` (the
//! client), `scenarios` (one timed operation each), `procfs` (CPU and memory), `report` (the JSON
//! line and the table); `run` ties them together.
//!
//! `--peer` runs each scenario against Portcullis and at once, with the same settings, against the
//! reference peer (`peer`: node-oidc-provider configured as an MCP authorization server by
//! `bench/peer/peer.mjs`, started with `node` under `taskset -c` of `--server-cpu`, in memory),
//! so both sides of a ratio see the same background load; then it prints both tables and the
//! ratios (`compare`): Portcullis ops/s ÷ peer ops/s per scenario with both p99s, beside issue
//! 18's targets, also as JSON lines (`"kind":"ratio"`).
//! `--peer-only` runs the peer alone. Install its dependencies first: `npm ci --prefix bench/peer`.

mod compare;
mod dpop;
mod flows;
mod http1;
mod launch;
mod peer;
mod pg;
mod procfs;
mod report;
mod run;
mod scenarios;
mod seed;
mod setup;
mod target;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

/// Set by Ctrl-C: workers finish their current operation, the run reports and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

/// Errors are messages for the operator (and keys for counting failed operations).
type Res<T> = Result<T, String>;

#[derive(Parser, Debug)]
#[command(name = "portcullis-load", about = "Load benchmark for Portcullis")]
struct Opts {
    /// Scenario: healthz, readyz (the readiness probe: reads and takes the write lock), metadata, jwks, register,
    /// client_credentials (a machine client's token, secret in a Basic header), authcode, refresh, authcode_dpop and
    /// refresh_dpop (the same with a DPoP proof per request, bound tokens), introspect, login, or all
    /// (comma-separated lists work too). With --peer or --peer-only, all means metadata, jwks,
    /// register, authcode, refresh, introspect (the ones the peer runs).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured warm-up before each scenario.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent workers, each with its own keep-alive connection (and client, session, grant).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Database for a server this tool starts: `sqlite` (a fresh file) or a Postgres admin URL
    /// (`postgres://postgres@127.0.0.1:5432/postgres`): a fresh database is created and dropped.
    /// With --target: the running server's own database URL, used by the CLI to add the user and
    /// the resource (alternatively pass --config).
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// A running server's base URL (plain http), e.g. http://127.0.0.1:8080; nothing is started.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the server's PID, for its CPU use and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --target: the server's configuration file, for the CLI setup steps.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pin the started server to this CPU (`taskset -c N`).
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Pin this load generator to this CPU (`taskset -a -p -c N` on itself, before any thread starts).
    #[arg(long)]
    load_cpu: Option<usize>,
    /// Runtime threads of the load generator (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// The `portcullis` binary (default: the one next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// An extra environment variable for a server this tool starts (repeatable), e.g.
    /// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Keep the temporary directory (config, SQLite file, server log) and the Postgres database.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    peer: peer::PeerOpts,
    /// Fill the started server's fresh database before the run: `company` (50,000 people,
    /// 100,000 clients, 1,000,000 grants and refresh tokens, 5,000,000 audit events...), sizes
    /// overridable as `company,audit=1000000` (see bench/src/seed.rs).
    #[arg(long, value_name = "SPEC")]
    seed: Option<String>,
    /// The started server sweeps expired rows every SECS seconds (its `sweep_interval`), so
    /// sweeps run during the measured windows.
    #[arg(long, value_name = "SECS")]
    sweep_every: Option<u64>,
}

fn main() {
    let opts = Opts::parse();
    if let Some(cpu) = opts.load_cpu {
        // Before the runtime exists, so every thread it starts inherits the affinity.
        let pid = std::process::id().to_string();
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("error: could not pin the load generator to CPU {cpu} with taskset");
            std::process::exit(2);
        }
    }
    let rt = if opts.load_threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(opts.load_threads).enable_all().build()
    }
    .expect("tokio runtime");
    let code = rt.block_on(async {
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the current scenario early and cleaning up");
                STOP.store(true, Ordering::SeqCst);
            }
        });
        match run::run(opts).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}
