//! The servers under test, each started on loopback as a foreground child
//! of the benchmark: Ferry as one process (`ferry up`) and as separate
//! `ferry server` and `ferry edge` processes, OpenSSH's sshd with
//! `internal-sftp`, and nginx with WebDAV PUT. Every one of them is stopped
//! when its [`Target`] is dropped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::procs::{ferry_ok, free_port, run, Daemon};

/// The SSH server that serves `/usr/sbin/sshd` must be started by absolute path.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Debian's nginx.
pub const NGINX: &str = "/usr/sbin/nginx";
/// Account name used on every server.
pub const USER_FERRY: &str = "bench";
/// Password of the Ferry account (HTTPS Basic login).
pub const PASSWORD: &str = "bench-password-not-secret";

/// Which column of the table a target fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `ferry up`.
    Single,
    /// `ferry server` + `ferry edge`.
    Split,
    /// sshd or nginx.
    Peer,
}

/// How to reach a target over SFTP.
pub struct SftpAccess {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Login name.
    pub user: String,
}

/// How to reach a target over HTTPS.
pub struct HttpsAccess {
    /// URL prefix a file name is appended to ("https://127.0.0.1:P/api/v1/files/").
    pub files_url: String,
    /// Basic login, if the server asks for one.
    pub login: Option<(String, String)>,
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
}

/// A running server under test.
pub struct Target {
    /// Column label: "Ferry single", "Ferry split", "OpenSSH", "nginx".
    pub label: String,
    /// Which column.
    pub side: Side,
    /// SFTP access, if it serves SFTP.
    pub sftp: Option<SftpAccess>,
    /// HTTPS access, if it serves HTTPS.
    pub https: Option<HttpsAccess>,
    /// Where the files of the benchmark account are on disk.
    pub root: PathBuf,
    daemons: Vec<Daemon>,
}

impl Target {
    /// Resident memory (PSS, KiB) of every process of this target, children included.
    pub fn memory_kib(&self) -> u64 {
        self.daemons
            .iter()
            .map(|d| crate::procs::tree_pss_kib(d.pid()))
            .sum()
    }
}

/// Starts `ferry up` on a fresh data directory under `work` and creates the
/// benchmark account with `client_key_pub`.
pub fn ferry_single(ferry: &Path, work: &Path, client_key_pub: &Path) -> anyhow::Result<Target> {
    let data = work.join("ferry-single");
    let mut cmd = Command::new(ferry);
    cmd.arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--sftp-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0"]);
    let (daemon, v) = Daemon::start_reporting(
        "ferry up",
        cmd,
        &work.join("ferry-single.log"),
        &["sftp", "https"],
    )?;
    let admin = vec!["--data-dir".into(), data.to_string_lossy().into_owned()];
    add_account(ferry, &admin, client_key_pub)?;
    Ok(Target {
        label: "Ferry single".into(),
        side: Side::Single,
        sftp: Some(SftpAccess {
            port: port_of(&v[0])?,
            user: USER_FERRY.into(),
        }),
        https: Some(ferry_https(&v[1], &data.join("pki").join("ca.crt"))),
        root: data.join("repository").join(USER_FERRY),
        daemons: vec![daemon],
    })
}

/// Starts `ferry server` and `ferry edge` as two processes, with their own
/// PKI, and creates the benchmark account.
pub fn ferry_split(ferry: &Path, work: &Path, client_key_pub: &Path) -> anyhow::Result<Target> {
    let dir = work.join("ferry-split");
    let pki = dir.join("pki");
    fs::create_dir_all(dir.join("repository"))?;
    let p = pki.to_string_lossy().into_owned();
    ferry_ok(ferry, &["pki", "init", "--dir", &p])?;
    ferry_ok(
        ferry,
        &[
            "pki",
            "issue",
            "--dir",
            &p,
            "--role",
            "server",
            "--san",
            "127.0.0.1",
            "server1",
        ],
    )?;
    ferry_ok(
        ferry,
        &["pki", "issue", "--dir", &p, "--role", "edge", "edge1"],
    )?;
    ferry_ok(
        ferry,
        &[
            "pki",
            "issue",
            "--dir",
            &p,
            "--role",
            "https",
            "--san",
            "127.0.0.1",
            "edge1-https",
        ],
    )?;
    let token = dir.join("admin.token");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token)?
        .write_all(b"bench-admin-token-0123456789abcdef\n")?;
    let internal = free_port()?;
    fs::write(
        dir.join("server.toml"),
        format!(
            "node_id = \"server1\"\nstate_dir = \"state\"\nrepository = \"repository\"\n\
             [internal]\nlisten = \"127.0.0.1:{internal}\"\nca = \"pki/ca.crt\"\n\
             cert = \"pki/server1.crt\"\nkey = \"pki/server1.key\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n"
        ),
    )?;
    fs::write(
        dir.join("edge.toml"),
        format!(
            "node_id = \"edge1\"\n\
             [sftp]\nlisten = \"127.0.0.1:0\"\nhost_key = \"edge_host_key\"\n\
             [https]\nlisten = \"127.0.0.1:0\"\ncert = \"pki/edge1-https.crt\"\n\
             key = \"pki/edge1-https.key\"\n\
             [upstream]\nservers = [\"127.0.0.1:{internal}\"]\nca = \"pki/ca.crt\"\n\
             cert = \"pki/edge1.crt\"\nkey = \"pki/edge1.key\"\n"
        ),
    )?;
    let mut cmd = Command::new(ferry);
    cmd.arg("server")
        .arg("--config")
        .arg(dir.join("server.toml"));
    let (server, sv) = Daemon::start_reporting(
        "ferry server",
        cmd,
        &work.join("ferry-server.log"),
        &["internal", "admin"],
    )?;
    let mut cmd = Command::new(ferry);
    cmd.arg("edge").arg("--config").arg(dir.join("edge.toml"));
    let (edge, ev) = Daemon::start_reporting(
        "ferry edge",
        cmd,
        &work.join("ferry-edge.log"),
        &["sftp", "https"],
    )?;
    let admin = vec![
        "--admin".into(),
        sv[1].clone(),
        "--token-file".into(),
        token.to_string_lossy().into_owned(),
        "--ca-file".into(),
        pki.join("ca.crt").to_string_lossy().into_owned(),
    ];
    add_account(ferry, &admin, client_key_pub)?;
    Ok(Target {
        label: "Ferry split".into(),
        side: Side::Split,
        sftp: Some(SftpAccess {
            port: port_of(&ev[0])?,
            user: USER_FERRY.into(),
        }),
        https: Some(ferry_https(&ev[1], &pki.join("ca.crt"))),
        root: dir.join("repository").join(USER_FERRY),
        daemons: vec![edge, server],
    })
}

fn ferry_https(url: &str, ca: &Path) -> HttpsAccess {
    HttpsAccess {
        files_url: format!("{}/api/v1/files/", url.trim_end_matches('/')),
        login: Some((USER_FERRY.into(), PASSWORD.into())),
        ca: ca.to_path_buf(),
    }
}

fn port_of(addr: &str) -> anyhow::Result<u16> {
    addr.trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {addr:?}"))
}

/// `ferry account add` + `ferry account key add` through the admin API.
fn add_account(ferry: &Path, admin: &[String], key_pub: &Path) -> anyhow::Result<()> {
    let mut child = Command::new(ferry)
        .args(["account", "add", USER_FERRY, "--password-stdin"])
        .args(admin)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{PASSWORD}")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ferry account add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut cmd = Command::new(ferry);
    cmd.args(["account", "key", "add", USER_FERRY])
        .arg(key_pub)
        .args(admin);
    run("ferry account key add", cmd, Duration::from_secs(30))?;
    Ok(())
}

/// The login name sshd sees for this process's user.
pub fn current_user() -> anyhow::Result<String> {
    let mut cmd = Command::new("id");
    cmd.arg("-un");
    let out = run("id -un", cmd, Duration::from_secs(5))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Starts OpenSSH's sshd, unprivileged-style, on a free loopback port: its
/// own host key, `internal-sftp` starting in a fresh directory, key login
/// for the current user only.
pub fn sshd(work: &Path, client_key_pub: &Path) -> anyhow::Result<Target> {
    if !Path::new(SSHD).exists() {
        bail!("{SSHD} not found: install Debian's openssh-server package");
    }
    ensure_privsep_dir();
    let dir = work.join("sshd");
    let root = dir.join("root");
    fs::create_dir_all(&root)?;
    let host_key = dir.join("host_ed25519");
    keygen(&host_key)?;
    let authorized = dir.join("authorized_keys");
    fs::copy(client_key_pub, &authorized)?;
    let user = current_user()?;
    let port = free_port()?;
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
             AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             MaxStartups 1000\nMaxSessions 10\n\
             Subsystem sftp internal-sftp\nForceCommand internal-sftp -d {root}\n\
             AllowUsers {user}\nLogLevel ERROR\n",
            hk = host_key.display(),
            pid = dir.join("sshd.pid").display(),
            ak = authorized.display(),
            root = root.display(),
        ),
    )?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    let daemon = Daemon::start_listening("sshd", cmd, &work.join("sshd.log"), port)?;
    Ok(Target {
        label: "OpenSSH".into(),
        side: Side::Peer,
        sftp: Some(SftpAccess { port, user }),
        https: None,
        root,
        daemons: vec![daemon],
    })
}

/// sshd started as root exits at once without its privilege-separation
/// directory, which systemd-tmpfiles makes at boot and a container that
/// did not boot lacks: made here when it is missing (harmless when it
/// exists, or when we may not).
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() && fs::create_dir_all(dir).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

/// Starts nginx on a free loopback port with TLS (`cert`, `key`) and WebDAV
/// `PUT` into a fresh directory; no login (one request per gigabyte, so a
/// Basic check would not show in the figures).
pub fn nginx(work: &Path, cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<Target> {
    if !Path::new(NGINX).exists() {
        bail!("{NGINX} not found: install Debian's nginx package");
    }
    let dir = work.join("nginx");
    let root = dir.join("root");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&root)?;
    fs::create_dir_all(&tmp)?;
    let port = free_port()?;
    // nginx started by root hands requests to workers running as `user`;
    // keep them able to write the directory.
    let user = if current_user()? == "root" {
        "user root root;\n"
    } else {
        ""
    };
    let t = tmp.display();
    fs::write(
        dir.join("nginx.conf"),
        format!(
            "{user}daemon off;\nmaster_process on;\nworker_processes auto;\n\
             pid {pid};\nerror_log {log} warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
             client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n    root {root};\n    client_max_body_size 0;\n\
             location / {{ dav_methods PUT; create_full_put_path on; dav_access user:rw; }}\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            log = dir.join("error.log").display(),
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
        ),
    )?;
    let mut cmd = Command::new(NGINX);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    let daemon = Daemon::start_listening("nginx", cmd, &work.join("nginx.log"), port)?;
    Ok(Target {
        label: "nginx".into(),
        side: Side::Peer,
        sftp: None,
        https: Some(HttpsAccess {
            files_url: format!("https://127.0.0.1:{port}/"),
            login: None,
            ca: ca.to_path_buf(),
        }),
        root,
        daemons: vec![daemon],
    })
}

/// An ed25519 key pair without passphrase at `path` and `path.pub`.
pub fn keygen(path: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path);
    run("ssh-keygen", cmd, Duration::from_secs(30))?;
    Ok(())
}
