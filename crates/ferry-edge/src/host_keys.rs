//! The edge's SSH host keys: one file per algorithm (Ed25519, RSA, ECDSA
//! P-256), each created with mode 0600 on first start if it is missing.
//!
//! Modern clients pick Ed25519; RSA (signed with rsa-sha2-256/512, never
//! SHA-1) and ECDSA are there for clients that know neither Ed25519 nor
//! each other, such as older Java and Windows clients.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, EcdsaCurve, PrivateKey};

use crate::config::SftpConfig;
use crate::StartError;

/// Size of a newly generated RSA host key, in bits.
pub const RSA_BITS: usize = 3072;
/// Smallest RSA host key loaded from a file, in bits.
pub const RSA_MIN_BITS: u32 = 2048;

/// What a host key file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyKind {
    /// Ed25519.
    Ed25519,
    /// RSA (at least [`RSA_MIN_BITS`]; [`RSA_BITS`] when generated).
    Rsa,
    /// ECDSA on NIST P-256.
    Ecdsa,
    /// Any supported key; generated as Ed25519 (the single `host_key` form).
    Any,
}

impl HostKeyKind {
    fn name(self) -> &'static str {
        match self {
            HostKeyKind::Ed25519 => "ed25519",
            HostKeyKind::Rsa => "rsa",
            HostKeyKind::Ecdsa => "ecdsa",
            HostKeyKind::Any => "host_key",
        }
    }

    fn accepts(self, algorithm: &Algorithm) -> bool {
        match self {
            HostKeyKind::Ed25519 => *algorithm == Algorithm::Ed25519,
            HostKeyKind::Rsa => matches!(algorithm, Algorithm::Rsa { .. }),
            HostKeyKind::Ecdsa => matches!(
                algorithm,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256
                }
            ),
            HostKeyKind::Any => {
                *algorithm == Algorithm::Ed25519
                    || matches!(algorithm, Algorithm::Rsa { .. })
                    || matches!(algorithm, Algorithm::Ecdsa { .. })
            }
        }
    }

    fn generate(self) -> Result<PrivateKey, String> {
        let mut rng = rand::rng();
        match self {
            HostKeyKind::Ed25519 | HostKeyKind::Any => {
                PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(|e| e.to_string())
            }
            HostKeyKind::Ecdsa => PrivateKey::random(
                &mut rng,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                },
            )
            .map_err(|e| e.to_string()),
            HostKeyKind::Rsa => {
                // ssh-key's PrivateKey::random makes 4096-bit RSA keys; 3072
                // bits is OpenSSH's default and enough for 128-bit security.
                let pair = RsaKeypair::random(&mut rng, RSA_BITS).map_err(|e| e.to_string())?;
                PrivateKey::new(KeypairData::from(pair), "").map_err(|e| e.to_string())
            }
        }
    }
}

/// The host key files `config` names, each with the kind it must hold.
pub fn files(config: &SftpConfig) -> Vec<(HostKeyKind, PathBuf)> {
    let mut out = Vec::new();
    if let Some(path) = &config.host_key {
        out.push((HostKeyKind::Any, path.clone()));
    }
    if let Some(keys) = &config.host_keys {
        for (kind, path) in [
            (HostKeyKind::Ed25519, &keys.ed25519),
            (HostKeyKind::Rsa, &keys.rsa),
            (HostKeyKind::Ecdsa, &keys.ecdsa),
        ] {
            if let Some(path) = path {
                out.push((kind, path.clone()));
            }
        }
    }
    out
}

/// Loads every host key `config` names, creating the missing ones.
pub fn load_or_create_all(config: &SftpConfig) -> Result<Vec<PrivateKey>, StartError> {
    let files = files(config);
    if files.is_empty() {
        return Err(StartError::Setup(
            "sftp: no host key configured (`sftp.host_keys`)".into(),
        ));
    }
    files
        .iter()
        .map(|(kind, path)| load_or_create(*kind, path))
        .collect()
}

/// A host key's fingerprint as OpenSSH shows it (`ssh-ed25519
/// SHA256:…`, what a client prints on first contact and `ssh-keygen -lf`
/// prints of the public key).
pub fn fingerprint(key: &PrivateKey) -> String {
    let public = key.public_key();
    format!(
        "{} {}",
        public.algorithm().as_str(),
        public.fingerprint(russh::keys::HashAlg::Sha256)
    )
}

/// Loads the host key in `path`, which must be of `kind`, or creates one
/// (mode 0600) if the file is missing.
pub fn load_or_create(kind: HostKeyKind, path: &Path) -> Result<PrivateKey, StartError> {
    let setup = |what: String| StartError::Setup(format!("host key {}: {what}", path.display()));
    if path.exists() {
        ferry_proto::tls::check_private(path)?;
        let key = russh::keys::load_secret_key(path, None).map_err(|e| setup(e.to_string()))?;
        let algorithm = key.algorithm();
        if !kind.accepts(&algorithm) {
            return Err(setup(format!(
                "holds a {} key, but is configured as `{}`",
                algorithm.as_str(),
                kind.name()
            )));
        }
        if let Some(rsa) = key.key_data().rsa() {
            if rsa.key_size() < RSA_MIN_BITS {
                return Err(setup(format!(
                    "RSA key of {} bits; at least {RSA_MIN_BITS} are needed",
                    rsa.key_size()
                )));
            }
        }
        return Ok(key);
    }
    let key = kind
        .generate()
        .map_err(|e| setup(format!("cannot generate: {e}")))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| setup(format!("cannot encode: {e}")))?;
    // Written under a temporary name and renamed, so a crash never leaves a
    // half-written key that would stop the next start.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    ferry_proto::pki::write_new(&tmp, text.as_bytes(), true)?;
    std::fs::rename(&tmp, path).map_err(|e| setup(format!("cannot rename into place: {e}")))?;
    tracing::info!(path = %path.display(), algorithm = kind.name(), "created SSH host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_kind_is_created_once_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (kind, want) in [
            (HostKeyKind::Ed25519, "ssh-ed25519"),
            (HostKeyKind::Ecdsa, "ecdsa-sha2-nistp256"),
            (HostKeyKind::Rsa, "ssh-rsa"),
        ] {
            let path = dir.path().join(kind.name());
            let made = load_or_create(kind, &path).unwrap();
            assert_eq!(made.algorithm().as_str(), want);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let again = load_or_create(kind, &path).unwrap();
            assert_eq!(made.public_key(), again.public_key());
            if kind == HostKeyKind::Rsa {
                assert_eq!(again.key_data().rsa().unwrap().key_size(), 3072);
            }
        }
    }

    #[test]
    fn a_key_of_the_wrong_algorithm_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        load_or_create(HostKeyKind::Ed25519, &path).unwrap();
        let err = load_or_create(HostKeyKind::Ecdsa, &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds a ssh-ed25519 key") && err.contains("`ecdsa`"),
            "{err}"
        );
        // The single-key form takes whatever the file holds.
        load_or_create(HostKeyKind::Any, &path).unwrap();
    }
}
