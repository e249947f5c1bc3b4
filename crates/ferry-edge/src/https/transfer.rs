//! Moving bytes between an HTTP body and a server handle, many requests in
//! flight each way so that the hop to the server does not serialise them.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use ferry_core::FerryError;
use ferry_proto::message::{FsOp, HandleId, Response};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::lease::{unexpected, Lease, Pending};

/// Bytes per read or write request to the server.
pub const CHUNK: usize = 256 * 1024;
/// Requests in flight per transfer (8 MiB).
const IN_FLIGHT: usize = 32;

/// Why writing a body stopped.
#[derive(Debug)]
pub enum WriteError {
    /// The client's body broke off (disconnect, bad chunked encoding).
    Client(String),
    /// The body is longer than allowed.
    TooLarge,
    /// The server refused a write.
    Server(FerryError),
}

async fn settle(pending: &mut VecDeque<Pending>, keep: usize) -> Result<(), WriteError> {
    while pending.len() > keep {
        if let Some(p) = pending.pop_front() {
            p.done().await.map_err(WriteError::Server)?;
        }
    }
    Ok(())
}

/// Streams `body` into `handle` starting at `offset`, refusing more than
/// `limit` bytes. Returns the number of bytes written; on error the caller
/// aborts the handle.
pub async fn write_body(
    lease: &Lease,
    handle: HandleId,
    mut offset: u64,
    body: Body,
    limit: u64,
) -> Result<u64, WriteError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut pending = VecDeque::new();
    let mut total = 0u64;
    let mut send = |data: Vec<u8>, pending: &mut VecDeque<Pending>| -> Result<(), WriteError> {
        let len = data.len() as u64;
        let p = lease
            .start_fs(FsOp::Write {
                handle,
                offset,
                data,
            })
            .map_err(WriteError::Server)?;
        offset += len;
        pending.push_back(p);
        Ok(())
    };
    while let Some(next) = stream.next().await {
        let bytes = next.map_err(|e| WriteError::Client(e.to_string()))?;
        total += bytes.len() as u64;
        if total > limit {
            return Err(WriteError::TooLarge);
        }
        buf.extend_from_slice(&bytes);
        while buf.len() >= CHUNK {
            send(buf.split_to(CHUNK).to_vec(), &mut pending)?;
        }
        settle(&mut pending, IN_FLIGHT).await?;
    }
    if !buf.is_empty() {
        send(buf.to_vec(), &mut pending)?;
    }
    settle(&mut pending, 0).await?;
    Ok(total)
}

/// Most of a refused upload's body read and thrown away before answering.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads and discards what is left of a refused request's body (up to 64 MiB
/// and 30 s), so that the client reads the error instead of a reset stream:
/// HTTP/2 servers reset the stream of an unread body, and some clients (curl
/// before 8) then report a framing error rather than the answer.
pub async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut total = 0u64;
        while let Some(Ok(bytes)) = stream.next().await {
            total += bytes.len() as u64;
            if total > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// A body that reads bytes `start..end` of `handle`, then closes it (a
/// completed download in the transfer log). If the client goes away first,
/// the handle is aborted instead (an interrupted one).
pub fn read_body(lease: Arc<Lease>, handle: HandleId, start: u64, end: u64) -> Body {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let outcome = pump(&lease, handle, start, end, &tx).await;
        let op = match &outcome {
            Ok(()) => FsOp::Close { handle },
            Err(_) => FsOp::Abort { handle },
        };
        if let Err(e) = lease.fs(op).await {
            tracing::warn!(error = %e, "could not end a download");
        }
        if let Err(Some(e)) = outcome {
            let _ = tx.send(Err(std::io::Error::other(e.message))).await;
        }
    });
    Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Reads and forwards; `Err(None)` means the client went away.
async fn pump(
    lease: &Lease,
    handle: HandleId,
    start: u64,
    end: u64,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), Option<FerryError>> {
    let mut next = start;
    let mut pending: VecDeque<(u64, Pending)> = VecDeque::new();
    loop {
        while pending.len() < IN_FLIGHT && next < end {
            let len = (end - next).min(CHUNK as u64);
            let p = lease
                .start_fs(FsOp::Read {
                    handle,
                    offset: next,
                    len: len as u32,
                })
                .map_err(Some)?;
            pending.push_back((len, p));
            next += len;
        }
        let Some((len, p)) = pending.pop_front() else {
            return Ok(());
        };
        let data = match p.done().await.map_err(Some)? {
            Response::Data(d) if d.len() as u64 == len => d,
            Response::Data(_) | Response::Eof => {
                return Err(Some(FerryError::internal(
                    "the file changed size during the download",
                )))
            }
            other => return Err(Some(unexpected("read", &other))),
        };
        if tx.send(Ok(Bytes::from(data))).await.is_err() {
            return Err(None);
        }
    }
}
