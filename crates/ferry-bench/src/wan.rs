//! A wide-area link between the clients and a server, emulated in user
//! space: a TCP relay on 127.0.0.1 that holds every byte for the one-way
//! delay and lets it out no faster than the link's rate, in each direction.
//!
//! The benchmark would rather use two network namespaces joined by a veth
//! pair with `tc netem`; kernels without the `sch_netem` queueing
//! discipline (the 2-core VM the README's table comes from has no qdisc
//! modules at all) cannot. The relay reproduces what decides an SFTP
//! transfer over a long link, the round trip every request, window update
//! and acknowledgement of the protocol has to wait for and the bandwidth
//! cap, for every server alike. What it does not reproduce is TCP's own
//! behaviour on such a link (slow start, loss): both sides of the relay
//! are loopback connections.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// One-way delay: a 50 ms round trip.
pub const ONE_WAY_DELAY: Duration = Duration::from_millis(25);
/// 1 Gbit/s, in bytes a second.
pub const RATE_BYTES_PER_SEC: f64 = 125_000_000.0;
/// Chunks read at once, and queued per direction at most (a 16 MiB queue
/// at 64 KiB chunks: more than the link holds in flight, 6.25 MB).
const CHUNK: usize = 64 * 1024;
const QUEUE_CHUNKS: usize = 256;

/// A running relay to one server port; stopped on drop (connections in
/// progress end with their clients).
pub struct Link {
    /// The port clients connect to on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// Starts a relay to `127.0.0.1:target`.
    pub fn start(target: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the WAN relay")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        thread::spawn(move || {
                            if let Ok(server) = TcpStream::connect(("127.0.0.1", target)) {
                                relay(client, server);
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Link { port, stop })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Relays both directions of one connection until both have ended.
fn relay(client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(client_r), Ok(server_r)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || direction(client_r, server));
    direction(server_r, client);
    let _ = up.join();
}

/// A chunk in the link: the bytes and when they arrive at the far end
/// (`None`: the sender closed its side).
type InFlight = (Option<Vec<u8>>, Instant);

/// One direction: a reader that stamps each chunk with its arrival time,
/// and a writer that delivers it then.
fn direction(mut from: TcpStream, to: TcpStream) {
    let (tx, rx) = sync_channel::<InFlight>(QUEUE_CHUNKS);
    let writer = thread::spawn(move || deliver(rx, to));
    read_into_link(&mut from, &tx);
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

/// Reads `from` and queues each chunk with its arrival time: it leaves
/// once the link has sent what was queued before it (the rate), and
/// arrives the one-way delay later.
fn read_into_link(from: &mut TcpStream, tx: &SyncSender<InFlight>) {
    let mut link_free_at = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let now = Instant::now();
        if n == 0 {
            let _ = tx.send((None, link_free_at.max(now) + ONE_WAY_DELAY));
            return;
        }
        let start = link_free_at.max(now);
        link_free_at = start + Duration::from_secs_f64(n as f64 / RATE_BYTES_PER_SEC);
        if tx
            .send((Some(buf[..n].to_vec()), link_free_at + ONE_WAY_DELAY))
            .is_err()
        {
            return;
        }
    }
}

/// Writes each chunk to `to` when it arrives; closes `to`'s write side at
/// the end of the stream.
fn deliver(rx: Receiver<InFlight>, mut to: TcpStream) {
    let mut pending: VecDeque<InFlight> = VecDeque::new();
    loop {
        let next = match pending.pop_front() {
            Some(item) => item,
            None => match rx.recv() {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        let (data, at) = next;
        let now = Instant::now();
        if at > now {
            thread::sleep(at - now);
        }
        match data {
            Some(bytes) => {
                if to.write_all(&bytes).is_err() {
                    break;
                }
                // Take what else has arrived by now in one go.
                while let Ok(item) = rx.try_recv() {
                    pending.push_back(item);
                }
            }
            None => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An echo server behind the link: a round trip takes the two delays.
    #[test]
    fn a_round_trip_takes_twice_the_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = echo.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 16];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let link = Link::start(port).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", link.port)).unwrap();
        let started = Instant::now();
        c.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap();
        let rtt = started.elapsed();
        assert_eq!(&got, b"ping");
        assert!(rtt >= 2 * ONE_WAY_DELAY, "{rtt:?}");
        assert!(
            rtt < 2 * ONE_WAY_DELAY + Duration::from_millis(200),
            "{rtt:?}"
        );
    }
}
