//! The cluster's own certificate authority (`ferry pki …`).
//!
//! One CA signs every node certificate; nodes trust only it. Certificates are
//! valid for both TLS server and client authentication, so the same pair
//! serves the internal protocol in both directions and the admin API.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::ProtoError;

fn err(e: impl std::fmt::Display) -> ProtoError {
    ProtoError::Tls(e.to_string())
}

/// Writes `contents` to `path`, mode 0600 when `private`, refusing to replace
/// an existing file.
pub fn write_new(path: &Path, contents: &[u8], private: bool) -> Result<(), ProtoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| ProtoError::Tls(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| ProtoError::Tls(format!("cannot write {}: {e}", path.display())))
}

fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

/// Creates a new CA: `ca.crt` and `ca.key` in `dir`.
pub fn create_ca(dir: &Path, cluster_name: &str) -> Result<(), ProtoError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Ferry CA {cluster_name}"));
    dn.push(DnType::OrganizationName, "Ferry");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    let cert = params.self_signed(&key).map_err(err)?;
    write_new(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
    write_new(&dir.join("ca.crt"), cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Prefix of the subject alternative name (a URI) that carries a
/// certificate's [`CertRole`].
pub const ROLE_URI_PREFIX: &str = "urn:ferry:role:";

/// What a certificate may be used for. `ferry pki issue --role` writes it
/// into the certificate; a server reads an edge's or a peer's role from
/// there, never from what the connection claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// A back-end server: cluster links, and the server side of edges'.
    Server,
    /// An edge connecting to servers.
    Edge,
    /// A public HTTPS front: never accepted on the internal link.
    Https,
}

impl CertRole {
    /// The role's name, as written in the certificate.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Edge => "edge",
            Self::Https => "https",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Server, Self::Edge, Self::Https]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Issues a certificate for node `name` in `role`, valid for the given DNS
/// names and IP addresses, signed by the CA in `ca_dir`. Writes `NAME.crt`
/// and `NAME.key` into `out_dir`.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    sans: &[String],
    role: CertRole,
) -> Result<(), ProtoError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(ProtoError::Tls(format!(
            "node name {name:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.crt")).map_err(|e| {
        ProtoError::Tls(format!(
            "cannot read {}: {e}",
            ca_dir.join("ca.crt").display()
        ))
    })?;
    crate::tls::check_private(&ca_dir.join("ca.key"))?;
    let ca_key_pem = std::fs::read_to_string(ca_dir.join("ca.key")).map_err(|e| {
        ProtoError::Tls(format!(
            "cannot read {}: {e}",
            ca_dir.join("ca.key").display()
        ))
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(err)?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem).map_err(err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Ferry");
    params.distinguished_name = dn;
    let mut names: Vec<String> = sans.to_vec();
    if !names.iter().any(|n| n == name) {
        names.push(name.to_owned());
    }
    for san in names {
        let entry =
            match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(san.clone().try_into().map_err(|e| {
                    ProtoError::Tls(format!("{san:?} is not a valid DNS name: {e}"))
                })?),
            };
        params.subject_alt_names.push(entry);
    }
    let role_uri = format!("{ROLE_URI_PREFIX}{}", role.as_str());
    params.subject_alt_names.push(SanType::URI(
        role_uri
            .try_into()
            .map_err(|e| ProtoError::Tls(format!("role URI: {e}")))?,
    ));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params);
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
    write_new(
        &out_dir.join(format!("{name}.key")),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    write_new(
        &out_dir.join(format!("{name}.crt")),
        cert.pem().as_bytes(),
        false,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_certificates_that_load() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path(), "test").unwrap();
        issue(
            dir.path(),
            dir.path(),
            "server-1",
            &["127.0.0.1".into(), "localhost".into()],
            CertRole::Server,
        )
        .unwrap();
        let files = crate::tls::TlsFiles {
            ca: dir.path().join("ca.crt"),
            cert: dir.path().join("server-1.crt"),
            key: dir.path().join("server-1.key"),
        };
        crate::tls::internal_server_config(&files).unwrap();
        crate::tls::internal_client_config(&files).unwrap();
        let certs = crate::tls::load_certs(&files.cert).unwrap();
        assert_eq!(
            crate::tls::peer_common_name(&certs).as_deref(),
            Some("server-1")
        );
        // The role is in the certificate, and only that role passes.
        assert_eq!(crate::tls::peer_role(&certs), Some(CertRole::Server));
        assert!(crate::tls::role_refusal(&certs, CertRole::Server).is_none());
        assert!(crate::tls::role_refusal(&certs, CertRole::Edge).is_some());
        // Never overwrites.
        assert!(create_ca(dir.path(), "test").is_err());
        assert!(issue(dir.path(), dir.path(), "bad/name", &[], CertRole::Edge).is_err());
    }
}
