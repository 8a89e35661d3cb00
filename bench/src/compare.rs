//! Portcullis beside the reference peer (issue 18): the runs, and each scenario's ratio
//! (Portcullis ops/s ÷ peer ops/s) against its target, as a table and as JSON lines; beside it
//! the CPU ratio (peer µs/op ÷ Portcullis µs/op, Postgres's CPU counted as Portcullis's).

use std::io::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::peer::{self, Peer};
use crate::report::{self, round};
use crate::scenarios::Scenario;
use crate::setup::Fixture;
use crate::target::Target;
use crate::{Opts, Res, STOP, run};

/// `--peer-only`: the peer alone, every scenario in turn.
pub async fn peer_only(opts: &Opts, scenarios: &[Scenario]) -> Res<()> {
    let (mut p, target, fixture) = peer::start(opts).await?;
    let result = run::measure(opts, scenarios, target, Some(fixture), Some(p.pid), "memory").await;
    let rows = finish(&mut p, result).await?;
    report::print_table(&rows);
    Ok(())
}

/// `--peer`: each scenario against Portcullis, then at once against the peer, so both sides of a
/// ratio run seconds apart and see the same background load; then both tables and the ratios.
/// Each side's workers are set up afresh for each scenario that needs them (untimed).
pub async fn interleaved(
    opts: &Opts,
    scenarios: &[Scenario],
    target: Target,
    fixture: Option<Fixture>,
    server_pid: Option<u32>,
    db_label: &str,
) -> Res<()> {
    let (mut p, peer_target, peer_fixture) = peer::start(opts).await?;
    let peer_pid = p.pid;
    let mut ours = Vec::new();
    let both = async {
        let mut theirs = Vec::new();
        for s in scenarios {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            let one = std::slice::from_ref(s);
            ours.extend(run::measure(opts, one, target.clone(), fixture.clone(), server_pid, db_label).await?);
            let fx = Some(peer_fixture.clone());
            theirs.extend(run::measure(opts, one, peer_target.clone(), fx, Some(peer_pid), "memory").await?);
        }
        Ok(theirs)
    };
    let result = both.await;
    let theirs = finish(&mut p, result).await?;
    report::print_table(&ours);
    report::print_table(&theirs);
    ratios(opts, &ours, &theirs);
    Ok(())
}

/// Stops the peer (its log shown if the run failed) and labels its rows with its versions.
async fn finish(p: &mut Peer, result: Res<Vec<Value>>) -> Res<Vec<Value>> {
    if let Err(e) = &result {
        eprintln!("the run failed ({e}); the peer's log:\n{}", p.log_tail());
    }
    p.stop().await;
    let mut rows = result?;
    for r in &mut rows {
        r["peer"] = json!(p.label);
    }
    Ok(rows)
}

/// The ratio issue 18 asks for at concurrency 16, by engine.
fn target_ratio(scenario: &str, postgres: bool) -> Option<f64> {
    match scenario {
        "authcode" | "refresh" => Some(if postgres { 2.0 } else { 3.0 }),
        "register" | "introspect" => Some(if postgres { 1.5 } else { 2.0 }),
        "metadata" | "jwks" => Some(5.0),
        _ => None,
    }
}

/// Prints one JSON line per scenario with the ratio (stdout) and the ratio table (stderr).
pub fn ratios(opts: &Opts, ours: &[Value], theirs: &[Value]) {
    let num = |r: &Value, k: &str| r[k].as_f64();
    let mut lines = Vec::new();
    for o in ours {
        let name = o["scenario"].as_str().unwrap_or("");
        let Some(t) = theirs.iter().find(|t| t["scenario"] == o["scenario"]) else { continue };
        let (ours_ops, theirs_ops) = (num(o, "ops_per_s").unwrap_or(0.0), num(t, "ops_per_s").unwrap_or(0.0));
        let ratio = (theirs_ops > 0.0).then(|| round(ours_ops / theirs_ops, 2));
        // CPU per op, Postgres's included (on SQLite any Postgres CPU is someone else's): less
        // sensitive than ops/s to what else the machine does.
        let postgres = o["db"] == "postgres";
        let pg_cost = if postgres { num(o, "postgres_cpu_us_per_op").unwrap_or(0.0) } else { 0.0 };
        let ours_cost = num(o, "server_cpu_us_per_op").map(|c| c + pg_cost);
        let target = target_ratio(name, postgres);
        let cpu_ratio = match (num(t, "server_cpu_us_per_op"), ours_cost) {
            (Some(p), Some(c)) if c > 0.0 => Some(round(p / c, 2)),
            _ => None,
        };
        let line = json!({
            "kind": "ratio",
            "scenario": name,
            "db": o["db"],
            "concurrency": opts.concurrency,
            "duration_s": opts.duration,
            "portcullis_ops_per_s": o["ops_per_s"],
            "peer_ops_per_s": t["ops_per_s"],
            "ratio": ratio,
            "target_ratio": target,
            "met": match (ratio, target) {
                (Some(r), Some(want)) => Some(r >= want),
                _ => None,
            },
            "portcullis_cpu_us_per_op": ours_cost,
            "peer_cpu_us_per_op": t["server_cpu_us_per_op"],
            "cpu_ratio": cpu_ratio,
            "portcullis_p99_ms": o["p99_ms"],
            "peer_p99_ms": t["p99_ms"],
            "portcullis_errors": o["errors"],
            "peer_errors": t["errors"],
            "portcullis_server_cpu": o["server_cpu"],
            "peer_server_cpu": t["server_cpu"],
            "portcullis_other_cpu": o["other_cpu"],
            "peer_other_cpu": t["other_cpu"],
            "peer": t["peer"],
        });
        println!("{line}");
        lines.push(line);
    }
    std::io::stdout().flush().ok();
    let f = |v: &Value, k: &str, d: usize| match v[k].as_f64() {
        Some(x) => format!("{x:.d$}"),
        None => "-".into(),
    };
    eprintln!();
    eprintln!("Portcullis / peer ({}):", theirs.first().and_then(|t| t["peer"].as_str()).unwrap_or("peer"));
    eprintln!(
        "{:<11} {:<9} {:>10} {:>10} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10} {:>9}",
        "scenario",
        "db",
        "ours ops/s",
        "peer ops/s",
        "ratio",
        "target",
        "met",
        "ours p99",
        "peer p99",
        "errors",
        "other",
        "ours us/op",
        "peer us/op",
        "cpu ratio"
    );
    for l in &lines {
        eprintln!(
            "{:<11} {:<9} {:>10} {:>10} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10} {:>9}",
            l["scenario"].as_str().unwrap_or(""),
            l["db"].as_str().unwrap_or(""),
            f(l, "portcullis_ops_per_s", 0),
            f(l, "peer_ops_per_s", 0),
            f(l, "ratio", 2),
            match l["target_ratio"].as_f64() {
                Some(x) => format!("≥{x}"),
                None => "-".into(),
            },
            match l["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            },
            f(l, "portcullis_p99_ms", 2),
            f(l, "peer_p99_ms", 2),
            format!("{}/{}", l["portcullis_errors"], l["peer_errors"]),
            format!("{}/{}", f(l, "portcullis_other_cpu", 2), f(l, "peer_other_cpu", 2)),
            f(l, "portcullis_cpu_us_per_op", 0),
            f(l, "peer_cpu_us_per_op", 0),
            f(l, "cpu_ratio", 2),
        );
    }
}
