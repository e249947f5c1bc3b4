//! The password-hashing threads: every argon2 hash and check runs here.
//!
//! A few dedicated threads, one per core (at most four), take jobs from a
//! bounded queue. Each argon2 run needs about 19 MiB of working memory; a
//! crowd of wrong passwords must neither run them all at once nor leave
//! that memory behind. Each thread therefore keeps one working area for its
//! whole life and hands it to every run, instead of allocating and freeing
//! 19 MiB per check: freeing a block that large raises the C allocator's
//! dynamic thresholds, after which the runtime's threads kept hundreds of
//! MiB of freed connection buffers resident (a flood of 120 wrong passwords
//! took the process from 67 to 494 MiB; with the reused area it rises by a
//! few tens of MiB).
//!
//! A job that finds the queue full, or waits past [`HASH_WAIT`], is
//! answered as the server being busy, never as a wrong password.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use ferry_core::{FerryError, Secret};

/// Most jobs waiting for a hashing thread (a waiting job holds only its
/// strings; the working memory belongs to the threads).
const HASH_QUEUE: usize = 1024;

/// How long a job may wait for its turn.
pub const HASH_WAIT: Duration = Duration::from_secs(10);

/// Largest working area a stored hash may ask for (its `m` cost, in KiB
/// blocks): 256 MiB. A hash asking for more is refused, not run.
const MAX_BLOCKS: usize = 256 * 1024;

/// One job for the hashing threads.
enum HashJob {
    /// Does `password` match `hash`? `None`: check against the dummy hash
    /// (so an unknown name costs what a wrong password does).
    Verify {
        hash: Option<String>,
        password: Secret,
        deadline: Instant,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Does `password` match any of `hashes`? (The reuse check of a new
    /// password: one job, so the hashes are checked one after the other
    /// on one thread and stop at the first match.)
    VerifyAny {
        hashes: Vec<String>,
        password: Secret,
        deadline: Instant,
        reply: SyncSender<bool>,
    },
    /// A new PHC string for `password`.
    Hash {
        password: Secret,
        reply: SyncSender<Result<String, FerryError>>,
    },
}

fn busy() -> FerryError {
    FerryError::unavailable("password checks are busy; try again shortly")
}

/// The queue of the hashing threads, started on first use.
fn hashers() -> &'static SyncSender<HashJob> {
    static QUEUE: OnceLock<SyncSender<HashJob>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<HashJob>(HASH_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ferry-argon2-{i}"))
                .spawn(move || hash_thread(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        tx
    })
}

fn hash_thread(rx: &Mutex<Receiver<HashJob>>) {
    let mut hasher = Hasher::default();
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        match job {
            HashJob::Verify {
                hash,
                password,
                deadline,
                reply,
            } => {
                // Its caller has given up: no need to spend the time.
                if Instant::now() >= deadline || reply.is_closed() {
                    continue;
                }
                let ok = match hash {
                    Some(hash) => hasher.verify(&hash, password.expose().as_bytes()),
                    None => {
                        let dummy = dummy_hash(&mut hasher);
                        hasher.verify(dummy, password.expose().as_bytes())
                    }
                };
                let _ = reply.send(ok);
            }
            HashJob::VerifyAny {
                hashes,
                password,
                deadline,
                reply,
            } => {
                if Instant::now() >= deadline {
                    continue;
                }
                let found = hashes
                    .iter()
                    .any(|hash| hasher.verify(hash, password.expose().as_bytes()));
                let _ = reply.send(found);
            }
            HashJob::Hash { password, reply } => {
                let _ = reply.send(hasher.hash(password.expose().as_bytes()));
            }
        }
    }
}

/// The hash every check of an unknown name runs against, made once.
fn dummy_hash(hasher: &mut Hasher) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hasher
            .hash(b"ferry-dummy-password-for-timing")
            .unwrap_or_default()
    })
}

/// Checks `password` against the PHC string `hash` on the hashing threads,
/// within [`HASH_QUEUE`] and [`HASH_WAIT`]; `None` checks against a dummy
/// hash. The caller waits without holding a thread. A check that cannot
/// run in time is not a wrong password: it is answered as the server being
/// busy.
pub async fn verify(hash: Option<String>, password: Secret) -> Result<bool, FerryError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = HashJob::Verify {
        hash,
        password,
        deadline: Instant::now() + HASH_WAIT,
        reply,
    };
    if hashers().try_send(job).is_err() {
        tracing::warn!("too many password checks waiting; login refused as busy");
        return Err(busy());
    }
    match tokio::time::timeout(HASH_WAIT, answer).await {
        Ok(Ok(ok)) => Ok(ok),
        _ => {
            tracing::warn!("a password check waited too long for its turn; login refused as busy");
            Err(busy())
        }
    }
}

/// Hashes `password` (argon2id, default parameters, a random salt) on the
/// hashing threads and waits for it, up to [`HASH_WAIT`]. Blocking: call it
/// from a blocking thread, never from a runtime worker.
pub fn hash(password: &Secret) -> Result<String, FerryError> {
    let (reply, answer) = sync_channel(1);
    let job = HashJob::Hash {
        password: password.clone(),
        reply,
    };
    hashers().try_send(job).map_err(|_| busy())?;
    answer.recv_timeout(HASH_WAIT).map_err(|_| busy())?
}

/// Whether `password` matches any of the PHC strings `hashes` (an
/// account's last passwords), checked on the hashing threads within
/// [`HASH_WAIT`] for its turn. Blocking: call it from a blocking thread.
pub fn verify_any(hashes: Vec<String>, password: &Secret) -> Result<bool, FerryError> {
    if hashes.is_empty() {
        return Ok(false);
    }
    // Each check takes tens of milliseconds; the wait covers them all.
    let wait = HASH_WAIT + Duration::from_secs(1) * u32::try_from(hashes.len()).unwrap_or(u32::MAX);
    let (reply, answer) = sync_channel(1);
    let job = HashJob::VerifyAny {
        hashes,
        password: password.clone(),
        deadline: Instant::now() + HASH_WAIT,
        reply,
    };
    hashers().try_send(job).map_err(|_| busy())?;
    answer.recv_timeout(wait).map_err(|_| busy())
}

/// One thread's argon2 working area, kept for every run.
#[derive(Default)]
struct Hasher {
    memory: Vec<Block>,
}

impl Hasher {
    /// Runs argon2 into `out` in the kept working area.
    fn run(
        &mut self,
        argon: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            return Err(argon2::Error::MemoryTooMuch);
        }
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        let memory = self.memory.get_mut(..blocks).unwrap_or_default();
        argon.hash_password_into_with_memory(password, salt, out, memory)
    }

    /// Does `password` match the PHC string `phc`? An unparseable hash, or
    /// one of another algorithm, matches nothing.
    fn verify(&mut self, phc: &str, password: &[u8]) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        if self.run(&argon, &params, password, salt, &mut out).is_err() {
            return false;
        }
        // `Output`'s equality is constant-time.
        Output::new(&out).is_ok_and(|got| got == expected)
    }

    /// A PHC string for `password`: argon2id, default parameters, a random
    /// 16-byte salt; what `Argon2::default().hash_password` would make.
    fn hash(&mut self, password: &[u8]) -> Result<String, FerryError> {
        let failed =
            |e: &dyn std::fmt::Display| FerryError::internal(format!("cannot hash password: {e}"));
        let mut salt_bytes = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| failed(&e))?;
        let params = Params::default();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.run(&argon, &params, password, &salt_bytes, &mut out)
            .map_err(|e| failed(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
        };
        Ok(phc.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_are_those_of_the_argon2_crate_both_ways() {
        let mut hasher = Hasher::default();
        // A hash stored by earlier releases (the crate's own hasher).
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let stored = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify(&stored, b"correct horse"));
        assert!(!hasher.verify(&stored, b"correct horsf"));
        // A hash made here verifies with the crate's verifier.
        let made = hasher.hash(b"battery staple").unwrap();
        assert!(
            made.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{made}"
        );
        let parsed = PasswordHash::new(&made).unwrap();
        assert!(Argon2::default()
            .verify_password(b"battery staple", &parsed)
            .is_ok());
        assert!(hasher.verify(&made, b"battery staple"));
        // Other parameters, and nonsense, in the same working area.
        let small = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(hasher.verify(&small, b"pw"));
        assert!(!hasher.verify(&small, b"pX"));
        assert!(!hasher.verify("not a hash", b"pw"));
        assert!(!hasher.verify(
            "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            b"pw"
        ));
    }

    #[tokio::test]
    async fn the_queue_answers_checks_and_hashes() {
        let made = tokio::task::spawn_blocking(|| hash(&Secret::new("correct horse")))
            .await
            .unwrap()
            .unwrap();
        assert!(verify(Some(made.clone()), Secret::new("correct horse"))
            .await
            .unwrap());
        assert!(!verify(Some(made), Secret::new("wrong")).await.unwrap());
        assert!(!verify(None, Secret::new("correct horse")).await.unwrap());
    }

    #[test]
    fn verify_any_finds_a_match_among_several() {
        let a = hash(&Secret::new("first password")).unwrap();
        let b = hash(&Secret::new("second password")).unwrap();
        let both = vec![a, "not a hash".to_owned(), b];
        assert!(verify_any(both.clone(), &Secret::new("second password")).unwrap());
        assert!(verify_any(both.clone(), &Secret::new("first password")).unwrap());
        assert!(!verify_any(both, &Secret::new("third password")).unwrap());
        assert!(!verify_any(Vec::new(), &Secret::new("first password")).unwrap());
    }
}
