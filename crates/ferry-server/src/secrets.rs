//! Partner credentials at rest: sealed with ChaCha20-Poly1305 under a key kept
//! in a file outside the database (`[engine] secret_key_file`, mode 0600), so
//! a copied database or a replicated command never carries a usable secret.
//! Every node of a cluster needs the same key file.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ferry_core::{FerryError, Secret};

const PREFIX: &str = "v1:";

/// The key that seals partner secrets.
pub struct SecretKey {
    cipher: ChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Loads the key from `path` (64 hex digits), creating it with a fresh
    /// random key and mode 0600 if it does not exist. A key file others can
    /// read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
            ferry_proto::pki::write_new(path, format!("{}\n", hex::encode(bytes)).as_bytes(), true)
                .map_err(|e| format!("cannot create the secret key {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created the secret key for partner credentials");
        }
        ferry_proto::tls::check_private(path).map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret key {}: {e}", path.display()))?;
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                format!(
                    "secret key {} must hold 64 hex digits (32 bytes)",
                    path.display()
                )
            })?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let mut hash = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut hash, b"ferry secret key id\0");
        sha2::Digest::update(&mut hash, bytes);
        let digest = sha2::Digest::finalize(hash);
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
            id: hex::encode(digest.get(..8).unwrap_or_default()),
        }
    }

    /// Names this key without revealing it (a hash of it): servers
    /// compare it before a sync, since partner credentials sealed with one
    /// key do not open with another.
    pub fn key_id(&self) -> String {
        self.id.clone()
    }

    /// Seals `secret`, bound to `context` (which partner and field it is, so
    /// a sealed value cannot be moved to another record).
    pub fn seal(&self, secret: &Secret, context: &str) -> Result<String, FerryError> {
        let mut nonce = [0u8; 12];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| FerryError::internal("could not seal a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", hex::encode(out)))
    }

    /// Opens a value sealed by [`SecretKey::seal`] with the same context.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, FerryError> {
        let wrong = || {
            FerryError::internal(format!(
                "the stored secret of {context} cannot be opened with this node's secret key \
                 (was it sealed with another key file?)"
            ))
        };
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(wrong)?;
        let (nonce, body) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = SecretKey::load_or_create(&path).unwrap();
        let sealed = key.seal(&Secret::new("hunter2"), "partner acme").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key.open(&sealed, "partner acme").unwrap().expose(),
            "hunter2"
        );
        assert!(key.open(&sealed, "partner other").is_err());
        // The same file gives the same key; another file does not.
        let again = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(&sealed, "partner acme").unwrap().expose(),
            "hunter2"
        );
        let other = SecretKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&sealed, "partner acme").is_err());
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(
            sealed,
            key.seal(&Secret::new("hunter2"), "partner acme").unwrap()
        );
    }
}
