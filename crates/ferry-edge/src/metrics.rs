//! The edge's Prometheus metrics, served at `/metrics` on a listener of
//! their own (`[metrics] listen`, plain HTTP, loopback unless configured
//! otherwise): SSH connections, logins as the servers answered them and how
//! long they took, protocol errors, and the back-end servers connected.
//! Labels are bounded: no account, file or address.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::upstream::Upstreams;

/// A label set of one label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Label {
    /// Its value.
    pub outcome: String,
}

/// Labels of an HTTPS request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpsLabels {
    /// What it asked for: `files`, `uploads` (tus), `auth`, `web` (the
    /// browser client) or `other`.
    pub area: String,
    /// The answer's status class: `2xx`, `3xx`, `4xx`, `5xx`.
    pub status: String,
}

/// The label of an HTTPS area.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AreaLabel {
    /// See [`HttpsLabels::area`].
    pub area: String,
}

/// The area of a request path, for labels (bounded: never the path).
pub fn https_area(path: &str) -> &'static str {
    if path.starts_with("/api/v1/uploads") {
        "uploads"
    } else if path.starts_with("/api/v1/files")
        || path.starts_with("/api/v1/dirs")
        || path.starts_with("/api/v1/rename")
    {
        "files"
    } else if path.starts_with("/api/v1/session")
        || path.starts_with("/api/v1/login")
        || path.starts_with("/api/v1/logout")
        || path.starts_with("/api/v1/me")
    {
        "auth"
    } else if matches!(path, "/" | "/index.html" | "/app.js" | "/style.css") {
        "web"
    } else {
        "other"
    }
}

/// Every metric of the edge process.
pub struct EdgeMetrics {
    registry: Registry,
    ssh_open: Gauge,
    ssh_accepted: Counter,
    protocol_errors: Counter,
    logins: Family<Label, Counter>,
    login_seconds: Histogram,
    upstreams: Gauge,
    upstreams_connected: Gauge,
    https_requests: Family<HttpsLabels, Counter>,
    https_seconds: Family<AreaLabel, Histogram>,
    upstream_seconds: Histogram,
}

fn request_durations() -> Histogram {
    // 1 ms to ~33 s (to the answer's head; a body streams after).
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The edge's metrics (one edge a process).
pub static METRICS: LazyLock<EdgeMetrics> = LazyLock::new(EdgeMetrics::new);

impl EdgeMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            ssh_open: Gauge::default(),
            ssh_accepted: Counter::default(),
            protocol_errors: Counter::default(),
            logins: Family::default(),
            // 1 ms to ~16 s.
            login_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            upstreams: Gauge::default(),
            upstreams_connected: Gauge::default(),
            https_requests: Family::default(),
            https_seconds: Family::new_with_constructor(request_durations),
            upstream_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            registry: Registry::default(),
        };
        registry.register(
            "ferry_edge_ssh_connections_open",
            "SSH connections open on this edge",
            m.ssh_open.clone(),
        );
        registry.register(
            "ferry_edge_ssh_connections",
            "SSH connections this edge accepted",
            m.ssh_accepted.clone(),
        );
        registry.register(
            "ferry_edge_protocol_errors",
            "Clients that broke the SSH protocol before any credential",
            m.protocol_errors.clone(),
        );
        registry.register(
            "ferry_edge_logins",
            "Logins forwarded to a server, by the answer (ok, refused, no_server, error)",
            m.logins.clone(),
        );
        registry.register(
            "ferry_edge_login_duration_seconds",
            "How long a server took to answer a login, the wait for one included",
            m.login_seconds.clone(),
        );
        registry.register(
            "ferry_edge_upstream_servers",
            "Back-end servers this edge is configured with",
            m.upstreams.clone(),
        );
        registry.register(
            "ferry_edge_upstream_servers_connected",
            "Back-end servers this edge holds an open connection to",
            m.upstreams_connected.clone(),
        );
        registry.register(
            "ferry_edge_https_requests",
            "HTTPS requests this edge answered, by area and status class",
            m.https_requests.clone(),
        );
        registry.register(
            "ferry_edge_https_request_duration_seconds",
            "Time to the head of an HTTPS answer (the server's part included), by area",
            m.https_seconds.clone(),
        );
        registry.register(
            "ferry_edge_upstream_request_duration_seconds",
            "Time from sending a request to a back-end server to its answer (opens, reads, writes, closes, logins; 0.1 ms to ~52 s)",
            m.upstream_seconds.clone(),
        );
        Self { registry, ..m }
    }

    /// Records how long a back-end server took to answer a request.
    pub fn upstream_request(&self, seconds: f64) {
        self.upstream_seconds.observe(seconds);
    }

    /// Counts an HTTPS request to `path` answered with `status` after
    /// `seconds`.
    pub fn https_request(&self, path: &str, status: u16, seconds: f64) {
        let area = https_area(path).to_owned();
        let class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.https_requests
            .get_or_create(&HttpsLabels {
                area: area.clone(),
                status: class.to_owned(),
            })
            .inc();
        self.https_seconds
            .get_or_create(&AreaLabel { area })
            .observe(seconds);
    }

    /// Counts an accepted SSH connection; hold the guard while it is open.
    pub fn ssh_connection(&self) -> OpenConnection {
        self.ssh_accepted.inc();
        self.ssh_open.inc();
        OpenConnection(self.ssh_open.clone())
    }

    /// Counts a client that broke the protocol.
    pub fn protocol_error(&self) {
        self.protocol_errors.inc();
    }

    /// Counts a login the servers answered with `outcome` after `seconds`.
    pub fn login(&self, outcome: &str, seconds: f64) {
        self.logins
            .get_or_create(&Label {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.login_seconds.observe(seconds);
    }

    /// The text exposition, the upstream servers counted now.
    pub fn render(&self, upstreams: &Upstreams) -> String {
        let (configured, connected) = upstreams.counts();
        self.upstreams
            .set(i64::try_from(configured).unwrap_or(i64::MAX));
        self.upstreams_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "metrics: cannot encode");
        }
        text
    }
}

/// An open connection's place in the open gauge; dropped, it leaves.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Binds `listen` and serves `GET /metrics` there until the process ends.
pub async fn start(
    listen: SocketAddr,
    upstreams: Arc<Upstreams>,
) -> Result<SocketAddr, crate::StartError> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        crate::StartError::Setup(format!("cannot listen on {listen} (metrics): {e}"))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::StartError::Setup(e.to_string()))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let upstreams = upstreams.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    METRICS.render(&upstreams),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(addr)
}
