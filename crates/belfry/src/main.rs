//! The `belfry` command: parses the CLI, loads the configuration and runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use belfry::auth::Auth;
use belfry::model::UserId;
use belfry::{App, Config};
use clap::{Parser, Subcommand};
use figment::Figment;
use tokio_util::sync::CancellationToken;

/// Belfry: self-hosted real-time notifications.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (defaults < file < BELFRY_* environment < flags).
    #[arg(long, global = true, env = "BELFRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Database URL, e.g. sqlite://belfry-data/belfry.db.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Run the server with the demo blog at http://127.0.0.1:8080/.
    Demo,
    /// Create or migrate the database, then exit.
    Migrate,
    /// Mint a development user token (HS256, needs auth.jwt_secret).
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Send a notification through a running server's backend API.
    Notify {
        /// Recipient user id.
        #[arg(long)]
        user: String,
        /// Notification type, e.g. comment.created.
        #[arg(long = "type")]
        kind: String,
        /// JSON object.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Base URL of the server (default: from `listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the effective configuration (secrets redacted).
    PrintConfig,
    /// Generate a VAPID key pair for Web Push (put the private key in push.vapid_private_key).
    VapidKeys,
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut flags = Figment::new();
    if let Some(listen) = &cli.listen {
        flags = flags.merge(("listen", listen));
    }
    if let Some(url) = &cli.database_url {
        flags = flags.merge(("database_url", url));
    }
    Ok(Config::load(cli.config.as_deref(), flags)?)
}

async fn serve(mut config: Config, demo: bool) -> anyhow::Result<()> {
    if config.ensure_dev_secrets()? {
        tracing::warn!(
            file = %config.auth.secrets_file.display(),
            "no credentials configured: using generated development secrets"
        );
    }
    let shutdown = CancellationToken::new();
    belfry::shutdown::cancel_on_signal(shutdown.clone());
    let app = App::build_with(config, shutdown, demo).await?;
    if demo {
        eprintln!(
            "\n  Belfry demo: open http://{}/ in two windows and sign in as two users.\n",
            app.local_addr()
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = load(&cli)?;
    match cli.command {
        Command::Serve => {
            belfry::telemetry::init_logging(&config.log);
            serve(config, false).await
        }
        Command::Demo => {
            belfry::telemetry::init_logging(&config.log);
            serve(config, true).await
        }
        Command::Migrate => {
            belfry::telemetry::init_logging(&config.log);
            let store = belfry::app::open_store(&config).await?;
            store.close().await;
            eprintln!(
                "database at {} is migrated",
                belfry::config::redact_url(&config.database_url)
            );
            Ok(())
        }
        Command::Token { user, ttl } => {
            config.ensure_dev_secrets()?;
            let auth = Auth::new(&config.auth)?;
            let user = UserId::parse(user).context("--user")?;
            let (token, _) = auth.mint(&user, Duration::from_secs(ttl))?;
            println!("{token}");
            Ok(())
        }
        Command::Notify {
            user,
            kind,
            data,
            url,
        } => {
            config.ensure_dev_secrets()?;
            let data: serde_json::Value =
                serde_json::from_str(&data).context("--data is not JSON")?;
            let base = url.unwrap_or_else(|| format!("http://{}", config.listen));
            let key = config
                .first_api_key()
                .context("no API key configured (auth.api_keys)")?
                .to_owned();
            let response = reqwest::Client::new()
                .post(format!("{}/v1/notifications", base.trim_end_matches('/')))
                .bearer_auth(key)
                .json(&serde_json::json!({"recipients": [user], "type": kind, "data": data}))
                .send()
                .await
                .with_context(|| format!("cannot reach {base}"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            println!("{body}");
            if !status.is_success() {
                bail!("server answered {status}");
            }
            Ok(())
        }
        Command::VapidKeys => {
            let (private, public) = belfry::push::generate_vapid_keys();
            println!("# Web Push VAPID keys. Keep the private key secret.");
            println!("[push]");
            println!("vapid_private_key = \"{private}\"");
            println!("# public key (served at /v1/push/vapid-public-key): {public}");
            Ok(())
        }
        Command::PrintConfig => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("belfry: {e:#}");
            ExitCode::FAILURE
        }
    }
}
