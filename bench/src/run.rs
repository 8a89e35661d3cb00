//! A run: start the server or use the target, set up what the scenarios need, then each scenario
//! in turn (warm-up, measured window, CPU sampled over that window only), reported as it ends;
//! with `--peer`, the same again against the reference peer, then the ratios.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::dpop::DpopKey;
use crate::flows::register_body;
use crate::http1::Conn;
use crate::launch::{CliDb, server_binary, start_server};
use crate::procfs::{cpu_use, loadavg, snapshot, status_kb};
use crate::scenarios::{ALL, Ctx, Scenario, Tally, Worker, work};
use crate::setup::{Fixture, Principal, principal, setup_fixture};
use crate::target::{Kind, Target, discover};
use crate::{Opts, Res, STOP, compare, peer, report};

/// The whole run; a server this tool started is stopped (and its database dropped) even on error.
pub async fn run(opts: Opts) -> Res<()> {
    if opts.concurrency == 0 || opts.duration <= 0.0 {
        return Err("--concurrency and --duration must be positive".into());
    }
    let all = if opts.peer.enabled() { peer::SCENARIOS } else { ALL };
    let scenarios: Vec<Scenario> = if opts.scenario == "all" {
        all.iter().map(|s| Scenario::parse(s)).collect::<Res<_>>()?
    } else {
        opts.scenario.split(',').map(|s| Scenario::parse(s.trim())).collect::<Res<_>>()?
    };
    if let Some(s) = scenarios.iter().find(|s| !all.contains(&s.name())) {
        return Err(format!("the peer does not run {}: one of {} or all", s.name(), all.join(", ")));
    }
    if opts.peer.peer_only {
        return compare::peer_only(&opts, &scenarios).await;
    }
    let (mut server, base, cli_db, server_pid, db_label) = match &opts.target {
        Some(_) if opts.seed.is_some() || opts.sweep_every.is_some() => {
            return Err("--seed and --sweep-every are for a server this tool starts, not --target".into());
        }
        Some(base) => {
            let cli_db = match (&opts.config, opts.db.as_str()) {
                (Some(p), _) => Some(CliDb::Config(p.clone())),
                (None, "sqlite") => None,
                (None, url) => Some(CliDb::Url(url.to_string())),
            };
            (None, base.clone(), cli_db, opts.server_pid, "external".to_string())
        }
        None => {
            let (s, base) = start_server(&opts).await?;
            let cli_db = CliDb::Config(s.config.clone());
            let pid = s.pid;
            let label = if opts.db == "sqlite" { "sqlite".to_string() } else { "postgres".to_string() };
            eprintln!("started {} (pid {pid}) on {base} with {label}", server_binary(&opts)?.display());
            (Some(s), base, Some(cli_db), Some(pid), label)
        }
    };
    let result = match prepare(&opts, &scenarios, &base, cli_db.as_ref()).await {
        Ok((target, fixture)) if opts.peer.peer => {
            compare::interleaved(&opts, &scenarios, target, fixture, server_pid, &db_label).await
        }
        Ok((target, fixture)) => measure(&opts, &scenarios, target, fixture, server_pid, &db_label)
            .await
            .map(|rows| report::print_table(&rows)),
        Err(e) => Err(e),
    };
    if let Some(s) = server.as_mut() {
        s.stop().await;
    }
    result
}

/// The target's endpoints, and the fixture the scenarios need (made through the CLI).
async fn prepare(
    opts: &Opts,
    scenarios: &[Scenario],
    base: &str,
    cli_db: Option<&CliDb>,
) -> Res<(Target, Option<Fixture>)> {
    let target = discover(base).await?;
    let needs_fixture = scenarios.iter().any(|s| s.needs_fixture());
    let fixture = if needs_fixture {
        let db = cli_db.ok_or(
            "authcode, refresh, introspect, login and client_credentials need a person, an MCP server and a \
             machine client: with --target, pass the server's --config or its --db URL so the CLI can add them",
        )?;
        Some(setup_fixture(&server_binary(opts)?, db)?)
    } else {
        None
    };
    Ok((target, fixture))
}

/// Every scenario in turn against the target (Portcullis or the peer); returns their JSON lines.
pub async fn measure(
    opts: &Opts,
    scenarios: &[Scenario],
    target: Target,
    fixture: Option<Fixture>,
    server_pid: Option<u32>,
    db_label: &str,
) -> Res<Vec<serde_json::Value>> {
    let ctx = Arc::new(Ctx { target, fixture, register_body: register_body() });
    let mut workers: Vec<Worker> = (0..opts.concurrency)
        .map(|_| -> Res<Worker> {
            Ok(Worker {
                conn: Conn::new(&ctx.target),
                principal: Principal::default(),
                login_csrf: None,
                dpop: DpopKey::new()?,
                dpop_refresh: None,
            })
        })
        .collect::<Res<_>>()?;
    let mut principals_ready = false;
    let mut rows = Vec::new();
    for &s in scenarios {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        // The peer's store is an LRU of 1000 to 2000 objects: what an earlier scenario set up may
        // be gone, so its workers sign in again before each scenario that needs them.
        if s.needs_principals() && (!principals_ready || ctx.target.kind == Kind::Peer) {
            // Set up just before the first scenario that needs it, so the scenarios before it show
            // the server's memory without the sign-ins (argon2) this costs.
            let t = Instant::now();
            let fx = ctx.fixture.as_ref().expect("fixture");
            for w in workers.iter_mut() {
                w.principal = match ctx.target.kind {
                    Kind::Portcullis => principal(&mut w.conn, &ctx.target, fx, &ctx.register_body).await?,
                    Kind::Peer => peer::principal(&mut w.conn, &ctx.target, fx, &ctx.register_body).await?,
                };
            }
            principals_ready = true;
            let rss = server_pid
                .and_then(|p| status_kb(p, "VmRSS:"))
                .map(|kb| format!(", server RSS now {:.1} MB", kb as f64 / 1024.0));
            eprintln!(
                "set up {} clients with signed-in, consented sessions on {} in {:.1} s{}",
                workers.len(),
                ctx.target.kind.name(),
                t.elapsed().as_secs_f64(),
                rss.unwrap_or_default()
            );
        }
        let load_before = loadavg();
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(opts.warmup);
        let end = measure_from + Duration::from_secs_f64(opts.duration);
        let mut set = tokio::task::JoinSet::new();
        for w in workers.drain(..) {
            set.spawn(work(s, w, ctx.clone(), measure_from, end));
        }
        // CPU is sampled over the measured window only.
        tokio::time::sleep_until(measure_from.into()).await;
        let before = snapshot(server_pid);
        tokio::time::sleep_until(end.into()).await;
        let after = snapshot(server_pid);
        let mut all = Tally::default();
        while let Some(r) = set.join_next().await {
            let (w, t) = r.map_err(|e| format!("worker panicked: {e}"))?;
            workers.push(w);
            all.add(t);
        }
        let cpu = cpu_use(&before, &after);
        let line = report::scenario(opts, s, ctx.target.kind, db_label, server_pid, load_before, cpu, all);
        rows.push(line);
    }
    Ok(rows)
}
