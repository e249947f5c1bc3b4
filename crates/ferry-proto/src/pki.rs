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
    let (key, cert) = make(ca_dir, name, sans, role)?;
    write_new(&out_dir.join(format!("{name}.key")), key.as_bytes(), true)?;
    write_new(&out_dir.join(format!("{name}.crt")), cert.as_bytes(), false)?;
    Ok(())
}

/// A new key and certificate (PEM) for node `name` in `role`, valid for
/// `sans` (and `name`), signed by the CA in `ca_dir`.
fn make(
    ca_dir: &Path,
    name: &str,
    sans: &[String],
    role: CertRole,
) -> Result<(String, String), ProtoError> {
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
    Ok((key.serialize_pem(), cert.pem()))
}

/// What a node certificate says of itself: read by [`renew`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Its role, if it has one.
    pub role: Option<CertRole>,
    /// Its DNS names and IP addresses.
    pub names: Vec<String>,
    /// The end of its validity, seconds since the epoch.
    pub not_after: i64,
}

/// Reads the node certificate in `path`.
pub fn read_issued(path: &Path) -> Result<Issued, ProtoError> {
    use x509_parser::extensions::GeneralName;
    let pem = std::fs::read(path)
        .map_err(|e| ProtoError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let bad = |why: String| ProtoError::Tls(format!("{}: {why}", path.display()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let mut issued = Issued {
        role: None,
        names: Vec::new(),
        not_after: cert.validity().not_after.timestamp(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(dns) => issued.names.push((*dns).to_owned()),
                GeneralName::IPAddress(raw) => {
                    let ip = match raw.len() {
                        4 => <[u8; 4]>::try_from(*raw).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*raw).ok().map(IpAddr::from),
                        _ => None,
                    };
                    issued.names.extend(ip.map(|ip| ip.to_string()));
                }
                GeneralName::URI(uri) => {
                    if let Some(role) = uri.strip_prefix(ROLE_URI_PREFIX) {
                        issued.role = CertRole::parse(role);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(issued)
}

/// A certificate this close to its end (seconds) is renewed without
/// `--force`.
pub const RENEW_BEFORE_SECS: i64 = 30 * 24 * 3600;

/// Replaces node `name`'s key and certificate in `out_dir` by new ones
/// signed by the CA in `ca_dir`, with the same role and names plus
/// `add_sans`. Refused when that would change nothing (no new name, and
/// more than [`RENEW_BEFORE_SECS`] left) unless `force`, and for a
/// certificate without a role (issue it again with `--role`). The old
/// files stay beside as `NAME.crt.old` and `NAME.key.old`. Returns the
/// new certificate's names.
pub fn renew(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    add_sans: &[String],
    force: bool,
) -> Result<Vec<String>, ProtoError> {
    let crt = out_dir.join(format!("{name}.crt"));
    let key = out_dir.join(format!("{name}.key"));
    let old = read_issued(&crt)?;
    let Some(role) = old.role else {
        return Err(ProtoError::Tls(format!(
            "{} has no role: issue it again with `ferry pki issue --role …`",
            crt.display()
        )));
    };
    let mut names = old.names.clone();
    let mut added = false;
    for san in add_sans {
        if !names.contains(san) {
            names.push(san.clone());
            added = true;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if !added && !force && old.not_after - now > RENEW_BEFORE_SECS {
        return Err(ProtoError::Tls(format!(
            "{} is valid for {} more days and no name is added: nothing to renew              (--force issues a new key and certificate all the same)",
            crt.display(),
            (old.not_after - now) / 86_400
        )));
    }
    let (new_key, new_cert) = make(ca_dir, name, &names, role)?;
    // The new files are written beside, then take the names: a crash
    // leaves either the old pair or the new one in place, never half.
    let staged_key = out_dir.join(format!("{name}.key.new"));
    let staged_crt = out_dir.join(format!("{name}.crt.new"));
    for staged in [&staged_key, &staged_crt] {
        let _ = std::fs::remove_file(staged);
    }
    write_new(&staged_key, new_key.as_bytes(), true)?;
    write_new(&staged_crt, new_cert.as_bytes(), false)?;
    let keep = |from: &Path, to: String| {
        std::fs::copy(from, out_dir.join(&to))
            .map(|_| ())
            .map_err(|e| ProtoError::Tls(format!("cannot keep {}: {e}", from.display())))
    };
    keep(&key, format!("{name}.key.old"))?;
    keep(&crt, format!("{name}.crt.old"))?;
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .map_err(|e| ProtoError::Tls(format!("cannot replace {}: {e}", to.display())))
    };
    rename(&staged_key, &key)?;
    rename(&staged_crt, &crt)?;
    Ok(names)
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
        // Renewal keeps the role and the names, adds a name, and
        // replaces the pair.
        let before = std::fs::read(dir.path().join("server-1.crt")).unwrap();
        let refused = renew(dir.path(), dir.path(), "server-1", &[], false).unwrap_err();
        assert!(
            refused.to_string().contains("nothing to renew"),
            "{refused}"
        );
        let names = renew(
            dir.path(),
            dir.path(),
            "server-1",
            &["server-1.example.net".into(), "localhost".into()],
            false,
        )
        .unwrap();
        assert_eq!(
            names,
            ["127.0.0.1", "localhost", "server-1", "server-1.example.net"].map(String::from)
        );
        let renewed = read_issued(&dir.path().join("server-1.crt")).unwrap();
        assert_eq!(renewed.role, Some(CertRole::Server));
        assert_eq!(renewed.names, names);
        assert_ne!(
            std::fs::read(dir.path().join("server-1.crt")).unwrap(),
            before
        );
        assert_eq!(
            std::fs::read(dir.path().join("server-1.crt.old")).unwrap(),
            before
        );
        crate::tls::internal_server_config(&files).unwrap();
        renew(dir.path(), dir.path(), "server-1", &[], true).unwrap();
        // Never overwrites.
        assert!(create_ca(dir.path(), "test").is_err());
        assert!(issue(dir.path(), dir.path(), "bad/name", &[], CertRole::Edge).is_err());
    }
}
