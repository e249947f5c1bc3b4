//! Mutual TLS for the internal protocol, and TLS for the admin API.
//!
//! Both sides present certificates issued by the cluster's CA and trust only
//! that CA. TLS 1.2 and 1.3 only (rustls speaks nothing older), with the
//! `ring` provider chosen explicitly so that no process-wide default is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ProtoError;

/// The three files a node needs for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM), issued by the CA.
    pub cert: PathBuf,
    /// This node's private key (PEM). Must not be readable by others.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Resolves relative paths against `base` (the config file's directory).
    pub fn resolved(&self, base: &Path) -> Self {
        Self {
            ca: base.join(&self.ca),
            cert: base.join(&self.cert),
            key: base.join(&self.key),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider of the internal protocol: the same suites, AES-128-GCM
/// first. Every byte of a split deployment crosses this hop, and AES-128
/// costs about 30% less per byte than AES-256 with the same AEAD security
/// margin for our purposes.
fn internal_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

fn read(path: &Path) -> Result<Vec<u8>, ProtoError> {
    std::fs::read(path).map_err(|e| ProtoError::Tls(format!("cannot read {}: {e}", path.display())))
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProtoError> {
    let data = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProtoError::Tls(format!("{}: not a PEM certificate: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ProtoError::Tls(format!(
            "{}: no certificate in file",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads a private key, refusing one that others may read.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProtoError> {
    check_private(path)?;
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| ProtoError::Tls(format!("{}: not a PEM private key: {e}", path.display())))
}

/// Refuses a secret file that is readable or writable by group or others.
pub fn check_private(path: &Path) -> Result<(), ProtoError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ProtoError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ProtoError::Tls(format!(
            "{} is accessible by other users (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, ProtoError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store.add(cert).map_err(|e| {
            ProtoError::Tls(format!("{}: unusable CA certificate: {e}", ca.display()))
        })?;
    }
    Ok(Arc::new(store))
}

/// Server side of the internal protocol: clients must present a certificate
/// issued by the CA.
pub fn internal_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, ProtoError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, internal_provider())
            .build()
            .map_err(|e| ProtoError::Tls(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(internal_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProtoError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| ProtoError::Tls(format!("{}: {e}", files.cert.display())))?;
    Ok(Arc::new(config))
}

/// Client side of the internal protocol: trusts only the CA, presents this
/// node's certificate.
pub fn internal_client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, ProtoError> {
    let config = ClientConfig::builder_with_provider(internal_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProtoError::Tls(e.to_string()))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| ProtoError::Tls(format!("{}: {e}", files.cert.display())))?;
    Ok(Arc::new(config))
}

/// A plain TLS server config (no client certificates), for the admin API.
pub fn plain_server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, ProtoError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProtoError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| ProtoError::Tls(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A TLS client config trusting only `ca`, for admin commands.
pub fn ca_client_config(ca: &Path) -> Result<ClientConfig, ProtoError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProtoError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth())
}

/// The common name of the first certificate a peer presented (the node
/// name `ferry pki issue` puts there), if it has one.
pub fn peer_common_name(certs: &[CertificateDer<'_>]) -> Option<String> {
    let first = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
}

/// The [`crate::pki::CertRole`] written into the first of `certs` by
/// `ferry pki issue --role`; `None` for a certificate without one (issued
/// before roles existed, or by another tool).
pub fn peer_role(certs: &[CertificateDer<'_>]) -> Option<crate::pki::CertRole> {
    let first = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri
            .strip_prefix(crate::pki::ROLE_URI_PREFIX)
            .and_then(crate::pki::CertRole::parse),
        _ => None,
    })
}

/// Why `certs` may not be used as `wanted`, if it may not.
pub fn role_refusal(certs: &[CertificateDer<'_>], wanted: crate::pki::CertRole) -> Option<String> {
    match peer_role(certs) {
        Some(role) if role == wanted => None,
        Some(role) => Some(format!(
            "its certificate is for the {} role, not {}",
            role.as_str(),
            wanted.as_str()
        )),
        None => Some(format!(
            "its certificate names no Ferry role (issue it again with `ferry pki issue --role {}`)",
            wanted.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_hop_prefers_aes_128_gcm_and_keeps_every_suite() {
        let internal = internal_provider();
        let default = provider();
        assert_eq!(
            internal.cipher_suites.first().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert_eq!(internal.cipher_suites.len(), default.cipher_suites.len());
    }
}
