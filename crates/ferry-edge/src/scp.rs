//! The legacy scp protocol: `scp -O`, and every scp before OpenSSH 9.
//!
//! The client runs `scp -t TARGET` to upload (Ferry is the sink) or
//! `scp -f PATH…` to download (Ferry is the source), with `-r` for
//! directories, `-p` for times, `-d` for "TARGET must be a directory". The
//! two sides then exchange lines on the channel:
//!
//! * `C MODE SIZE NAME` — a file of SIZE bytes follows, then one `\0`;
//! * `D MODE 0 NAME` … `E` — a directory and its end;
//! * `T MTIME 0 ATIME 0` — times of the next `C` or `D`;
//! * answers: `\0` (ok), `\x01scp: MESSAGE` (an error, go on), `\x02…`
//!   (fatal).
//!
//! Files go through the session's server as SFTP's would: an upload is
//! `Open` (create, truncate, write) → `Write`s (up to 32 of 256 KiB in
//! flight) → `Fsetstat` (mode, times) → `Close`, which commits the partial
//! file under its name and logs a `completed` transfer; a download is
//! `Open` → `Read`s (read ahead the same way) → `Close`. Anything that ends
//! a file early sends `Abort` (nothing committed, an `interrupted` row).
//! Every wait for the client or the server is bounded by the idle time; a
//! control line is at most 2048 bytes (as in OpenSSH) and a name 255.

use std::collections::VecDeque;
use std::time::Duration;

use ferry_core::path::MAX_COMPONENT_LEN;
use ferry_core::{ErrorKind, FerryError};
use ferry_proto::message::{FileKind, FileStat, FsOp, HandleId, OpenMode, Response, SetAttrs};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::oneshot;

use crate::exec::{bounded_write, describe, printable, Upstream, EXIT_NOT_SUPPORTED};

/// Longest control line, as OpenSSH's buffer.
pub const MAX_LINE: usize = 2048;
/// Bytes per read or write sent to the server.
const CHUNK: u64 = 256 * 1024;
/// Reads or writes of one file in flight to the server.
const IN_FLIGHT: usize = 32;
/// Deepest directory nesting served in either direction.
const MAX_DEPTH: usize = 128;

/// The scp options a client passes to the remote end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScpOptions {
    /// `-t`: receive (upload to Ferry).
    pub sink: bool,
    /// `-f`: send (download from Ferry).
    pub source: bool,
    /// `-r`: directories too.
    pub recursive: bool,
    /// `-p`: modification and access times (and modes).
    pub preserve: bool,
    /// `-d`: the target must be a directory.
    pub target_dir: bool,
}

/// Parses the arguments after `scp` as OpenSSH's client sends them
/// (`-v -r -p -d -t -- PATH`, flags possibly combined). Anything else is
/// refused with the reason.
pub fn parse_args(args: &[String]) -> Result<(ScpOptions, Vec<String>), String> {
    let mut o = ScpOptions::default();
    let mut rest = args.iter();
    let mut paths = Vec::new();
    for arg in rest.by_ref() {
        if arg == "--" {
            break;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            paths.push(arg.clone());
            break;
        };
        for c in flags.chars() {
            match c {
                't' => o.sink = true,
                'f' => o.source = true,
                'r' => o.recursive = true,
                'p' => o.preserve = true,
                'd' => o.target_dir = true,
                'v' | 'q' => {}
                other => {
                    return Err(format!(
                        "scp option -{} is not supported",
                        printable(&other.to_string(), 1)
                    ))
                }
            }
        }
    }
    paths.extend(rest.cloned());
    if o.sink == o.source {
        return Err(
            "scp runs here only as the remote end of a copy (scp -t or scp -f, as the scp client starts it)"
                .into(),
        );
    }
    Ok((o, paths))
}

/// Runs `scp ARGS` on a channel; returns the exit status.
pub(crate) async fn run<R, W, E>(
    args: &[String],
    upstream: &Upstream,
    input: &mut R,
    output: &mut W,
    stderr: &mut E,
    idle: Duration,
) -> u32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let (opts, paths) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(why) => {
            let text = format!(
                "Ferry: {why} (only sftp, scp and sha256sum/sha1sum/md5sum are available)\n"
            );
            let _ = bounded_write(stderr, text.as_bytes(), idle).await;
            return EXIT_NOT_SUPPORTED;
        }
    };
    let mut scp = Scp {
        wire: Wire::new(input, output, idle),
        fs: upstream,
        opts,
        errors: 0,
    };
    let outcome = if opts.sink {
        scp.sink(&paths).await
    } else {
        scp.source(&paths).await
    };
    match outcome {
        Ok(()) if scp.errors == 0 => 0,
        Ok(()) => 1,
        Err(Stop::Exit) => 1,
        Err(Stop::Lost(why)) => {
            tracing::debug!(reason = %why, "scp channel lost");
            1
        }
    }
}

/// Why a transfer stopped before its end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The channel is gone, or the client went quiet for the idle time.
    Lost(String),
    /// A fatal error, already told to the client where possible.
    Exit,
}

/// The other side's answer to a line or a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `\0`.
    Ok,
    /// `\x01MESSAGE`: that item failed, go on.
    Warn(String),
    /// `\x02MESSAGE` (or anything else): give up.
    Fatal(String),
}

/// The channel, with every wait bounded by the idle time.
pub(crate) struct Wire<'a, R, W> {
    rd: BufReader<&'a mut R>,
    wr: &'a mut W,
    idle: Duration,
}

impl<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Wire<'a, R, W> {
    pub(crate) fn new(rd: &'a mut R, wr: &'a mut W, idle: Duration) -> Self {
        Self {
            rd: BufReader::with_capacity(64 * 1024, rd),
            wr,
            idle,
        }
    }

    fn timed_out(&self) -> Stop {
        Stop::Lost(format!(
            "no data from the client for {} s",
            self.idle.as_secs()
        ))
    }

    /// Reads a line (without its `\n`); `None` at the end of the input
    /// before its first byte. A line longer than [`MAX_LINE`] is fatal.
    pub(crate) async fn read_line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let mut line = Vec::new();
        let limit = (MAX_LINE + 1) as u64;
        let mut bounded = (&mut self.rd).take(limit);
        let read = bounded.read_until(b'\n', &mut line);
        match tokio::time::timeout(self.idle, read).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(Stop::Lost(e.to_string())),
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(_)) => {
                if line.pop() != Some(b'\n') {
                    if line.len() >= MAX_LINE {
                        return Err(Stop::Lost("control line too long".into()));
                    }
                    return Err(Stop::Lost("the client ended mid-line".into()));
                }
                Ok(Some(line))
            }
        }
    }

    /// Reads exactly `buf.len()` bytes of file data.
    pub(crate) async fn read_data(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        match tokio::time::timeout(self.idle, self.rd.read_exact(buf)).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(Stop::Lost(e.to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Reads the other side's answer.
    pub(crate) async fn answer(&mut self) -> Result<Answer, Stop> {
        let first = match tokio::time::timeout(self.idle, self.rd.read_u8()).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(Stop::Lost(e.to_string())),
            Ok(Ok(b)) => b,
        };
        if first == 0 {
            return Ok(Answer::Ok);
        }
        let mut message = Vec::new();
        if first != 1 && first != 2 {
            message.push(first);
        }
        let rest = match self.read_line().await? {
            Some(rest) => rest,
            None => return Err(Stop::Lost("the client ended mid-message".into())),
        };
        message.extend(rest);
        let text = printable(&String::from_utf8_lossy(&message), MAX_LINE);
        Ok(if first == 1 {
            Answer::Warn(text)
        } else {
            Answer::Fatal(text)
        })
    }

    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<(), Stop> {
        bounded_write(self.wr, data, self.idle)
            .await
            .map_err(|e| Stop::Lost(e.to_string()))
    }

    /// `\0`: the last line or file was fine.
    pub(crate) async fn ok(&mut self) -> Result<(), Stop> {
        self.send(&[0]).await
    }

    /// `\x01scp: MESSAGE`: an error the client prints, counting it.
    pub(crate) async fn warn(&mut self, message: &str) -> Result<(), Stop> {
        let line = format!("\x01scp: {}\n", printable(message, 1024));
        self.send(line.as_bytes()).await
    }
}

struct Scp<'a, R, W> {
    wire: Wire<'a, R, W>,
    fs: &'a Upstream,
    opts: ScpOptions,
    errors: u32,
}

/// Times from a `T` line (whole seconds; Ferry keeps no microseconds here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    mtime: u32,
    atime: u32,
}

/// A directory being received.
struct Level {
    path: String,
    is_dir: bool,
    /// Set when its `E` arrives: times from its `T`, and a mode.
    times: Option<Times>,
    mode: Option<u32>,
}

/// A `C` or `D` line.
#[derive(Debug, PartialEq, Eq)]
struct Control {
    dir: bool,
    mode: u32,
    size: u64,
    name: String,
}

/// Parses `T MTIME USEC ATIME USEC`; `Ok(None)` for times out of range
/// (ignored, as OpenSSH does).
fn parse_times(line: &str) -> Result<Option<Times>, &'static str> {
    let mut parts = line.split(' ');
    let mut number = |what: &'static str, max: u64| -> Result<u64, &'static str> {
        let text = parts.next().ok_or(what)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(what);
        }
        let n: u64 = text.parse().unwrap_or(u64::MAX);
        if n > max {
            return Err(what);
        }
        Ok(n)
    };
    let mtime = number("mtime.sec not present", u64::MAX)?;
    number("mtime.usec not delimited", 999_999)?;
    let atime = number("atime.sec not present", u64::MAX)?;
    number("atime.usec not delimited", 999_999)?;
    if parts.next().is_some() {
        return Err("atime.usec not delimited");
    }
    Ok(match (u32::try_from(mtime), u32::try_from(atime)) {
        (Ok(mtime), Ok(atime)) => Some(Times { mtime, atime }),
        _ => None,
    })
}

/// Parses `C0644 SIZE NAME` or `D0755 0 NAME` (without the letter's
/// check of the name, see [`bad_name`]).
fn parse_control(line: &str) -> Result<Control, &'static str> {
    let dir = line.starts_with('D');
    let body = line.get(1..).ok_or("expected control record")?;
    let (mode_text, rest) = body.split_once(' ').ok_or("mode not delimited")?;
    if mode_text.len() != 4 || !mode_text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("bad mode");
    }
    let mode = u32::from_str_radix(mode_text, 8).map_err(|_| "bad mode")?;
    let (size_text, name) = rest.split_once(' ').ok_or("size not delimited")?;
    if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("size not present");
    }
    let size: u64 = size_text.parse().map_err(|_| "size out of range")?;
    if size > i64::MAX as u64 {
        return Err("size out of range");
    }
    Ok(Control {
        dir,
        mode,
        size,
        name: name.to_owned(),
    })
}

/// Why a name from a `C` or `D` line cannot be used, if it cannot.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        Some("unexpected filename")
    } else if name.len() > MAX_COMPONENT_LEN {
        Some("file name too long")
    } else {
        None
    }
}

/// `dir/name`, as OpenSSH's scp builds it.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The path without trailing slashes (one `/` stays).
fn trim_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && !path.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// The last component, as the name sent in a `C` or `D` line.
fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn unexpected(reply: &Response) -> FerryError {
    tracing::error!(?reply, "unexpected reply from the server");
    FerryError::internal("unexpected reply from the server")
}

impl<R, W> Scp<'_, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Counts an error and tells the client.
    async fn warn(&mut self, message: &str) -> Result<(), Stop> {
        self.errors += 1;
        self.wire.warn(message).await
    }

    /// A protocol error: told, then the end.
    async fn protocol_error(&mut self, why: &str) -> Stop {
        self.errors += 1;
        match self.wire.warn(&format!("protocol error: {why}")).await {
            Ok(()) => Stop::Exit,
            Err(lost) => lost,
        }
    }

    async fn stat(&self, path: &str) -> Result<FileStat, FerryError> {
        match self
            .fs
            .call(FsOp::Stat {
                path: path.to_owned(),
            })
            .await?
        {
            Response::Stat(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    async fn abort(&self, handle: HandleId) {
        if let Err(e) = self.fs.call(FsOp::Abort { handle }).await {
            tracing::debug!(error = %e, "scp: abort failed");
        }
    }

    async fn close(&self, handle: HandleId) -> Result<(), FerryError> {
        self.fs.call(FsOp::Close { handle }).await.map(|_| ())
    }

    // ---- Ferry receives: scp -t TARGET ----

    async fn sink(&mut self, targets: &[String]) -> Result<(), Stop> {
        let [target] = targets else {
            self.warn("ambiguous target").await?;
            return Err(Stop::Exit);
        };
        let target = if target.is_empty() { "." } else { target };
        let stat = self.stat(target).await;
        let target_is_dir = matches!(&stat, Ok(s) if s.kind == FileKind::Dir);
        if self.opts.target_dir && !target_is_dir {
            let why = match stat {
                Err(e) => describe(&e),
                Ok(_) => "Not a directory".to_owned(),
            };
            self.warn(&format!("{target}: {why}")).await?;
            return Err(Stop::Exit);
        }
        self.wire.ok().await?;
        let mut stack: Vec<Level> = Vec::new();
        let mut cur = Level {
            path: target.to_owned(),
            is_dir: target_is_dir,
            times: None,
            mode: None,
        };
        let mut times: Option<Times> = None;
        let mut first = true;
        loop {
            let Some(raw) = self.wire.read_line().await? else {
                return Ok(());
            };
            let was_first = std::mem::replace(&mut first, false);
            let line = String::from_utf8_lossy(&raw).into_owned();
            match raw.first().copied() {
                None => return Err(self.protocol_error("unexpected <newline>").await),
                Some(1) => {
                    self.errors += 1;
                    continue;
                }
                Some(2) => return Err(Stop::Exit),
                Some(b'E') => {
                    self.wire.ok().await?;
                    let Some(parent) = stack.pop() else {
                        return Ok(());
                    };
                    let done = std::mem::replace(&mut cur, parent);
                    self.finish_dir(done).await;
                    continue;
                }
                Some(b'T') => {
                    match parse_times(line.get(1..).unwrap_or_default()) {
                        Ok(t) => times = t,
                        Err(why) => return Err(self.protocol_error(why).await),
                    }
                    self.wire.ok().await?;
                    continue;
                }
                Some(b'C' | b'D') => {}
                Some(_) if was_first => {
                    // e.g. a shell's "No match." before scp ran
                    self.warn(&line).await?;
                    return Err(Stop::Exit);
                }
                Some(_) => return Err(self.protocol_error("expected control record").await),
            }
            let control = match parse_control(&line) {
                Ok(c) => c,
                Err(why) => return Err(self.protocol_error(why).await),
            };
            if std::str::from_utf8(&raw).is_err() {
                // Refusing the item makes the client skip it.
                self.warn(&format!("{}: file name is not UTF-8", control.name))
                    .await?;
                times = None;
                continue;
            }
            if let Some(why) = bad_name(&control.name) {
                self.warn(&format!("error: {why}: {}", control.name))
                    .await?;
                return Err(Stop::Exit);
            }
            let path = if cur.is_dir {
                join(&cur.path, &control.name)
            } else {
                cur.path.clone()
            };
            let item_times = times.take();
            if !control.dir {
                self.receive_file(&path, &control, item_times).await?;
                continue;
            }
            if !self.opts.recursive {
                return Err(self.protocol_error("received directory without -r").await);
            }
            if stack.len() >= MAX_DEPTH {
                self.warn(&format!("{path}: directories nested too deep"))
                    .await?;
                continue;
            }
            let created = match self.stat(&path).await {
                Ok(s) if s.kind == FileKind::Dir => false,
                Ok(_) => {
                    self.warn(&format!("{path}: Not a directory")).await?;
                    continue;
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    let mkdir = FsOp::Mkdir {
                        path: path.clone(),
                        attrs: SetAttrs {
                            permissions: Some((control.mode | 0o700) & 0o777),
                            ..SetAttrs::default()
                        },
                    };
                    if let Err(e) = self.fs.call(mkdir).await {
                        self.warn(&format!("{path}: {}", describe(&e))).await?;
                        continue;
                    }
                    true
                }
                Err(e) => {
                    self.warn(&format!("{path}: {}", describe(&e))).await?;
                    continue;
                }
            };
            // The answer to `D` is the `\0` a nested sink starts with.
            self.wire.ok().await?;
            let level = Level {
                path,
                is_dir: true,
                times: item_times,
                mode: (created || self.opts.preserve).then_some(control.mode & 0o777),
            };
            stack.push(std::mem::replace(&mut cur, level));
        }
    }

    /// A received directory is complete: its mode and times are set now
    /// (after its files, which would change its times). Failures here are
    /// not reported, as OpenSSH's scp does not.
    async fn finish_dir(&self, dir: Level) {
        if dir.times.is_none() && dir.mode.is_none() {
            return;
        }
        let attrs = SetAttrs {
            permissions: dir.mode,
            mtime: dir.times.map(|t| t.mtime),
            atime: dir.times.map(|t| t.atime),
            ..SetAttrs::default()
        };
        let op = FsOp::SetStat {
            path: dir.path,
            attrs,
        };
        if let Err(e) = self.fs.call(op).await {
            tracing::debug!(error = %e, "scp: cannot set a directory's attributes");
        }
    }

    /// One file: open the upload, answer, take SIZE bytes and the source's
    /// verdict, commit, answer.
    async fn receive_file(
        &mut self,
        path: &str,
        control: &Control,
        times: Option<Times>,
    ) -> Result<(), Stop> {
        let permissions = Some(control.mode & 0o777);
        let open = FsOp::Open {
            path: path.to_owned(),
            mode: OpenMode {
                write: true,
                create: true,
                truncate: true,
                ..OpenMode::default()
            },
            attrs: SetAttrs {
                permissions,
                ..SetAttrs::default()
            },
            size: Some(control.size),
        };
        let handle = match self.open(open).await {
            Ok(h) => h,
            Err(e) => return self.warn(&format!("{path}: {}", describe(&e))).await,
        };
        if let Err(stop) = self.wire.ok().await {
            self.abort(handle).await;
            return Err(stop);
        }
        let received = self.receive_data(handle, control.size).await;
        let mut failure = match received {
            Ok(failure) => failure,
            Err(stop) => {
                self.abort(handle).await;
                return Err(stop);
            }
        };
        let verdict = match self.wire.answer().await {
            Ok(v) => v,
            Err(stop) => {
                self.abort(handle).await;
                return Err(stop);
            }
        };
        match verdict {
            Answer::Ok => {}
            Answer::Warn(_) => {
                failure.get_or_insert_with(|| {
                    "upload abandoned: the sending side reported an error".to_owned()
                });
            }
            Answer::Fatal(_) => {
                self.abort(handle).await;
                return Err(Stop::Exit);
            }
        }
        if failure.is_none() {
            let attrs = SetAttrs {
                permissions,
                mtime: times.map(|t| t.mtime),
                atime: times.map(|t| t.atime),
                ..SetAttrs::default()
            };
            if let Err(e) = self.fs.call(FsOp::Fsetstat { handle, attrs }).await {
                failure = Some(describe(&e));
            }
        }
        match failure {
            None => match self.close(handle).await {
                Ok(()) => self.wire.ok().await,
                Err(e) => self.warn(&format!("{path}: {}", describe(&e))).await,
            },
            Some(why) => {
                self.abort(handle).await;
                self.warn(&format!("{path}: {why}")).await
            }
        }
    }

    /// Takes `size` bytes from the client into `handle`. After a failed
    /// write the rest is still read (and dropped) to stay in step; the
    /// failure is returned for the answer.
    async fn receive_data(&mut self, handle: HandleId, size: u64) -> Result<Option<String>, Stop> {
        let mut in_flight: VecDeque<oneshot::Receiver<Response>> = VecDeque::new();
        let mut failure: Option<String> = None;
        let mut offset = 0u64;
        while offset < size {
            let len = CHUNK.min(size - offset);
            let mut data = vec![0u8; len as usize];
            self.wire.read_data(&mut data).await?;
            if failure.is_none() && in_flight.len() >= IN_FLIGHT {
                if let Some(reply) = in_flight.pop_front() {
                    if let Err(e) = self.fs.finish(reply).await {
                        failure = Some(describe(&e));
                    }
                }
            }
            if failure.is_none() {
                match self.fs.start(FsOp::Write {
                    handle,
                    offset,
                    data,
                }) {
                    Ok(reply) => in_flight.push_back(reply),
                    Err(e) => failure = Some(describe(&e)),
                }
            }
            offset += len;
        }
        for reply in in_flight {
            if let Err(e) = self.fs.finish(reply).await {
                failure.get_or_insert_with(|| describe(&e));
            }
        }
        Ok(failure)
    }

    // ---- Ferry sends: scp -f PATH… ----

    async fn source(&mut self, paths: &[String]) -> Result<(), Stop> {
        if let Answer::Fatal(_) = self.wire.answer().await? {
            return Err(Stop::Exit);
        }
        for path in paths {
            self.send_path(path, 0).await?;
        }
        Ok(())
    }

    async fn send_path(&mut self, path: &str, depth: usize) -> Result<(), Stop> {
        let path = trim_slashes(path);
        let stat = match self.stat(path).await {
            Ok(s) => s,
            Err(e) => return self.warn(&format!("{path}: {}", describe(&e))).await,
        };
        match stat.kind {
            FileKind::File => self.send_file(path).await,
            FileKind::Dir if self.opts.recursive => {
                Box::pin(self.send_dir(path, &stat, depth)).await
            }
            _ => self.warn(&format!("{path}: not a regular file")).await,
        }
    }

    /// Sends `T` if times are kept; `false` if the client refused it.
    async fn send_times(&mut self, stat: &FileStat) -> Result<bool, Stop> {
        if !self.opts.preserve {
            return Ok(true);
        }
        let line = format!("T{} 0 {} 0\n", stat.mtime, stat.atime);
        self.wire.send(line.as_bytes()).await?;
        self.accepted().await
    }

    /// The client's answer to a line: `false` for an error (counted).
    async fn accepted(&mut self) -> Result<bool, Stop> {
        match self.wire.answer().await? {
            Answer::Ok => Ok(true),
            Answer::Warn(message) => {
                tracing::debug!(%message, "scp: the client refused an item");
                self.errors += 1;
                Ok(false)
            }
            Answer::Fatal(_) => Err(Stop::Exit),
        }
    }

    async fn send_file(&mut self, path: &str) -> Result<(), Stop> {
        let open = FsOp::Open {
            path: path.to_owned(),
            mode: OpenMode {
                read: true,
                ..OpenMode::default()
            },
            attrs: SetAttrs::default(),
            size: None,
        };
        let handle = match self.open(open).await {
            Ok(h) => h,
            Err(e) => return self.warn(&format!("{path}: {}", describe(&e))).await,
        };
        let sent = self.send_opened(path, handle).await;
        match sent {
            Ok(true) => match self.close(handle).await {
                Ok(()) => Ok(()),
                // Every byte went out, but the server could not log it.
                Err(e) => self.warn(&format!("{path}: {}", describe(&e))).await,
            },
            Ok(false) => {
                self.abort(handle).await;
                Ok(())
            }
            Err(stop) => {
                self.abort(handle).await;
                Err(stop)
            }
        }
    }

    /// `T`, `C`, the data and the verdicts of an open file; `true` if the
    /// client has all of it.
    async fn send_opened(&mut self, path: &str, handle: HandleId) -> Result<bool, Stop> {
        let stat = match self.fs.call(FsOp::Fstat { handle }).await {
            Ok(Response::Stat(s)) => s,
            Ok(other) => {
                let e = unexpected(&other);
                self.warn(&format!("{path}: {}", describe(&e))).await?;
                return Ok(false);
            }
            Err(e) => {
                self.warn(&format!("{path}: {}", describe(&e))).await?;
                return Ok(false);
            }
        };
        if !self.send_times(&stat).await? {
            return Ok(false);
        }
        let line = format!(
            "C{:04o} {} {}\n",
            stat.permissions & 0o7777,
            stat.size,
            last_component(path)
        );
        self.wire.send(line.as_bytes()).await?;
        if !self.accepted().await? {
            return Ok(false);
        }
        let failure = self.send_data(handle, stat.size).await?;
        match &failure {
            None => self.wire.ok().await?,
            Some(why) => self.warn(&format!("{path}: {why}")).await?,
        }
        let accepted = self.accepted().await?;
        Ok(failure.is_none() && accepted)
    }

    /// Sends `size` bytes of `handle`, reading ahead. If the file cannot be
    /// read to the end, zeros make up the rest (the client expects `size`
    /// bytes) and the failure is returned.
    async fn send_data(&mut self, handle: HandleId, size: u64) -> Result<Option<String>, Stop> {
        let mut in_flight: VecDeque<(u64, oneshot::Receiver<Response>)> = VecDeque::new();
        let mut failure: Option<String> = None;
        let mut next = 0u64;
        let mut offset = 0u64;
        while offset < size {
            while failure.is_none() && next < size && in_flight.len() < IN_FLIGHT {
                let len = CHUNK.min(size - next);
                let read = FsOp::Read {
                    handle,
                    offset: next,
                    len: len as u32,
                };
                match self.fs.start(read) {
                    Ok(reply) => in_flight.push_back((len, reply)),
                    Err(e) => failure = Some(describe(&e)),
                }
                next += len;
            }
            let (len, mut data) = match (failure.is_none(), in_flight.pop_front()) {
                (true, Some((len, reply))) => match self.fs.finish(reply).await {
                    Ok(Response::Data(d)) => (len, d),
                    Ok(Response::Eof) => (len, Vec::new()),
                    Ok(other) => {
                        failure = Some(describe(&unexpected(&other)));
                        (len, Vec::new())
                    }
                    Err(e) => {
                        failure = Some(describe(&e));
                        (len, Vec::new())
                    }
                },
                _ => (CHUNK.min(size - offset), Vec::new()),
            };
            if (data.len() as u64) < len && failure.is_none() {
                failure = Some("file changed size while being sent".to_owned());
            }
            data.resize(len as usize, 0);
            self.wire.send(&data).await?;
            offset += len;
        }
        Ok(failure)
    }

    async fn send_dir(&mut self, path: &str, stat: &FileStat, depth: usize) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            return self
                .warn(&format!("{path}: directories nested too deep"))
                .await;
        }
        let entries = match self.list(path).await {
            Ok(entries) => entries,
            Err(e) => return self.warn(&format!("{path}: {}", describe(&e))).await,
        };
        if !self.send_times(stat).await? {
            return Ok(());
        }
        let line = format!(
            "D{:04o} 0 {}\n",
            stat.permissions & 0o7777,
            last_component(path)
        );
        self.wire.send(line.as_bytes()).await?;
        if !self.accepted().await? {
            return Ok(());
        }
        for name in entries {
            self.send_path(&join(path, &name), depth + 1).await?;
        }
        self.wire.send(b"E\n").await?;
        self.accepted().await.map(|_| ())
    }

    /// Sends an open (file or directory) and returns its handle.
    async fn open(&self, op: FsOp) -> Result<HandleId, FerryError> {
        match self.fs.call(op).await? {
            Response::Handle(h) => Ok(h),
            other => Err(unexpected(&other)),
        }
    }

    /// The names in a directory.
    async fn list(&self, path: &str) -> Result<Vec<String>, FerryError> {
        let handle = self
            .open(FsOp::OpenDir {
                path: path.to_owned(),
            })
            .await?;
        let mut names = Vec::new();
        let listed = loop {
            match self.fs.call(FsOp::ReadDir { handle }).await {
                Ok(Response::Entries(batch)) => {
                    names.extend(batch.into_iter().map(|e| e.name));
                }
                Ok(Response::Eof) => break Ok(()),
                Ok(other) => break Err(unexpected(&other)),
                Err(e) => break Err(e),
            }
        };
        let _ = self.close(handle).await;
        listed.map(|()| names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn options_as_openssh_sends_them() {
        let (o, p) = parse_args(&args("-v -r -p -d -t -- dir")).unwrap();
        assert!(o.sink && o.recursive && o.preserve && o.target_dir && !o.source);
        assert_eq!(p, ["dir"]);
        let (o, p) = parse_args(&args("-rpf a b -c")).unwrap();
        assert!(o.source && o.recursive && o.preserve);
        assert_eq!(p, ["a", "b", "-c"], "options end at the first path");
        assert!(parse_args(&args("-t -f x")).is_err());
        assert!(parse_args(&args("a b")).is_err());
        let e = parse_args(&args("-3 -t x")).unwrap_err();
        assert!(e.contains("-3"), "{e}");
    }

    #[test]
    fn control_lines() {
        assert_eq!(
            parse_control("C0644 12 my file.txt"),
            Ok(Control {
                dir: false,
                mode: 0o644,
                size: 12,
                name: "my file.txt".into()
            })
        );
        assert_eq!(
            parse_control("D0755 0 d").map(|c| (c.dir, c.mode)),
            Ok((true, 0o755))
        );
        for bad in [
            "C644 1 x",
            "C0648 1 x",
            "C0644 x",
            "C0644  x",
            "C0644 -1 x",
            "C0644 1",
        ] {
            assert!(parse_control(bad).is_err(), "{bad}");
        }
        assert!(parse_control("C0644 99999999999999999999 x").is_err());
        assert_eq!(bad_name("ok"), None);
        for bad in ["", ".", "..", "a/b"] {
            assert!(bad_name(bad).is_some(), "{bad}");
        }
        assert!(bad_name(&"n".repeat(256)).is_some());
    }

    #[test]
    fn time_lines() {
        assert_eq!(
            parse_times("1000000000 0 1000000001 0"),
            Ok(Some(Times {
                mtime: 1_000_000_000,
                atime: 1_000_000_001
            }))
        );
        assert_eq!(parse_times("99999999999 0 1 0"), Ok(None));
        for bad in [
            "",
            "1 0 1",
            "1 0 1 0 9",
            "1 1000000 1 0",
            "a 0 1 0",
            "1 0 1 x",
        ] {
            assert!(parse_times(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(join("dir", "f"), "dir/f");
        assert_eq!(join("/", "f"), "/f");
        assert_eq!(join("", "f"), "f");
        assert_eq!(trim_slashes("a/b//"), "a/b");
        assert_eq!(trim_slashes("///"), "/");
        assert_eq!(last_component("a/b"), "b");
        assert_eq!(last_component("b"), "b");
    }

    #[tokio::test]
    async fn wire_reads_lines_and_answers() {
        let mut input: &[u8] = b"C0644 3 f\nabc\x01scp: oops\n\x00\x02bad\n";
        let mut output = Vec::new();
        let mut wire = Wire::new(&mut input, &mut output, Duration::from_secs(5));
        assert_eq!(wire.read_line().await.unwrap().unwrap(), b"C0644 3 f");
        let mut data = [0u8; 3];
        wire.read_data(&mut data).await.unwrap();
        assert_eq!(&data, b"abc");
        assert_eq!(
            wire.answer().await.unwrap(),
            Answer::Warn("scp: oops".into())
        );
        assert_eq!(wire.answer().await.unwrap(), Answer::Ok);
        assert_eq!(wire.answer().await.unwrap(), Answer::Fatal("bad".into()));
        assert!(wire.read_line().await.unwrap().is_none(), "end of input");
        wire.warn("f: No such file\nor directory").await.unwrap();
        assert_eq!(output, b"\x01scp: f: No such file?or directory\n");
    }

    #[tokio::test]
    async fn wire_bounds_lines() {
        let long = vec![b'C'; MAX_LINE + 10];
        let mut input: &[u8] = &long;
        let mut output = Vec::new();
        let mut wire = Wire::new(&mut input, &mut output, Duration::from_secs(5));
        assert!(matches!(wire.read_line().await, Err(Stop::Lost(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_is_given_up() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"ab")
            .await
            .unwrap();
        let mut output = Vec::new();
        let mut wire = Wire::new(&mut server, &mut output, Duration::from_secs(60));
        let mut data = [0u8; 10];
        let started = tokio::time::Instant::now();
        assert!(matches!(
            wire.read_data(&mut data).await,
            Err(Stop::Lost(_))
        ));
        assert!(started.elapsed() >= Duration::from_secs(60));
        assert!(matches!(wire.answer().await, Err(Stop::Lost(_))));
        drop(client);
    }
}
