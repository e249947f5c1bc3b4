//! The password policy: what a new password of an account must be,
//! wherever it is set (an admin creating or changing the account, the
//! account changing its own).
//!
//! * at least [`MIN_PASSWORD_LEN`] characters, or the longer minimum of
//!   the `min_password_length` setting (and at most
//!   [`crate::auth::MAX_PASSWORD_LEN`] bytes);
//! * strong enough: a zxcvbn score of at least 3 ("safely unguessable",
//!   more than 10^8 guesses), judged with the account's name as a word the
//!   attacker knows; a refusal says zxcvbn's feedback in words;
//! * none of the account's last [`ferry_core::PASSWORD_HISTORY_LEN`]
//!   passwords (its current one included), checked against their argon2
//!   hashes on the hashing threads.
//!
//! Every refusal is `InvalidInput` (HTTP 400) with the reason.

use ferry_core::{FerryError, Secret, PASSWORD_HISTORY_LEN};
use ferry_store::Store;

pub use crate::auth::MIN_PASSWORD_LEN;

/// The lowest zxcvbn score taken.
pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// zxcvbn judges this many characters at most: its matchers grow faster
/// than linearly with the length, and a password this long that is weak at
/// its start is refused (the rest is not looked at, which errs on the
/// side of refusing).
const JUDGED_CHARS: usize = 100;

/// The setting that raises the shortest password accepted above
/// [`MIN_PASSWORD_LEN`] (`ferry account password-policy --min-length`).
pub const MIN_LENGTH_SETTING: &str = "min_password_length";

/// Most a minimum length may be set to.
pub const MAX_MIN_LENGTH: usize = 128;

/// The shortest password accepted now: the setting, never below
/// [`MIN_PASSWORD_LEN`]. Blocking (a store read).
pub fn min_length(store: &Store) -> Result<usize, FerryError> {
    Ok(store
        .setting(MIN_LENGTH_SETTING)
        .map_err(FerryError::from)?
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(MIN_PASSWORD_LEN)
        .clamp(MIN_PASSWORD_LEN, MAX_MIN_LENGTH))
}

/// Checks `password`'s length (at least `min_len` characters) and
/// strength for account `account`. Pure computation (a few
/// milliseconds); no store access.
pub fn check_strength(account: &str, password: &Secret, min_len: usize) -> Result<(), FerryError> {
    let pw = password.expose();
    let min_len = min_len.max(MIN_PASSWORD_LEN);
    if pw.chars().count() < min_len {
        return Err(FerryError::invalid(format!(
            "password must be at least {min_len} characters"
        )));
    }
    if pw.len() > crate::auth::MAX_PASSWORD_LEN {
        return Err(FerryError::invalid(format!(
            "password must be at most {} bytes",
            crate::auth::MAX_PASSWORD_LEN
        )));
    }
    let judged: String = pw.chars().take(JUDGED_CHARS).collect();
    let entropy = zxcvbn::zxcvbn(&judged, &[account, "ferry"]);
    if entropy.score() >= MIN_SCORE {
        return Ok(());
    }
    Err(FerryError::invalid(format!(
        "password is too weak: {}",
        advice(entropy.feedback())
    )))
}

/// zxcvbn's feedback as one sentence of words: its warning, then its
/// suggestions ("this is a very common password; add another word or two").
fn advice(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(f) = feedback {
        parts.extend(f.warning().map(|w| w.to_string()));
        parts.extend(f.suggestions().iter().map(ToString::to_string));
    }
    if parts.is_empty() {
        parts.push("add another word or two; uncommon words are better".into());
    }
    parts
        .iter()
        .flat_map(|p| p.split(". "))
        .map(|p| {
            let p = p.trim().trim_end_matches('.');
            let mut chars = p.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .filter(|p: &String| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first password of a new account `account` (no history yet):
/// checks its strength and hashes it. Blocking (argon2 on the hashing
/// threads).
pub fn first_password(
    store: &Store,
    account: &str,
    password: &Secret,
) -> Result<Secret, FerryError> {
    check_strength(account, password, min_length(store)?)?;
    crate::auth::hash_password(password)
}

/// A new password for account `account`: checks the policy (strength, and
/// that it is none of the last [`PASSWORD_HISTORY_LEN`] passwords of the
/// account, if it exists) and hashes it. Blocking: store reads and argon2
/// on the hashing threads.
pub fn new_account_password(
    store: &Store,
    account: &str,
    password: &Secret,
) -> Result<Secret, FerryError> {
    check_strength(account, password, min_length(store)?)?;
    let history: Vec<String> = store
        .password_history(account)
        .map_err(FerryError::from)?
        .iter()
        .map(|h| h.expose().to_owned())
        .collect();
    if crate::hashing::verify_any(history, password)? {
        return Err(FerryError::invalid(format!(
            "password was used before: choose one that is none of the account's last \
             {PASSWORD_HISTORY_LEN}"
        )));
    }
    crate::auth::hash_password(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Account, Command, ErrorKind};

    fn strength(account: &str, pw: &str) -> Result<(), FerryError> {
        check_strength(account, &Secret::new(pw), MIN_PASSWORD_LEN)
    }

    #[test]
    fn weak_passwords_are_refused_in_words() {
        for weak in [
            "password1",
            "pw-pw-pw-pw",
            "qwertyuiop",
            "alice2026",
            "aaaaaaaaaaaa",
        ] {
            let e = strength("alice", weak).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{weak}");
            assert!(
                e.message.starts_with("password is too weak: "),
                "{weak}: {}",
                e.message
            );
            assert!(e.message.len() > "password is too weak: ".len() + 10);
        }
        let short = strength("alice", "x7#Qp").unwrap_err();
        assert!(short.message.contains("at least 8"), "{}", short.message);
        // A longer minimum, but never a shorter one.
        let e = check_strength("alice", &Secret::new("gX9#mQ2!vL7$"), 16).unwrap_err();
        assert!(e.message.contains("at least 16"), "{}", e.message);
        let e = check_strength("alice", &Secret::new("x7#Qp"), 2).unwrap_err();
        assert!(e.message.contains("at least 8"), "{}", e.message);
        let long = "Zq8!".repeat(300);
        assert!(strength("alice", &long)
            .unwrap_err()
            .message
            .contains("at most"));
    }

    #[test]
    fn strong_passwords_pass() {
        for strong in [
            "correct horse battery staple",
            "Tangerine-Viaduct-47-Oslo",
            "gX9#mQ2!vL7$",
        ] {
            assert!(strength("alice", strong).is_ok(), "{strong}");
        }
        // The account's own name is a word an attacker knows.
        assert!(strength("tangerineviaduct", "tangerineviaduct1").is_err());
    }

    #[test]
    fn the_last_passwords_are_refused_and_older_ones_taken() {
        let store = Store::open_in_memory().unwrap();
        let first = Secret::new("Tangerine-Viaduct-47-Oslo");
        store
            .apply(&Command::CreateAccount(Account {
                id: "1".into(),
                name: "alice".into(),
                home: "alice".into(),
                password_hash: Some(first_password(&store, "alice", &first).unwrap()),
                enabled: true,
                created_at: 0,
            }))
            .unwrap();
        let set = |pw: &str| -> Result<(), FerryError> {
            let hash = new_account_password(&store, "alice", &Secret::new(pw))?;
            store
                .apply(&Command::UpdateAccount(ferry_core::AccountUpdate {
                    password_hash: Some(Some(hash)),
                    ..ferry_core::AccountUpdate::of("alice")
                }))
                .map(|_| ())
                .map_err(FerryError::from)
        };
        let reused = set("Tangerine-Viaduct-47-Oslo").unwrap_err();
        assert!(reused.message.contains("used before"), "{}", reused.message);
        let others = [
            "Marmalade-Harbour-82-Lima",
            "Periscope-Lantern-19-Kiev",
            "Avalanche-Teacup-33-Quito",
            "Dromedary-Violin-64-Accra",
        ];
        for pw in others {
            set(pw).unwrap();
        }
        assert_eq!(store.password_history("alice").unwrap().len(), 5);
        // The first is still among the last five: refused.
        assert!(set("Tangerine-Viaduct-47-Oslo").is_err());
        set("Harmonica-Glacier-58-Doha").unwrap();
        assert_eq!(store.password_history("alice").unwrap().len(), 5);
        // Six passwords later the first has left the history.
        set("Tangerine-Viaduct-47-Oslo").unwrap();
        assert!(set("Harmonica-Glacier-58-Doha").is_err());
    }
}
