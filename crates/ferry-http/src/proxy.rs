//! The PROXY protocol (HAProxy's; version 1, text, and version 2, binary)
//! in front of a listener: a load balancer that passes TCP through opens
//! each connection with a header naming the client it speaks for.
//!
//! A header is believed only from a trusted proxy's address, and a
//! connection from one must start with a header: a missing, slow or broken
//! header closes it. From any other address nothing is read here; a header
//! sent anyway reaches the protocol underneath (SSH, TLS) as garbage, and
//! the connection fails there. The header is read before anything counts
//! the connection (caps per address, login throttles), so those see the
//! client, not the balancer. Parsing is the `ppp` crate's; what is read
//! here is exactly the header, never a byte of the client's own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

/// The signature a version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, `\r\n` included (the specification's bound).
const V1_MAX_BYTES: usize = 107;
/// The most a version 2 header may carry after its 16 fixed bytes:
/// addresses (at most 216, for Unix sockets) and room for TLVs.
const V2_MAX_PAYLOAD: usize = 1024;
/// Most connections from trusted proxies whose header is still awaited.
pub const MAX_PENDING_HEADERS: usize = 1024;
/// Default of the time a trusted proxy has to send its header.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which peers speak the PROXY protocol to a listener, and the bounds of
/// reading their headers. [`ProxyProtocol::off`] trusts nobody: every
/// connection is taken as it is.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    trusted: Arc<[IpNet]>,
    timeout: Duration,
    pending: Arc<Semaphore>,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        Self::off()
    }
}

/// Why a connection from a trusted proxy was not taken.
#[derive(Debug)]
pub enum HeaderError {
    /// The connection did not start with a PROXY protocol header.
    Missing,
    /// It started like one, but the header is malformed or too long.
    Invalid(String),
    /// The header did not arrive in time.
    Timeout,
    /// Reading failed (the proxy closed the connection, a socket error).
    Io(std::io::Error),
    /// Too many connections from proxies are waiting for their header.
    Busy,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Missing => f.write_str("no PROXY protocol header"),
            HeaderError::Invalid(why) => write!(f, "invalid PROXY protocol header: {why}"),
            HeaderError::Timeout => f.write_str("no PROXY protocol header in time"),
            HeaderError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
            HeaderError::Busy => f.write_str("too many PROXY protocol headers awaited"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl ProxyProtocol {
    /// Nobody is trusted: no header is ever read.
    pub fn off() -> Self {
        Self::new(Vec::new(), DEFAULT_HEADER_TIMEOUT)
    }

    /// Headers are read from peers in `trusted`, each within `timeout`.
    pub fn new(trusted: Vec<IpNet>, timeout: Duration) -> Self {
        Self {
            trusted: trusted.into(),
            timeout,
            pending: Arc::new(Semaphore::new(MAX_PENDING_HEADERS)),
        }
    }

    /// Whether any peer is trusted.
    pub fn is_on(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Whether a connection from `ip` must start with a header (and its
    /// header is believed). An IPv4 address mapped into IPv6 is the IPv4
    /// address.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client that a connection from `peer` is for: `peer` itself
    /// unless it is a trusted proxy; then the source its header names
    /// (the proxy itself for a v2 `LOCAL` header, a health check, or a
    /// header without addresses: v1 `UNKNOWN`, v2 `UNSPEC`).
    pub async fn client<S>(
        &self,
        stream: &mut S,
        peer: SocketAddr,
    ) -> Result<SocketAddr, HeaderError>
    where
        S: AsyncRead + Unpin,
    {
        if !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        let Ok(_waiting) = self.pending.try_acquire() else {
            return Err(HeaderError::Busy);
        };
        let header = tokio::time::timeout(self.timeout, read_header(stream))
            .await
            .map_err(|_| HeaderError::Timeout)??;
        Ok(source(&header)?.unwrap_or(peer))
    }
}

/// Reads one header, and not a byte further: the client's own bytes may
/// follow at once.
async fn read_header<S>(stream: &mut S) -> Result<Vec<u8>, HeaderError>
where
    S: AsyncRead + Unpin,
{
    // Twelve bytes: the v2 signature, and fewer than the shortest v1
    // header ("PROXY UNKNOWN\r\n").
    let mut header = vec![0u8; V2_SIGNATURE.len()];
    stream
        .read_exact(&mut header)
        .await
        .map_err(HeaderError::Io)?;
    if header.as_slice() == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream
            .read_exact(&mut fixed)
            .await
            .map_err(HeaderError::Io)?;
        let [_, _, high, low] = fixed;
        let length = usize::from(u16::from_be_bytes([high, low]));
        if length > V2_MAX_PAYLOAD {
            return Err(HeaderError::Invalid(format!(
                "version 2 header of {length} bytes (at most {V2_MAX_PAYLOAD})"
            )));
        }
        header.extend_from_slice(&fixed);
        let start = header.len();
        header.resize(start + length, 0);
        if let Some(rest) = header.get_mut(start..) {
            stream.read_exact(rest).await.map_err(HeaderError::Io)?;
        }
        Ok(header)
    } else if header.starts_with(b"PROXY ") {
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX_BYTES {
                return Err(HeaderError::Invalid(format!(
                    "version 1 header longer than {V1_MAX_BYTES} bytes"
                )));
            }
            let byte = stream.read_u8().await.map_err(HeaderError::Io)?;
            header.push(byte);
        }
        Ok(header)
    } else {
        Err(HeaderError::Missing)
    }
}

/// The source address a whole header names; `None` when it names none
/// that is meant to be used.
fn source(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let invalid = |e: &dyn std::fmt::Display| HeaderError::Invalid(e.to_string());
    let addr = if header.starts_with(V2_SIGNATURE) {
        let parsed = ppp::v2::Header::try_from(header).map_err(|e| invalid(&e))?;
        if parsed.command == ppp::v2::Command::Local {
            return Ok(None);
        }
        match parsed.addresses {
            ppp::v2::Addresses::IPv4(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v2::Addresses::IPv6(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
        }
    } else {
        let parsed = ppp::v1::Header::try_from(header).map_err(|e| invalid(&e))?;
        if parsed.header.len() != header.len() {
            return Err(HeaderError::Invalid("bytes after the header's end".into()));
        }
        match parsed.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            ppp::v1::Addresses::Unknown => None,
        }
    };
    Ok(addr.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn proxy(trusted: &str) -> ProxyProtocol {
        let nets = ferry_core::network::parse_networks(trusted).unwrap();
        ProxyProtocol::new(nets, Duration::from_secs(5))
    }

    const PEER: &str = "10.0.0.5:40000";

    /// What `client` answers for a connection from `peer` that sends
    /// `bytes`, and the bytes left unread after it.
    async fn read(
        p: &ProxyProtocol,
        peer: &str,
        bytes: &[u8],
    ) -> (Result<SocketAddr, HeaderError>, Vec<u8>) {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        theirs.write_all(bytes).await.unwrap();
        drop(theirs);
        let got = p.client(&mut ours, peer.parse().unwrap()).await;
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        (got, rest)
    }

    fn v2(command: ppp::v2::Command, source: &str) -> Vec<u8> {
        let source: SocketAddr = source.parse().unwrap();
        let destination: SocketAddr = if source.is_ipv4() {
            "192.0.2.1:22".parse().unwrap()
        } else {
            "[2001:db8::1]:22".parse().unwrap()
        };
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn both_versions_give_the_source_and_leave_the_client_bytes() {
        let p = proxy("10.0.0.0/24");
        let mut bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 22\r\n".to_vec();
        bytes.extend_from_slice(b"SSH-2.0-client\r\n");
        let (got, rest) = read(&p, PEER, &bytes).await;
        assert_eq!(got.unwrap(), "203.0.113.7:51000".parse().unwrap());
        assert_eq!(rest, b"SSH-2.0-client\r\n");

        let mut bytes = v2(ppp::v2::Command::Proxy, "[2001:db8::7]:443");
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (got, rest) = read(&p, PEER, &bytes).await;
        assert_eq!(got.unwrap(), "[2001:db8::7]:443".parse().unwrap());
        assert_eq!(rest, b"\x16\x03\x01");

        let bytes = b"PROXY TCP6 ::ffff:198.51.100.2 ::1 1 2\r\n";
        let (got, _) = read(&p, PEER, bytes).await;
        assert_eq!(got.unwrap(), "198.51.100.2:1".parse().unwrap());
    }

    #[tokio::test]
    async fn local_and_unknown_mean_the_proxy_itself() {
        let p = proxy("10.0.0.5");
        let (got, rest) = read(&p, PEER, &v2(ppp::v2::Command::Local, "203.0.113.7:1")).await;
        assert_eq!(got.unwrap(), PEER.parse().unwrap());
        assert!(rest.is_empty());
        let (got, rest) = read(&p, PEER, b"PROXY UNKNOWN\r\nx").await;
        assert_eq!(got.unwrap(), PEER.parse().unwrap());
        assert_eq!(rest, b"x");
    }

    #[tokio::test]
    async fn an_untrusted_peer_is_taken_as_it_is_and_nothing_is_read() {
        let p = proxy("10.0.0.5");
        let bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 22\r\n";
        let (got, rest) = read(&p, "10.0.0.6:40000", bytes).await;
        assert_eq!(got.unwrap(), "10.0.0.6:40000".parse().unwrap());
        assert_eq!(rest, bytes, "the header goes on to the protocol underneath");
        let (got, _) = read(&ProxyProtocol::off(), PEER, bytes).await;
        assert_eq!(got.unwrap(), PEER.parse().unwrap());
    }

    #[tokio::test]
    async fn a_trusted_peer_without_a_good_header_is_refused() {
        let p = proxy("10.0.0.5");
        for bytes in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n",
            b"PROXY TCP4 999.0.113.7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2",
            b"short",
        ] {
            let (got, _) = read(&p, PEER, bytes).await;
            assert!(got.is_err(), "{:?}", String::from_utf8_lossy(bytes));
        }
        let long = format!("PROXY {}\r\n", "x".repeat(200));
        let (got, rest) = read(&p, PEER, long.as_bytes()).await;
        assert!(matches!(got, Err(HeaderError::Invalid(_))), "{got:?}");
        assert!(!rest.is_empty(), "stopped reading at the bound");
        let mut huge = v2(ppp::v2::Command::Proxy, "203.0.113.7:1");
        huge[14..16].copy_from_slice(&4000u16.to_be_bytes());
        let (got, _) = read(&p, PEER, &huge).await;
        assert!(matches!(got, Err(HeaderError::Invalid(_))), "{got:?}");
        // A peer's IPv4 address mapped into IPv6 is the IPv4 address.
        assert!(p.trusts("::ffff:10.0.0.5".parse().unwrap()));
        assert!(!p.trusts("10.0.0.6".parse().unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_proxy_is_given_up_on() {
        let p = proxy("10.0.0.5");
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let got = p.client(&mut ours, PEER.parse().unwrap()).await;
        assert!(matches!(got, Err(HeaderError::Timeout)), "{got:?}");
    }
}
