//! Test fixture: a real, unprivileged OpenSSH `sshd` on 127.0.0.1 with an
//! ephemeral port, a fresh ed25519 host key and a client key that may log in
//! as the current user (SFTP only). Depends on nothing but std and `tempfile`.
//!
//! Include it with `#[path = "../../../tests/common/sshd.rs"] mod sshd;` (from a
//! crate's `tests/` directory) and call [`start`]. The server is killed when
//! the [`Sshd`] is dropped; [`Sshd::stop`] and [`Sshd::start_again`] take it
//! down and bring it back on the same port with the same keys.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The sshd binary (sshd insists on being started by absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed on drop.
pub struct Sshd {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The server's host key, "ssh-ed25519 AAAA..." (no comment).
    pub host_key_pub: String,
    /// Private key (OpenSSH format, no passphrase) accepted for `user`.
    pub client_key: PathBuf,
    /// Its public half, "ssh-ed25519 AAAA..." (no comment).
    pub client_key_pub: String,
    /// The login name (the current user, from `id -un`).
    pub user: String,
    /// An empty directory for remote files (absolute path; SFTP paths under it work as is).
    pub root: PathBuf,
    /// The fixture's own directory (keys, config, pid file, log).
    pub dir: PathBuf,
    /// The sshd_config in use.
    pub config: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// Generates an ed25519 key pair without passphrase at `path` (and `path.pub`);
/// returns the public key as "ssh-ed25519 AAAA..." without comment.
pub fn keygen(path: &Path) -> String {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
    let public = fs::read_to_string(path.with_extension("pub")).expect("read generated .pub");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts a fresh sshd (see the module docs). Panics with sshd's log if it does not come up.
pub fn start() -> Sshd {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().canonicalize().expect("canonicalize tempdir");
    let root = dir.join("root");
    fs::create_dir(&root).expect("create root");

    let host_key = dir.join("host_ed25519");
    let host_key_pub = keygen(&host_key);
    let client_key = dir.join("client_ed25519");
    let client_key_pub = keygen(&client_key);
    let authorized_keys = dir.join("authorized_keys");
    fs::write(&authorized_keys, format!("{client_key_pub}\n")).expect("write authorized_keys");

    let user = current_user();
    let port = free_port();
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             StrictModes no\n\
             UsePAM no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             Subsystem sftp internal-sftp\n\
             ForceCommand internal-sftp\n\
             AllowUsers {user}\n\
             LogLevel ERROR\n",
            host_key = host_key.display(),
            pid = dir.join("sshd.pid").display(),
            authorized_keys = authorized_keys.display(),
        ),
    )
    .expect("write sshd_config");

    let mut sshd = Sshd {
        port,
        host_key_pub,
        client_key,
        client_key_pub,
        user,
        root,
        dir,
        config,
        child: None,
        _tmp: tmp,
    };
    sshd.start_again();
    sshd
}

impl Sshd {
    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Path of sshd's stderr log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// Is the server process running?
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server and waits until the port refuses connections.
    /// Sessions already established are served by their own sshd processes
    /// and are not affected. No-op if already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "sshd port {} still open after stop",
                self.port
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// (Re)starts the server on the same port with the same keys and config,
    /// waiting until it accepts connections. No-op if it is running.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        ensure_privsep_dir();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open sshd log");
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn /usr/sbin/sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sshd exited ({status}) before accepting connections; log:\n{}",
                    fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sshd did not accept connections on port {} within 10 s; log:\n{}",
                    self.port,
                    fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The current user's login name (`id -un`).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout)
        .expect("utf-8 user name")
        .trim()
        .to_owned()
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// sshd started as root refuses to run without its privilege-separation
/// directory; create it if we can (harmless when it exists or we are not root).
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = fs::create_dir_all(dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
        }
    }
}
