//! Ferry's SFTP client to partner servers (OpenSSH `sshd`, another Ferry, …).
//!
//! [`PartnerSession::connect`] connects to a partner with a *pinned* host key
//! (anything else refuses the connection), authenticates with a password or a
//! private key and opens the SFTP subsystem. Uploads
//! ([`PartnerSession::put_file`]) are atomic and idempotent: the data goes to a
//! temporary `.<tag>.filepart` name (not `.ferry-…`: a Ferry partner reserves those names) and is renamed into place, and a target
//! that already holds the same content is left alone. Transfers pipeline
//! several requests and honour an optional rate limit.

mod session;
mod transfer;

use std::path::PathBuf;
use std::time::Duration;

use russh::keys::ssh_key::{HashAlg, PublicKey};

pub use session::PartnerSession;

#[cfg(test)]
#[path = "../../../tests/common/sshd.rs"]
mod test_sshd;

/// A spec for the test sshd, logging in with its client key.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
fn test_spec(sshd: &test_sshd::Sshd, name: &str) -> PartnerSpec {
    PartnerSpec {
        name: name.to_owned(),
        host: "127.0.0.1".to_owned(),
        port: sshd.port,
        username: sshd.user.clone(),
        auth: PartnerAuth::PrivateKey {
            openssh_pem: ferry_core::Secret::new(
                std::fs::read_to_string(&sshd.client_key).unwrap(),
            ),
            passphrase: None,
        },
        host_key: sshd.host_key_pub.clone(),
        connect_timeout: Duration::from_secs(10),
        rate_limit: None,
    }
}

/// Where and how to reach a partner's SFTP server.
#[derive(Debug, Clone)]
pub struct PartnerSpec {
    /// The partner's name, for messages.
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port (22 for most servers).
    pub port: u16,
    /// Login name on the partner's server.
    pub username: String,
    /// How to authenticate.
    pub auth: PartnerAuth,
    /// Pinned host key, OpenSSH public key form "ssh-ed25519 AAAA..." (no
    /// comment; anything [`parse_host_key`] accepts is fine).
    pub host_key: String,
    /// Limit for establishing the TCP connection, and again for the SSH
    /// handshake, authentication and SFTP start-up.
    pub connect_timeout: Duration,
    /// Bytes per second for uploads and downloads; `None` = unlimited.
    pub rate_limit: Option<u64>,
}

/// Client credentials. `Debug` never prints the secrets.
#[derive(Debug, Clone)]
pub enum PartnerAuth {
    /// Password authentication (falls back to keyboard-interactive when the
    /// server only offers that).
    Password(ferry_core::Secret),
    /// Public key authentication.
    PrivateKey {
        /// The private key file's text (OpenSSH or PEM format).
        openssh_pem: ferry_core::Secret,
        /// Passphrase if the key is encrypted.
        passphrase: Option<ferry_core::Secret>,
    },
}

/// One entry of a remote directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// File name (no directory part).
    pub name: String,
    /// Size in bytes (0 when the server does not say).
    pub size: u64,
    /// Modification time, Unix seconds (0 when the server does not say).
    pub mtime: i64,
    /// A regular file. Symbolic links are neither file nor directory.
    pub is_file: bool,
    /// A directory.
    pub is_dir: bool,
}

/// What [`PartnerSession::put_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The file was uploaded and renamed into place.
    Uploaded {
        /// Bytes sent.
        bytes: u64,
    },
    /// The target already had the same content; nothing was sent.
    AlreadyPresent,
}

/// Errors talking to a partner. `Display` is meant for operators.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    /// No connection: refused, timed out, name resolution failed, or the
    /// connection dropped before the session was ready.
    #[error("partner {partner} ({addr}): unreachable: {reason}")]
    Unreachable {
        /// Partner name.
        partner: String,
        /// "host:port".
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The server presented a different host key than the pinned one.
    #[error(
        "partner {partner} ({addr}): host key mismatch: expected {expected_fingerprint}, \
         server presented {presented_fingerprint} — refusing to connect"
    )]
    HostKeyMismatch {
        /// Partner name.
        partner: String,
        /// "host:port".
        addr: String,
        /// Fingerprint of the pinned key, "SHA256:...".
        expected_fingerprint: String,
        /// Fingerprint of the key the server presented, "SHA256:...".
        presented_fingerprint: String,
    },
    /// The server did not accept our credentials.
    #[error("partner {partner} ({addr}): authentication as {user:?} failed: {reason}")]
    AuthFailed {
        /// Partner name.
        partner: String,
        /// "host:port".
        addr: String,
        /// Login name used.
        user: String,
        /// What the server said.
        reason: String,
    },
    /// An SFTP operation failed on the server, or the connection broke during it.
    #[error("partner {partner}: {op} {path}: {message}")]
    Remote {
        /// Partner name.
        partner: String,
        /// The operation ("open", "write", "rename", ...).
        op: &'static str,
        /// The remote path(s) concerned.
        path: String,
        /// The server's status or the transport error.
        message: String,
        /// Whether retrying later may help (I/O failure, connection lost,
        /// timeout) as opposed to e.g. "no such file" or "permission denied".
        transient: bool,
    },
    /// A local file could not be read or written.
    #[error("local file {path}: {op}: {source}")]
    Local {
        /// The operation ("open", "read", "write", "fsync", ...).
        op: &'static str,
        /// The local path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A host key or private key could not be parsed or used.
    #[error("{0}")]
    InvalidKey(String),
    /// An argument (file name, tag) is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The SSH or SFTP conversation went wrong in an unexpected way.
    #[error("{0}")]
    Protocol(String),
}

impl PartnerError {
    /// `true` for errors worth retrying later (unreachable, connection lost,
    /// remote I/O failures, local I/O trouble such as a full disk); `false`
    /// for host key mismatch, authentication failure, invalid keys or
    /// arguments, and remote or local "no such file" / "permission denied".
    pub fn is_transient(&self) -> bool {
        match self {
            PartnerError::Unreachable { .. } | PartnerError::Protocol(_) => true,
            PartnerError::HostKeyMismatch { .. }
            | PartnerError::AuthFailed { .. }
            | PartnerError::InvalidKey(_)
            | PartnerError::InvalidArgument(_) => false,
            PartnerError::Remote { transient, .. } => *transient,
            PartnerError::Local { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
            ),
        }
    }
}

/// Normalises a host key given as a known_hosts line
/// (`host[,host] ssh-ed25519 AAAA... [comment]`), a .pub file line
/// ("ssh-ed25519 AAAA... comment") or bare "ssh-ed25519 AAAA...": returns
/// "TYPE BASE64" after checking it parses as an SSH public key.
/// Blank lines and `#` comments around the key are ignored; more than one key,
/// `@cert-authority` / `@revoked` lines and unparsable text are errors.
pub fn parse_host_key(text: &str) -> Result<String, PartnerError> {
    parse_public_key(text)?
        .to_openssh()
        .map_err(|e| PartnerError::InvalidKey(format!("cannot encode host key: {e}")))
}

/// SHA256 fingerprint "SHA256:..." of a host key (as `ssh-keygen -l` prints),
/// given in any form [`parse_host_key`] accepts.
pub fn fingerprint(host_key: &str) -> Result<String, PartnerError> {
    Ok(key_fingerprint(&parse_public_key(host_key)?))
}

/// "SHA256:..." of a parsed key.
pub(crate) fn key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses the one key in `text` (see [`parse_host_key`]); the comment is dropped.
pub(crate) fn parse_public_key(text: &str) -> Result<PublicKey, PartnerError> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [line] => *line,
        [] => return Err(PartnerError::InvalidKey("host key is empty".to_owned())),
        more => {
            return Err(PartnerError::InvalidKey(format!(
            "expected one host key, got {} lines (pin exactly one key, e.g. the ssh-ed25519 one)",
            more.len()
        )))
        }
    };
    if line.starts_with('@') {
        return Err(PartnerError::InvalidKey(format!(
            "known_hosts marker lines ({}) cannot be pinned; give the host's own key",
            line.split_whitespace().next().unwrap_or("@")
        )));
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    // "TYPE BASE64 [comment]" or "HOSTS TYPE BASE64 [comment]".
    for start in 0..tokens.len().min(2) {
        if let Some([kind, blob, ..]) = tokens.get(start..) {
            if let Ok(mut key) = PublicKey::from_openssh(&format!("{kind} {blob}")) {
                key.set_comment("");
                return Ok(key);
            }
        }
    }
    let shown: String = line.chars().take(60).collect();
    Err(PartnerError::InvalidKey(format!(
        "not an SSH public key (expected \"ssh-ed25519 AAAA...\", a .pub line or a known_hosts line): {shown:?}"
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    // Generated with `ssh-keygen`; fingerprints as `ssh-keygen -lf` printed them.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIuYeKY7nED6SQrCyVvzvdUwdUwdDB1f1FvF7m9YzNUC";
    const ED25519_FP: &str = "SHA256:SkCFdUf3+dfZNx91zJKXDcQnHKHaz6C6++qqnzkw7do";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDSygGRPJaOMelyG8RnVx4N/ytFz97FHmHmQZy6gnVVDInv0Oe/6QoiHpYtNsPWwMNdUNxui6Ez+cB4+We4jRuLDU6t8DLCf5xTJkfyihTFmxchDvIaTDx7iN1i4nEZGoCAom5SHrzj+Gi7fmIlutHdeUlRyKlPbTeLW4RaV7qCy01NUYqiFGrAfwJ19oUnPlj0Kz3Rj5ckv1O1/Q0oZXbbrwldRF16XeGyRLLogrCyMrboh+0ZbawTO7OQsIPTfKEP3FJcQh/oV6kXDTsOQ+YuJ2Ehrf6Js21H6ffOepCpJtS3VhO1cgUBNlBqtQeyE1N34Kws7hieUaZ9iwS+zarb";
    const RSA_FP: &str = "SHA256:GZTlfeYwMNPqAtKGWFc4y7Woyfp2TKbVrBMtEZBvQ/8";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEY9Mm2hnMccGUqcAwys7W1nVYcMM1EeWXgxCJsNlT+m+eBMZYJBl2jvEah62CqaVJFrgRvwdySu6RSrF3R4A4I=";
    const ECDSA_FP: &str = "SHA256:qNvupCD+IvyjB2kL7/nkQ0pXJKUJSb+U59xFp/BuPfU";

    #[test]
    fn accepts_bare_pub_and_known_hosts_forms() {
        for text in [
            ED25519.to_owned(),
            format!("{ED25519} alice@example"),
            format!("  {ED25519} two word comment \n"),
            format!("[sftp.example.com]:2222,10.0.0.1 {ED25519}"),
            format!("|1|abc=|def= {ED25519} comment"),
            format!("# scanned\n\nsftp.example.com {ED25519}\n"),
        ] {
            assert_eq!(parse_host_key(&text).unwrap(), ED25519, "input {text:?}");
        }
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(ED25519).unwrap(), ED25519_FP);
        assert_eq!(fingerprint(RSA).unwrap(), RSA_FP);
        assert_eq!(fingerprint(ECDSA).unwrap(), ECDSA_FP);
        // A .pub line with ssh-keygen's trailing space after an empty comment.
        assert_eq!(fingerprint(&format!("{RSA} ")).unwrap(), RSA_FP);
        assert_eq!(parse_host_key(&format!("{ECDSA} ")).unwrap(), ECDSA);
        assert_eq!(parse_host_key(&format!("[h]:22 {RSA}")).unwrap(), RSA);
        assert_eq!(
            fingerprint(&format!("host {ED25519} c")).unwrap(),
            ED25519_FP
        );
    }

    #[test]
    fn rejects_garbage_clearly() {
        for text in [
            "",
            "   \n# only a comment\n",
            "ssh-ed25519",
            "ssh-ed25519 notbase64!!",
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
            "@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIuYeKY7nED6SQrCyVvzvdUwdUwdDB1f1FvF7m9YzNUC",
        ] {
            let err = parse_host_key(text).unwrap_err();
            assert!(matches!(err, PartnerError::InvalidKey(_)), "{text:?}: {err:?}");
            assert!(!err.is_transient());
        }
        let two = format!("{ED25519}\n{ED25519}");
        assert!(parse_host_key(&two)
            .unwrap_err()
            .to_string()
            .contains("expected one host key"));
    }

    #[test]
    fn key_type_must_match_blob() {
        // An ed25519 blob labelled as RSA does not parse.
        let text = ED25519.replace("ssh-ed25519", "ssh-rsa");
        assert!(parse_host_key(&text).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = PartnerAuth::PrivateKey {
            openssh_pem: ferry_core::Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----"),
            passphrase: Some(ferry_core::Secret::new("hunter2")),
        };
        let shown = format!(
            "{:?} {:?}",
            auth,
            PartnerAuth::Password(ferry_core::Secret::new("pw1"))
        );
        assert!(!shown.contains("BEGIN") && !shown.contains("hunter2") && !shown.contains("pw1"));
    }
}
