//! Wiring: builds every part from a [`Config`], binds the listener, and runs until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthError};
use crate::broker::{Broker, BrokerError, LocalBroker, NatsBroker, RedisBroker};
use crate::config::{BrokerKind, Config};
use crate::demo::Blog;
use crate::hub::Hub;
use crate::notifier::Notifier;
use crate::preferences::PreferenceCache;
use crate::push::{PushError, Pusher};
use crate::ratelimit::RateLimits;
use crate::store::{PostgresStore, SqliteStore, Store, StoreError, WritePolicy};
use crate::telemetry::Metrics;

/// How long shutdown waits for live sessions to finish their last writes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the app could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The auth configuration is unusable.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Another process holds the listen address.
    #[error("{addr} is in use; pass --listen {}:PORT with a free PORT", addr.ip())]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The listen address could not be bound or served. (The source is not repeated in the
    /// message: error chains print it.)
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Web Push is misconfigured.
    #[error("push: {0}")]
    Push(#[from] PushError),
    /// The broker could not be set up.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The database URL names an unsupported backend.
    #[error(
        "unsupported database_url `{0}`: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedDatabase(String),
}

/// The shared handles every request handler and session gets. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// This node's live connections.
    pub hub: Arc<Hub>,
    /// Store-then-publish.
    pub notifier: Arc<Notifier>,
    /// Fan-out between nodes.
    pub broker: Arc<dyn Broker>,
    /// Web Push, when a VAPID key is configured.
    pub pusher: Option<Arc<Pusher>>,
    /// Credential checks.
    pub auth: Arc<Auth>,
    /// Backend API rate limits.
    pub rate_limits: Arc<RateLimits>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down; sessions close with 4010.
    pub shutdown: CancellationToken,
    /// Tracks live sessions so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// The demo blog, when running `belfry demo`.
    pub demo: Option<Arc<Blog>>,
}

/// A built server: listener bound, parts wired, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Opens the store, wires the parts and binds `config.listen` (port 0 picks a free port).
    /// `shutdown` stops the server when cancelled.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, AppError> {
        Self::build_with(config, shutdown, false).await
    }

    /// Like [`App::build`], with the demo blog mounted at `/` when `demo` is true.
    pub async fn build_with(
        config: Config,
        shutdown: CancellationToken,
        demo: bool,
    ) -> Result<Self, AppError> {
        let metrics = Arc::new(Metrics::new());
        let store = open_store(&config).await?;
        let hub = Arc::new(
            Hub::new(
                config.ws.outbox_frames,
                config.ws.max_connections_per_user,
                Arc::clone(&metrics),
            )
            .with_max_per_node(config.ws.max_connections_per_node),
        );
        let broker = open_broker(&config, &hub, &metrics, &shutdown).await?;
        let pusher = Pusher::start(
            &config.push,
            Arc::clone(&store),
            Arc::clone(&hub),
            Arc::clone(&broker),
            Arc::clone(&metrics),
            shutdown.child_token(),
        )?
        .map(Arc::new);
        let preferences = PreferenceCache::new(
            Arc::clone(&store),
            Duration::from_secs(config.preferences.cache_secs),
            config.preferences.cache_capacity,
        );
        let notifier = Arc::new(Notifier::new(
            Arc::clone(&store),
            Arc::clone(&broker),
            pusher.clone(),
            preferences,
            config.preferences.muted,
            Arc::clone(&metrics),
        ));
        crate::ingest::start(
            &config.ingest,
            crate::ingest::Pipeline::new(
                Arc::clone(&notifier),
                config.limits.clone(),
                Arc::clone(&metrics),
            ),
            shutdown.child_token(),
        );
        crate::rooms::spawn_presence_refresh(
            Arc::clone(&hub),
            Arc::clone(&broker),
            shutdown.child_token(),
        );
        let auth = Arc::new(Auth::new(&config.auth)?);
        let rate_limits = Arc::new(RateLimits::new(&config.rate_limits));
        spawn_pruning(Arc::clone(&rate_limits), shutdown.child_token());
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::AddrInUse => AppError::InUse {
                        addr: config.listen,
                    },
                    _ => AppError::Listen {
                        addr: config.listen,
                        source,
                    },
                })?;
        let demo = if demo {
            let addr = listener.local_addr().map_err(|source| AppError::Listen {
                addr: config.listen,
                source,
            })?;
            Some(Arc::new(Blog::new(
                addr,
                config.first_api_key().map(str::to_owned),
            )))
        } else {
            None
        };
        let config = Arc::new(config);
        let tasks = TaskTracker::new();
        if let Some(every) = config.broker.position_check() {
            let check = crate::positions::PositionCheck::new(
                Arc::clone(&hub),
                Arc::clone(&store),
                Arc::clone(&metrics),
                every,
            );
            tasks.spawn(check.run(shutdown.child_token()));
        }
        crate::retention::spawn(
            Arc::clone(&store),
            Arc::clone(&config),
            shutdown.child_token(),
        );
        let state = AppState {
            config,
            store,
            hub,
            notifier,
            broker,
            pusher,
            auth,
            rate_limits,
            metrics,
            shutdown,
            tasks,
            demo,
        };
        Ok(Self { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The wired parts (tests use them to look inside).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the shutdown token is cancelled, then: stops accepting, tells live clients
    /// to reconnect (4010), finishes in-flight requests, waits for sessions, and flushes the
    /// store. Everything acknowledged before shutdown is durable.
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let Self { listener, state } = self;
        let addr = listener.local_addr().unwrap_or(state.config.listen);
        let router = crate::http::router(state.clone());
        let stop = state.shutdown.clone();
        tracing::info!(%addr, "belfry listening");
        let limits = crate::listener::Limits {
            max_connections: state.config.http.max_connections,
            header_read: Duration::from_secs(state.config.http.header_read_timeout_secs),
            body_read: Duration::from_secs(state.config.http.body_read_timeout_secs),
            drain: DRAIN_TIMEOUT,
        };
        crate::listener::serve(listener, router, limits, stop).await;
        state.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = state.tasks.len(),
                "sessions still running after the drain timeout"
            );
        }
        state.store.close().await;
        tracing::info!("belfry stopped");
        Ok(())
    }
}

/// Forgets idle rate-limit keys once a minute, until shutdown.
fn spawn_pruning(limits: Arc<RateLimits>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => limits.prune(),
            }
        }
    });
}

async fn open_broker(
    config: &Config,
    hub: &Arc<Hub>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Arc<dyn Broker>, AppError> {
    let settings = &config.broker;
    let url = settings.url.as_deref().unwrap_or_default();
    let hub = Arc::clone(hub);
    let metrics = Arc::clone(metrics);
    let shutdown = shutdown.child_token();
    Ok(match settings.kind {
        BrokerKind::Local => Arc::new(LocalBroker::new(hub)),
        BrokerKind::Redis => Arc::new(RedisBroker::start(
            url,
            &settings.prefix,
            hub,
            metrics,
            shutdown,
        )?),
        BrokerKind::Nats => {
            Arc::new(NatsBroker::start(url, &settings.prefix, hub, metrics, shutdown).await?)
        }
    })
}

/// Opens (creating and migrating) the store `config.database_url` names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AppError> {
    let url = &config.database_url;
    let policy = WritePolicy {
        idempotency_window: Duration::from_secs(config.limits.idempotency_window_secs),
        group_window: Duration::from_secs(config.grouping.window_secs),
        max_actors: config.grouping.max_actors,
    };
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(url, &config.store, policy).await?)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Arc::new(PostgresStore::open(url, &config.store, policy).await?)
    } else {
        return Err(AppError::UnsupportedDatabase(crate::config::redact_url(
            url,
        )));
    };
    Ok(store)
}
