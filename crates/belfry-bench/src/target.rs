//! The server under load, one per phase: Belfry (`belfry serve`, a fresh temp directory and
//! SQLite file, its own secrets), the seed-style peer (`bench/peer.sh serve`, likewise), or a
//! server somebody else runs, named by `--url`.
//!
//! Load only ever goes to loopback addresses: a target that resolves elsewhere is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::dialect::Dialect;
use crate::server::{self, Launch, Restarted, Server};

/// Attempts to start a server (a free port can be taken between probing and binding).
const START_ATTEMPTS: u32 = 3;
/// How long an external server may take to answer its readiness probe.
const EXTERNAL_READY: Duration = Duration::from_secs(30);

/// How to get a server for one phase.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start `bin serve` with these settings.
    Belfry {
        /// The `belfry` binary.
        bin: PathBuf,
        /// Extra settings, `dotted.key` → TOML value.
        settings: Vec<(String, toml::Value)>,
    },
    /// Start the seed-style peer with `script serve` (bench/peer.sh).
    Peer {
        /// The peer's script.
        script: PathBuf,
        /// Extra environment for the peer (`PEER_SQLITE_JOURNAL=wal`).
        env: Vec<(String, String)>,
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
        /// Which API it speaks.
        dialect: Dialect,
    },
}

impl TargetSpec {
    /// Which API the server speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            TargetSpec::Belfry { .. } => Dialect::Belfry,
            TargetSpec::Peer { .. } => Dialect::Seed,
            TargetSpec::External { dialect, .. } => *dialect,
        }
    }

    /// Whether this is a peer compared with Belfry (not Belfry itself).
    pub fn is_peer(&self) -> bool {
        self.dialect() != Dialect::Belfry
    }

    /// The server's short name for tables: `belfry` or `fastapi`.
    pub fn name(&self) -> &'static str {
        self.dialect().name()
    }

    /// A description for the JSON lines.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Belfry { settings, .. } if settings.is_empty() => "belfry spawned".into(),
            TargetSpec::Belfry { settings, .. } => {
                let list: Vec<String> = settings
                    .iter()
                    .map(|(k, v)| match v {
                        toml::Value::String(text) => format!("{k}={text}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                format!("belfry spawned {}", list.join(" "))
            }
            TargetSpec::Peer { env, .. } => {
                let list: Vec<String> = env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
                format!("fastapi spawned{}", list.concat())
            }
            TargetSpec::External { url, dialect, .. } => {
                format!("{} external {url}", dialect.name())
            }
        }
    }

    /// Whether the bench starts (and can restart) this server.
    pub fn is_spawned(&self) -> bool {
        !matches!(self, TargetSpec::External { .. })
    }

    /// The same spec with one more Belfry setting (ignored for other servers).
    pub fn with_setting(&self, key: &str, value: toml::Value) -> Self {
        let mut spec = self.clone();
        if let TargetSpec::Belfry { settings, .. } = &mut spec {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value));
        }
        spec
    }

    /// The value of a setting given to a started Belfry, if any.
    pub fn setting(&self, key: &str) -> Option<&toml::Value> {
        match self {
            TargetSpec::Belfry { settings, .. } => {
                settings.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Starts (or checks) the server and waits until it is ready.
    pub async fn start(&self) -> anyhow::Result<Target> {
        match self {
            TargetSpec::Belfry { .. } | TargetSpec::Peer { .. } => {
                let mut last = None;
                for _ in 0..START_ATTEMPTS {
                    match self.spawn().await {
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
                dialect,
            } => {
                let addr = loopback_addr(url).await?;
                let base = url.trim_end_matches('/').to_owned();
                server::wait_ready(&base, dialect.ready_path(), EXTERNAL_READY).await?;
                Ok(Target {
                    base,
                    addr,
                    dialect: *dialect,
                    api_key: api_key.clone(),
                    jwt_secret: jwt_secret.clone(),
                    pid: *pid,
                    server: None,
                })
            }
        }
    }

    async fn spawn(&self) -> anyhow::Result<Target> {
        let (dir, addr) = Server::place()?;
        let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let jwt_secret = uuid::Uuid::new_v4().simple().to_string();
        let launch = match self {
            TargetSpec::Belfry { bin, settings } => {
                // Absolute, because the child runs in its own directory.
                let bin = std::fs::canonicalize(bin).with_context(|| {
                    format!(
                        "server binary {} not found: build it with `cargo build --release -p \
                         belfry` or pass --server-bin",
                        bin.display()
                    )
                })?;
                let config = server_config(dir.path(), addr, &api_key, &jwt_secret, settings)?;
                let config_path = dir.path().join("belfry.toml");
                std::fs::write(&config_path, config)?;
                Launch {
                    program: bin,
                    args: vec!["--config".into(), config_path.into(), "serve".into()],
                    env: Vec::new(),
                    ready_path: Dialect::Belfry.ready_path(),
                }
            }
            TargetSpec::Peer { script, env } => {
                let script = std::fs::canonicalize(script).with_context(|| {
                    format!("peer script {} not found (--peer-script)", script.display())
                })?;
                let mut vars = vec![
                    (
                        "PEER_DATABASE".to_owned(),
                        dir.path().join("peer.db").display().to_string(),
                    ),
                    ("PEER_JWT_SECRET".to_owned(), jwt_secret.clone()),
                    ("PEER_API_KEY".to_owned(), api_key.clone()),
                ];
                vars.extend(env.iter().cloned());
                Launch {
                    program: script,
                    args: vec![
                        "serve".into(),
                        "--port".into(),
                        addr.port().to_string().into(),
                    ],
                    env: vars,
                    ready_path: Dialect::Seed.ready_path(),
                }
            }
            TargetSpec::External { .. } => bail!("an external server is not started"),
        };
        let server = Server::start(launch, dir, addr).await?;
        Ok(Target {
            base: format!("http://{addr}"),
            addr,
            dialect: self.dialect(),
            api_key,
            jwt_secret,
            pid: Some(server.pid()),
            server: Some(server),
        })
    }
}

/// A ready server.
pub struct Target {
    /// Base URL without a trailing slash.
    pub base: String,
    /// Its socket address (loopback).
    pub addr: SocketAddr,
    /// Which API it speaks.
    pub dialect: Dialect,
    /// Backend API key.
    pub api_key: String,
    /// HS256 secret for user tokens.
    pub jwt_secret: String,
    pid: Option<u32>,
    server: Option<Server>,
}

impl Target {
    /// The server's PID, when known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The server's resident memory in KiB, when its PID is known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(server::rss_kib)
    }

    /// CPU time (user + system, all threads) the server has used, in seconds, when its PID is
    /// known.
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.and_then(server::cpu_secs)
    }

    /// Fails when a started server has exited on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match &mut self.server {
            Some(server) => server.check_alive(),
            None => Ok(()),
        }
    }

    /// Lines of the started server's log that report a panic or an error.
    pub fn log_problems(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(Server::log_problems)
            .unwrap_or_default()
    }

    /// Stops a started server and starts it again on the same port with the same database.
    pub async fn restart(&mut self) -> anyhow::Result<Restarted> {
        let Some(server) = &mut self.server else {
            bail!("only a server the bench started can be restarted");
        };
        let restarted = server.restart().await?;
        self.pid = Some(server.pid());
        Ok(restarted)
    }

    /// Stops a started server (SIGTERM, then SIGKILL after a deadline); a no-op otherwise.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(mut server) => server.stop().await,
            None => Ok(()),
        }
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
}
