//! Ferry's back-end server.
//!
//! It owns the state (the [`ferry_store::Store`]) and the account homes in the
//! repository, serves edge connections over the internal protocol
//! ([`session`]), and exposes the admin API ([`admin`]).

mod access;
pub mod admin;
pub mod admins;
mod audit_state;
pub mod auth;
pub mod cluster_api;
pub mod config;
pub mod console;
pub mod defender;
pub mod engine;
pub mod engine_api;
mod hashing;
mod internal;
pub mod metrics;
pub mod notices;
pub mod notify_api;
pub mod password;
pub mod quota;
pub mod rate;
pub mod repository;
pub mod retention;
mod rows;
pub mod secrets;
pub mod session;
pub mod session_caps;
pub mod shutdown;
pub mod state_lock;
pub mod transfer;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::{Command, FerryError, Outcome};
use ferry_store::Store;
use sha2::Digest;
use tokio::net::TcpListener;

pub use config::{AdminConfig, ConfigError, InternalConfig, ServerConfig, UploadsConfig};

/// What every part of the server shares.
#[derive(Debug)]
pub struct ServerCtx {
    /// This node's id.
    pub node_id: String,
    /// Failed password logins, checked before any hashing.
    pub login_throttle: auth::LoginThrottle,
    /// Upload intents whose row is logged, to be removed with the next
    /// intent written (see [`rows::forget_intent`]).
    pub logged_intents: std::sync::Mutex<Vec<String>>,
    /// Scores failed logins per client address and bans.
    pub defender: defender::Defender,
    /// What each account's home holds, counted for quotas.
    pub usage: quota::UsageCache,
    /// The quota notices this server raised today.
    pub quota_notices: quota::QuotaNotices,
    /// The notification endpoints this server is sending to now.
    pub notices_sending: notices::SendingTo,
    /// Each account's bandwidth buckets on this server.
    pub rates: rate::Rates,
    /// The sessions each account has open on this server (their caps).
    pub sessions: session_caps::SessionCounts,
    /// What `/metrics` shows.
    pub metrics: metrics::Metrics,
    /// The store.
    pub store: Arc<Store>,
    /// The repository root.
    pub repository: PathBuf,
    /// Flush uploads before acknowledging their close.
    pub fsync_uploads: bool,
    /// Unfinished resumable uploads expire after this long without data.
    pub upload_expiry_ms: i64,
    /// Settings of the transfer engine.
    pub engine: engine::EngineConfig,
    /// The key that seals partner credentials.
    pub secrets: secrets::SecretKey,
    /// Wakes idle queue workers when an event is queued on this node.
    pub engine_wake: tokio::sync::Notify,
    /// Wakes the scheduler when schedules were added or removed.
    pub schedules_changed: tokio::sync::Notify,
    /// Whether this node runs the primary-only duties. A single node is
    /// always the primary; the cluster moves the role.
    pub primary: tokio::sync::watch::Sender<engine::PrimaryRole>,
    /// The engine's wall clock.
    pub clock: engine::Clock,
    /// This server's part in its cluster, whichever the mode: a server
    /// alone, active/passive or active/active ([`ferry_cluster::Cluster`]).
    pub cluster: Arc<dyn ferry_cluster::Cluster>,
    /// Whether this server serves sessions and runs queue workers now
    /// (always on a single node; only the active server in a cluster).
    pub serving: tokio::sync::watch::Sender<bool>,
    /// SFTP uploads open on this server, so that a resume can take over a
    /// partial file from a session that is gone or idle.
    pub(crate) open_uploads: session::OpenUploads,
    /// Held by the queue worker that is claiming: one claim proposal per
    /// server at a time, so workers do not race each other for one event.
    pub(crate) claiming: std::sync::Mutex<()>,
    /// The server's own workers (queue workers, scheduler, monitors,
    /// upload expiry, pending-row flush): stopped first in a shutdown. A
    /// stage of the runner that also runs the cluster loops, so its status
    /// lists every worker of the process.
    pub workers: ferry_worker::Runner,
    /// The shutdown in progress, if one is.
    pub drain: shutdown::Drain,
    /// How long transfers in flight get to finish in a shutdown
    /// (`drain_secs`).
    pub drain_deadline: std::time::Duration,
    /// Held by a retention run: one at a time (the worker's, an admin's).
    pub(crate) retention_running: tokio::sync::Mutex<()>,
}

thread_local! {
    /// The idempotency key of the admin request this thread serves, and
    /// how many changes it applied so far.
    static KEYED: std::cell::RefCell<Option<(String, u32)>> = const { std::cell::RefCell::new(None) };
}

/// While alive, the changes this thread applies are keyed: the n-th change
/// of a request with key K is applied once per `K#n`.
pub(crate) struct KeyedChanges;

impl KeyedChanges {
    pub(crate) fn enter(key: String) -> Self {
        KEYED.with(|k| *k.borrow_mut() = Some((key, 0)));
        KeyedChanges
    }
}

impl Drop for KeyedChanges {
    fn drop(&mut self) {
        KEYED.with(|k| *k.borrow_mut() = None);
    }
}

/// `command`, keyed if this thread serves a request with a key.
fn keyed(command: &Command) -> std::borrow::Cow<'_, Command> {
    KEYED.with(|k| match k.borrow_mut().as_mut() {
        Some((key, n)) => {
            *n += 1;
            std::borrow::Cow::Owned(Command::Keyed {
                key: format!("{key}#{n}"),
                at: crate::transfer::now_millis(),
                command: Box::new(command.clone()),
            })
        }
        None => std::borrow::Cow::Borrowed(command),
    })
}

impl ServerCtx {
    /// Applies a command to shared state: the single write path
    /// ([`ferry_cluster::Cluster::apply`]; callers run on the blocking
    /// pool). A change made for an admin request with an `Idempotency-Key`
    /// is applied once per key.
    pub fn apply(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.timed(|cluster, command| cluster.apply(command), command)
    }

    /// Applies an upload's transfer-log row whose content is durable here
    /// already as its intent (see
    /// [`ferry_cluster::Cluster::apply_covered_row`]).
    pub fn apply_covered_row(&self, command: &Command) -> Result<Outcome, FerryError> {
        self.timed(
            |cluster, command| cluster.apply_covered_row(command),
            command,
        )
    }

    /// Runs one of the cluster's write paths on `command` (keyed where a
    /// key is set) and counts its latency in the store-write metric.
    fn timed(
        &self,
        apply: impl FnOnce(&dyn ferry_cluster::Cluster, &Command) -> Result<Outcome, FerryError>,
        command: &Command,
    ) -> Result<Outcome, FerryError> {
        let started = std::time::Instant::now();
        let outcome = apply(self.cluster.as_ref(), keyed(command).as_ref());
        if outcome.is_ok() {
            self.metrics.store_write(started.elapsed().as_secs_f64());
        }
        outcome
    }

    /// Why this server does not serve sessions now, if it does not: it is
    /// shutting down, or its cluster says why (a standby; in active/active
    /// mode a server behind its leader or without one).
    pub fn not_serving_reason(&self) -> Option<String> {
        self.drain
            .refusal()
            .or_else(|| self.cluster.not_serving_reason())
    }

    /// Ok when this server's store is current enough to decide a login
    /// (in active/active mode it holds every change committed before now).
    pub async fn check_current(&self) -> Result<(), FerryError> {
        self.cluster.check_current().await
    }

    /// Ok when a change made here now would be kept: always alone; on the
    /// serving active server; in active/active, while a majority is reachable.
    pub fn check_writable(&self) -> Result<(), FerryError> {
        self.cluster.check_writable()
    }
}

/// A running server and the addresses it listens on.
#[derive(Debug)]
pub struct RunningServer {
    /// The internal-protocol listener.
    pub internal_addr: SocketAddr,
    /// The admin API listener.
    pub admin_addr: SocketAddr,
    /// Shared state.
    pub ctx: Arc<ServerCtx>,
    /// Every worker of the server; the cluster loops run on it directly,
    /// the server's own duties on its stage `ctx.workers`.
    runner: ferry_worker::Runner,
    /// The state directory's lock, held until the server is dropped.
    _lock: state_lock::StateLock,
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or directory could not be used.
    #[error("{0}")]
    Setup(String),
    /// The store could not be opened.
    #[error("store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        source: ferry_store::StoreError,
    },
    /// TLS material is missing or wrong.
    #[error(transparent)]
    Tls(#[from] ferry_proto::ProtoError),
    /// The server's part in its cluster could not start.
    #[error(transparent)]
    Cluster(#[from] ferry_cluster::ClusterError),
}

/// Opens the store, binds both listeners and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|e| {
        StartError::Setup(format!(
            "cannot create state_dir {}: {e}",
            config.state_dir.display()
        ))
    })?;
    let lock = state_lock::StateLock::take(&config.state_dir)?;
    let db = config.state_dir.join("ferry.db");
    let store = Store::open(&db).map_err(|source| StartError::Store {
        path: db.display().to_string(),
        source,
    })?;
    let token = admin_token(&config)?;
    let TlsSettings {
        internal: internal_tls,
        peer: peer_tls,
        admin: admin_tls,
    } = tls_settings(&config)?;

    let secrets =
        secrets::SecretKey::load_or_create(&secret_key_file(&config)).map_err(StartError::Setup)?;
    let store = Arc::new(store);
    let runner = ferry_worker::Runner::new();
    let ctx_slot: Arc<std::sync::OnceLock<std::sync::Weak<ServerCtx>>> = Arc::default();
    let slot = ctx_slot.clone();
    let cluster = ferry_cluster::start(ferry_cluster::ClusterOptions {
        config: config.cluster.clone(),
        node_id: config.node_id.clone(),
        witness: config.witness,
        store: store.clone(),
        state_dir: config.state_dir.clone(),
        config_file: config.config_file.clone(),
        tls: peer_tls.clone(),
        secret_key_id: secrets.key_id(),
        // Replication changed the store: queued events or schedules may
        // be new.
        on_change: Arc::new(move || {
            if let Some(ctx) = slot.get().and_then(std::sync::Weak::upgrade) {
                ctx.engine_wake.notify_waiters();
                ctx.schedules_changed.notify_waiters();
            }
        }),
        runner: runner.clone(),
    })
    .await?;
    let duties = *cluster.duties().borrow();
    let ctx = Arc::new(ServerCtx {
        node_id: config.node_id.clone(),
        store,
        repository: config.repository.clone(),
        fsync_uploads: config.fsync_uploads,
        login_throttle: auth::LoginThrottle::default(),
        logged_intents: Default::default(),
        usage: quota::UsageCache::default(),
        quota_notices: quota::QuotaNotices::default(),
        notices_sending: notices::SendingTo::default(),
        rates: rate::Rates::default(),
        sessions: session_caps::SessionCounts::default(),
        metrics: metrics::Metrics::default(),
        defender: defender::Defender::new(config.defender.clone())
            .map_err(|e| StartError::Setup(format!("[defender] safe_networks: {}", e.message)))?,
        upload_expiry_ms: i64::try_from(config.uploads.expire_after_secs)
            .unwrap_or(i64::MAX / 2_000)
            .max(1)
            .saturating_mul(1000),
        engine: config.engine.clone(),
        secrets,
        engine_wake: tokio::sync::Notify::new(),
        schedules_changed: tokio::sync::Notify::new(),
        primary: tokio::sync::watch::Sender::new(engine::PrimaryRole::of(duties.primary)),
        clock: engine::Clock::System,
        serving: tokio::sync::watch::Sender::new(duties.serving),
        cluster,
        open_uploads: session::OpenUploads::default(),
        claiming: std::sync::Mutex::new(()),
        workers: runner.stage(),
        drain: shutdown::Drain::default(),
        drain_deadline: config.drain(),
        retention_running: tokio::sync::Mutex::new(()),
    });
    let _ = ctx_slot.set(Arc::downgrade(&ctx));
    {
        let ctx = ctx.clone();
        runner.spawn("duties", |w| async move {
            w.busy("moving the workers with the cluster role");
            w.until_stopped(follow_duties(ctx)).await;
        });
    }
    // Uploads that were being committed when this server stopped get their
    // rows before any session is served.
    match rows::recover_upload_intents(&ctx) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            rows = n,
            "recovered the rows of uploads committed at the last stop"
        ),
        Err(e) => {
            return Err(StartError::Setup(format!(
                "cannot recover the uploads being committed at the last stop: {e}"
            )))
        }
    }
    {
        let ctx = ctx.clone();
        ctx.workers
            .clone()
            .spawn("pending-rows", |w| rows::flush_pending_rows(ctx, w));
    }
    engine::start(ctx.clone())
        .await
        .map_err(|e| StartError::Setup(format!("cannot start the transfer engine: {e}")))?;

    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Setup(format!("cannot listen on {addr} ({what}): {e}")))
    };
    let internal = bind(config.internal.listen, "internal").await?;
    let admin = bind(config.admin.listen, "admin").await?;
    let internal_addr = internal
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;

    tokio::spawn(internal::serve_internal(
        internal,
        internal_tls,
        internal::InternalLimits::of(&config.internal),
        ctx.clone(),
    ));
    let state = admin::AdminState {
        ctx: ctx.clone(),
        token_digest: sha2::Sha256::digest(token.as_bytes()).into(),
        console: Default::default(),
        login_failure_delay: std::time::Duration::from_millis(config.admin.login_failure_delay_ms),
    };
    tokio::spawn(ferry_http::serve_tls(
        admin,
        admin_tls,
        admin::router(state),
        ferry_http::ServeLimits::default(),
        "admin",
        // The admin API answers until the process ends.
        ferry_worker::Connections::new(),
        // Reached directly on the internal network: no proxy is believed.
        ferry_http::proxy::ProxyProtocol::off(),
    ));
    {
        let ctx = ctx.clone();
        ctx.workers
            .clone()
            .spawn("upload-expiry", |w| uploads::expire_uploads(ctx, w));
    }
    tracing::info!(node = %config.node_id, %internal_addr, %admin_addr, "server started");
    Ok(RunningServer {
        internal_addr,
        admin_addr,
        ctx,
        runner,
        _lock: lock,
    })
}

/// Checks everything `start` would use of `config` without starting: the
/// state directory, the admin token, the TLS certificate and key (as the
/// internal listener, the admin API and a client of the other servers
/// would load them) and the engine's secret key. The config file itself
/// was checked by [`ServerConfig::load_as`]. Creates nothing and takes no
/// lock: a running server's config can be checked beside it. Returns what
/// was checked, a line each.
pub fn check_config(config: &ServerConfig) -> Result<Vec<String>, StartError> {
    let mut checked = Vec::new();
    let state = &config.state_dir;
    checked.push(if state.is_dir() {
        format!("state_dir {}: exists", state.display())
    } else {
        format!(
            "state_dir {}: will be created at the first start",
            state.display()
        )
    });
    admin_token(config)?;
    checked.push(format!(
        "admin token {}: readable by this user only",
        config.admin.token_file.display()
    ));
    tls_settings(config)?;
    checked.push(format!(
        "certificate {} and key {}: load, signed by {}",
        config.internal.tls.cert.display(),
        config.internal.tls.key.display(),
        config.internal.tls.ca.display()
    ));
    let secret_key_file = secret_key_file(config);
    if secret_key_file.exists() {
        ferry_proto::tls::check_private(&secret_key_file)?;
        checked.push(format!(
            "secret key {}: readable by this user only",
            secret_key_file.display()
        ));
    } else {
        checked.push(format!(
            "secret key {}: will be created at the first start",
            secret_key_file.display()
        ));
    }
    if !config.witness {
        checked.push(format!(
            "repository {}: exists",
            config.repository.display()
        ));
    }
    Ok(checked)
}

/// The admin token in `[admin] token_file`, trimmed: the file private to
/// this user, the token at least 16 characters.
fn admin_token(config: &ServerConfig) -> Result<String, StartError> {
    let token_file = &config.admin.token_file;
    ferry_proto::tls::check_private(token_file)?;
    let token = std::fs::read_to_string(token_file).map_err(|e| {
        StartError::Setup(format!(
            "cannot read admin token {}: {e}",
            token_file.display()
        ))
    })?;
    let token = token.trim();
    if token.len() < 16 {
        return Err(StartError::Setup(format!(
            "admin token in {} is shorter than 16 characters",
            token_file.display()
        )));
    }
    Ok(token.to_owned())
}

/// The TLS settings made of `[internal]`'s certificate and key.
struct TlsSettings {
    /// The internal listener's (mutual TLS).
    internal: Arc<rustls::ServerConfig>,
    /// This server's as a client of the others.
    peer: Arc<rustls::ClientConfig>,
    /// The admin API's.
    admin: Arc<rustls::ServerConfig>,
}

/// Loads the [`TlsSettings`] of `config`, as the start does.
fn tls_settings(config: &ServerConfig) -> Result<TlsSettings, StartError> {
    let tls = &config.internal.tls;
    Ok(TlsSettings {
        internal: ferry_proto::tls::internal_server_config(tls)?,
        peer: ferry_proto::tls::internal_client_config(tls)?,
        admin: ferry_proto::tls::plain_server_config(&tls.cert, &tls.key, &[b"h2", b"http/1.1"])?,
    })
}

/// The engine's secret key file: `[engine] secret_key_file`, else
/// `secret.key` in the state directory.
fn secret_key_file(config: &ServerConfig) -> PathBuf {
    config
        .engine
        .secret_key_file
        .clone()
        .unwrap_or_else(|| config.state_dir.join("secret.key"))
}

/// Moves the server's workers with the cluster role: the primary-only
/// duties (scheduler, folder monitors) run while the cluster makes this
/// server the primary, and the queue workers and edge sessions while it
/// serves ([`ferry_cluster::Duties`]).
async fn follow_duties(ctx: Arc<ServerCtx>) {
    let mut duties = ctx.cluster.duties();
    loop {
        let d = *duties.borrow_and_update();
        ctx.primary.send_replace(engine::PrimaryRole::of(d.primary));
        ctx.serving.send_replace(d.serving);
        if d.wake {
            ctx.engine_wake.notify_waiters();
        }
        if duties.changed().await.is_err() {
            return;
        }
    }
}
