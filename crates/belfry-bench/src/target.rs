//! The server under load: either a `belfry serve` child process this bench starts (fresh temp
//! directory and SQLite file, a free loopback port, its own secrets) and stops by its PID, or a
//! server somebody else runs, named by `--url`.
//!
//! Load only ever goes to loopback addresses: a target that resolves elsewhere is refused.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long a started server may take to answer `/readyz`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts to start a server (a free port can be taken between probing and binding).
const START_ATTEMPTS: u32 = 3;

/// How to get a server for one phase.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start `bin serve` with these settings.
    Spawn {
        /// The `belfry` binary.
        bin: PathBuf,
        /// Extra settings, `dotted.key` → TOML value.
        settings: Vec<(String, toml::Value)>,
    },
    /// Use a running server.
    External {
        /// Its base URL, `http://127.0.0.1:8080`.
        url: String,
        /// A backend API key it accepts.
        api_key: String,
        /// Its HS256 user-token secret.
        jwt_secret: String,
        /// Its PID, for memory figures.
        pid: Option<u32>,
    },
}

impl TargetSpec {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Spawn { settings, .. } if settings.is_empty() => "spawned".into(),
            TargetSpec::Spawn { settings, .. } => {
                let list: Vec<String> = settings
                    .iter()
                    .map(|(k, v)| match v {
                        toml::Value::String(text) => format!("{k}={text}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                format!("spawned {}", list.join(" "))
            }
            TargetSpec::External { url, .. } => format!("external {url}"),
        }
    }

    /// The same spec with one more setting (spawned servers only; ignored for external ones).
    pub fn with_setting(&self, key: &str, value: toml::Value) -> Self {
        let mut spec = self.clone();
        if let TargetSpec::Spawn { settings, .. } = &mut spec {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value));
        }
        spec
    }

    /// The value of a setting given to a spawned server, if any.
    pub fn setting(&self, key: &str) -> Option<&toml::Value> {
        match self {
            TargetSpec::Spawn { settings, .. } => {
                settings.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            TargetSpec::External { .. } => None,
        }
    }

    /// Starts (or checks) the server and waits until it is ready.
    pub async fn start(&self) -> anyhow::Result<Target> {
        match self {
            TargetSpec::Spawn { bin, settings } => {
                let mut last = None;
                for _ in 0..START_ATTEMPTS {
                    match Server::spawn(bin, settings).await {
                        Ok(target) => return Ok(target),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("server did not start")))
            }
            TargetSpec::External {
                url,
                api_key,
                jwt_secret,
                pid,
            } => {
                let addr = loopback_addr(url).await?;
                let target = Target {
                    base: url.trim_end_matches('/').to_owned(),
                    addr,
                    api_key: api_key.clone(),
                    jwt_secret: jwt_secret.clone(),
                    pid: *pid,
                    server: None,
                };
                wait_ready(&target.base, READY_DEADLINE).await?;
                Ok(target)
            }
        }
    }
}

/// A ready server.
pub struct Target {
    /// Base URL without a trailing slash.
    pub base: String,
    /// Its socket address (loopback).
    pub addr: SocketAddr,
    /// Backend API key.
    pub api_key: String,
    /// HS256 secret for user tokens.
    pub jwt_secret: String,
    pid: Option<u32>,
    server: Option<Server>,
}

impl Target {
    /// The WebSocket URL for a user token.
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }

    /// The server's PID, when known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The server's resident memory in KiB, when its PID is known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(rss_kib)
    }

    /// CPU time (user + system, all threads) the server has used, in seconds, when its PID is
    /// known.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.and_then(cpu_secs)
    }

    /// Fails when a spawned server has exited on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(server) = &mut self.server
            && let Some(status) = server.child.try_wait()?
        {
            bail!(
                "the server exited during the run ({status}); last log lines:\n{}",
                server.log_tail()
            );
        }
        Ok(())
    }

    /// Lines of the spawned server's log that report a panic or an error.
    pub fn log_problems(&self) -> Vec<String> {
        let Some(server) = &self.server else {
            return Vec::new();
        };
        std::fs::read_to_string(&server.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("panicked") || l.contains("ERROR"))
            .take(20)
            .map(str::to_owned)
            .collect()
    }

    /// Stops a spawned server (SIGTERM, then SIGKILL after a deadline); a no-op otherwise.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server.stop().await,
            None => Ok(()),
        }
    }
}

/// Polls `/readyz` until it answers 200 or the deadline passes.
async fn wait_ready(base: &str, deadline: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{base}/readyz");
    let until = Instant::now() + deadline;
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("{url} did not answer 200 within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `belfry serve` child process and the directory it lives in.
struct Server {
    child: Child,
    pid: u32,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    async fn spawn(bin: &Path, settings: &[(String, toml::Value)]) -> anyhow::Result<Target> {
        // Absolute, because the child runs in its own directory.
        let bin = std::fs::canonicalize(bin).with_context(|| {
            format!(
                "server binary {} not found: build it with `cargo build --release -p belfry` or \
                 pass --server-bin",
                bin.display()
            )
        })?;
        let dir = tempfile::Builder::new().prefix("belfry-bench-").tempdir()?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let jwt_secret = uuid::Uuid::new_v4().simple().to_string();
        let config = server_config(dir.path(), addr, &api_key, &jwt_secret, settings)?;
        let config_path = dir.path().join("belfry.toml");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(&bin);
        command
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        // The child must see exactly the configuration written above.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BELFRY_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let base = format!("http://{addr}");
        let ready = tokio::select! {
            ready = wait_ready(&base, READY_DEADLINE) => ready,
            exited = child.wait() => match exited {
                Ok(status) => Err(anyhow::anyhow!("the server exited during startup ({status})")),
                Err(e) => Err(anyhow::anyhow!("cannot watch the server process: {e}")),
            },
        };
        let server = Server {
            child,
            pid,
            log,
            _dir: dir,
        };
        if let Err(e) = ready {
            let tail = server.log_tail();
            let _ = server.stop().await;
            return Err(e.context(format!("server did not become ready; log:\n{tail}")));
        }
        Ok(Target {
            base,
            addr,
            api_key,
            jwt_secret,
            pid: Some(pid),
            server: Some(server),
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SIGTERM to the PID this bench started, so the server shuts down gracefully.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                eprintln!("server {} ignored SIGTERM; killing it", self.pid);
                self.child.start_kill()?;
                self.child.wait().await?;
            }
        }
        Ok(())
    }
}

/// The spawned server's TOML configuration.
fn server_config(
    dir: &Path,
    addr: SocketAddr,
    api_key: &str,
    jwt_secret: &str,
    settings: &[(String, toml::Value)],
) -> anyhow::Result<String> {
    let mut root = toml::Table::new();
    set(&mut root, "listen", addr.to_string().into())?;
    let db = dir.join("belfry.db");
    set(
        &mut root,
        "database_url",
        format!("sqlite://{}", db.display()).into(),
    )?;
    set(
        &mut root,
        "auth.api_keys",
        toml::Value::Array(vec![api_key.into()]),
    )?;
    set(&mut root, "auth.jwt_secret", jwt_secret.into())?;
    set(
        &mut root,
        "auth.secrets_file",
        dir.join("secrets.toml").display().to_string().into(),
    )?;
    set(&mut root, "log.filter", "warn".into())?;
    for (key, value) in settings {
        set(&mut root, key, value.clone())?;
    }
    Ok(toml::to_string(&root)?)
}

/// Sets `a.b.c = value` in a TOML table.
fn set(root: &mut toml::Table, key: &str, value: toml::Value) -> anyhow::Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        bail!("empty setting name");
    };
    let mut table = root;
    for part in parts {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("setting `{key}`: `{part}` is not a section"),
        };
    }
    table.insert(last.to_owned(), value);
    Ok(())
}

/// Parses `key=value` from the command line; the value is TOML when it parses as TOML, else a
/// string.
pub fn parse_setting(text: &str) -> Result<(String, toml::Value), String> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{text}` has no key"));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    Ok((key.to_owned(), value))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Resolves a URL's host and refuses anything but loopback.
async fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url must start with http:// (got {url})"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&host_port)
        .await
        .with_context(|| format!("cannot resolve {host_port}"))?
        .collect();
    let addr = addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .with_context(|| {
            format!("{url} is not a loopback address; the bench only loads loopback")
        })?;
    Ok(addr)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system, all threads) of a process, in seconds, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    /// Linux reports these times in USER_HZ ticks, which is 100 on every architecture it runs
    /// on with a stable ABI.
    const TICKS_PER_SEC: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_toml_or_fall_back_to_strings() {
        let (key, value) = parse_setting("ws.outbox_frames=1024").unwrap();
        assert_eq!(key, "ws.outbox_frames");
        assert_eq!(value, toml::Value::Integer(1024));
        let (_, value) = parse_setting("store.sqlite_synchronous=normal").unwrap();
        assert_eq!(value, toml::Value::String("normal".into()));
        assert!(parse_setting("novalue").is_err());
    }

    #[test]
    fn the_server_config_nests_dotted_keys() {
        let text = server_config(
            Path::new("/tmp/x"),
            "127.0.0.1:9000".parse().unwrap(),
            "k",
            "s",
            &[("store.sqlite_synchronous".into(), "normal".into())],
        )
        .unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["listen"].as_str(), Some("127.0.0.1:9000"));
        assert_eq!(
            table["store"]["sqlite_synchronous"].as_str(),
            Some("normal")
        );
        assert_eq!(table["auth"]["api_keys"][0].as_str(), Some("k"));
    }

    #[tokio::test]
    async fn non_loopback_targets_are_refused() {
        assert!(loopback_addr("http://127.0.0.1:8080").await.is_ok());
        assert!(loopback_addr("http://192.0.2.1:8080").await.is_err());
        assert!(loopback_addr("https://127.0.0.1").await.is_err());
    }

    #[test]
    fn our_own_rss_and_cpu_time_are_readable() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_secs(std::process::id()).is_some_and(|s| s >= 0.0));
    }
}
