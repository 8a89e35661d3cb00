//! CPU and memory from /proc: the server's, the generator's own, every `postgres` process's, and
//! the rest of the machine's, so a saturated generator or a busy neighbour shows in the results.

use std::time::Instant;

use crate::report::round;

/// `USER_HZ`, the unit of the times in /proc: 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `after` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks of the whole machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// A kB field of /proc/PID/status (`VmRSS:`, `VmHWM:`).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1, 5 and 15 minute load averages, reported so runs on a busy machine can be told apart.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU ticks of every `postgres` process on the machine (the database's share of the work).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.contains("(postgres)").then(|| proc_ticks(&pid)).flatten()
        })
        .sum()
}

/// CPU ticks at one instant: taken at both ends of the measured window.
pub struct Snapshot {
    at: Instant,
    postgres: u64,
    me: Option<u64>,
    server: Option<u64>,
    machine: Option<(u64, u64)>,
}

pub fn snapshot(server_pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        postgres: postgres_ticks(),
        me: proc_ticks("self"),
        server: server_pid.and_then(|p| proc_ticks(&p.to_string())),
        machine: machine_ticks(),
    }
}

/// CPU used between two snapshots, in cores (1.0 = one core busy for the whole window).
pub struct CpuUse {
    pub load: Option<f64>,
    pub postgres: Option<f64>,
    pub server: Option<f64>,
    /// Everything else the machine did meanwhile (other builds and tests).
    pub other: Option<f64>,
}

pub fn cpu_use(before: &Snapshot, after: &Snapshot) -> CpuUse {
    let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let cpu = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(round((b.saturating_sub(a)) as f64 / TICKS_PER_SEC / wall, 2)),
        _ => None,
    };
    let load_cpu = cpu(before.me, after.me);
    let postgres_cpu = cpu(Some(before.postgres), Some(after.postgres));
    let server_cpu = cpu(before.server, after.server);
    // Everything else the machine did meanwhile (other builds and tests), in cores.
    let other_cpu = match (before.machine, after.machine, before.me, after.me) {
        (Some((b0, t0)), Some((b1, t1)), Some(m0), Some(m1)) if t1 > t0 => {
            // Every CPU of the machine, not just the ones this process may run on.
            let cores = std::fs::read_to_string("/proc/stat")
                .map(|s| s.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count())
                .unwrap_or(1)
                .max(1) as f64;
            let busy = (b1 - b0) as f64 / (t1 - t0) as f64 * cores;
            let server = match (before.server, after.server) {
                (Some(a), Some(b)) => (b - a) as f64 / TICKS_PER_SEC / wall,
                _ => 0.0,
            };
            let me = (m1 - m0) as f64 / TICKS_PER_SEC / wall;
            let db = after.postgres.saturating_sub(before.postgres) as f64 / TICKS_PER_SEC / wall;
            Some(round((busy - me - server - db).max(0.0), 2))
        }
        _ => None,
    };
    CpuUse { load: load_cpu, postgres: postgres_cpu, server: server_cpu, other: other_cpu }
}
