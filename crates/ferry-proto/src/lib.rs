//! Ferry's internal protocol, spoken edge→server (and later server→server).
//!
//! * [`tls`] and [`pki`] — mutual TLS with certificates from the cluster's own CA.
//! * [`message`] — the handshake and the request/response vocabulary.
//! * [`codec`] — length-delimited frames, serde-encoded with postcard.
//! * [`client`] — one multiplexed connection: many requests in flight, matched
//!   to replies by request id.
//! * [`server`] — the accepting side of the handshake.
//! * [`cluster`] — server-to-server requests of active/passive mode.

pub mod client;
pub mod cluster;
pub mod codec;
pub mod message;
pub mod pki;
pub mod server;
pub mod tls;

pub use message::{PROTOCOL_VERSION, SUPPORTED_VERSIONS};

/// Errors of the internal protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be encoded or decoded.
    #[error("bad frame: {0}")]
    Codec(String),
    /// The TLS setup is wrong (missing or unreadable certificate or key).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The peer refused the handshake or speaks no common version.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The connection is closed; the request may or may not have been applied.
    #[error("connection to {0} is closed")]
    Closed(String),
}
