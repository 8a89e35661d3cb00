//! Results: one JSON line per scenario on stdout (for scripts), a table on stderr (for people).

use std::io::Write as _;

use crate::Opts;
use crate::procfs::{CpuUse, status_kb};
use crate::scenarios::{Scenario, Tally};
use crate::target::Kind;

/// Prints a finished scenario's JSON line (at once, so a long run can be followed) and its error
/// samples; returns the line for the closing table.
#[allow(clippy::too_many_arguments)]
pub fn scenario(
    opts: &Opts,
    s: Scenario,
    server: Kind,
    db_label: &str,
    server_pid: Option<u32>,
    load_before: String,
    cpu: CpuUse,
    all: Tally,
) -> serde_json::Value {
    let CpuUse { load: load_cpu, postgres: postgres_cpu, server: server_cpu, other: other_cpu } = cpu;
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let ops = lat.len() as u64;
    let ops_per_s = ops as f64 / opts.duration;
    let mean =
        if lat.is_empty() { f64::NAN } else { lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64 / 1000.0 };
    let peak_rss_mb = server_pid.and_then(|p| status_kb(p, "VmHWM:")).map(|kb| round(kb as f64 / 1024.0, 1));
    let rss_mb = server_pid.and_then(|p| status_kb(p, "VmRSS:")).map(|kb| round(kb as f64 / 1024.0, 1));
    let line = serde_json::json!({
        "scenario": s.name(),
        "server": server.name(),
        "db": db_label,
        "concurrency": opts.concurrency,
        "duration_s": opts.duration,
        "ops": ops,
        "ops_per_s": round(ops_per_s, 1),
        "errors": all.errors,
        "p50_ms": round(percentile(&lat, 50.0), 3),
        "p90_ms": round(percentile(&lat, 90.0), 3),
        "p99_ms": round(percentile(&lat, 99.0), 3),
        "max_ms": round(lat.last().map(|&x| x as f64 / 1000.0).unwrap_or(f64::NAN), 3),
        "mean_ms": round(mean, 3),
        "server_peak_rss_mb": peak_rss_mb,
        "server_rss_mb": rss_mb,
        "server_cpu": server_cpu,
        // Server CPU time per operation: the cost the throughput is bounded by on one core.
        "server_cpu_us_per_op": server_cpu.filter(|_| ops > 0).map(|c| round(c * 1e6 / ops_per_s, 0)),
        "postgres_cpu_us_per_op": postgres_cpu.filter(|c| ops > 0 && *c > 0.0).map(|c| round(c * 1e6 / ops_per_s, 0)),
        "load_cpu": load_cpu,
        "postgres_cpu": postgres_cpu,
        "other_cpu": other_cpu,
        "loadavg_before": load_before,
        "seed": opts.seed,
        "sweep_every_s": opts.sweep_every,
        "server_cpu_pin": opts.server_cpu,
        "load_cpu_pin": opts.load_cpu,
        "error_samples": all.samples,
    });
    println!("{line}");
    std::io::stdout().flush().ok();
    for (k, v) in &all.samples {
        eprintln!("  {} error x{v}: {k}", s.name());
    }
    line
}

/// The closing table: one row per scenario, the columns people compare first.
pub fn print_table(rows: &[serde_json::Value]) {
    let f = |v: &serde_json::Value, k: &str, d: usize| match v.get(k).and_then(|x| x.as_f64()) {
        Some(x) => format!("{x:.d$}"),
        None => "-".into(),
    };
    eprintln!();
    if let Some(server) = rows.first().and_then(|r| r["server"].as_str()) {
        eprintln!("{server}:");
    }
    eprintln!(
        "{:<11} {:<9} {:>4} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "scenario",
        "db",
        "conc",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "srv cpu",
        "us/op",
        "gen cpu",
        "pg cpu",
        "other",
        "peak RSS"
    );
    for r in rows {
        eprintln!(
            "{:<11} {:<9} {:>4} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}",
            r["scenario"].as_str().unwrap_or(""),
            r["db"].as_str().unwrap_or(""),
            r["concurrency"],
            f(r, "ops_per_s", 0),
            f(r, "p50_ms", 2),
            f(r, "p90_ms", 2),
            f(r, "p99_ms", 2),
            r["errors"],
            f(r, "server_cpu", 2),
            f(r, "server_cpu_us_per_op", 0),
            f(r, "load_cpu", 2),
            f(r, "postgres_cpu", 2),
            f(r, "other_cpu", 2),
            match r["server_peak_rss_mb"].as_f64() {
                Some(x) => format!("{x:.1} MB"),
                None => "-".into(),
            },
        );
    }
}

/// The p-th percentile in ms of sorted µs latencies (nearest rank: every latency is kept, so exact).
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}
