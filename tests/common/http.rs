//! curl as the HTTPS client of end-to-end tests.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{rand_suffix, Ferry, PASSWORD};

/// What one curl run returned.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status (0 when no answer came).
    pub status: u16,
    /// Response headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// curl's exit code.
    pub exit: i32,
    /// curl's stderr.
    pub stderr: String,
}

impl Reply {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {}, curl exit {}: {})",
                String::from_utf8_lossy(&self.body),
                self.status,
                self.exit,
                self.stderr
            )
        })
    }

    /// The stable error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A curl bound to one Ferry's HTTPS front, optionally logged in.
#[derive(Clone)]
pub struct Curl {
    pub base: String,
    pub ca: PathBuf,
    pub tmp: PathBuf,
    /// Arguments given to every run (the credentials of [`Curl::user`]).
    pub auth: Vec<String>,
}

impl Ferry {
    /// curl for this Ferry's HTTPS front.
    pub fn curl(&self) -> Curl {
        Curl {
            base: self
                .https_url
                .clone()
                .expect("this Ferry has no HTTPS front"),
            ca: self.ca.clone(),
            tmp: self.dir.path().to_owned(),
            auth: Vec::new(),
        }
    }
}

impl Curl {
    /// This curl, logging in as `user` with [`PASSWORD`] (HTTP Basic).
    pub fn user(mut self, user: &str) -> Self {
        self.auth = vec!["-u".into(), format!("{user}:{PASSWORD}")];
        self
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S], path: &str) -> (Command, PathBuf, PathBuf) {
        let id = rand_suffix();
        let (head, body) = (
            self.tmp.join(format!("h-{id}")),
            self.tmp.join(format!("b-{id}")),
        );
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "120", "--cacert"])
            .arg(&self.ca)
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(&self.auth)
            .args(args)
            .arg(self.url(path));
        (cmd, head, body)
    }

    /// Runs curl with `args` against `path` and collects the answer.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S], path: &str) -> Reply {
        let (mut cmd, head, body) = self.command(args, path);
        let out = cmd.output().expect("curl");
        collect(out, &head, &body)
    }

    /// A plain `GET` of `path`.
    pub fn get(&self, path: &str) -> Reply {
        self.run::<&str>(&[], path)
    }

    /// Starts curl in the background (to be killed mid-transfer); its
    /// answer files are returned for [`collect`].
    pub fn spawn<S: AsRef<OsStr>>(&self, args: &[S], path: &str) -> (Child, PathBuf, PathBuf) {
        let (mut cmd, head, body) = self.command(args, path);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl");
        (child, head, body)
    }
}

/// Reads what a curl run left.
pub fn collect(out: std::process::Output, head: &Path, body: &Path) -> Reply {
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let raw = std::fs::read_to_string(head).unwrap_or_default();
    // With redirects or 100-continue there may be several blocks; keep the last.
    let last = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body_bytes = std::fs::read(body).unwrap_or_default();
    let _ = std::fs::remove_file(head);
    let _ = std::fs::remove_file(body);
    Reply {
        status,
        headers,
        body: body_bytes,
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
