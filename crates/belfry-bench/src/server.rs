//! A server process this bench started: `belfry serve` or the seed-style peer
//! (`bench/peer.sh serve`), in its own temporary directory, on a free loopback port. It is
//! stopped by the PID the bench got when it started it (SIGTERM, then SIGKILL after a
//! deadline), and it can be restarted on the same port with the same files (the reconnect
//! storm).

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long a started server may take to answer its readiness probe.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a stopped server may take to exit after SIGTERM before it is killed: more than
/// Belfry's own shutdown can take (it drains the listener, then the sessions, 10 s each at most).
const STOP_DEADLINE: Duration = Duration::from_secs(25);

/// How to start a server process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables to set (every `BELFRY_*` of the bench's own is removed).
    pub env: Vec<(String, String)>,
    /// The readiness probe's path (answers 200 when ready).
    pub ready_path: &'static str,
}

/// How long a restart took.
#[derive(Debug, Clone, Copy)]
pub struct Restarted {
    /// When SIGTERM was sent.
    pub began: Instant,
    /// When the old process had exited.
    pub exited: Instant,
    /// When the new process answered its readiness probe.
    pub ready: Instant,
}

/// A running server process and the directory it lives in.
pub struct Server {
    child: Child,
    pid: u32,
    log: PathBuf,
    launch: Launch,
    addr: SocketAddr,
    dir: TempDir,
}

impl Server {
    /// A fresh temporary directory for a server and a free loopback address for it.
    pub fn place() -> anyhow::Result<(TempDir, SocketAddr)> {
        let dir = tempfile::Builder::new().prefix("belfry-bench-").tempdir()?;
        let port = free_port()?;
        Ok((dir, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    /// Starts `launch` in `dir` and waits until it answers on `addr`.
    pub async fn start(launch: Launch, dir: TempDir, addr: SocketAddr) -> anyhow::Result<Self> {
        let log = dir.path().join("server.log");
        let (child, pid) = spawn(&launch, dir.path(), &log).await?;
        let mut server = Server {
            child,
            pid,
            log,
            launch,
            addr,
            dir,
        };
        if let Err(e) = server.wait_ready().await {
            let tail = server.log_tail();
            let _ = server.stop().await;
            return Err(e.context(format!("server did not become ready; log:\n{tail}")));
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let base = format!("http://{}", self.addr);
        tokio::select! {
            ready = wait_ready(&base, self.launch.ready_path, READY_DEADLINE) => ready,
            exited = self.child.wait() => match exited {
                Ok(status) => Err(anyhow::anyhow!("the server exited during startup ({status})")),
                Err(e) => Err(anyhow::anyhow!("cannot watch the server process: {e}")),
            },
        }
    }

    /// Fails when the process has exited on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the server exited during the run ({status}); last log lines:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Log lines that report a panic or an error.
    pub fn log_problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains("Traceback"))
            .take(20)
            .map(str::to_owned)
            .collect()
    }

    /// Stops the process (SIGTERM to its PID, SIGKILL after a deadline).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
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

    /// Stops the process and starts it again on the same address with the same directory
    /// (database, configuration, secrets), then waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<Restarted> {
        let began = Instant::now();
        self.stop().await?;
        let exited = Instant::now();
        let mut last = None;
        // The port is ours, but the kernel may take a moment to release it.
        for _ in 0..50 {
            match spawn(&self.launch, self.dir.path(), &self.log).await {
                Ok((child, pid)) => {
                    self.child = child;
                    self.pid = pid;
                    match self.wait_ready().await {
                        Ok(()) => {
                            return Ok(Restarted {
                                began,
                                exited,
                                ready: Instant::now(),
                            });
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
            .context(format!("restart failed; log:\n{}", self.log_tail())))
    }
}

async fn spawn(launch: &Launch, dir: &Path, log: &Path) -> anyhow::Result<(Child, u32)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    // The child must see exactly the configuration it is given.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BELFRY_") {
            command.env_remove(name);
        }
    }
    for (key, value) in &launch.env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", launch.program.display()))?;
    let pid = child.id().context("the server exited at once")?;
    Ok((child, pid))
}

/// Polls `base` + `path` until it answers 200 or the deadline passes.
pub async fn wait_ready(base: &str, path: &str, deadline: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{base}{path}");
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
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
    fn our_own_rss_and_cpu_time_are_readable() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_secs(std::process::id()).is_some_and(|s| s >= 0.0));
    }
}
