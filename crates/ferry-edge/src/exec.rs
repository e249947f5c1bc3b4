//! SSH `exec` requests: the few commands clients run against an SFTP server.
//!
//! Nothing is executed. The command line is split into words here, the way
//! a POSIX shell would for the plain quoting clients use (single quotes,
//! double quotes, backslashes, a leading `~`), and anything a shell would
//! expand or interpret otherwise (`$`, globs, pipes, redirections, `;` …) is
//! refused. The first word picks one of:
//!
//! * `scp -t …` / `scp -f …` — the legacy scp protocol ([`crate::scp`]);
//! * `sha256sum`, `sha1sum`, `md5sum` — digests computed by the server
//!   ([`FsOp::Hash`]) and printed like coreutils, or of standard input (the
//!   probe rclone runs to see whether hashing works);
//! * anything else — one line on stderr and exit status 127.
//!
//! Every file operation goes to the session's server as the same [`FsOp`]s
//! SFTP uses, so confinement, atomic uploads and the transfer log are
//! those of SFTP. Every wait on the client or the server is bounded by the
//! SSH idle timeout.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::{ErrorKind, FerryError};
use ferry_proto::client::Connection;
use ferry_proto::message::{FsOp, HashAlgorithm, Request, Response, SessionId};
use russh::server::Msg;
use russh::Channel;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Longest command line accepted, in bytes.
pub const MAX_COMMAND_LEN: usize = 32 * 1024;
/// Most words in a command line.
pub const MAX_WORDS: usize = 1024;
/// Exit status of a command that is not offered (as a shell's "not found").
pub const EXIT_NOT_SUPPORTED: u32 = 127;
/// What is available, for refusal messages.
const AVAILABLE: &str = "only sftp, scp and sha256sum/sha1sum/md5sum are available";

/// What an exec channel needs: the logged-in server session and the bound on
/// every wait.
#[derive(Debug, Clone)]
pub struct ExecCtx {
    /// The server this SSH session is logged in on.
    pub upstream: Arc<Connection>,
    /// The session there.
    pub session: SessionId,
    /// Keeps that session logged in while the channel runs.
    pub lease: Arc<crate::upstream::SessionLease>,
    /// The account, for logs.
    pub account: String,
    /// How long any wait on the client or the server may last.
    pub idle: Duration,
}

/// File operations on the session's server, each bounded by the idle time.
pub(crate) struct Upstream {
    conn: Arc<Connection>,
    session: SessionId,
    idle: Duration,
}

impl Upstream {
    /// Sends `op` now; the reply is collected with [`Upstream::finish`].
    /// Requests reach the server in the order they were started.
    pub(crate) fn start(&self, op: FsOp) -> Result<oneshot::Receiver<Response>, FerryError> {
        self.conn
            .start_call(Request::Fs {
                session: self.session,
                op,
            })
            .map_err(|_| lost_server())
    }

    /// Waits for the reply of a started request; an error reply is an `Err`.
    pub(crate) async fn finish(
        &self,
        reply: oneshot::Receiver<Response>,
    ) -> Result<Response, FerryError> {
        match tokio::time::timeout(self.idle, reply).await {
            Ok(Ok(Response::Error(e))) => Err(e),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(lost_server()),
            Err(_) => Err(FerryError::unavailable("the server did not answer in time")),
        }
    }

    /// Sends `op` and waits for its reply.
    pub(crate) async fn call(&self, op: FsOp) -> Result<Response, FerryError> {
        let reply = self.start(op)?;
        self.finish(reply).await
    }
}

fn lost_server() -> FerryError {
    FerryError::unavailable("connection to the server was lost")
}

/// An error as a Unix tool would print it after `NAME: ` — the one place an
/// [`ErrorKind`] becomes text for exec commands (scp and the hash commands).
pub(crate) fn describe(e: &FerryError) -> String {
    let fixed = match e.kind {
        ErrorKind::NotFound => "No such file or directory",
        ErrorKind::PermissionDenied if e.message.is_empty() => "Permission denied",
        ErrorKind::AlreadyExists => "File exists",
        ErrorKind::NoSpace => "No space left on device",
        ErrorKind::WrongType if e.message == "is a directory" => "Is a directory",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    let mut chars = e.message.chars();
    let text: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => "Failure".to_owned(),
    };
    printable(&text, 512)
}

/// `text` with control characters replaced and at most `max` characters,
/// safe to put on one line of a protocol or a terminal.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Why a command line was not split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsplittable(pub String);

/// Splits a command line into words as a POSIX shell would, for what
/// clients send: `'…'`, `"…"` (where `\` escapes `$ \` " \`), `\x`, and a
/// leading `~` or `~/` for the home directory (`/`). Whatever a shell would
/// expand or interpret (variables, command substitution, globs, braces,
/// pipes, redirections, separators, comments, `~user`) is refused: nothing
/// here is evaluated.
pub fn split_command(line: &str) -> Result<Vec<String>, Unsplittable> {
    let refuse = |why: String| Err(Unsplittable(why));
    if line.len() > MAX_COMMAND_LEN {
        return refuse(format!("command longer than {MAX_COMMAND_LEN} bytes"));
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    if words.len() >= MAX_WORDS {
                        return refuse(format!("more than {MAX_WORDS} words"));
                    }
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return refuse("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return refuse("unterminated double quote".into()),
                        },
                        Some(c @ ('$' | '`')) => {
                            return refuse(format!("{c:?} inside double quotes is not supported"))
                        }
                        Some(c) => word.push(c),
                        None => return refuse("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return refuse("trailing backslash".into()),
            },
            '~' if !in_word => match chars.peek() {
                None | Some(' ' | '\t' | '/') => {
                    in_word = true;
                    word.push('/');
                }
                Some(_) => return refuse("~user paths are not supported".into()),
            },
            '#' if !in_word => return refuse("comments are not supported".into()),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '{' => {
                return refuse(format!(
                    "the shell character {c:?} is not supported (quote it)"
                ))
            }
            c if c.is_control() => {
                return refuse("control characters are not supported".into());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        if words.len() >= MAX_WORDS {
            return refuse(format!("more than {MAX_WORDS} words"));
        }
        words.push(word);
    }
    Ok(words)
}

/// Runs one exec request on `channel` to the end: the command's output,
/// then exit status, EOF and close.
pub async fn serve(channel: Channel<Msg>, command: Vec<u8>, ctx: ExecCtx) {
    let (mut read_half, write_half) = channel.split();
    let mut out = write_half.make_writer();
    let mut err = write_half.make_writer_ext(Some(1));
    let upstream = Upstream {
        conn: ctx.upstream.clone(),
        session: ctx.session,
        idle: ctx.idle,
    };
    let words = match std::str::from_utf8(&command) {
        Ok(line) => split_command(line),
        Err(_) => Err(Unsplittable("the command is not UTF-8".into())),
    };
    let name = match &words {
        Ok(w) => w.first().map(|n| printable(n, 64)).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let code = match words {
        Err(Unsplittable(why)) => {
            let text = format!("Ferry: cannot run this command: {why} ({AVAILABLE})\n");
            let _ = bounded_write(&mut err, text.as_bytes(), ctx.idle).await;
            EXIT_NOT_SUPPORTED
        }
        Ok(words) => {
            let mut reader = read_half.make_reader();
            let (cmd, args) = match words.split_first() {
                Some((cmd, args)) => (cmd.as_str(), args),
                None => ("", &[][..]),
            };
            match cmd {
                "scp" => {
                    crate::scp::run(args, &upstream, &mut reader, &mut out, &mut err, ctx.idle)
                        .await
                }
                "sha256sum" | "sha1sum" | "md5sum" => {
                    let algorithm = match cmd {
                        "sha256sum" => HashAlgorithm::Sha256,
                        "sha1sum" => HashAlgorithm::Sha1,
                        _ => HashAlgorithm::Md5,
                    };
                    let io = Streams {
                        stdin: &mut reader,
                        out: &mut out,
                        err: &mut err,
                        idle: ctx.idle,
                    };
                    hashsum(cmd, algorithm, args, &upstream, io).await
                }
                _ => {
                    let shown = if name.is_empty() { "(empty)" } else { &name };
                    let text = format!("Ferry: command not supported: {shown} ({AVAILABLE})\n");
                    let _ = bounded_write(&mut err, text.as_bytes(), ctx.idle).await;
                    EXIT_NOT_SUPPORTED
                }
            }
        }
    };
    tracing::info!(account = %ctx.account, command = %name, exit = code, "ssh exec");
    let _ = out.flush().await;
    let _ = err.flush().await;
    drop((out, err));
    let _ = write_half.exit_status(code).await;
    let _ = write_half.eof().await;
    let _ = write_half.close().await;
}

/// Answers a shell request: there is no shell, said on stderr.
pub async fn refuse_shell(channel: Channel<Msg>, idle: Duration) {
    let (_read_half, write_half) = channel.split();
    let mut err = write_half.make_writer_ext(Some(1));
    let text = format!("Ferry: this server offers no shell ({AVAILABLE})\r\n");
    let _ = bounded_write(&mut err, text.as_bytes(), idle).await;
    drop(err);
    let _ = write_half.exit_status(1).await;
    let _ = write_half.eof().await;
    let _ = write_half.close().await;
}

/// Writes all of `data` unless the peer stops reading for `idle`.
pub(crate) async fn bounded_write<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(idle, w.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

/// The standard streams of a command.
struct Streams<'a, R, O, E> {
    stdin: &'a mut R,
    out: &'a mut O,
    err: &'a mut E,
    idle: Duration,
}

/// `sha256sum`, `sha1sum`, `md5sum`: one line per file as coreutils prints
/// it (`HEX  NAME`), errors on stderr, exit status 1 if any file failed.
/// No file, or `-`, is standard input (read to its end, hashed here).
async fn hashsum<R, O, E>(
    cmd: &str,
    algorithm: HashAlgorithm,
    args: &[String],
    upstream: &Upstream,
    io: Streams<'_, R, O, E>,
) -> u32
where
    R: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let Streams {
        stdin,
        out,
        err,
        idle,
    } = io;
    let mut binary = false;
    let mut files = Vec::new();
    let mut options_done = false;
    for arg in args {
        if options_done || arg == "-" || !arg.starts_with('-') {
            files.push(arg.as_str());
            continue;
        }
        match arg.as_str() {
            "--" => options_done = true,
            "--binary" => binary = true,
            "--text" => binary = false,
            long if long.starts_with("--") => {
                return usage_error(cmd, &format!("option '{}'", printable(long, 64)), err, idle)
                    .await
            }
            short => {
                for c in short.chars().skip(1) {
                    match c {
                        'b' => binary = true,
                        't' => binary = false,
                        other => {
                            let what = format!("option -- '{}'", printable(&other.to_string(), 1));
                            return usage_error(cmd, &what, err, idle).await;
                        }
                    }
                }
            }
        }
    }
    if files.is_empty() {
        files.push("-");
    }
    let mut failed = false;
    for name in files {
        let digest = if name == "-" {
            digest_stdin(algorithm, stdin, idle).await
        } else {
            match upstream
                .call(FsOp::Hash {
                    path: name.to_owned(),
                    algorithm,
                })
                .await
            {
                Ok(Response::Hash(hex)) => Ok(hex),
                Ok(other) => {
                    tracing::error!(reply = ?other, "unexpected reply to a hash request");
                    Err(FerryError::internal("unexpected reply from the server"))
                }
                Err(e) => Err(e),
            }
        };
        let line = match digest {
            Ok(hex) => {
                let (escaped, name) = coreutils_name(name);
                let mark = if binary { '*' } else { ' ' };
                let lead = if escaped { "\\" } else { "" };
                format!("{lead}{hex} {mark}{name}\n")
            }
            Err(e) => {
                failed = true;
                let text = format!("{cmd}: {}: {}\n", shell_quoted(name), describe(&e));
                if bounded_write(err, text.as_bytes(), idle).await.is_err() {
                    return 1;
                }
                continue;
            }
        };
        if bounded_write(out, line.as_bytes(), idle).await.is_err() {
            return 1;
        }
    }
    u32::from(failed)
}

async fn usage_error<E: AsyncWrite + Unpin>(
    cmd: &str,
    what: &str,
    err: &mut E,
    idle: Duration,
) -> u32 {
    let text = format!("{cmd}: unrecognized {what}\nFerry's {cmd} accepts only -b, -t and --\n");
    let _ = bounded_write(err, text.as_bytes(), idle).await;
    1
}

/// The digest of standard input, read to its end (each read bounded by
/// `idle`); nothing is kept.
async fn digest_stdin<R: AsyncRead + Unpin>(
    algorithm: HashAlgorithm,
    stdin: &mut R,
    idle: Duration,
) -> Result<String, FerryError> {
    use sha2::Digest;
    enum Any {
        Sha256(sha2::Sha256),
        Sha1(sha1::Sha1),
        Md5(md5::Md5),
    }
    let mut hasher = match algorithm {
        HashAlgorithm::Sha256 => Any::Sha256(sha2::Sha256::new()),
        HashAlgorithm::Sha1 => Any::Sha1(sha1::Sha1::new()),
        HashAlgorithm::Md5 => Any::Md5(md5::Md5::new()),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(idle, stdin.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(FerryError::internal(format!("standard input: {e}"))),
            Err(_) => return Err(FerryError::unavailable("standard input: timed out")),
        };
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        match &mut hasher {
            Any::Sha256(h) => h.update(chunk),
            Any::Sha1(h) => h.update(chunk),
            Any::Md5(h) => h.update(chunk),
        }
    }
    Ok(match hasher {
        Any::Sha256(h) => hex::encode(h.finalize()),
        Any::Sha1(h) => hex::encode(h.finalize()),
        Any::Md5(h) => hex::encode(h.finalize()),
    })
}

/// A file name as coreutils' `*sum` prints it: a name with a backslash,
/// newline or carriage return is escaped, and the line then starts with `\`.
fn coreutils_name(name: &str) -> (bool, String) {
    if !name.contains(['\\', '\n', '\r']) {
        return (false, name.to_owned());
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    (true, out)
}

/// A name in an error message as coreutils quotes it: as it is when only
/// harmless characters are in it, else in single quotes (double quotes if
/// it holds a single quote and nothing a shell expands there).
fn shell_quoted(name: &str) -> String {
    let harmless = |(i, c): (usize, char)| {
        c.is_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ',' | '@' | '%' | '+')
            || (i > 0 && matches!(c, '~' | '#'))
    };
    let name = printable(name, 1024);
    if !name.is_empty() && name.chars().enumerate().all(harmless) {
        return name;
    }
    if name.contains('\'') && !name.contains(['"', '$', '`', '\\', '!']) {
        return format!("\"{name}\"");
    }
    format!("'{}'", name.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_command(s).unwrap()
    }

    #[test]
    fn splits_what_clients_send() {
        assert_eq!(split("scp -t -- dir/x"), ["scp", "-t", "--", "dir/x"]);
        assert_eq!(split("  scp\t-f  a  "), ["scp", "-f", "a"]);
        assert_eq!(split("scp -t 'my file'"), ["scp", "-t", "my file"]);
        assert_eq!(
            split(r#"scp -t "a \"b\" \$c \x""#),
            ["scp", "-t", r#"a "b" $c \x"#]
        );
        assert_eq!(
            split(r"md5sum /dir/my\ file\(1\).txt"),
            ["md5sum", "/dir/my file(1).txt"]
        );
        assert_eq!(split("scp -t ''"), ["scp", "-t", ""]);
        assert_eq!(split("scp -t a'b'\"c\"d"), ["scp", "-t", "abcd"]);
        assert_eq!(split("scp -t ~"), ["scp", "-t", "/"]);
        assert_eq!(split("scp -t ~/in"), ["scp", "-t", "//in"]);
        assert_eq!(
            split("scp -t a~b a#b x=y ] }"),
            ["scp", "-t", "a~b", "a#b", "x=y", "]", "}"]
        );
        // rclone escapes a newline in a name as '\n' in single quotes.
        assert_eq!(split("sha1sum /a'\n'b"), ["sha1sum", "/a\nb"]);
        assert_eq!(split("sha1sum /caf\u{e9}"), ["sha1sum", "/caf\u{e9}"]);
        assert!(split("").is_empty());
    }

    #[test]
    fn refuses_what_a_shell_would_interpret() {
        for bad in [
            "scp -t x; rm -rf /",
            "scp -t x && ls",
            "scp -t x | cat",
            "scp -t x > y",
            "scp -t $HOME",
            "scp -t \"$HOME\"",
            "scp -t `id`",
            "scp -t $(id)",
            "scp -f *.txt",
            "scp -f a?",
            "scp -f [ab]",
            "scp -f {a,b}",
            "scp -t ~bob/x",
            "scp -t x # comment",
            "scp -t 'open",
            "scp -t \"open",
            "scp -t x\\",
            "scp -t a\nls",
            "scp -t a\rb",
        ] {
            assert!(split_command(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(split_command(&"a".repeat(MAX_COMMAND_LEN + 1)).is_err());
        assert!(split_command(&"a ".repeat(MAX_WORDS + 1)).is_err());
    }

    #[test]
    fn names_and_errors_look_like_coreutils() {
        assert_eq!(coreutils_name("plain"), (false, "plain".to_owned()));
        assert_eq!(coreutils_name("a\\b\nc"), (true, "a\\\\b\\nc".to_owned()));
        assert_eq!(shell_quoted("nope"), "nope");
        assert_eq!(shell_quoted("no pe"), "'no pe'");
        assert_eq!(shell_quoted("it's"), "\"it's\"");
        assert_eq!(shell_quoted("a:b"), "'a:b'");
        assert_eq!(shell_quoted("~a"), "'~a'");
        assert_eq!(shell_quoted("a~b"), "a~b");
        assert_eq!(shell_quoted("\u{fc}"), "\u{fc}");
        assert_eq!(
            describe(&FerryError::not_found("no such file")),
            "No such file or directory"
        );
        assert_eq!(
            describe(&FerryError::new(ErrorKind::WrongType, "is a directory")),
            "Is a directory"
        );
        assert_eq!(
            describe(&FerryError::denied("path leads outside the home directory")),
            "Path leads outside the home directory"
        );
    }

    #[tokio::test]
    async fn stdin_digest_is_the_empty_digest_rclone_probes_for() {
        let mut empty: &[u8] = b"";
        let idle = Duration::from_secs(5);
        let md5 = digest_stdin(HashAlgorithm::Md5, &mut empty, idle)
            .await
            .unwrap();
        assert_eq!(md5, "d41d8cd98f00b204e9800998ecf8427e");
        let mut abc: &[u8] = b"abc";
        let sha1 = digest_stdin(HashAlgorithm::Sha1, &mut abc, idle)
            .await
            .unwrap();
        assert_eq!(sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stdin_times_out() {
        let (_keep, mut silent) = tokio::io::duplex(64);
        let r = digest_stdin(HashAlgorithm::Sha256, &mut silent, Duration::from_secs(30)).await;
        assert!(r.is_err());
    }
}
