//! `ferry up`: a server and an edge in one process, on a data directory that
//! is set up on first start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ferry_proto::tls::TlsFiles;

/// Arguments of `ferry up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Data directory (created and filled on first start).
    #[arg(long, default_value = "./ferry-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub log: crate::LogArgs,
    /// SFTP listen address.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub sftp_listen: SocketAddr,
    /// HTTPS listen address (file API, tus uploads, browser client).
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub https_listen: SocketAddr,
    /// Largest HTTPS upload accepted, in bytes.
    #[arg(long, default_value_t = 1 << 40)]
    pub max_upload_bytes: u64,
    /// Unfinished resumable uploads are removed after this many seconds
    /// without data.
    #[arg(long, default_value_t = 86_400)]
    pub upload_expiry_secs: u64,
    /// Failed HTTPS logins allowed per client address and per account name
    /// in five minutes.
    #[arg(long, default_value_t = 10)]
    pub max_login_failures: u32,
    /// Seconds an HTTPS password or token login is reused.
    #[arg(long, default_value_t = 60)]
    pub login_cache_secs: u64,
    /// Admin API listen address (the server's `/metrics` is served there).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub admin_listen: SocketAddr,
    /// Where the edge's Prometheus metrics are served (plain HTTP,
    /// `GET /metrics`); not served when left out.
    #[arg(long)]
    pub edge_metrics_listen: Option<SocketAddr>,
    /// Delay of every failed login, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub auth_failure_delay_ms: u64,
    /// Seconds a claimed event stays with this node without a lease renewal.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// Folder monitors rescan their directories this often (seconds).
    #[arg(long, default_value_t = 10)]
    pub monitor_rescan_secs: u64,
    /// SSH sessions idle this long (or whose client takes no replies this
    /// long) are closed, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub idle_timeout_secs: u64,
    /// SSH connections that have not logged in after this many seconds are
    /// closed.
    #[arg(long, default_value_t = ferry_edge::config::DEFAULT_LOGIN_GRACE_SECS)]
    pub login_grace_secs: u64,
    /// HTTPS clients may stay silent this many seconds: an idle connection,
    /// a TLS handshake, and a request body waited for (which must bring
    /// 1 KiB per such period) all end after it.
    #[arg(long, default_value_t = ferry_edge::config::DEFAULT_HTTPS_IDLE_SECS)]
    pub https_idle_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, seconds the transfers in flight get to finish
    /// before they are ended (partial uploads are kept for a resume).
    #[arg(long, default_value_t = 30)]
    pub drain_secs: u64,
    /// Load balancers that send a PROXY protocol header (v1 or v2), as
    /// addresses or CIDR networks separated by commas: connections from
    /// them to the SFTP and HTTPS listeners must start with one, and the
    /// client it names is the client. Left out: off.
    #[arg(long, value_name = "NETWORKS", value_parser = parse_trusted)]
    pub trusted_proxies: Option<Networks>,
}

/// A list of networks given on the command line.
#[derive(Debug, Clone)]
pub struct Networks(pub Vec<ipnet::IpNet>);

fn parse_trusted(text: &str) -> Result<Networks, String> {
    ferry_core::network::parse_networks(text)
        .map(Networks)
        .map_err(|e| e.message)
}

/// Creates what a data directory needs, if it is not there yet.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    let pki = dir.join("pki");
    for d in [
        dir.to_path_buf(),
        pki.clone(),
        dir.join("repository"),
        dir.join("state"),
    ] {
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if !pki.join("ca.crt").exists() {
        ferry_proto::pki::create_ca(&pki, "ferry-up")?;
        let sans = [
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        ferry_proto::pki::issue(
            &pki,
            &pki,
            "server",
            &sans,
            ferry_proto::pki::CertRole::Server,
        )?;
        ferry_proto::pki::issue(&pki, &pki, "edge", &sans, ferry_proto::pki::CertRole::Edge)?;
    }
    if !pki.join("https.crt").exists() {
        // The certificate the HTTPS front shows to clients; replace it with
        // one from a public CA for real use.
        let sans = [
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        ferry_proto::pki::issue(
            &pki,
            &pki,
            "https",
            &sans,
            ferry_proto::pki::CertRole::Https,
        )?;
    }
    let token = dir.join("admin.token");
    if !token.exists() {
        let mut bytes = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ferry_proto::pki::write_new(&token, format!("{text}\n").as_bytes(), true)?;
    }
    Ok(())
}

/// Runs `ferry up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    prepare(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let pki = dir.join("pki");
    let tls = |name: &str| TlsFiles {
        ca: pki.join("ca.crt"),
        cert: pki.join(format!("{name}.crt")),
        key: pki.join(format!("{name}.key")),
    };
    let server = ferry_server::start(ferry_server::ServerConfig {
        node_id: "server".into(),
        log: Default::default(),
        state_dir: dir.join("state"),
        repository: dir.join("repository"),
        fsync_uploads: true,
        drain_secs: args.drain_secs,
        internal: ferry_server::InternalConfig {
            listen: "127.0.0.1:0".parse()?,
            tls: tls("server"),
            handshake_timeout_secs: 10,
            max_connections: 1024,
            max_connections_per_address: 128,
        },
        admin: ferry_server::AdminConfig {
            listen: args.admin_listen,
            token_file: dir.join("admin.token"),
            login_failure_delay_ms: args.auth_failure_delay_ms,
        },
        uploads: ferry_server::UploadsConfig {
            expire_after_secs: args.upload_expiry_secs,
        },
        defender: ferry_server::defender::DefenderConfig::default(),
        engine: ferry_server::engine::EngineConfig {
            secret_key_file: Some(dir.join("secret.key")),
            lease_secs: args.lease_secs,
            monitor_rescan_secs: args.monitor_rescan_secs,
            ..Default::default()
        },
        cluster: Default::default(),
        config_file: None,
        witness: false,
    })
    .await?;
    let server = std::sync::Arc::new(server);
    let link_server = server.clone();
    let link: ferry_edge::upstream::LocalLink =
        std::sync::Arc::new(move || link_server.in_process_link());
    let edge_config = ferry_edge::EdgeConfig {
        node_id: "edge".into(),
        log: Default::default(),
        metrics: args
            .edge_metrics_listen
            .map(|listen| ferry_edge::config::MetricsConfig { listen }),
        sftp: Some(ferry_edge::config::SftpConfig {
            listen: args.sftp_listen,
            host_keys: Some(ferry_edge::config::HostKeyFiles::in_dir(&dir)),
            host_key: None,
            compression: false,
            finite_field_dh: false,
            auth_failure_delay_ms: args.auth_failure_delay_ms,
            max_auth_attempts: 6,
            idle_timeout_secs: args.idle_timeout_secs,
            max_sessions: 1000,
            login_grace_secs: args.login_grace_secs,
            max_unauthenticated: ferry_edge::config::DEFAULT_MAX_UNAUTHENTICATED,
            max_unauthenticated_per_address:
                ferry_edge::config::DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
            new_connections_per_address_per_sec:
                ferry_edge::config::DEFAULT_NEW_CONNECTIONS_PER_ADDRESS,
        }),
        https: Some(ferry_edge::config::HttpsConfig {
            listen: args.https_listen,
            cert: pki.join("https.crt"),
            key: pki.join("https.key"),
            max_upload_bytes: args.max_upload_bytes,
            auth_failure_delay_ms: args.auth_failure_delay_ms,
            max_login_failures: args.max_login_failures,
            login_failure_window_secs: 300,
            login_cache_secs: args.login_cache_secs,
            session_idle_secs: 1800,
            max_connections: 1000,
            max_connections_per_address: ferry_edge::config::DEFAULT_HTTPS_PER_ADDRESS,
            idle_timeout_secs: args.https_idle_timeout_secs,
            body_timeout_secs: args.https_idle_timeout_secs,
        }),
        upstream: ferry_edge::config::UpstreamConfig {
            servers: vec![server.internal_addr.to_string()],
            tls: tls("edge"),
        },
        drain_secs: args.drain_secs,
        proxy_protocol: ferry_edge::config::ProxyProtocolConfig {
            trusted: args
                .trusted_proxies
                .clone()
                .map(|n| n.0)
                .unwrap_or_default(),
            ..Default::default()
        },
    };
    // Edge and server share this process: the edge reaches the server
    // through memory, not through loopback TLS.
    let edge = ferry_edge::start_in_process(edge_config, link).await?;
    let admin_url = format!("https://{}", server.admin_addr);
    std::fs::write(dir.join("admin.url"), format!("{admin_url}\n"))
        .with_context(|| format!("cannot write {}", dir.join("admin.url").display()))?;
    let shown = args.data_dir.display();
    super::say(&format!(
        "Ferry is running (server and edge in one process, data in {shown})."
    ));
    let (Some(sftp), Some(https)) = (edge.sftp_addr, edge.https_addr) else {
        anyhow::bail!("the edge did not start both listeners");
    };
    super::say(&format!("  sftp: {sftp}"));
    for fingerprint in &edge.host_key_fingerprints {
        super::say(&format!("  host key: {fingerprint}"));
    }
    super::say(&format!("  https: https://{https}"));
    super::say(&format!("  admin: {admin_url}"));
    super::say(&format!("  internal: {}", server.internal_addr));
    super::say(&format!("  metrics: {admin_url}/metrics"));
    if let Some(m) = edge.metrics_addr {
        super::say(&format!("  edge metrics: http://{m}/metrics"));
    }
    super::say("Add an account and log in:");
    super::say(&format!(
        "  ferry account add alice --data-dir {shown} --password-stdin"
    ));
    super::say(&format!("  sftp -P {} alice@{}", sftp.port(), sftp.ip()));
    super::say(&format!(
        "  curl --cacert {shown}/pki/ca.crt -u alice https://{https}/api/v1/dirs/"
    ));
    super::say(&format!("  or open https://{https}/ in a browser"));
    tokio::select! {
        signal = super::wait_for_shutdown() => signal?,
        () = server.ctx.drain.stop_requested_wait() => {
            tracing::info!("shutting down: an operator asked for a drain");
        }
    }
    // The edge takes no new client; the server drains the transfers in
    // flight and then ends its sessions, which ends the edge's.
    edge.stop_accepting();
    let drain = std::time::Duration::from_secs(args.drain_secs);
    let stopped = server.shutdown(drain).await;
    // Sessions end with the server's; whatever is left is cut.
    edge.shutdown(std::time::Duration::from_secs(1)).await;
    super::report_shutdown(stopped);
    Ok(())
}
