//! Sending notifications, and raising the notices only a server sees.
//!
//! A notification is a `notify` event in the queue (raised by the store,
//! see `ferry_core::notify`), claimed by this server's notice workers — not
//! the transfer workers, so a dead mail server holds up nothing else — and
//! sent here:
//!
//! * to a webhook as a JSON POST with `X-Ferry-Signature: sha256=HEX`, the
//!   HMAC-SHA256 of `TIMESTAMP.BODY` under the endpoint's secret, where
//!   `TIMESTAMP` is the `X-Ferry-Timestamp` header (unix seconds);
//! * by mail through SMTP (STARTTLS, TLS or plain, with AUTH if a user is
//!   set), from a plain-text template.
//!
//! Both carry the notification's id (`X-Ferry-Notification`, the mail's
//! `Message-ID`), the same on every attempt: a receiver that sees an id
//! twice (an attempt whose answer was lost) can drop the second.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Command, Event, FerryError, Notice, NotifyEndpoint, NotifyTarget, SmtpTls};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::engine::actions::ActionError;
use crate::engine::PrimaryRole;
use crate::session::blocking;
use crate::ServerCtx;
use ferry_worker::Worker;

/// Longest a webhook call or a mail delivery may take, connection included:
/// a server that accepts and never answers fails the attempt after this.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection to the webhook or SMTP server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints this server's notice workers are sending to now: a worker
/// claims no notification for them, so an endpoint that hangs holds one
/// worker, not all.
#[derive(Debug, Default)]
pub struct SendingTo(Mutex<HashSet<String>>);

impl SendingTo {
    /// The endpoints being sent to.
    pub fn endpoints(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().iter().cloned().collect();
        names.sort();
        names
    }

    /// Marks the endpoint of a claimed notification (called under the
    /// claim lock, so the next claim skips it).
    pub(crate) fn mark(&self, event: &Event) {
        if let Some(n) = &event.notice {
            self.lock().insert(n.endpoint.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Releases a notification's endpoint when its attempt ends or is dropped.
pub struct Sending {
    ctx: Arc<ServerCtx>,
    endpoint: Option<String>,
}

impl Sending {
    /// Holds the endpoint [`SendingTo::mark`] marked for `event`.
    pub fn held(ctx: &Arc<ServerCtx>, event: &Event) -> Self {
        Self {
            ctx: ctx.clone(),
            endpoint: event.notice.as_ref().map(|n| n.endpoint.clone()),
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if let Some(e) = &self.endpoint {
            self.ctx.notices_sending.lock().remove(e);
        }
    }
}

/// The context a sealed endpoint secret is bound to.
pub fn secret_context(endpoint: &str) -> String {
    format!("notification endpoint {endpoint} secret")
}

/// Sends a `notify` event's notice to its endpoint.
pub async fn send(ctx: &Arc<ServerCtx>, event: &Event) -> Result<String, ActionError> {
    let notice = event
        .notice
        .clone()
        .ok_or_else(|| ActionError::permanent("the notification has no notice"))?;
    let name = notice.endpoint.clone();
    let store = ctx.store.clone();
    let endpoint = blocking(move || store.notify_endpoint(&name).map_err(FerryError::from))
        .await?
        .ok_or_else(|| {
            ActionError::permanent(format!(
                "notification endpoint {:?} was removed",
                notice.endpoint
            ))
        })?;
    let secret = endpoint
        .secret_sealed
        .as_ref()
        .map(|s| ctx.secrets.open(s, &secret_context(&endpoint.name)))
        .transpose()?;
    let secret = secret.as_ref().map(|s| s.expose());
    let sending = async {
        match &endpoint.target {
            NotifyTarget::Webhook { url } => {
                post_webhook(&endpoint, url, secret, &event.id, &notice).await
            }
            NotifyTarget::Email { .. } => send_mail(&endpoint, secret, &event.id, &notice).await,
        }
    };
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(result) => result,
        Err(_) => Err(ActionError::transient(format!(
            "{} did not answer within {} s",
            describe(&endpoint.target),
            SEND_TIMEOUT.as_secs()
        ))),
    }
}

/// The server an endpoint reaches, for errors.
fn describe(target: &NotifyTarget) -> String {
    match target {
        NotifyTarget::Webhook { url } => format!("webhook {url}"),
        NotifyTarget::Email { host, port, .. } => format!("SMTP {host}:{port}"),
    }
}

/// The link to the event a notice is about, if the endpoint has a base URL.
fn link(endpoint: &NotifyEndpoint, notice: &Notice) -> Option<String> {
    let base = endpoint.link_base.as_deref()?;
    let event = notice.event_id.as_deref()?;
    Some(format!(
        "{}/api/v1/events/{event}",
        base.trim_end_matches('/')
    ))
}

/// The JSON body of a webhook call.
#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    /// The notification's id, the same on every attempt.
    id: &'a str,
    #[serde(flatten)]
    notice: &'a Notice,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// The signature header's value: `sha256=` and the hex HMAC-SHA256 of
/// `TIMESTAMP.BODY` (HMAC takes a key of any length, so this is `None`
/// only in theory).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

async fn post_webhook(
    endpoint: &NotifyEndpoint,
    url: &str,
    secret: Option<&str>,
    id: &str,
    notice: &Notice,
) -> Result<String, ActionError> {
    let body = serde_json::to_vec(&WebhookBody {
        id,
        notice,
        link: link(endpoint, notice),
    })
    .map_err(|e| ActionError::permanent(e.to_string()))?;
    let mut client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &endpoint.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ActionError::permanent(format!("the endpoint's CA: {e}")))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client
        .build()
        .map_err(|e| ActionError::permanent(format!("webhook client: {e}")))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-ferry-notification", id)
        .header("x-ferry-timestamp", timestamp.to_string());
    if let Some(signed) = secret.and_then(|s| signature(s, timestamp, &body)) {
        request = request.header("x-ferry-signature", signed);
    }
    let answer = request
        .body(body)
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("webhook {url}: {}", error_chain(&e))))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(format!("webhook answered {status}"));
    }
    let message = format!("webhook {url} answered {status}");
    // A server error, a timeout or "too many" may pass; any other refusal
    // of this request will be refused again.
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(ActionError::transient(message))
    } else {
        Err(ActionError::permanent(message))
    }
}

/// An error with its causes, one after the other.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

async fn send_mail(
    endpoint: &NotifyEndpoint,
    password: Option<&str>,
    id: &str,
    notice: &Notice,
) -> Result<String, ActionError> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let NotifyTarget::Email {
        host,
        port,
        tls,
        username,
        from,
        to,
    } = &endpoint.target
    else {
        return Err(ActionError::permanent("not a mail endpoint"));
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ActionError::permanent(format!("mail endpoint {}: {what}: {e}", endpoint.name))
    };
    let mut message = Message::builder()
        .from(from.parse::<Mailbox>().map_err(|e| bad("from", &e))?)
        .subject(subject(notice))
        .message_id(Some(format!("<{id}@ferry>")))
        .header(ContentType::TEXT_PLAIN);
    for rcpt in to {
        message = message.to(rcpt.parse::<Mailbox>().map_err(|e| bad("to", &e))?);
    }
    let message = message
        .body(mail_text(endpoint, id, notice))
        .map_err(|e| bad("message", &e))?;
    let tls_parameters = || {
        let mut builder = TlsParameters::builder(host.clone());
        if let Some(pem) = &endpoint.ca_pem {
            let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| bad("CA", &e))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().map_err(|e| bad("TLS", &e))
    };
    let tls = match tls {
        SmtpTls::Starttls => Tls::Required(tls_parameters()?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(*port)
        .tls(tls)
        .timeout(Some(CONNECT_TIMEOUT));
    if let (Some(user), Some(password)) = (username, password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.to_owned()));
    }
    let answer = transport.build().send(message).await.map_err(|e| {
        let text = format!("SMTP {host}:{port}: {}", error_chain(&e));
        if e.is_permanent() {
            ActionError::permanent(text)
        } else {
            ActionError::transient(text)
        }
    })?;
    Ok(format!(
        "mail to {} accepted: {}",
        to.join(", "),
        answer.message().collect::<Vec<_>>().join(" ")
    ))
}

/// A mail's subject: the summary, shortened to a readable line.
fn subject(notice: &Notice) -> String {
    const MAX: usize = 140;
    let mut line: String = notice.summary.chars().filter(|c| !c.is_control()).collect();
    if line.chars().count() > MAX {
        line = line.chars().take(MAX - 1).collect::<String>() + "…";
    }
    format!("[Ferry] {line}")
}

/// The mail's text: the summary, then every field that applies.
pub fn mail_text(endpoint: &NotifyEndpoint, id: &str, notice: &Notice) -> String {
    let mut text = format!("{}\n\n", notice.summary);
    let mut field = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(text, "{name:<12}{v}");
        }
    };
    field(
        "Rule:",
        Some(format!("{} ({})", notice.rule, notice.trigger)),
    );
    field("Account:", notice.account.clone());
    field("Route:", notice.route.clone());
    field("Schedule:", notice.schedule.clone());
    field(
        "Partner:",
        (!notice.partners.is_empty()).then(|| notice.partners.join(", ")),
    );
    field("File:", notice.file.clone());
    field("Bytes:", notice.bytes.map(|b| b.to_string()));
    field("Error:", notice.error.clone());
    field("Attempts:", notice.attempts.map(|a| a.to_string()));
    field("Address:", notice.address.clone());
    field("Server:", notice.node.clone());
    field("Term:", notice.term.map(|t| t.to_string()));
    field(
        "Quota used:",
        notice.quota_percent.map(|p| format!("{p} %")),
    );
    field("Event:", notice.event_id.clone());
    field("Transfer:", notice.transfer_id.clone());
    field("Time:", Some(utc_text(notice.at)));
    match (link(endpoint, notice), &notice.event_id) {
        (Some(link), _) => field("Link:", Some(link)),
        (None, Some(event)) => field("Details:", Some(format!("ferry event show {event}"))),
        (None, None) => {}
    }
    let _ = write!(text, "\n-- \nFerry notification {id}\n");
    text
}

/// A time as RFC 3339 in UTC, to the second.
fn utc_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Raises a `role-change` notice each time this server becomes the primary
/// of a cluster (term > 0), once per term however often it is tried.
pub async fn watch_role(ctx: Arc<ServerCtx>, w: Worker) {
    let mut primary = ctx.primary.subscribe();
    loop {
        let role = *primary.borrow_and_update();
        if let PrimaryRole::Primary { term } = role {
            if term > 0 {
                raise_role_change(&ctx, &w, term).await;
            }
        }
        w.idle();
        match w.until_stopped(primary.changed()).await {
            Some(Ok(())) => {}
            None | Some(Err(_)) => return,
        }
    }
}

async fn raise_role_change(ctx: &Arc<ServerCtx>, w: &Worker, term: u64) {
    let node = ctx.node_id.clone();
    let command = Command::RaiseNotice {
        kind: ferry_core::TriggerKind::RoleChange,
        key: format!("primary:{term}"),
        notice: Notice {
            at: ctx.clock.now_ms(),
            summary: format!("{node} is the primary (term {term})"),
            node: Some(node),
            term: Some(term),
            ..Notice::default()
        },
    };
    // The role may have come before a quorum to write it: a few tries,
    // while the role lasts.
    for _ in 0..30 {
        let (ctx2, command) = (ctx.clone(), command.clone());
        match blocking(move || ctx2.apply(&command)).await {
            Ok(_) => return,
            Err(e) => w.error(&e),
        }
        if *ctx.primary.borrow() != (PrimaryRole::Primary { term })
            || !w.sleep(Duration::from_secs(2)).await
        {
            return;
        }
    }
}
