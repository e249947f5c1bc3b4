//! The accepting side of the handshake.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::FrameCodec;
use crate::message::{Frame, Hello, Request, Response, Role, Welcome, SUPPORTED_VERSIONS};
use crate::ProtoError;

/// How long a connecting peer has to say hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection past its handshake: read requests, write responses.
pub type ServerFramed<S> = Framed<S, FrameCodec<Frame<Response>, Frame<Request>>>;

/// Runs the server side of the handshake on an authenticated TLS stream:
/// reads [`Hello`], checks the role is one of `accepted_roles` and that a
/// common version exists, answers [`Welcome`].
pub async fn accept<S>(
    stream: S,
    node_id: &str,
    accepted_roles: &[Role],
) -> Result<(Hello, u16, ServerFramed<S>), ProtoError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, node_id, |hello| {
        if accepted_roles.contains(&hello.role) {
            Ok(())
        } else {
            Err(format!("role {:?} is not accepted here", hello.role))
        }
    })
    .await
}

/// Like [`accept`], with `admit` deciding whether this peer is welcome now;
/// its error is sent to the peer as the reason of the refusal (a standby
/// server refuses edges this way).
pub async fn accept_with<S>(
    stream: S,
    node_id: &str,
    admit: impl FnOnce(&Hello) -> Result<(), String>,
) -> Result<(Hello, u16, ServerFramed<S>), ProtoError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, FrameCodec::<Welcome, Hello>::default());
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next())
        .await
        .map_err(|_| ProtoError::Handshake("peer sent no hello in time".into()))?
        .ok_or_else(|| ProtoError::Handshake("peer closed before hello".into()))??;
    let version = SUPPORTED_VERSIONS
        .iter()
        .rev()
        .find(|v| hello.versions.contains(v))
        .copied();
    let refusal = if let Err(reason) = admit(&hello) {
        Some(reason)
    } else if version.is_none() {
        Some(format!(
            "no common protocol version (peer speaks {:?}, this server {:?})",
            hello.versions, SUPPORTED_VERSIONS
        ))
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = framed
            .send(Welcome::Refused {
                reason: reason.clone(),
            })
            .await;
        return Err(ProtoError::Handshake(reason));
    }
    let version = version.unwrap_or(crate::PROTOCOL_VERSION);
    framed
        .send(Welcome::Accepted {
            version,
            role: Role::Server,
            node_id: node_id.to_owned(),
            software: concat!("ferry ", env!("CARGO_PKG_VERSION")).to_owned(),
        })
        .await?;
    Ok((hello, version, framed.map_codec(|_| FrameCodec::default())))
}
