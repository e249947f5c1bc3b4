//! Edge connections: sessions, open handles, and every file operation.
//!
//! One task reads requests from an edge connection in order and hands each
//! to its session's sequencer. Each open file or directory is an actor:
//! requests naming its handle are queued to it in arrival order, so
//! pipelined writes land in order and a close comes after the writes before
//! it, while different handles (and sessions) proceed in parallel.
//!
//! A request sees the effect of every earlier request of its session, as
//! with OpenSSH's sftp-server: the sequencer lets handle operations run
//! side by side, but a path operation (open, stat, setstat, rename, …)
//! waits until every earlier request has been answered, and the requests
//! after it wait for it. So an OPEN(CREAT) and an LSTAT of the same path
//! sent together are answered in that order, and a close is committed
//! before a rename sent right after it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_core::{
    Command, Direction, ErrorKind, FerryError, Protocol, TransferRecord, TransferStatus,
    VirtualPath,
};
use ferry_proto::message::{
    Credential, DirEntry, FileStat, Frame, FsOp, HandleId, HashAlgorithm, OpenMode, Request,
    Response, SessionId, SetAttrs,
};
use ferry_proto::server::ServerFramed;
use futures::future::Either;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::access::Access;
use crate::repository::{apply_attrs, file_stat, io_error, Home, Listing, Place, FILE_MODE_MASK};
use crate::rows::{
    forget_intent, log_transfer, note_transfer, remove_intent, row_written, upload_row,
    write_intent, write_row,
};
use crate::session_caps::SessionSlot;
use crate::transfer::{
    cache_sha256, cached_sha256, content_stamp, file_digest, now_millis, HashTracker,
};
use crate::{uploads, ServerCtx};

/// An upload idle this long may be taken over by a resume of the same
/// account (its client is most likely gone; a live one writes).
pub const TAKEOVER_IDLE_MS: i64 = 15_000;
/// How long an open waits for a partial file another session is letting go.
const TAKEOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who is writing each partial file on this server.
#[derive(Default)]
pub(crate) struct OpenUploads(Mutex<HashMap<PathBuf, UploadHolder>>);

/// The session writing one partial file.
struct UploadHolder {
    account: String,
    /// When it last wrote (or opened), unix milliseconds.
    active_at: Arc<AtomicI64>,
    /// Tells its actor to let the upload go (kept partial, `interrupted` row).
    release: Arc<Notify>,
}

impl std::fmt::Debug for OpenUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenUploads({} open)", locked(&self.0).len())
    }
}

impl OpenUploads {
    fn hold(
        &self,
        partial: PathBuf,
        account: &str,
        active_at: Arc<AtomicI64>,
        release: Arc<Notify>,
    ) {
        locked(&self.0).insert(
            partial,
            UploadHolder {
                account: account.to_owned(),
                active_at,
                release,
            },
        );
    }

    fn let_go(&self, partial: &Path, release: &Arc<Notify>) {
        let mut held = locked(&self.0);
        if held
            .get(partial)
            .is_some_and(|h| Arc::ptr_eq(&h.release, release))
        {
            held.remove(partial);
        }
    }

    /// Asks the holder of `partial` to let go if it belongs to `account` and
    /// has been idle for [`TAKEOVER_IDLE_MS`]; otherwise says why not.
    fn take_over(&self, partial: &Path, account: &str) -> Result<(), FerryError> {
        let held = locked(&self.0);
        let Some(holder) = held.get(partial) else {
            // Held by a session that is ending, or on another server.
            return Ok(());
        };
        let idle_ms = now_millis() - holder.active_at.load(Ordering::Relaxed);
        if holder.account == account && idle_ms >= TAKEOVER_IDLE_MS {
            tracing::info!(account, idle_ms, "a resume takes over an idle upload");
            holder.release.notify_one();
            return Ok(());
        }
        Err(FerryError::new(
            ErrorKind::Busy,
            format!(
                "another live session is uploading this file (last write {} s ago); \
                 a resume by the same account takes over after {} s without writes",
                idle_ms / 1000,
                TAKEOVER_IDLE_MS / 1000
            ),
        ))
    }
}

/// Most handles one session may hold open.
pub const MAX_HANDLES_PER_SESSION: usize = 256;
/// Largest read served at once.
pub const MAX_READ_LEN: u32 = 256 * 1024;
/// Directory entries per batch.
const DIR_BATCH: usize = 128;

type Reply = mpsc::UnboundedSender<Frame<Response>>;
/// Held while a request runs: shared by handle operations, exclusive for
/// path operations (see the module documentation).
type Turn = Either<OwnedRwLockReadGuard<()>, OwnedRwLockWriteGuard<()>>;
/// A request for a handle's actor, with the turn it holds until answered.
type HandleMsg = (u64, FsOp, Turn);
type HandleTx = mpsc::UnboundedSender<HandleMsg>;
/// A request for the session's sequencer; `None` is the logout.
type SeqMsg = (u64, Option<FsOp>);

struct Session {
    account: String,
    home: Home,
    /// What the account may do where.
    access: Access,
    client_addr: String,
    protocol: Protocol,
    /// Logged in with a password (only such a session may open a browser
    /// session: a token must not turn into a longer-lived cookie).
    by_password: bool,
    /// Logged in with a password that must be changed (or a browser
    /// session opened by such a login): only the change, a browser session
    /// and the logout are served until the change clears it.
    must_change_password: AtomicBool,
    handles: Mutex<HashMap<HandleId, HandleTx>>,
    /// The open files behind file handles (a `copy-data` reads one while
    /// another's actor writes).
    files: Mutex<HashMap<HandleId, Arc<File>>>,
    /// Uploads this session committed under a temporary name
    /// (`NAME.filepart`, rsync's `.NAME.XXXXXX`), by path, with their
    /// transfer ids: renaming one moves its row and queues its routes.
    renamable: Mutex<HashMap<String, String>>,
    /// Uploads this session has open, by virtual path: the session sees
    /// them under their final names before they are committed.
    uploads: Mutex<HashMap<String, (HandleId, Arc<File>)>>,
    next_handle: AtomicU64,
    /// The sequencer's queue (`None` is the logout); taken when the
    /// session ends.
    requests: Mutex<Option<mpsc::UnboundedSender<SeqMsg>>>,
    /// Its place in its account's session count, freed when it ends.
    _slot: SessionSlot,
    /// Its place in `ferry_sessions_open`.
    _open: crate::metrics::OpenSession,
}

impl Session {
    /// Ends the session: dropping every handle's queue makes its actor finish,
    /// recording unfinished transfers as interrupted. (Actors hold the
    /// session, so the queues must be dropped here, not left to `Drop`.)
    fn end(&self) {
        locked(&self.requests).take();
        locked(&self.handles).clear();
        locked(&self.files).clear();
    }

    /// Queues a request (`None`: the logout) to the session's sequencer.
    fn submit(&self, id: u64, op: Option<FsOp>) -> bool {
        let logout = op.is_none();
        let mut requests = locked(&self.requests);
        let sent = requests.as_ref().is_some_and(|q| q.send((id, op)).is_ok());
        if logout {
            // Nothing comes after the logout.
            requests.take();
        }
        sent
    }
}

/// Which handle a request names, if it is a handle operation.
fn handle_of(op: &FsOp) -> Option<HandleId> {
    match op {
        FsOp::ReadDir { handle }
        | FsOp::Close { handle }
        | FsOp::Abort { handle }
        | FsOp::Read { handle, .. }
        | FsOp::Write { handle, .. }
        | FsOp::Fstat { handle }
        | FsOp::Fsetstat { handle, .. }
        | FsOp::Fsync { handle }
        | FsOp::CopyData { to: handle, .. } => Some(*handle),
        _ => None,
    }
}

/// Runs a session's requests in arrival order: handle operations side by
/// side, each path operation alone, after everything before it.
async fn sequence(
    ctx: Arc<ServerCtx>,
    s: Arc<Session>,
    mut requests: mpsc::UnboundedReceiver<SeqMsg>,
    reply: Reply,
) {
    let order = Arc::new(RwLock::new(()));
    while let Some((id, op)) = requests.recv().await {
        let Some(op) = op else {
            // The logout waits until everything before it was answered.
            let _all = order.clone().write_owned().await;
            s.end();
            send(&reply, id, Ok(Response::Ok));
            return;
        };
        let turn = if handle_of(&op).is_some() {
            Either::Left(order.clone().read_owned().await)
        } else {
            Either::Right(order.clone().write_owned().await)
        };
        dispatch(&ctx, s.clone(), id, op, turn, &reply);
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn send(reply: &Reply, id: u64, result: Result<Response, FerryError>) {
    let body = result.unwrap_or_else(Response::Error);
    let _ = reply.send(Frame { id, body });
}

/// Runs blocking work (filesystem, SQLite, argon2) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FerryError> + Send + 'static,
) -> Result<T, FerryError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(FerryError::internal(format!("worker failed: {e}"))))
}

/// Serves one edge connection until it closes. Sessions still open then end
/// as if logged out: open uploads keep their partial data.
pub async fn serve_connection<S>(framed: ServerFramed<S>, ctx: Arc<ServerCtx>, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = framed.split();
    let (reply, mut replies) = mpsc::unbounded_channel::<Frame<Response>>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = replies.recv().await {
            if sink.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = replies.try_recv() {
                if sink.feed(frame).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let sessions: Arc<Mutex<HashMap<SessionId, Arc<Session>>>> = Arc::default();
    let next_session = Arc::new(AtomicU64::new(1));
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // The end of a shutdown's drain: sessions still open end as if
            // their connection broke.
            _ = ctx.drain.cut() => {
                tracing::info!(%peer, "edge connection closed (shutting down)");
                break;
            }
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad frame from edge; closing connection");
                break;
            }
        };
        let id = frame.id;
        match frame.body {
            Request::KeyAcceptable {
                user,
                public_key,
                client_addr,
            } => {
                let (ctx, reply) = (ctx.clone(), reply.clone());
                tokio::spawn(async move {
                    let ok = blocking(move || {
                        Ok(key_acceptable(&ctx, &user, &public_key, &client_addr))
                    })
                    .await
                    .unwrap_or(false);
                    send(&reply, id, Ok(Response::KeyAcceptable(ok)));
                });
            }
            Request::Login {
                user,
                credential,
                client_addr,
                protocol,
            } => {
                let (ctx, reply) = (ctx.clone(), reply.clone());
                let (sessions, next_session) = (sessions.clone(), next_session.clone());
                tokio::spawn(async move {
                    let result = login(&ctx, user, credential, client_addr, protocol)
                        .await
                        .map(|(s, requests)| {
                            let account = s.account.clone();
                            let must_change = s.must_change_password.load(Ordering::Relaxed);
                            let sid = next_session.fetch_add(1, Ordering::Relaxed);
                            let s = Arc::new(s);
                            tokio::spawn(sequence(ctx.clone(), s.clone(), requests, reply.clone()));
                            locked(&sessions).insert(sid, s);
                            if must_change {
                                Response::LoggedInMustChangePassword {
                                    session: sid,
                                    account,
                                }
                            } else {
                                Response::LoggedIn {
                                    session: sid,
                                    account,
                                }
                            }
                        });
                    send(&reply, id, result);
                });
            }
            Request::Logout { session } => {
                // After every request the session sent before it: a CLOSE
                // the client sent just before it vanished still commits.
                let found = locked(&sessions).remove(&session);
                match found {
                    Some(s) if s.submit(id, None) => {}
                    Some(s) => {
                        s.end();
                        send(&reply, id, Ok(Response::Ok));
                    }
                    None => send(&reply, id, Ok(Response::Ok)),
                }
            }
            Request::Fs { session, op } => {
                let found = locked(&sessions).get(&session).cloned();
                match found {
                    Some(s) if s.must_change_password.load(Ordering::Relaxed) => send(
                        &reply,
                        id,
                        Err(FerryError::new(
                            ErrorKind::PermissionDenied,
                            ferry_core::PASSWORD_CHANGE_REQUIRED,
                        )),
                    ),
                    Some(s) if s.submit(id, Some(op)) => {}
                    _ => send(&reply, id, Err(FerryError::invalid("no such session"))),
                }
            }
            // A server that does not serve (a stale follower) says so with
            // an error, and the edge skips it; one that serves but has no
            // quorum answers false, and takes read-only sessions.
            Request::Writable => send(
                &reply,
                id,
                match ctx.not_serving_reason() {
                    Some(why) => Err(FerryError::new(ErrorKind::Unavailable, why)),
                    None => Ok(Response::Writable(ctx.check_writable().is_ok())),
                },
            ),
            Request::Cluster(_) => send(
                &reply,
                id,
                Err(FerryError::invalid(
                    "cluster requests are taken only from servers",
                )),
            ),
            Request::OpenWebSession {
                session,
                lifetime_secs,
            } => {
                let found = locked(&sessions).get(&session).cloned();
                let (ctx, reply) = (ctx.clone(), reply.clone());
                tokio::spawn(async move {
                    let result = match found {
                        Some(s) => open_web_session(&ctx, &s, lifetime_secs).await,
                        None => Err(FerryError::invalid("no such session")),
                    };
                    send(&reply, id, result);
                });
            }
            Request::EndWebSession { token } => {
                let (ctx, reply) = (ctx.clone(), reply.clone());
                tokio::spawn(async move {
                    let result = blocking(move || end_web_session(&ctx, &token)).await;
                    send(&reply, id, result);
                });
            }
            Request::ClientMisbehaved { client_addr, what } => {
                let client_addr = ferry_core::limits::loggable(&client_addr);
                let what = ferry_core::limits::loggable(&what);
                tracing::info!(%client_addr, %what, "client broke the protocol (edge report)");
                send(&reply, id, Ok(Response::Ok));
                if ctx.defender.enabled() {
                    let ctx = ctx.clone();
                    tokio::spawn(blocking(move || {
                        crate::defender::protocol_error(&ctx, &client_addr, now_millis());
                        Ok(())
                    }));
                }
            }
            Request::ChangePassword {
                session,
                current,
                new,
                keep_web_session,
            } => {
                let found = locked(&sessions).get(&session).cloned();
                let (ctx, reply) = (ctx.clone(), reply.clone());
                tokio::spawn(async move {
                    let result = match found {
                        Some(s) => change_password(&ctx, &s, current, new, keep_web_session).await,
                        None => Err(FerryError::invalid("no such session")),
                    };
                    send(&reply, id, result);
                });
            }
        }
    }
    for (_, s) in locked(&sessions).drain() {
        s.end();
    }
    drop(reply);
    let _ = writer.await;
    tracing::debug!(%peer, "edge connection closed");
}

/// Bounds of a browser session's lifetime, whatever an edge asks for.
const WEB_SESSION_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=7 * 86_400;

/// Issues a browser-session credential for the account of `s`, a password
/// session on HTTPS: a token row (replicated like any command) that every
/// server checks, so any edge takes the cookie. Expired ones are swept out
/// by the store when the next one is added.
async fn open_web_session(
    ctx: &Arc<ServerCtx>,
    s: &Session,
    lifetime_secs: u64,
) -> Result<Response, FerryError> {
    if !s.by_password || s.protocol != Protocol::Https {
        return Err(FerryError::invalid(
            "a browser session is opened only by an HTTPS password login",
        ));
    }
    let lifetime_secs = lifetime_secs.clamp(
        *WEB_SESSION_LIFETIME_SECS.start(),
        *WEB_SESSION_LIFETIME_SECS.end(),
    );
    let (token, id, sha256) = crate::auth::new_web_session_token();
    let created_at = now_millis();
    let lifetime_ms = i64::try_from(lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let record = ferry_core::AccountToken {
        account: s.account.clone(),
        id,
        sha256,
        label: crate::auth::WEB_SESSION_LABEL.to_owned(),
        created_at,
        expires_at: Some(created_at.saturating_add(lifetime_ms)),
    };
    let c = ctx.clone();
    blocking(move || c.apply(&ferry_core::Command::AddAccountToken(record))).await?;
    tracing::info!(account = %s.account, client_addr = %s.client_addr, "browser session opened");
    Ok(Response::WebSession {
        token,
        lifetime_secs,
    })
}

/// Revokes a browser-session credential presented with its secret (an
/// unknown, expired or malformed one is already gone: `Ok`). API tokens
/// are not ended this way. Blocks.
fn end_web_session(ctx: &ServerCtx, token: &ferry_core::Secret) -> Result<Response, FerryError> {
    let text = token.expose();
    let Some(id) = text
        .starts_with(crate::auth::WEB_SESSION_PREFIX)
        .then(|| crate::auth::token_id(text))
        .flatten()
    else {
        return Ok(Response::Ok);
    };
    let Some(stored) = ctx.store.account_token(&id).map_err(FerryError::from)? else {
        return Ok(Response::Ok);
    };
    if stored.sha256 != crate::auth::token_digest(text) {
        return Ok(Response::Ok);
    }
    match ctx.apply(&ferry_core::Command::RemoveAccountToken {
        account: stored.account.clone(),
        id,
    }) {
        Ok(_) => {
            tracing::info!(account = %stored.account, "browser session ended");
            Ok(Response::Ok)
        }
        Err(e) if e.kind == ErrorKind::NotFound => Ok(Response::Ok),
        Err(e) => Err(e),
    }
}

/// The account of `s` changes its own password: `current` is checked as
/// a password login is (the same throttle, per address and account, so
/// the change form is no way around it), `new` passes the password policy
/// ([`crate::password::new_account_password`]), and the change is one
/// `UpdateAccount` through the cluster. Then the account's browser
/// sessions end, but for the one the request came with (`keep`): a
/// browser left logged in elsewhere, perhaps by whoever knew the old
/// password, must log in again. Sessions logged in with the old password
/// (a client's HTTP Basic on an edge, an SSH session) run on until they
/// end; new logins need the new password at once.
async fn change_password(
    ctx: &Arc<ServerCtx>,
    s: &Session,
    current: ferry_core::Secret,
    new: ferry_core::Secret,
    keep: Option<ferry_core::Secret>,
) -> Result<Response, FerryError> {
    ctx.check_writable()?;
    // Past the throttle's limit the session is logged in all the same:
    // say so rather than answer "authentication failed".
    let attempt = match ctx.login_throttle.begin(&s.client_addr, &s.account).await {
        Ok(attempt) => attempt,
        Err(e) if e.kind == ErrorKind::AuthFailed => {
            return Err(FerryError::new(
                ErrorKind::PermissionDenied,
                "too many failed passwords for this account or address; try again in a minute",
            ))
        }
        Err(e) => return Err(e),
    };
    let checked = crate::auth::check_password(ctx.store.clone(), &s.account, current).await;
    if let Err(e) = checked {
        let wrong = e.kind == ErrorKind::AuthFailed;
        attempt.end(wrong);
        if !wrong {
            return Err(e);
        }
        tracing::warn!(
            account = %s.account, client_addr = %s.client_addr,
            "password change refused: wrong current password"
        );
        return Err(FerryError::new(
            ErrorKind::PermissionDenied,
            "the current password is wrong",
        ));
    }
    attempt.end(false);
    let (c, account) = (ctx.clone(), s.account.clone());
    let keep_id = keep.and_then(|t| crate::auth::token_id(t.expose()));
    let ended = blocking(move || {
        let hash = crate::password::new_account_password(&c.store, &account, &new)?;
        c.apply(&ferry_core::Command::UpdateAccount(
            ferry_core::AccountUpdate {
                password_hash: Some(Some(hash)),
                must_change_password: Some(false),
                ..ferry_core::AccountUpdate::of(&account)
            },
        ))?;
        let mut ended = 0usize;
        for web in c
            .store
            .account_web_sessions(&account)
            .map_err(FerryError::from)?
        {
            if keep_id.as_deref() == Some(web.id.as_str()) {
                continue;
            }
            match c.apply(&ferry_core::Command::RemoveAccountToken {
                account: account.clone(),
                id: web.id,
            }) {
                Ok(_) => ended += 1,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    })
    .await?;
    s.must_change_password.store(false, Ordering::Relaxed);
    tracing::info!(
        account = %s.account, client_addr = %s.client_addr, browser_sessions_ended = ended,
        "password changed by the account"
    );
    Ok(Response::Ok)
}

/// Whether `public_key` would log `user` in from `client_addr` (the SSH
/// query before a signature): no for a client the login policy refuses. A
/// query for a name that is no account is a probe the defender scores;
/// one for an account is not (a client with several keys offers each).
fn key_acceptable(ctx: &ServerCtx, user: &str, public_key: &str, client_addr: &str) -> bool {
    let now = now_millis();
    if crate::auth::check_policy(&ctx.store, user, client_addr, now).is_err() {
        return false;
    }
    if crate::auth::check_key(&ctx.store, user, public_key).is_ok() {
        return true;
    }
    if ctx.defender.enabled() && matches!(ctx.store.account(user), Ok(None)) {
        crate::defender::failed_login(ctx, client_addr, true, now);
    }
    false
}

/// [`login_checked`], counted in the metrics by method and outcome.
async fn login(
    ctx: &Arc<ServerCtx>,
    user: String,
    credential: Credential,
    client_addr: String,
    protocol: Protocol,
) -> Result<(Session, mpsc::UnboundedReceiver<SeqMsg>), FerryError> {
    let method = match credential {
        Credential::Password(_) => "password",
        Credential::VerifiedPublicKey(_) => "publickey",
        Credential::Token(_) => "token",
    };
    let result = login_checked(ctx, user, credential, client_addr, protocol).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => match e.kind {
            ErrorKind::AuthFailed => "failed",
            ErrorKind::Busy => "busy",
            ErrorKind::Unavailable => "unavailable",
            _ => "error",
        },
    };
    ctx.metrics.login(method, outcome);
    result
}

async fn login_checked(
    ctx: &Arc<ServerCtx>,
    user: String,
    credential: Credential,
    client_addr: String,
    protocol: Protocol,
) -> Result<(Session, mpsc::UnboundedReceiver<SeqMsg>), FerryError> {
    // A server that is shutting down, or that may have missed a change
    // made elsewhere (a disabled account, a removed key), takes no login:
    // the edge tries another.
    ctx.drain.check_open()?;
    ctx.check_current().await?;
    let store = ctx.store.clone();
    let method = match credential {
        Credential::Password(_) => "password",
        Credential::VerifiedPublicKey(_) => "publickey",
        Credential::Token(_) => "token",
    };
    let name = user.clone();
    // A browser session (`fw_`) was opened by a password login: it is
    // held to that password's must-change flag; an API token is not.
    let by_browser_session = matches!(
        &credential,
        Credential::Token(t) if t.expose().starts_with(crate::auth::WEB_SESSION_PREFIX)
    );
    let attempt = match &credential {
        Credential::Password(_) => Some(ctx.login_throttle.begin(&client_addr, &user).await?),
        _ => None,
    };
    let (policy_store, policy_user, policy_addr) =
        (store.clone(), user.clone(), client_addr.clone());
    let policy = blocking(move || {
        crate::auth::check_policy(&policy_store, &policy_user, &policy_addr, now_millis())
    })
    .await;
    let checked = match (policy, credential) {
        (Err(e), _) => Err(e),
        (Ok(()), Credential::Password(pw)) => crate::auth::check_password(store, &name, pw).await,
        (Ok(()), Credential::VerifiedPublicKey(key)) => {
            blocking(move || crate::auth::check_key(&store, &name, &key)).await
        }
        (Ok(()), Credential::Token(token)) => {
            blocking(move || crate::auth::check_token(&store, &name, &token, now_millis())).await
        }
    };
    if let Err(e) = &checked {
        if e.kind == ErrorKind::AuthFailed {
            tracing::warn!(
                user = %ferry_core::limits::loggable(&user), %client_addr, method, %protocol,
                "login failed"
            );
            if ctx.defender.enabled() {
                let (c, u, a) = (ctx.clone(), user.clone(), client_addr.clone());
                blocking(move || {
                    let unknown = matches!(c.store.account(&u), Ok(None));
                    crate::defender::failed_login(&c, &a, unknown, now_millis());
                    Ok(())
                })
                .await?;
            }
        }
    }
    if let Some(attempt) = attempt {
        attempt.end(
            checked
                .as_ref()
                .is_err_and(|e| e.kind == ErrorKind::AuthFailed),
        );
    }
    let account = checked?;
    // The account's rules and limits, read once: the must-change flag, the
    // last login and the session cap come from them.
    let (store, name, addr) = (ctx.store.clone(), account.name.clone(), client_addr.clone());
    let (access, policy) = blocking(move || {
        let access = Access::load(&store, &name, &addr)?;
        let policy = access.policy(&store)?;
        Ok((access, policy))
    })
    .await?;
    let must_change = (method == "password" || by_browser_session) && policy.must_change_password;
    if must_change && protocol != Protocol::Https {
        // SSH has no way to make the client change it: the password is
        // refused as a wrong one would be, and the log says why. Keys are
        // not the password, and still log in.
        tracing::warn!(
            user = %ferry_core::limits::loggable(&user), %client_addr, method, %protocol,
            "login refused: the password must be changed first, over HTTPS"
        );
        return Err(FerryError::auth_failed());
    }
    record_login(ctx, &account.name, policy.last_login_at);
    let (store, repository) = (ctx.store.clone(), ctx.repository.clone());
    let (name, home_rel) = (account.name.clone(), account.home.clone());
    let home = blocking(move || Home::of_account(&store, &repository, &name, &home_rel)).await?;
    let slot = match ctx.sessions.admit(&account.name, policy.max_sessions) {
        Ok(slot) => slot,
        Err(e) => {
            tracing::warn!(account = %account.name, %client_addr, method, %protocol,
                error = %e.message, "login refused: too many sessions");
            return Err(e);
        }
    };
    tracing::info!(account = %account.name, %client_addr, method, %protocol, "login");
    let (requests, queue) = mpsc::unbounded_channel();
    let session = Session {
        account: account.name,
        home,
        access,
        client_addr,
        protocol,
        by_password: method == "password",
        must_change_password: AtomicBool::new(must_change),
        handles: Mutex::default(),
        files: Mutex::default(),
        renamable: Mutex::default(),
        uploads: Mutex::default(),
        next_handle: AtomicU64::new(1),
        requests: Mutex::new(Some(requests)),
        _slot: slot,
        _open: ctx.metrics.session_started(protocol),
    };
    Ok((session, queue))
}

/// Records the login of `account` (its last login, for `ferry account
/// show` and the idle limit) when the recorded one, `last`, is an hour old
/// or more, in the background: a server that cannot write now (read-only,
/// a standby's history) skips it, and the login does not wait.
fn record_login(ctx: &Arc<ServerCtx>, account: &str, last: Option<ferry_core::UnixMillis>) {
    let now = now_millis();
    if last.is_some_and(|t| now.saturating_sub(t) < crate::auth::LOGIN_RECORD_INTERVAL_MS) {
        return;
    }
    let (c, name) = (ctx.clone(), account.to_owned());
    tokio::spawn(async move {
        let result = blocking(move || {
            c.check_writable()?;
            c.apply(&ferry_core::Command::RecordLogin { name, at: now })?;
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "last login not recorded");
        }
    });
}

pub(crate) fn parse(path: &str) -> Result<VirtualPath, FerryError> {
    VirtualPath::parse_absolute(path).map_err(FerryError::from)
}

/// Queues a request to a handle's actor; `false` if the handle is unknown.
fn to_handle(s: &Session, handle: HandleId, id: u64, op: FsOp, turn: Turn, reply: &Reply) -> bool {
    let tx = {
        let mut handles = locked(&s.handles);
        if matches!(op, FsOp::Close { .. } | FsOp::Abort { .. }) {
            locked(&s.files).remove(&handle);
            handles.remove(&handle)
        } else {
            handles.get(&handle).cloned()
        }
    };
    match tx {
        Some(tx) => {
            if let Err(mpsc::error::SendError((id, _, _))) = tx.send((id, op, turn)) {
                send(reply, id, Err(FerryError::internal("handle is closing")));
            }
            true
        }
        None => false,
    }
}

fn dispatch(ctx: &Arc<ServerCtx>, s: Arc<Session>, id: u64, op: FsOp, turn: Turn, reply: &Reply) {
    if let Some(handle) = handle_of(&op) {
        if !to_handle(&s, handle, id, op, turn, reply) {
            send(reply, id, Err(FerryError::invalid("invalid handle")));
        }
        return;
    }
    // Attributes set by path on a file this session is uploading go to the
    // open upload, which becomes that file on close.
    if let FsOp::SetStat { path, attrs } = &op {
        let open = parse(path)
            .ok()
            .and_then(|v| locked(&s.uploads).get(&v.to_string()).map(|(h, _)| *h));
        if let Some(handle) = open {
            let op = FsOp::Fsetstat {
                handle,
                attrs: *attrs,
            };
            if to_handle(&s, handle, id, op, turn, reply) {
                return;
            }
            return send(reply, id, Err(FerryError::internal("handle is closing")));
        }
    }
    // A server that cannot change shared state (no quorum) still serves
    // listings and downloads, and refuses what would write.
    let writes = match &op {
        FsOp::Open { mode, .. } => mode.writes(),
        FsOp::SetStat { .. }
        | FsOp::Remove { .. }
        | FsOp::Mkdir { .. }
        | FsOp::Rmdir { .. }
        | FsOp::Rename { .. }
        | FsOp::Hardlink { .. }
        | FsOp::UploadCreate { .. }
        | FsOp::UploadOpen { .. }
        | FsOp::UploadDelete { .. } => true,
        _ => false,
    };
    if writes {
        if let Err(e) = ctx.check_writable() {
            send(reply, id, Err(e));
            return;
        }
    }
    // A shutdown lets the transfers in flight finish and starts no new one.
    if matches!(
        op,
        FsOp::Open { .. } | FsOp::UploadCreate { .. } | FsOp::UploadOpen { .. }
    ) {
        if let Err(e) = ctx.drain.check_open() {
            send(reply, id, Err(e));
            return;
        }
    }
    let (ctx, reply) = (ctx.clone(), reply.clone());
    tokio::spawn(async move {
        let _turn = turn;
        if !s.access.is_open() {
            let (c, session, checked) = (ctx.clone(), s.clone(), op.clone());
            let allowed = blocking(move || {
                session
                    .access
                    .authorize(&c.store, &session.home, &checked, |path| {
                        locked(&session.renamable).contains_key(path)
                    })
            })
            .await;
            if let Err(e) = allowed {
                return send(&reply, id, Err(e));
            }
        }
        let result = match op {
            FsOp::Open {
                path,
                mode,
                attrs,
                size,
            } => open_file(&ctx, &s, path, mode, attrs, size, &reply).await,
            FsOp::OpenDir { path } => open_dir(&s, path, &reply).await,
            FsOp::UploadOpen {
                id,
                offset,
                checksum,
            } => open_chunk(&ctx, &s, id, offset, checksum, &reply).await,
            op @ (FsOp::UploadCreate { .. }
            | FsOp::UploadStatus { .. }
            | FsOp::UploadDelete { .. }) => upload_op(&ctx, s, op).await,
            op => path_op(&ctx, s, op).await,
        };
        send(&reply, id, result);
    });
}

async fn path_op(ctx: &Arc<ServerCtx>, s: Arc<Session>, op: FsOp) -> Result<Response, FerryError> {
    let ctx = ctx.clone();
    // What the home holds changes: the next quota check counts again.
    let changes_usage = matches!(
        op,
        FsOp::Remove { .. } | FsOp::Rmdir { .. } | FsOp::Hardlink { .. }
    );
    let (c, account) = (ctx.clone(), s.account.clone());
    let result = blocking(move || {
        let home = &s.home;
        match op {
            FsOp::Stat { path } => home.stat(&parse(&path)?).map(Response::Stat),
            FsOp::SetStat { path, attrs } => home
                .set_attrs(&parse(&path)?, &attrs)
                .map(|()| Response::Ok),
            FsOp::Remove { path } => home.remove(&parse(&path)?).map(|()| Response::Ok),
            FsOp::Mkdir { path, attrs } => {
                home.mkdir(&parse(&path)?, &attrs).map(|()| Response::Ok)
            }
            FsOp::Rmdir { path } => home.rmdir(&parse(&path)?).map(|()| Response::Ok),
            FsOp::Rename {
                from,
                to,
                overwrite,
            } => {
                let (from, to) = (parse(&from)?, parse(&to)?);
                home.rename(&from, &to, overwrite)?;
                let uploaded = locked(&s.renamable).remove(&from.to_string());
                if let Some(id) = uploaded {
                    repoint_upload(&ctx, id, &to);
                }
                Ok(Response::Ok)
            }
            FsOp::Hardlink { from, to } => home
                .hard_link(&parse(&from)?, &parse(&to)?)
                .map(|()| Response::Ok),
            FsOp::RealPath { path } => Ok(Response::Path(parse(&path)?.to_string())),
            FsOp::ReadLink { path } => home.read_link(&parse(&path)?).map(Response::Path),
            FsOp::Statvfs { path } => home.statvfs(&parse(&path)?).map(Response::FsStats),
            FsOp::Hash { path, algorithm } => hash_file(home, &parse(&path)?, algorithm),
            _ => Err(FerryError::new(
                ErrorKind::Unsupported,
                "unsupported operation",
            )),
        }
    })
    .await;
    if changes_usage {
        c.usage.forget(&account);
    }
    result
}

/// The digest of a regular file in the home (`sha256sum` and friends over
/// SSH exec). A read that moves no file data to the client: no transfer row.
fn hash_file(
    home: &Home,
    v: &VirtualPath,
    algorithm: HashAlgorithm,
) -> Result<Response, FerryError> {
    let (file, _) = home.read_file(v)?;
    file_digest(&file, algorithm)
        .map(Response::Hash)
        .map_err(io_error)
}

fn register(s: &Session, tx: HandleTx) -> Result<HandleId, FerryError> {
    let mut handles = locked(&s.handles);
    if handles.len() >= MAX_HANDLES_PER_SESSION {
        return Err(FerryError::new(
            ErrorKind::Busy,
            format!("too many open handles (at most {MAX_HANDLES_PER_SESSION})"),
        ));
    }
    let h = s.next_handle.fetch_add(1, Ordering::Relaxed);
    handles.insert(h, tx);
    Ok(h)
}

async fn open_dir(s: &Arc<Session>, path: String, reply: &Reply) -> Result<Response, FerryError> {
    let session = s.clone();
    let (listing, open) = blocking(move || {
        let dir = parse(&path)?;
        let listing = session.home.listing(&dir)?;
        // The session's own uploads show under their final names.
        let open: HashMap<String, FileStat> = locked(&session.uploads)
            .iter()
            .filter_map(|(p, (_, file))| {
                let v = parse(p).ok()?;
                if v.parent() != dir {
                    return None;
                }
                let meta = file.metadata().ok()?;
                Some((v.file_name()?.to_owned(), file_stat(&meta)))
            })
            .collect();
        Ok((listing, open))
    })
    .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = register(s, tx)?;
    tokio::spawn(dir_actor(listing, open, rx, reply.clone()));
    Ok(Response::Handle(handle))
}

/// Answers READDIR a page at a time from the open directory; the session's
/// open uploads replace the entries of their names, and those not on disk
/// yet come last.
async fn dir_actor(
    listing: Listing,
    mut open: HashMap<String, FileStat>,
    mut rx: mpsc::UnboundedReceiver<HandleMsg>,
    reply: Reply,
) {
    let mut listing = Some(listing);
    while let Some((id, op, _turn)) = rx.recv().await {
        let result = match op {
            FsOp::ReadDir { .. } => match listing.take() {
                Some(mut l) => {
                    let read = tokio::task::spawn_blocking(move || {
                        let page = l.next_page(DIR_BATCH);
                        (l, page)
                    })
                    .await;
                    match read {
                        Ok((l, Ok(mut page))) if !page.is_empty() => {
                            for entry in &mut page {
                                if let Some(stat) = open.remove(&entry.name) {
                                    entry.stat = stat;
                                }
                            }
                            listing = Some(l);
                            Ok(Response::Entries(page))
                        }
                        Ok((_, Ok(_))) if !open.is_empty() => Ok(Response::Entries(
                            open.drain()
                                .map(|(name, stat)| DirEntry { name, stat })
                                .collect(),
                        )),
                        Ok((_, Ok(_))) => Ok(Response::Eof),
                        Ok((_, Err(e))) => Err(e),
                        Err(e) => Err(FerryError::internal(format!("worker failed: {e}"))),
                    }
                }
                None => Ok(Response::Eof),
            },
            FsOp::Close { .. } => {
                send(&reply, id, Ok(Response::Ok));
                return;
            }
            _ => Err(FerryError::invalid("not a file handle")),
        };
        send(&reply, id, result);
    }
}

/// An open upload: data goes to the partial file, which replaces the final
/// name when the client closes the handle.
struct Upload {
    /// The final name, its directory held open; the partial file sits
    /// beside it.
    place: Place,
    append_at: Option<u64>,
    /// The size the file may reach under the account's quota (`None`: no
    /// byte quota); a write past it is refused.
    limit: Option<u64>,
    /// A write was refused for the quota: the file misses data, so its
    /// close commits nothing (the partial stays, as for a dropped upload).
    over_quota: bool,
}

struct OpenFile {
    file: Arc<File>,
    path: VirtualPath,
    upload: Option<Upload>,
    hash: HashTracker,
    /// For downloads: the file's content stamp when it was opened, so a hash
    /// computed while reading is cached only if the file did not change.
    stamp: Option<String>,
    bytes: u64,
    /// For downloads: the end of the part served from offset 0 without a gap.
    served_prefix: u64,
    /// For downloads: a read past that part's end met the end of the file,
    /// so the client has had every byte.
    read_to_end: bool,
    /// For downloads: the file's size when it was opened. A client that was
    /// served that many bytes from offset 0 has the whole file, even if it
    /// never read on to the end (it knew the size from a STAT).
    size_at_open: Option<u64>,
    transfer_id: String,
    started_at: i64,
    /// The account's bandwidth limit in this direction, if it has one.
    pacer: Option<crate::rate::Pacer>,
    /// Its place in `ferry_transfers_in_flight` while it is open.
    in_flight: Option<crate::metrics::InFlight>,
    /// Whether it is on a local filesystem ([`Home::is_local`]): small
    /// reads and writes of it are made without a blocking thread.
    local: bool,
}

#[allow(clippy::too_many_arguments)]
async fn open_file(
    ctx: &Arc<ServerCtx>,
    s: &Arc<Session>,
    path: String,
    mode: OpenMode,
    attrs: SetAttrs,
    size: Option<u64>,
    reply: &Reply,
) -> Result<Response, FerryError> {
    let writes = mode.writes();
    let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
    let mut asked = false;
    // A download of a local file whose account's limits are in hand opens
    // it on this task: an open and a stat take microseconds, less than the
    // trip to the blocking pool and back (as for the first writes of a
    // file, see `INLINE_WRITE_BYTES`).
    let local = parse(&path).is_ok_and(|v| s.home.is_local(&v));
    if !writes && local {
        if let Some(policy) = s.access.fresh_policy() {
            let open = open_with_policy(ctx, s, &path, mode, &attrs, size, &policy)?;
            return start_file(ctx, s, open, reply);
        }
    }
    let open = loop {
        let (c, session, wanted) = (ctx.clone(), s.clone(), path.clone());
        let opened = blocking(move || {
            let policy = session.access.policy(&c.store)?;
            open_with_policy(&c, &session, &wanted, mode, &attrs, size, &policy)
        })
        .await;
        match opened {
            // The partial is locked: wait for a session that is ending, and
            // take over from an idle one of the same account.
            Err(e) if e.kind == ErrorKind::Busy && tokio::time::Instant::now() < deadline => {
                if !asked {
                    let partial = parse(&path)
                        .and_then(|v| s.home.place(&v))
                        .map(|place| place.partial_key());
                    if let Ok(partial) = partial {
                        ctx.open_uploads.take_over(&partial, &s.account)?;
                    }
                    asked = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
            Ok(open) => break open,
        }
    };
    start_file(ctx, s, open, reply)
}

/// Opens a file for `session` under `policy`: an upload must fit the
/// account's quota before anything is created, and either direction keeps
/// to its rate. Blocks (a stat, an open; the quota may read the store).
fn open_with_policy(
    c: &ServerCtx,
    session: &Session,
    wanted: &str,
    mode: OpenMode,
    attrs: &SetAttrs,
    size: Option<u64>,
    policy: &ferry_core::AccountPolicy,
) -> Result<OpenFile, FerryError> {
    let writes = mode.writes();
    let limit = if writes {
        crate::quota::check_upload(
            c,
            policy,
            &session.account,
            &session.home,
            &parse(wanted)?,
            size,
        )?
    } else {
        None
    };
    let mut open = open_blocking(&session.home, wanted, mode, attrs)?;
    if let Some(up) = &mut open.upload {
        up.limit = limit;
    }
    let rate = if writes {
        policy.upload_rate
    } else {
        policy.download_rate
    };
    open.pacer = rate.map(|rate| c.rates.pacer(&session.account, writes, rate));
    open.in_flight = Some(c.metrics.transfer_started(writes));
    Ok(open)
}

/// Gives an opened file a handle and starts its actor.
fn start_file(
    ctx: &Arc<ServerCtx>,
    s: &Arc<Session>,
    open: OpenFile,
    reply: &Reply,
) -> Result<Response, FerryError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = register(s, tx)?;
    locked(&s.files).insert(handle, open.file.clone());
    let holder = open.upload.as_ref().map(|up| {
        locked(&s.uploads).insert(open.path.to_string(), (handle, open.file.clone()));
        let claim = Claim {
            partial: up.place.partial_key(),
            active_at: Arc::new(AtomicI64::new(now_millis())),
            release: Arc::new(Notify::new()),
        };
        ctx.open_uploads.hold(
            claim.partial.clone(),
            &s.account,
            claim.active_at.clone(),
            claim.release.clone(),
        );
        claim
    });
    let (ctx, s, reply) = (ctx.clone(), s.clone(), reply.clone());
    ctx.clone().drain.track(async move {
        file_actor(ctx.clone(), s.clone(), open, rx, reply, holder.as_ref()).await;
        // The actor may end on its own (handed over): the handle is gone,
        // and so must be every reference to its file (and its lock).
        locked(&s.handles).remove(&handle);
        locked(&s.files).remove(&handle);
        if let Some(claim) = holder {
            ctx.open_uploads.let_go(&claim.partial, &claim.release);
        }
    });
    Ok(Response::Handle(handle))
}

fn open_blocking(
    home: &Home,
    path: &str,
    mode: OpenMode,
    attrs: &SetAttrs,
) -> Result<OpenFile, FerryError> {
    let v = parse(path)?;
    if v.is_root() {
        return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
    }
    let new = |file: File, upload| OpenFile {
        file: Arc::new(file),
        path: v.clone(),
        upload,
        hash: HashTracker::default(),
        stamp: None,
        bytes: 0,
        served_prefix: 0,
        read_to_end: false,
        size_at_open: None,
        transfer_id: uuid::Uuid::now_v7().to_string(),
        started_at: now_millis(),
        pacer: None,
        in_flight: None,
        local: home.is_local(&v),
    };
    if !mode.write {
        let (file, meta) = home.read_file(&v)?;
        let mut open = new(file, None);
        open.size_at_open = Some(meta.len());
        let stamp = content_stamp(&meta);
        if let Some(sha) = cached_sha256(&open.file, &stamp) {
            open.hash = HashTracker::known(sha);
        }
        open.stamp = Some(stamp);
        return Ok(open);
    }

    // The final name is looked at (not followed: a symlink there is
    // replaced by the upload, never written through).
    let place = home.place(&v)?;
    let final_kind = place.kind()?;
    if final_kind == Some(rustix::fs::FileType::Directory) {
        return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
    }
    let had_partial = place.partial_stat().is_some();
    if mode.exclusive && (final_kind.is_some() || had_partial) {
        return Err(FerryError::new(ErrorKind::AlreadyExists, "file exists"));
    }
    if !mode.create && final_kind.is_none() && !had_partial {
        return Err(FerryError::not_found("no such file"));
    }
    let file = place
        .open_partial(attrs.permissions.unwrap_or(0o640))
        .map_err(io_error)?;
    // The lock keeps two sessions from writing the same upload; it is taken
    // before anything is truncated.
    if file.try_lock().is_err() {
        return Err(FerryError::new(
            ErrorKind::Busy,
            "an upload to this file is in progress in another session",
        ));
    }
    let prepared = (|| {
        if mode.truncate {
            file.set_len(0).map_err(io_error)?;
        } else if !had_partial
            && matches!(
                final_kind,
                Some(rustix::fs::FileType::RegularFile | rustix::fs::FileType::Symlink)
            )
        {
            // Modifying a committed file: start from its contents, still
            // replacing it atomically on close.
            let (mut src, meta) = home.read_file(&v)?;
            let mut dst = &file;
            std::io::copy(&mut src, &mut dst).map_err(io_error)?;
            file.set_permissions(fs::Permissions::from_mode(
                meta.permissions().mode() & FILE_MODE_MASK,
            ))
            .map_err(io_error)?;
        }
        if mode.append {
            Ok(Some(file.metadata().map_err(io_error)?.len()))
        } else {
            Ok(None)
        }
    })();
    let append_at = match prepared {
        Ok(at) => at,
        Err(e) => {
            // A refused open leaves nothing behind that it created.
            if !had_partial {
                let _ = place.remove_partial();
            }
            return Err(e);
        }
    };
    Ok(new(
        file,
        Some(Upload {
            place,
            append_at,
            limit: None,
            over_quota: false,
        }),
    ))
}

/// Most bytes of queued reads or writes one blocking call serves.
const BATCH_BYTES: usize = 8 << 20;

/// Writes that keep a file within its first this many bytes, and reads
/// within them, are made on the file's task rather than on the blocking
/// pool (see `write_batch`, `read_batch`) where the file is on a local
/// filesystem; bounded so that a slow disk never holds a runtime thread
/// for long.
const INLINE_WRITE_BYTES: u64 = 64 << 10;

/// From this many bytes in a write batch on, the running SHA-256 is fed on a
/// second blocking thread while the first one writes.
const PARALLEL_HASH_BYTES: usize = 512 << 10;

/// An upload's entry in [`OpenUploads`], as its actor sees it.
struct Claim {
    partial: PathBuf,
    active_at: Arc<AtomicI64>,
    release: Arc<Notify>,
}

async fn file_actor(
    ctx: Arc<ServerCtx>,
    s: Arc<Session>,
    mut f: OpenFile,
    mut rx: mpsc::UnboundedReceiver<HandleMsg>,
    reply: Reply,
    claim: Option<&Claim>,
) {
    // An op taken off the queue while gathering a batch, to serve next.
    let mut held: Option<HandleMsg> = None;
    loop {
        let (id, op, _turn) = match held.take() {
            Some(next) => next,
            None => {
                let released = async {
                    match claim {
                        Some(c) => c.release.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = released => {
                        tracing::info!(account = %s.account, path = %f.path, "upload handed over to a resuming session");
                        break;
                    }
                }
            }
        };
        if let Some(c) = claim {
            c.active_at.store(now_millis(), Ordering::Relaxed);
        }
        // Reads and writes that are already queued are served together:
        // one trip to the blocking pool instead of one per SFTP packet.
        if matches!(op, FsOp::Read { .. } | FsOp::Write { .. }) {
            let writing = matches!(op, FsOp::Write { .. });
            let mut bytes = op_bytes(&op);
            let mut batch = vec![(id, op)];
            // Answered requests give their turns back together, after the batch.
            let mut turns = vec![_turn];
            while bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok((id, op, turn))
                        if matches!(op, FsOp::Write { .. }) == writing
                            && matches!(op, FsOp::Read { .. } | FsOp::Write { .. }) =>
                    {
                        bytes += op_bytes(&op);
                        batch.push((id, op));
                        turns.push(turn);
                    }
                    Ok(other) => {
                        held = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if writing {
                write_batch(&mut f, batch, &reply).await;
            } else {
                read_batch(&mut f, batch, &reply).await;
            }
            drop(turns);
            continue;
        }
        let result = match op {
            FsOp::Fstat { .. } => {
                let file = f.file.clone();
                blocking(move || {
                    file.metadata()
                        .map(|m| Response::Stat(file_stat(&m)))
                        .map_err(io_error)
                })
                .await
            }
            FsOp::Fsetstat { attrs, .. } => {
                if attrs.size.is_some() {
                    f.hash.invalidate();
                }
                let file = f.file.clone();
                blocking(move || apply_attrs(&file, &attrs).map(|()| Response::Ok)).await
            }
            FsOp::Fsync { .. } => {
                let file = f.file.clone();
                blocking(move || file.sync_all().map(|()| Response::Ok).map_err(io_error)).await
            }
            FsOp::CopyData {
                from,
                from_offset,
                length,
                to_offset,
                ..
            } => {
                let src = locked(&s.files).get(&from).cloned();
                match src {
                    Some(src) => copy_data(&mut f, src, from_offset, length, to_offset).await,
                    None => Err(FerryError::invalid("invalid handle")),
                }
            }
            FsOp::Close { .. } => {
                if f.upload.as_ref().is_some_and(|up| up.over_quota) {
                    let _ = finish(&ctx, &s, f, false).await;
                    let e = FerryError::new(
                        ErrorKind::NoSpace,
                        "quota exceeded: the upload was not committed",
                    );
                    send(&reply, id, Err(e));
                    return;
                }
                let result = finish(&ctx, &s, f, true).await;
                ctx.usage.forget(&s.account);
                send(&reply, id, result);
                return;
            }
            FsOp::Abort { .. } => {
                let result = finish(&ctx, &s, f, false).await;
                send(&reply, id, result.map(|_| Response::Ok));
                return;
            }
            _ => Err(FerryError::invalid("not a directory handle")),
        };
        send(&reply, id, result);
    }
    // The queue closed without a close: the session or connection ended.
    let _ = finish(&ctx, &s, f, false).await;
}

/// Copies `length` bytes (0: to the end) of `src` from `from` into the
/// upload `f` at `to`, in 256 KiB steps on the blocking pool, feeding the
/// upload's SHA-256 as writes do.
async fn copy_data(
    f: &mut OpenFile,
    src: Arc<File>,
    from: u64,
    length: u64,
    to: u64,
) -> Result<Response, FerryError> {
    let Some(up) = &f.upload else {
        return Err(FerryError::denied("file is not open for writing"));
    };
    if let Some(limit) = up.limit {
        if length == 0 || to.saturating_add(length) > limit {
            return Err(FerryError::new(
                ErrorKind::NoSpace,
                format!("quota exceeded: the file may not grow past {limit} bytes"),
            ));
        }
    }
    let dst = f.file.clone();
    let mut hash = std::mem::take(&mut f.hash);
    let copied = blocking(move || {
        let mut buf = vec![0u8; MAX_READ_LEN as usize];
        let mut done = 0u64;
        while length == 0 || done < length {
            let want = if length == 0 {
                buf.len()
            } else {
                (length - done).min(buf.len() as u64) as usize
            };
            let into = buf.get_mut(..want).unwrap_or_default();
            let n = src.read_at(into, from + done).map_err(io_error)?;
            if n == 0 {
                break;
            }
            let chunk = crate::transfer::filled(&buf, n).map_err(io_error)?;
            dst.write_all_at(chunk, to + done).map_err(io_error)?;
            hash.record_write(to + done, chunk);
            done += n as u64;
        }
        Ok((done, hash))
    })
    .await;
    match copied {
        Ok((done, hash)) => {
            f.hash = hash;
            f.bytes += done;
            Ok(Response::Ok)
        }
        Err(e) => {
            f.hash.invalidate();
            Err(e)
        }
    }
}

/// Payload size of a read or write, for sizing batches.
fn op_bytes(op: &FsOp) -> usize {
    match op {
        FsOp::Write { data, .. } => data.len(),
        FsOp::Read { len, .. } => (*len).min(MAX_READ_LEN) as usize,
        _ => 0,
    }
}

/// Writes a batch of queued writes in one blocking call while the running
/// SHA-256 is fed in another, and answers each write: those before a
/// failure succeeded, the failed one and the rest get the error.
async fn write_batch(f: &mut OpenFile, batch: Vec<(u64, FsOp)>, reply: &Reply) {
    let Some(up) = &mut f.upload else {
        for (id, _) in batch {
            send(
                reply,
                id,
                Err(FerryError::denied("file is not open for writing")),
            );
        }
        return;
    };
    let mut items = Vec::with_capacity(batch.len());
    for (id, op) in batch {
        if let FsOp::Write { offset, data, .. } = op {
            let at = match up.append_at {
                Some(end) => end,
                None => offset,
            };
            if let Some(limit) = up.limit {
                if at.saturating_add(data.len() as u64) > limit {
                    up.over_quota = true;
                    let e = FerryError::new(
                        ErrorKind::NoSpace,
                        format!("quota exceeded: the file may not grow past {limit} bytes"),
                    );
                    send(reply, id, Err(e));
                    continue;
                }
            }
            if let Some(end) = &mut up.append_at {
                *end += data.len() as u64;
            }
            f.bytes += data.len() as u64;
            items.push((id, at, data));
        }
    }
    let items = Arc::new(items);
    let total: usize = items.iter().map(|(_, _, data)| data.len()).sum();
    let write_all = |file: Arc<File>, items: Arc<Vec<(u64, u64, Vec<u8>)>>| {
        move || {
            for (i, (_, at, data)) in items.iter().enumerate() {
                if let Err(e) = file.write_all_at(data, *at) {
                    return Ok(Some((i, io_error(e))));
                }
            }
            Ok(None)
        }
    };
    let hash_all = |mut hash: HashTracker, items: Arc<Vec<(u64, u64, Vec<u8>)>>| {
        move || {
            for (_, at, data) in items.iter() {
                hash.record_write(*at, data);
            }
            Ok(hash)
        }
    };
    let hash = std::mem::take(&mut f.hash);
    let (written, hashed) = if total >= PARALLEL_HASH_BYTES {
        // Large batches: hash on a second thread while the first writes.
        tokio::join!(
            blocking(write_all(f.file.clone(), items.clone())),
            blocking(hash_all(hash, items.clone()))
        )
    } else if f.local && f.bytes <= INLINE_WRITE_BYTES {
        // The first bytes of a file (all of a small one) are written on
        // this task: a write of that size into the page cache takes
        // microseconds, less than the trip to the blocking pool and back.
        (
            write_all(f.file.clone(), items.clone())(),
            hash_all(hash, items.clone())(),
        )
    } else {
        // Small ones are not worth a second thread hop.
        let (write, hashing) = (
            write_all(f.file.clone(), items.clone()),
            hash_all(hash, items.clone()),
        );
        match blocking(move || Ok((write(), hashing()))).await {
            Ok((written, hashed)) => (written, hashed),
            Err(e) => (Err(e.clone()), Err(e)),
        }
    };
    f.hash = hashed.unwrap_or_else(|_| {
        let mut broken = HashTracker::default();
        broken.invalidate();
        broken
    });
    let failure = match written {
        Ok(failure) => failure,
        Err(e) => Some((0, e)),
    };
    if let Some(pacer) = &f.pacer {
        pacer.take(total as u64).await;
    }
    for (i, (id, _, _)) in items.iter().enumerate() {
        let result = match &failure {
            Some((failed, e)) if i >= *failed => Err(e.clone()),
            _ => Ok(Response::Ok),
        };
        send(reply, *id, result);
    }
}

/// Serves a batch of queued reads in one blocking call; the running
/// SHA-256 of a download is fed there too.
async fn read_batch(f: &mut OpenFile, batch: Vec<(u64, FsOp)>, reply: &Reply) {
    let wanted: Vec<(u64, u64, usize)> = batch
        .iter()
        .filter_map(|(id, op)| match op {
            FsOp::Read { offset, len, .. } => {
                Some((*id, *offset, (*len).min(MAX_READ_LEN) as usize))
            }
            _ => None,
        })
        .collect();
    let file = f.file.clone();
    let downloading = f.upload.is_none();
    let mut hash = std::mem::take(&mut f.hash);
    // Reads within a file's first bytes (all of a small file) are served on
    // this task, as such writes are (see `INLINE_WRITE_BYTES`).
    let inline = f.local
        && wanted
            .iter()
            .all(|&(_, offset, len)| offset.saturating_add(len as u64) <= INLINE_WRITE_BYTES);
    let read_all = move || {
        let mut results = Vec::with_capacity(wanted.len());
        for (id, offset, len) in wanted {
            let buf = match crate::transfer::read_at_most(&file, offset, len) {
                Ok(buf) => buf,
                Err(e) => {
                    results.push((id, offset, Err(io_error(e))));
                    continue;
                }
            };
            if downloading {
                hash.record_read(offset, &buf);
            }
            results.push((id, offset, Ok(buf)));
        }
        Ok((results, hash))
    };
    let served = if inline {
        read_all()
    } else {
        blocking(read_all).await
    };
    if let (Ok((results, _)), Some(pacer)) = (&served, &f.pacer) {
        let moved: usize = results
            .iter()
            .map(|(_, _, r)| r.as_ref().map_or(0, Vec::len))
            .sum();
        pacer.take(moved as u64).await;
    }
    match served {
        Ok((results, hash)) => {
            f.hash = hash;
            for (id, offset, result) in results {
                let result = match result {
                    Ok(data) if data.is_empty() => {
                        // The client read on from the end of the whole file.
                        if offset == f.served_prefix {
                            f.read_to_end = true;
                        }
                        Ok(Response::Eof)
                    }
                    Ok(data) => {
                        if downloading {
                            f.bytes += data.len() as u64;
                        }
                        if offset <= f.served_prefix {
                            f.served_prefix = f.served_prefix.max(offset + data.len() as u64);
                        }
                        Ok(Response::Data(data))
                    }
                    Err(e) => Err(e),
                };
                send(reply, id, result);
            }
        }
        Err(e) => {
            f.hash.invalidate();
            for (id, _) in batch {
                send(reply, id, Err(e.clone()));
            }
        }
    }
}

/// Ends a transfer: commits an upload on a clean close, and writes the
/// transfer-log row either way. A committed upload answers
/// [`Response::Committed`], anything else [`Response::Ok`]. A download the
/// client read to the end of the file (or was served as many bytes as the
/// file had when opened) counts as completed even if its CLOSE never arrived
/// (lftp quits right after sending it).
async fn finish(
    ctx: &Arc<ServerCtx>,
    s: &Session,
    f: OpenFile,
    closed: bool,
) -> Result<Response, FerryError> {
    let OpenFile {
        file,
        path,
        upload,
        hash,
        stamp,
        bytes,
        served_prefix,
        read_to_end,
        size_at_open,
        transfer_id,
        started_at,
        pacer: _,
        in_flight: _,
        local: _,
    } = f;
    let had_every_byte = read_to_end || size_at_open.is_some_and(|n| served_prefix >= n);
    let closed = closed || (upload.is_none() && had_every_byte);
    if upload.is_some() {
        let mut uploads = locked(&s.uploads);
        if uploads
            .get(&path.to_string())
            .is_some_and(|(_, open)| Arc::ptr_eq(open, &file))
        {
            uploads.remove(&path.to_string());
        }
    }
    let direction = if upload.is_some() {
        Direction::Upload
    } else {
        Direction::Download
    };
    let fsync = ctx.fsync_uploads;
    // The row of a committed upload, as it will be logged: written to this
    // node's disk before the rename (see `UPLOAD_INTENT`).
    let intent = TransferRecord {
        id: transfer_id.clone(),
        account: s.account.clone(),
        protocol: s.protocol,
        direction,
        path: path.to_string(),
        bytes,
        size: None,
        sha256: None,
        started_at,
        ended_at: now_millis(),
        status: TransferStatus::Completed,
        node: ctx.node_id.clone(),
        client_addr: s.client_addr.clone(),
        error: None,
        partner: None,
        event_id: None,
    };
    let intent_ctx = ctx.clone();
    let base = intent.clone();
    // A committed upload's row is written in the same blocking call as
    // its commit: `row` is that row and what writing it returned.
    type Closed = (Option<(String, Option<u64>)>, Option<RowWritten>);
    type RowWritten = (TransferRecord, Result<usize, FerryError>);
    let outcome: Result<Closed, FerryError> = if closed {
        blocking(move || {
            if let Some(up) = upload {
                // The file's data goes to disk on a second blocking thread
                // while this one hashes and writes the intent: the rename
                // waits for both.
                let synced = fsync.then(|| {
                    let file = file.clone();
                    tokio::runtime::Handle::current().spawn_blocking(move || file.sync_all())
                });
                let meta = file.metadata().map_err(io_error)?;
                let size = meta.len();
                let sha = hash.finish(&file).map_err(io_error)?;
                // Later downloads of the committed file reuse this hash.
                cache_sha256(&file, &content_stamp(&meta), &sha);
                let row = TransferRecord {
                    size: Some(size),
                    sha256: Some(sha.clone()),
                    ..intent
                };
                let written = commit_upload(&intent_ctx, &up.place, fsync, synced, &row)?;
                Ok((Some((sha, Some(size))), Some((row, written))))
            } else {
                let was_known = hash.is_known();
                let sha = hash.finish(&file).map_err(io_error)?;
                let size = file.metadata().map(|m| m.len()).ok();
                // Cache a hash computed while reading only if the file did
                // not change since it was opened.
                if let (Some(stamp), false) = (&stamp, was_known) {
                    let now = file.metadata().map(|m| content_stamp(&m));
                    if now.as_ref().ok() == Some(stamp) {
                        cache_sha256(&file, stamp, &sha);
                    }
                }
                // The download's row, in this same call.
                let row = TransferRecord {
                    size,
                    sha256: Some(sha.clone()),
                    ended_at: now_millis(),
                    ..intent
                };
                let written = write_row(&intent_ctx, &row, false);
                Ok((Some((sha, size)), Some((row, written))))
            }
        })
        .await
    } else {
        Ok((None, None))
    };
    let (outcome, row) = match outcome {
        Ok((sha, row)) => (Ok(sha), row),
        Err(e) => (Err(e), None),
    };
    let (status, sha256, error) = match (&outcome, closed) {
        (Ok(sha), true) => (
            TransferStatus::Completed,
            sha.as_ref().map(|(sha, _)| sha.clone()),
            None,
        ),
        (Ok(_), false) => (
            TransferStatus::Interrupted,
            None,
            Some("connection ended before the file was closed".to_owned()),
        ),
        (Err(e), _) => (TransferStatus::Failed, None, Some(e.message.clone())),
    };
    let size = match &outcome {
        Ok(Some((_, size))) => *size,
        _ => None,
    };
    let renamable = status == TransferStatus::Completed
        && direction == Direction::Upload
        && path
            .file_name()
            .is_some_and(ferry_core::path::is_temporary_upload_name);
    let logged = match row {
        Some((row, written)) => {
            note_transfer(ctx, &row);
            row_written(ctx, written)
        }
        None => {
            let record = TransferRecord {
                size,
                sha256,
                ended_at: now_millis(),
                status,
                error,
                ..base
            };
            log_transfer(ctx, record).await
        }
    };
    if renamable && logged.is_ok() {
        let mut waiting = locked(&s.renamable);
        if waiting.len() >= MAX_RENAMABLE {
            waiting.clear();
        }
        waiting.insert(path.to_string(), transfer_id);
    }
    let response = match outcome? {
        Some((sha256, Some(size))) if direction == Direction::Upload => {
            Response::Committed { size, sha256 }
        }
        _ => Response::Ok,
    };
    logged.map(|()| response)
}

/// Commits an upload whose data is written: its row is written to this
/// node's disk as an intent while `synced` (the file's fsync, where
/// uploads are synced) runs on another thread, then the partial file is
/// renamed to its name, and the row is logged, in that order and on this
/// one blocking call. What logging the row returned is given back: where
/// it failed (the client is then told the upload failed) the file has left
/// its name again and stays as the partial for a resume. An error means
/// the file was never committed.
fn commit_upload(
    ctx: &ServerCtx,
    place: &Place,
    fsync: bool,
    synced: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    row: &TransferRecord,
) -> Result<Result<usize, FerryError>, FerryError> {
    // Where the row goes to this server's own store (alone, or
    // active/passive), a server that cannot write it now says so before
    // the file appears under its name.
    if ctx.cluster.row_policy() == ferry_cluster::RowPolicy::Local {
        ctx.check_writable().map_err(|e| {
            FerryError::new(e.kind, format!("transfer log unavailable: {}", e.message))
        })?;
    }
    write_intent(ctx, row)?;
    // The file's data is on disk before its name is.
    if let Some(sync) = synced {
        let synced = tokio::runtime::Handle::current()
            .block_on(sync)
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = synced {
            remove_intent(ctx, &row.id);
            return Err(io_error(e));
        }
    }
    if let Err(e) = place.commit_partial(fsync) {
        remove_intent(ctx, &row.id);
        let err = io_error(e);
        return Err(FerryError::new(
            err.kind,
            format!("could not commit the upload: {}", err.message),
        ));
    }
    // The intent holds the row durably: its own commit need not wait for
    // the disk where the store is this server's.
    let written = write_row(ctx, row, true);
    match &written {
        // Logged, or waiting under `PENDING_ROW`: done; the intent goes
        // with a later commit.
        Ok(_) => forget_intent(ctx, &row.id),
        // Not logged (alone or active/passive, where rows never wait: the
        // role was lost since the check above).
        Err(_) => match place.uncommit() {
            Ok(()) => remove_intent(ctx, &row.id),
            Err(e) => tracing::error!(
                transfer = %row.id, error = %e,
                "an upload whose row could not be written stays under its name; the next start logs its row"
            ),
        },
    }
    Ok(written)
}

/// Moves the row of an upload this session made under a temporary name to
/// the name the session renamed it to, which queues its routes. The rename
/// has happened: a failure here is logged, not answered.
fn repoint_upload(ctx: &ServerCtx, id: String, to: &VirtualPath) {
    let command = Command::RenameTransfer {
        id: id.clone(),
        path: to.to_string(),
    };
    match ctx.apply(&command) {
        Ok(outcome) if outcome.rows_changed > 1 => ctx.engine_wake.notify_waiters(),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            transfer = %id, path = %to, error = %e,
            "an upload renamed from its temporary name keeps that name in the log"
        ),
    }
}

/// Uploads committed under a temporary name a session remembers, waiting
/// for its rename.
const MAX_RENAMABLE: usize = 1024;

/// Create, inspect or abandon a resumable upload.
async fn upload_op(
    ctx: &Arc<ServerCtx>,
    s: Arc<Session>,
    op: FsOp,
) -> Result<Response, FerryError> {
    let expire = ctx.upload_expiry_ms;
    let (session, c) = (s.clone(), ctx.clone());
    let (record, cancelled) = blocking(move || {
        let home = &session.home;
        let now = now_millis();
        match op {
            FsOp::UploadCreate {
                path,
                length,
                metadata,
            } => {
                let policy = session.access.policy(&c.store)?;
                crate::quota::check_upload(
                    &c,
                    &policy,
                    &session.account,
                    home,
                    &parse(&path)?,
                    Some(length),
                )
                .and_then(|_| {
                    uploads::create(
                        home,
                        &parse(&path)?,
                        length,
                        metadata,
                        &session.client_addr,
                        now,
                        expire,
                    )
                })
                .map(|r| (r, false))
            }
            FsOp::UploadStatus { id } => uploads::status(home, &id, now).map(|r| (r, false)),
            FsOp::UploadDelete { id } => uploads::delete(home, &id).map(|r| (r, true)),
            _ => Err(FerryError::new(
                ErrorKind::Unsupported,
                "unsupported operation",
            )),
        }
    })
    .await?;
    if cancelled {
        let row = upload_row(
            ctx,
            &s.account,
            &record,
            TransferStatus::Interrupted,
            None,
            Some("upload cancelled by the client; its data was removed".into()),
        );
        log_transfer(ctx, row).await?;
        return Ok(Response::Ok);
    }
    if record.length == 0 && record.offset == 0 {
        // An empty file is complete as soon as it is announced (tus sends no
        // PATCH for it): commit it now.
        let session = s.clone();
        let id = record.id.clone();
        let ended = blocking(move || {
            uploads::Chunk::open(&session.home, &id, 0, None, now_millis(), expire)?
                .close(now_millis(), expire)
        })
        .await?;
        if let uploads::ChunkEnd::Committed { record, sha256 } = ended {
            let row = upload_row(
                ctx,
                &s.account,
                &record,
                TransferStatus::Completed,
                Some(sha256.clone()),
                None,
            );
            log_transfer(ctx, row).await?;
            return Ok(Response::Upload(record.info(Some(sha256))));
        }
    }
    Ok(Response::Upload(record.info(None)))
}

async fn open_chunk(
    ctx: &Arc<ServerCtx>,
    s: &Arc<Session>,
    id: String,
    offset: u64,
    checksum: Option<ferry_proto::message::Checksum>,
    reply: &Reply,
) -> Result<Response, FerryError> {
    let session = s.clone();
    let expire = ctx.upload_expiry_ms;
    let chunk = blocking(move || {
        uploads::Chunk::open(&session.home, &id, offset, checksum, now_millis(), expire)
    })
    .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = register(s, tx)?;
    ctx.drain.track(chunk_actor(
        ctx.clone(),
        s.clone(),
        chunk,
        rx,
        reply.clone(),
    ));
    Ok(Response::Handle(handle))
}

/// The actor of one resumable-upload handle (one tus `PATCH`).
async fn chunk_actor(
    ctx: Arc<ServerCtx>,
    s: Arc<Session>,
    mut chunk: uploads::Chunk,
    mut rx: mpsc::UnboundedReceiver<HandleMsg>,
    reply: Reply,
) {
    let expire = ctx.upload_expiry_ms;
    while let Some((id, op, _turn)) = rx.recv().await {
        let result = match op {
            FsOp::Write { offset, data, .. } => match chunk.reserve(offset, &data) {
                Ok(file) => {
                    let written =
                        blocking(move || file.write_all_at(&data, offset).map_err(io_error)).await;
                    if written.is_err() {
                        chunk.mark_failed();
                    }
                    written.map(|()| Response::Ok)
                }
                Err(e) => Err(e),
            },
            FsOp::Close { .. } => {
                let ended = blocking(move || chunk.close(now_millis(), expire)).await;
                let result = match ended {
                    Ok(uploads::ChunkEnd::Progress(record)) => {
                        Ok(Response::Upload(record.info(None)))
                    }
                    Ok(uploads::ChunkEnd::Committed { record, sha256 }) => {
                        let row = upload_row(
                            &ctx,
                            &s.account,
                            &record,
                            TransferStatus::Completed,
                            Some(sha256.clone()),
                            None,
                        );
                        log_transfer(&ctx, row)
                            .await
                            .map(|()| Response::Upload(record.info(Some(sha256))))
                    }
                    Err(e) => Err(e),
                };
                send(&reply, id, result);
                return;
            }
            FsOp::Abort { .. } => {
                let result = blocking(move || chunk.abort()).await;
                send(&reply, id, result.map(|_| Response::Ok));
                return;
            }
            _ => Err(FerryError::invalid("not a directory handle")),
        };
        send(&reply, id, result);
    }
    // The session ended in the middle of the request.
    if let Err(e) = blocking(move || chunk.abort()).await {
        tracing::warn!(error = %e, "could not save an interrupted resumable upload");
    }
}
