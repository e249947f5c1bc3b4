//! A logged-in session on a back-end server, shared by the HTTP requests that
//! use it. The server session ends (logout) when the last holder lets go, so
//! a cached credential expiring never cuts off a transfer in progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_core::{ErrorKind, FerryError, Secret};
use ferry_proto::client::Connection;
use ferry_proto::message::{FsOp, Request, Response, SessionId};
use tokio::sync::oneshot;

/// A server session and the connection it lives on.
#[derive(Debug)]
pub struct Lease {
    conn: Arc<Connection>,
    session: SessionId,
    account: String,
    /// The server said the password must be changed before anything else
    /// (it refuses the file operations itself; this answers them early).
    must_change_password: AtomicBool,
}

fn lost(e: impl std::fmt::Display) -> FerryError {
    FerryError::new(
        ErrorKind::Unavailable,
        format!("the back-end server was lost: {e}"),
    )
}

impl Lease {
    /// Wraps a session that `conn` answered a login with.
    pub fn new(
        conn: Arc<Connection>,
        session: SessionId,
        account: String,
        must_change_password: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            conn,
            session,
            account,
            must_change_password: AtomicBool::new(must_change_password),
        })
    }

    /// Must the password be changed before anything else?
    pub fn must_change_password(&self) -> bool {
        self.must_change_password.load(Ordering::Relaxed)
    }

    /// The account's canonical name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Is the server connection still up?
    pub fn is_alive(&self) -> bool {
        !self.conn.is_closed()
    }

    /// Asks the server for a browser-session credential for this
    /// (password) session's account: `(credential, lifetime in seconds)`.
    pub async fn open_web_session(&self, lifetime_secs: u64) -> Result<(Secret, u64), FerryError> {
        let request = Request::OpenWebSession {
            session: self.session,
            lifetime_secs,
        };
        match self.conn.call(request).await.map_err(lost)? {
            Response::WebSession {
                token,
                lifetime_secs,
            } => Ok((token, lifetime_secs)),
            Response::Error(e) => Err(e),
            other => Err(unexpected("browser session", &other)),
        }
    }

    /// Revokes a browser-session credential on the servers (logout).
    pub async fn end_web_session(&self, token: Secret) -> Result<(), FerryError> {
        match self
            .conn
            .call(Request::EndWebSession { token })
            .await
            .map_err(lost)?
        {
            Response::Ok => Ok(()),
            Response::Error(e) => Err(e),
            other => Err(unexpected("logout", &other)),
        }
    }

    /// Changes the account's password on the server (see
    /// [`Request::ChangePassword`]); `keep_web_session` is the cookie the
    /// request came with, if any.
    pub async fn change_password(
        &self,
        current: Secret,
        new: Secret,
        keep_web_session: Option<Secret>,
    ) -> Result<(), FerryError> {
        let request = Request::ChangePassword {
            session: self.session,
            current,
            new,
            keep_web_session,
        };
        match self.conn.call(request).await.map_err(lost)? {
            Response::Ok => {
                self.must_change_password.store(false, Ordering::Relaxed);
                Ok(())
            }
            Response::Error(e) => Err(e),
            other => Err(unexpected("password change", &other)),
        }
    }

    /// Runs one file operation; a server error becomes `Err`.
    pub async fn fs(&self, op: FsOp) -> Result<Response, FerryError> {
        self.start_fs(op)?.done().await
    }

    /// Sends one file operation without waiting; the answer comes on the
    /// receiver. Operations on one handle are applied in the order sent.
    pub fn start_fs(&self, op: FsOp) -> Result<Pending, FerryError> {
        let changes = op.changes();
        self.conn
            .start_call(Request::Fs {
                session: self.session,
                op,
            })
            .map(|reply| Pending { reply, changes })
            .map_err(lost)
    }
}

/// An operation in flight.
#[derive(Debug)]
pub struct Pending {
    reply: oneshot::Receiver<Response>,
    /// The operation may change something (see [`FsOp::changes`]).
    changes: bool,
}

impl Pending {
    /// Waits for the answer; a server error becomes `Err`. A change whose
    /// server was lost before it answered may have been made: its error
    /// says the outcome is unknown (HTTP 504 `outcome_unknown`), never
    /// that it failed.
    pub async fn done(self) -> Result<Response, FerryError> {
        match self.reply.await {
            Ok(Response::Error(e)) => Err(e),
            Ok(other) => Ok(other),
            Err(_) if self.changes => Err(FerryError::new(
                ErrorKind::OutcomeUnknown,
                "the back-end server was lost before it answered; the change may have been made",
            )),
            Err(_) => Err(lost("connection closed")),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (conn, session) = (self.conn.clone(), self.session);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = conn.call(Request::Logout { session }).await;
            });
        }
    }
}

/// The answer expected from an operation, or an internal error naming it.
pub fn unexpected(what: &str, reply: &Response) -> FerryError {
    tracing::error!(?reply, what, "unexpected reply from server");
    FerryError::internal(format!("unexpected reply from the server to {what}"))
}
