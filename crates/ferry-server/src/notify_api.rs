//! Admin API of notifications: endpoints (webhooks, mail), rules, and a
//! test notification.

use axum::extract::{Path, State};
use axum::Json;
use ferry_api as api;
use ferry_core::engine::check_name;
use ferry_core::{
    Command, Event, FerryError, Notice, NotifyEndpoint, NotifyRule, NotifyTarget, Secret, SmtpTls,
    Trigger,
};

use crate::admin::{done, run, AdminState, ApiError, Reply, Routes};
use crate::notices::secret_context;
use crate::transfer::now_millis;

type ApiResult<T> = Result<T, ApiError>;

/// Defaults of a new endpoint.
const DEFAULT_MAX_ATTEMPTS: u32 = 8;
const DEFAULT_RETRY_BASE_SECS: u64 = 10;

/// The notification routes, merged into the admin router.
pub(crate) fn routes() -> Routes {
    Routes::default()
        .add::<api::ListNotifyEndpoints, _, _>(list_endpoints)
        .add::<api::AddNotifyEndpoint, _, _>(add_endpoint)
        .add::<api::RemoveNotifyEndpoint, _, _>(remove_endpoint)
        .add::<api::TestNotifyEndpoint, _, _>(test_endpoint)
        .add::<api::ListNotifyRules, _, _>(list_rules)
        .add::<api::AddNotifyRule, _, _>(add_rule)
        .add::<api::RemoveNotifyRule, _, _>(remove_rule)
}

fn endpoint_view(e: NotifyEndpoint) -> api::NotifyEndpoint {
    let mut view = api::NotifyEndpoint {
        name: e.name,
        kind: e.target.kind().to_owned(),
        webhook_url: None,
        smtp_host: None,
        smtp_port: None,
        smtp_tls: None,
        smtp_username: None,
        from: None,
        to: Vec::new(),
        has_secret: e.secret_sealed.is_some(),
        has_ca: e.ca_pem.is_some(),
        link_base: e.link_base,
        max_attempts: e.max_attempts,
        retry_base_secs: e.retry_base_ms / 1000,
        created_at: api::time(e.created_at),
        generated_secret: None,
    };
    match e.target {
        NotifyTarget::Webhook { url } => view.webhook_url = Some(url),
        NotifyTarget::Email {
            host,
            port,
            tls,
            username,
            from,
            to,
        } => {
            view.smtp_host = Some(host);
            view.smtp_port = Some(port);
            view.smtp_tls = Some(tls.to_string());
            view.smtp_username = username;
            view.from = Some(from);
            view.to = to;
        }
    }
    view
}

async fn list_endpoints(State(s): State<AdminState>) -> ApiResult<Reply<api::ListNotifyEndpoints>> {
    run(move || {
        let endpoints = s.ctx.store.notify_endpoints().map_err(FerryError::from)?;
        Ok(endpoints.into_iter().map(endpoint_view).collect())
    })
    .await
    .map(Reply)
}

/// The target a request describes: a webhook or mail, not both.
fn target_of(body: &api::NewNotifyEndpoint) -> Result<NotifyTarget, FerryError> {
    let target = match (&body.webhook_url, &body.smtp_host) {
        (Some(url), None) => NotifyTarget::Webhook { url: url.clone() },
        (None, Some(host)) => {
            let tls: SmtpTls = body
                .smtp_tls
                .as_deref()
                .unwrap_or("starttls")
                .parse()
                .map_err(|_| FerryError::invalid("smtp_tls must be starttls, tls or none"))?;
            let port = body.smtp_port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            });
            NotifyTarget::Email {
                host: host.clone(),
                port,
                tls,
                username: body.smtp_username.clone(),
                from: body
                    .from
                    .clone()
                    .ok_or_else(|| FerryError::invalid("a mail endpoint needs a from address"))?,
                to: body.to.clone(),
            }
        }
        _ => {
            return Err(FerryError::invalid(
                "give either a webhook URL or an SMTP host",
            ))
        }
    };
    target.check()?;
    Ok(target)
}

async fn add_endpoint(
    State(s): State<AdminState>,
    Json(body): Json<api::NewNotifyEndpoint>,
) -> ApiResult<Reply<api::AddNotifyEndpoint>> {
    check_name("endpoint", &body.name)?;
    let target = target_of(&body)?;
    if let Some(pem) = &body.ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(FerryError::invalid("ca_pem holds no PEM certificate").into());
        }
    }
    if let Some(base) = &body.link_base {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(FerryError::invalid("link_base must be an http(s) URL").into());
        }
    }
    if matches!(target, NotifyTarget::Email { .. })
        && body.smtp_username.is_some() != body.secret.is_some()
    {
        return Err(FerryError::invalid("SMTP AUTH needs both a user name and a password").into());
    }
    // A webhook without a key of its own gets one: every call is signed.
    let generated = match (&target, &body.secret) {
        (NotifyTarget::Webhook { .. }, None) => {
            let mut key = [0u8; 32];
            rand::Rng::fill_bytes(&mut rand::rng(), &mut key);
            Some(Secret::new(hex::encode(key)))
        }
        _ => None,
    };
    run(move || {
        let ctx = &s.ctx;
        let secret = body.secret.as_ref().or(generated.as_ref());
        let endpoint = NotifyEndpoint {
            secret_sealed: secret
                .map(|k| ctx.secrets.seal(k, &secret_context(&body.name)))
                .transpose()?,
            name: body.name,
            target,
            ca_pem: body.ca_pem,
            link_base: body.link_base,
            max_attempts: body
                .max_attempts
                .unwrap_or(DEFAULT_MAX_ATTEMPTS)
                .clamp(1, 100),
            retry_base_ms: body
                .retry_base_secs
                .unwrap_or(DEFAULT_RETRY_BASE_SECS)
                .clamp(1, 3600)
                * 1000,
            created_at: now_millis(),
        };
        ctx.apply(&Command::AddNotifyEndpoint(endpoint.clone()))?;
        Ok(Reply(api::NotifyEndpoint {
            generated_secret: generated,
            ..endpoint_view(endpoint)
        }))
    })
    .await
}

async fn remove_endpoint(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveNotifyEndpoint>> {
    run(move || s.ctx.apply(&Command::RemoveNotifyEndpoint { name })).await?;
    Ok(done())
}

async fn test_endpoint(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::TestNotifyEndpoint>> {
    run(move || {
        let endpoint = s
            .ctx
            .store
            .notify_endpoint(&name)
            .map_err(FerryError::from)?
            .ok_or_else(|| FerryError::not_found(format!("notification endpoint {name:?}")))?;
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        let notice = Notice {
            trigger: "test".into(),
            rule: "test".into(),
            endpoint: endpoint.name.clone(),
            at: now,
            summary: format!(
                "test notification to {} from {}",
                endpoint.name, s.ctx.node_id
            ),
            node: Some(s.ctx.node_id.clone()),
            ..Notice::default()
        };
        let event = Event::notify(
            id.clone(),
            notice,
            endpoint.max_attempts,
            endpoint.retry_base_ms,
        );
        s.ctx.apply(&Command::EnqueueEvent(event))?;
        s.ctx.engine_wake.notify_waiters();
        Ok(Reply(api::NotifyTest {
            endpoint: endpoint.name,
            event_id: id,
        }))
    })
    .await
}

fn rule_view(r: NotifyRule) -> api::NotifyRule {
    api::NotifyRule {
        name: r.name,
        on: r.trigger.to_string(),
        endpoint: r.endpoint,
        account: r.account,
        route: r.route,
        partner: r.partner,
        created_at: api::time(r.created_at),
    }
}

async fn list_rules(State(s): State<AdminState>) -> ApiResult<Reply<api::ListNotifyRules>> {
    run(move || {
        let rules = s.ctx.store.notify_rules().map_err(FerryError::from)?;
        Ok(rules.into_iter().map(rule_view).collect())
    })
    .await
    .map(Reply)
}

async fn add_rule(
    State(s): State<AdminState>,
    Json(body): Json<api::NewNotifyRule>,
) -> ApiResult<Reply<api::AddNotifyRule>> {
    let rule = NotifyRule {
        name: body.name,
        trigger: body.on.parse::<Trigger>()?,
        account: body.account,
        route: body.route,
        partner: body.partner,
        endpoint: body.endpoint,
        created_at: now_millis(),
    };
    rule.check()?;
    run(move || {
        s.ctx.apply(&Command::AddNotifyRule(rule.clone()))?;
        Ok(Reply(rule_view(rule)))
    })
    .await
}

async fn remove_rule(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult<Reply<api::RemoveNotifyRule>> {
    run(move || s.ctx.apply(&Command::RemoveNotifyRule { name })).await?;
    Ok(done())
}
