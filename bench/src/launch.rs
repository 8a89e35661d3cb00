//! Starting the `portcullis` binary on a fresh database with the abuse limits off (so they do not
//! cap the run), stopping it and cleaning up, and running its CLI for the setup.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http1::Conn;
use crate::target::Target;
use crate::{Opts, Res, pg, seed};

/// A server this tool started; `stop` ends it and removes what the run created.
pub struct Server {
    child: Child,
    pub pid: u32,
    dir: PathBuf,
    /// Its configuration file, which the CLI is pointed at for the setup.
    pub config: PathBuf,
    pg: Option<(String, String)>, // (admin URL, database name)
    keep: bool,
}

pub fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The `portcullis` binary: `--server-bin`, or the one in the same target directory as this tool.
pub fn server_binary(opts: &Opts) -> Res<PathBuf> {
    if let Some(b) = &opts.server_bin {
        return Ok(b.clone());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = me.with_file_name("portcullis");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found: build it (cargo build --release --workspace) or pass --server-bin", bin.display()))
    }
}

/// Starts the server on a fresh database and a free port; returns it once `/healthz` answers, with
/// its base URL.
pub async fn start_server(opts: &Opts) -> Res<(Server, String)> {
    let bin = server_binary(opts)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let dir = std::env::temp_dir().join(format!("portcullis-load-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (database_url, pg) = if opts.db == "sqlite" {
        (format!("sqlite://{}", dir.join("portcullis.db").display()), None)
    } else if opts.db.starts_with("postgres://") || opts.db.starts_with("postgresql://") {
        let name = format!("portcullis_load_{}_{stamp}", std::process::id());
        (pg::create_database(&opts.db, &name).await?, Some((opts.db.clone(), name)))
    } else {
        return Err(format!("--db must be sqlite or a postgres:// URL, not {:?}", opts.db));
    };
    let port = free_port()?;
    let limits = "authorize = 0\ntoken = 0\nregister = 0\nintrospect = 0\nlogin = 0\nrevoke = 0\n";
    let config = format!(
        "issuer = \"http://127.0.0.1:{port}\"\nbind = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\n\
         data_dir = \"{}\"\nlog_level = \"warn\"\nbootstrap_admin = false\nregistrations_per_ip_per_hour = 0\n\
         max_dynamic_clients = 100000000\nlogin_max_failures = 1000000\n\
         rate_limit_per_refresh_family = 0\npending_sessions_per_address = 0\n\n\
         [rate_limit_per_ip]\n{limits}\n[rate_limit_total]\n{limits}",
        dir.display()
    );
    let config = match opts.sweep_every {
        Some(secs) => format!("sweep_interval = {secs}\n{config}"),
        None => config,
    };
    let config_path = dir.join("portcullis.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    if let Some(spec) = &opts.seed {
        // Migrated by the server's own `migrate`, seeded, and only then served: the server's
        // caches and its first sweep see the seeded tables.
        let seeded = async {
            let sizes = seed::Sizes::parse(spec)?;
            cli(&bin, &CliDb::Config(config_path.clone()), &["migrate"], None)?;
            seed::seed(&database_url, &sizes).await
        };
        if let Err(e) = seeded.await {
            if let Some((admin, name)) = &pg {
                let _ = pg::drop_database(admin, name).await;
            }
            if !opts.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    }
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = match opts.server_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg("--config").arg(&config_path).arg("serve").current_dir(&dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    for kv in &opts.server_env {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))?;
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let pid = child.id();
    let mut server = Server { child, pid, dir, config: config_path, pg, keep: opts.keep };
    let base = format!("http://127.0.0.1:{port}");
    let t = Target {
        healthz: "/healthz".into(),
        ..Target::unresolved(SocketAddr::from(([127, 0, 0, 1], port)), format!("127.0.0.1:{port}"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            let e = format!("the server exited ({status}):\n{log}");
            server.stop().await;
            return Err(e);
        }
        let mut c = Conn::new(&t);
        if let Ok(r) = c.get("/healthz").await
            && r.status == 200
        {
            break;
        }
        if Instant::now() > deadline {
            server.stop().await;
            return Err("the server did not become healthy within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((server, base))
}

impl Server {
    pub async fn stop(&mut self) {
        terminate(&mut self.child).await;
        if self.keep {
            eprintln!("kept {} (config, database, server.log)", self.dir.display());
            if let Some((_, name)) = &self.pg {
                eprintln!("kept Postgres database {name}");
            }
            return;
        }
        if let Some((admin, name)) = self.pg.take()
            && let Err(e) = pg::drop_database(&admin, &name).await
        {
            eprintln!("warning: could not drop database {name}: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends a process this tool started: SIGTERM, then SIGKILL after 10 s.
pub async fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).stderr(Stdio::null()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// How the CLI reaches the server's database.
pub enum CliDb {
    Config(PathBuf),
    Url(String),
}

/// Runs one CLI command against the server's database; returns its stdout.
pub fn cli(bin: &Path, db: &CliDb, args: &[&str], stdin: Option<&str>) -> Res<String> {
    let mut cmd = Command::new(bin);
    match db {
        CliDb::Config(p) => {
            cmd.arg("--config").arg(p);
        }
        CliDb::Url(u) => {
            cmd.env("PORTCULLIS_DATABASE_URL", u).env("PORTCULLIS_BOOTSTRAP_ADMIN", "false");
        }
    }
    cmd.args(args).current_dir(std::env::temp_dir()).env("RUST_LOG", "error");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("running {}: {e}", bin.display()))?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "portcullis {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
