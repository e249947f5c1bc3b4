//! `ferry backup` and `ferry restore`: a server's state in one archive,
//! taken while the server runs, and put back into a new place.
//!
//! The archive is a plain tar: `manifest.json` first (format version,
//! versions, node, mode, time, and each entry's name, size and SHA-256),
//! then the entries. A site is a directory (the config file's, or a
//! `ferry up` data directory) and the state directory; an entry is named
//! by its path beneath the site, so restoring the entries into a new
//! directory gives a site whose config finds them where it did before.
//!
//! What is in it: a consistent copy of `ferry.db` (SQLite's backup API
//! on a read-only connection of its own: no lock of the state directory,
//! the server goes on writing), the config, the certificate, key, CA and
//! admin token the config names when they lie in the config's directory
//! (or in the state directory), an active/passive server's sync
//! manifests; for `ferry up`, its CA, certificates, token and SSH host
//! keys. The engine's secret key only when asked (`--with-secret-key`):
//! without it the secrets in the store stay sealed. Never: `raft.db` (the
//! Raft log and the vote: a restored vote could vote twice in a term),
//! `cluster.json` (an active/passive server's role and epoch), the event
//! log, the repository's files (the operator's storage backup has them).
//!
//! Each file is copied first (the store with the backup API, the others
//! byte for byte), the copy is digested, and the copy is archived: the
//! manifest describes exactly the bytes in the archive. A restore reads
//! the whole archive and checks every entry against the manifest before it
//! writes anything, writes only into a new or empty directory whose lock a
//! running server does not hold, never over a file, and checks every entry
//! again as it writes it (removing what it wrote if one differs).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use ferry_cluster::raft::state_machine::{APPLIED, MEMBERSHIP};
use ferry_server::state_lock::LOCK_FILE;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::admin_client::Failure;

/// The archive format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's name, the archive's first entry.
const MANIFEST: &str = "manifest.json";
/// The largest manifest read.
const MANIFEST_MAX: u64 = 16 << 20;
/// The store's file in the state directory.
const STORE_FILE: &str = "ferry.db";
/// Where the state directory goes in the archive when it is not beneath
/// the site's directory.
const STATE_DEFAULT: &str = "state";
/// Exit code of a refusal for something that exists or is in use.
const CONFLICT: i32 = 4;

/// `ferry backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The config file of the server to back up (it may be running).
    #[arg(
        long,
        required_unless_present = "data_dir",
        conflicts_with = "data_dir"
    )]
    config: Option<PathBuf>,
    /// Or: the data directory of a `ferry up` (it may be running).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The archive to write: a new file (mode 0600), never overwritten.
    #[arg(long)]
    to: PathBuf,
    /// Put the engine's secret key into the archive too. Without it the
    /// partner passwords and keys in the store stay sealed, and the
    /// restored server needs the key from elsewhere.
    #[arg(long)]
    with_secret_key: bool,
}

/// `ferry restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `ferry backup` wrote.
    #[arg(long)]
    from: PathBuf,
    /// A new or empty directory for everything in the archive: the config
    /// (or `ferry up` data directory) with its files and the state.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    to: Option<PathBuf>,
    /// Or: restore the state alone into the `state_dir` of this config (a
    /// new server's, e.g. to join a cluster), which must be new or empty;
    /// the archive's config and certificates are not written.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Active/active: keep the store's Raft position, so that `ferry
    /// cluster join` on the restored server (under a new name, or after
    /// `ferry cluster remove` of the old one) sends it only what it lacks.
    #[arg(long, conflicts_with = "new_cluster")]
    join: bool,
    /// Active/active: forget the store's Raft position, for a new cluster
    /// (`ferry cluster init`) of servers restored from this backup.
    #[arg(long)]
    new_cluster: bool,
}

/// What a backup is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    /// A server and its config file.
    Server,
    /// A `ferry up` data directory.
    Up,
}

/// `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    format_version: u32,
    /// The release of ferry that wrote it.
    ferry_version: String,
    /// The server's `node_id`.
    node_id: String,
    /// `single`, `active-passive` or `active-active`.
    mode: String,
    /// When the backup was taken (RFC 3339).
    created_at: String,
    /// A server's config, or a `ferry up` data directory.
    kind: Kind,
    /// The config file's entry (a server's backup).
    config: Option<String>,
    /// The state directory's path in the archive ("" for the site's own
    /// directory).
    state_dir: String,
    /// The secret key's entry, when it was included.
    secret_key: Option<String>,
    /// Every entry but the manifest, in archive order.
    entries: Vec<Entry>,
    /// Files the config names that are not in the archive (outside the
    /// config's directory and the state directory), as they were.
    not_included: Vec<String>,
    /// What a restore should tell.
    notes: Vec<String>,
}

/// One archived file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Its path beneath the site, `/`-separated.
    name: String,
    /// Bytes.
    size: u64,
    /// SHA-256 of the bytes, hex.
    sha256: String,
    /// store, config, certificate, key, ca, token, secret-key, host-key, sync.
    what: String,
}

impl Manifest {
    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The store's entry name.
    fn store_entry(&self) -> String {
        join_name(&self.state_dir, STORE_FILE)
    }
}

/// A file to archive: its name in the archive and where it is now.
#[derive(Debug)]
struct SiteFile {
    name: String,
    source: PathBuf,
    what: &'static str,
}

/// What one backup takes.
#[derive(Debug)]
struct Site {
    kind: Kind,
    node_id: String,
    mode: &'static str,
    config: Option<String>,
    state_dir: String,
    /// The live store.
    store: PathBuf,
    /// Everything else, the config first.
    files: Vec<SiteFile>,
    secret_key: Option<String>,
    not_included: Vec<String>,
    notes: Vec<String>,
}

impl Site {
    /// The site of the server configured by `path`.
    fn of_config(path: &Path, with_secret_key: bool) -> anyhow::Result<Self> {
        let config = ferry_server::ServerConfig::load(path)?;
        let root = normalize(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
        let state = normalize(&config.state_dir)?;
        let config_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| safe_name(n))
            .with_context(|| format!("{}: not a file name to archive", path.display()))?
            .to_owned();
        let mut notes = Vec::new();
        let state_dir = match below(&root, &state) {
            Some(rel) => rel,
            None => {
                notes.push(format!(
                    "the config's state_dir was {} (outside the config's directory): the state \
                     is restored into {STATE_DEFAULT}/ beside the config; set state_dir = \
                     \"{STATE_DEFAULT}\" in the restored config, or move it",
                    state.display()
                ));
                STATE_DEFAULT.to_owned()
            }
        };
        // A file's place in the archive: beneath the config's directory,
        // or beneath the state directory.
        let place = |file: &Path| -> anyhow::Result<Option<String>> {
            let file = normalize(file)?;
            Ok(below(&root, &file)
                .or_else(|| below(&state, &file).map(|rel| join_name(&state_dir, &rel)))
                .filter(|n| !n.is_empty()))
        };
        let mut site = Site {
            kind: Kind::Server,
            node_id: config.node_id.clone(),
            mode: mode_name(config.cluster.mode),
            config: Some(config_name.clone()),
            state_dir: state_dir.clone(),
            store: state.join(STORE_FILE),
            files: vec![SiteFile {
                name: config_name,
                source: path.to_owned(),
                what: "config",
            }],
            secret_key: None,
            not_included: Vec::new(),
            notes,
        };
        let tls = &config.internal.tls;
        let named: [(&Path, &'static str); 4] = [
            (&tls.ca, "ca"),
            (&tls.cert, "certificate"),
            (&tls.key, "key"),
            (&config.admin.token_file, "token"),
        ];
        for (file, what) in named {
            match place(file)? {
                Some(name) => site.add(name, file.to_owned(), what)?,
                None => site
                    .not_included
                    .push(format!("{what} {}", normalize(file)?.display())),
            }
        }
        if config.cluster.mode == ferry_cluster::Mode::ActivePassive {
            let sync = root.join(&config.cluster.sync_dir);
            if sync.is_dir() {
                let listing = std::fs::read_dir(&sync)
                    .with_context(|| format!("cannot list {}", sync.display()))?;
                let mut files = Vec::new();
                for item in listing {
                    let item = item.with_context(|| format!("cannot list {}", sync.display()))?;
                    if item.file_type().is_ok_and(|t| t.is_file()) {
                        files.push(item.path());
                    }
                }
                files.sort();
                for file in files {
                    match place(&file)? {
                        Some(name) => site.add(name, file, "sync")?,
                        None => site
                            .not_included
                            .push(format!("sync {}", normalize(&file)?.display())),
                    }
                }
            }
        }
        if with_secret_key {
            let key = config
                .engine
                .secret_key_file
                .clone()
                .unwrap_or_else(|| config.state_dir.join("secret.key"));
            if !key.is_file() {
                bail!(
                    "--with-secret-key: there is no secret key at {} (the server creates it at \
                     its first start)",
                    key.display()
                );
            }
            let name = match place(&key)? {
                Some(name) => name,
                None => {
                    let name = join_name(&state_dir, "secret.key");
                    site.notes.push(format!(
                        "the secret key was {} (outside the config's directory): it is \
                         restored as {name}, where a config without [engine] secret_key_file \
                         reads it; point secret_key_file there, or move it",
                        key.display()
                    ));
                    name
                }
            };
            site.add(name.clone(), key, "secret-key")?;
            site.secret_key = Some(name);
        }
        Ok(site)
    }

    /// The site of `ferry up --data-dir dir`.
    fn of_up(dir: &Path, with_secret_key: bool) -> anyhow::Result<Self> {
        let root = normalize(dir)?;
        let mut site = Site {
            kind: Kind::Up,
            node_id: "server".into(),
            mode: "single",
            config: None,
            state_dir: STATE_DEFAULT.into(),
            store: root.join(STATE_DEFAULT).join(STORE_FILE),
            files: Vec::new(),
            secret_key: None,
            not_included: Vec::new(),
            notes: Vec::new(),
        };
        let mut named: Vec<(String, &'static str)> = vec![
            ("pki/ca.crt".into(), "ca"),
            ("pki/ca.key".into(), "key"),
            ("admin.token".into(), "token"),
        ];
        for node in ["server", "edge", "https"] {
            named.push((format!("pki/{node}.crt"), "certificate"));
            named.push((format!("pki/{node}.key"), "key"));
        }
        for kind in ["ed25519", "rsa", "ecdsa"] {
            named.push((format!("ssh_host_{kind}_key"), "host-key"));
        }
        for (name, what) in named {
            let source = root.join(&name);
            if source.is_file() {
                site.add(name, source, what)?;
            }
        }
        if with_secret_key {
            let key = root.join("secret.key");
            if !key.is_file() {
                bail!(
                    "--with-secret-key: there is no secret key at {}",
                    key.display()
                );
            }
            site.add("secret.key".into(), key, "secret-key")?;
            site.secret_key = Some("secret.key".into());
        }
        Ok(site)
    }

    /// Adds a file, once; two files under one name are an error.
    fn add(&mut self, name: String, source: PathBuf, what: &'static str) -> anyhow::Result<()> {
        if name == self.store_name() || name == MANIFEST {
            bail!(
                "{} would be archived as {name}, which the backup holds already",
                source.display()
            );
        }
        if let Some(had) = self.files.iter().find(|f| f.name == name) {
            if normalize(&had.source)? == normalize(&source)? {
                return Ok(());
            }
            bail!(
                "{} and {} would both be archived as {name}",
                had.source.display(),
                source.display()
            );
        }
        self.files.push(SiteFile { name, source, what });
        Ok(())
    }

    fn store_name(&self) -> String {
        join_name(&self.state_dir, STORE_FILE)
    }
}

/// The config's mode as the manifest names it.
fn mode_name(mode: ferry_cluster::Mode) -> &'static str {
    match mode {
        ferry_cluster::Mode::Single => "single",
        ferry_cluster::Mode::ActivePassive => "active-passive",
        ferry_cluster::Mode::ActiveActive => "active-active",
    }
}

/// Runs `ferry backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let site = match (&args.config, &args.data_dir) {
        (Some(config), _) => Site::of_config(config, args.with_secret_key)?,
        (None, Some(dir)) => Site::of_up(dir, args.with_secret_key)?,
        (None, None) => bail!("give --config FILE or --data-dir DIR"),
    };
    if !site.store.is_file() {
        bail!(
            "there is no store at {}: has this server started yet?",
            site.store.display()
        );
    }
    // The archive's file first: an existing one stops the backup before
    // anything is copied.
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.to)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure {
                exit_code: CONFLICT,
                message: format!(
                    "{} exists: a backup never overwrites a file",
                    args.to.display()
                ),
            }
            .into())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", args.to.display())),
    };
    let written = write_archive(&site, file, &args.to);
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(e) => {
            // Half an archive must not pass for a backup.
            let _ = std::fs::remove_file(&args.to);
            return Err(e);
        }
    };
    let bytes: u64 = manifest.entries.iter().map(|e| e.size).sum();
    println!(
        "Backed up {} ({}, {}) to {}: {} files, {bytes} bytes.",
        manifest.node_id,
        manifest.mode,
        match manifest.kind {
            Kind::Server => "server",
            Kind::Up => "ferry up",
        },
        args.to.display(),
        manifest.entries.len()
    );
    for entry in &manifest.entries {
        println!("  {} ({}, {} bytes)", entry.name, entry.what, entry.size);
    }
    match &manifest.secret_key {
        Some(_) => println!(
            "The secret key is in the archive: whoever has it can open the partner \
             credentials in the store. Keep the archive as you keep the key."
        ),
        None => println!(
            "The secret key is not in the archive (the store's secrets stay sealed): keep a \
             copy of it apart; a restored server needs it."
        ),
    }
    for file in &manifest.not_included {
        println!("Not in the archive (outside the config's directory): {file}");
    }
    Ok(())
}

/// Copies the site's files into a private staging directory beside the
/// archive, digests the copies and writes the archive from them.
fn write_archive(site: &Site, file: File, archive: &Path) -> anyhow::Result<Manifest> {
    let parent = archive
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".ferry-backup-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    let mut staged: Vec<(Entry, PathBuf)> = Vec::new();
    let store_copy = staging.path().join("0");
    ferry_store::sync::snapshot_file(&site.store, &store_copy)
        .with_context(|| format!("cannot copy the store {}", site.store.display()))?;
    staged.push((digest(&store_copy, site.store_name(), "store")?, store_copy));
    for (i, f) in site.files.iter().enumerate() {
        let copy = staging.path().join((i + 1).to_string());
        copy_private(&f.source, &copy)?;
        staged.push((digest(&copy, f.name.clone(), f.what)?, copy));
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        ferry_version: env!("CARGO_PKG_VERSION").to_owned(),
        node_id: site.node_id.clone(),
        mode: site.mode.to_owned(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: site.kind,
        config: site.config.clone(),
        state_dir: site.state_dir.clone(),
        secret_key: site.secret_key.clone(),
        entries: staged.iter().map(|(e, _)| e.clone()).collect(),
        not_included: site.not_included.clone(),
        notes: site.notes.clone(),
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    let mtime = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.append_data(&mut header(text.len() as u64, mtime), MANIFEST, &text[..])
        .context("cannot write the archive")?;
    for (entry, copy) in &staged {
        let data = File::open(copy).with_context(|| format!("cannot read {}", copy.display()))?;
        tar.append_data(&mut header(entry.size, mtime), &entry.name, data)
            .context("cannot write the archive")?;
    }
    let file = tar
        .into_inner()
        .context("cannot write the archive")?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write the archive")?;
    file.sync_all().context("cannot write the archive")?;
    sync_dir(parent)?;
    Ok(manifest)
}

/// A tar header of a private regular file of `size` bytes.
fn header(size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header
}

/// Copies `source` to the new file `dest` (mode 0600), byte for byte.
fn copy_private(source: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut from =
        File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    std::io::copy(&mut from, &mut to)
        .with_context(|| format!("cannot copy {}", source.display()))?;
    Ok(())
}

/// The entry describing the file `path` as `name`.
fn digest(path: &Path, name: String, what: &str) -> anyhow::Result<Entry> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (size, sha256) =
        hash_reader(&mut file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Entry {
        name,
        size,
        sha256,
        what: what.to_owned(),
    })
}

/// Reads `reader` to its end: how many bytes, and their SHA-256 in hex.
fn hash_reader(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    hash_copy(reader, &mut std::io::sink())
}

/// Copies `reader` to `writer`: how many bytes, and their SHA-256 in hex.
fn hash_copy(reader: &mut impl Read, writer: &mut impl Write) -> std::io::Result<(u64, String)> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        writer.write_all(chunk)?;
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Runs `ferry restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    // Nothing is written before the whole archive was read and found
    // whole.
    let manifest = verify(&args.from)?;
    let active_active = manifest.mode == "active-active";
    match (active_active, args.join, args.new_cluster) {
        (true, false, false) => bail!(
            "{} is the backup of an active/active server: say --join (keep its Raft position; \
             `ferry cluster join` then sends only what it lacks) or --new-cluster (forget it, \
             for `ferry cluster init`)",
            args.from.display()
        ),
        (false, true, _) | (false, _, true) => bail!(
            "{} is the backup of a {} server: it has no Raft position for --join or \
             --new-cluster",
            args.from.display(),
            manifest.mode
        ),
        _ => {}
    }
    let plan = Plan::new(&manifest, &args)?;
    plan.check_target()?;
    let mut writer = Writer::default();
    let written = writer
        .write(&args.from, &manifest, &plan)
        .and_then(|()| forget_position(&plan, &args));
    if let Err(e) = written {
        writer.undo();
        return Err(e);
    }
    plan.report(&manifest, &args);
    Ok(())
}

/// Reads the archive at `from` through, checking every entry against the
/// manifest; returns the manifest.
fn verify(from: &Path) -> anyhow::Result<Manifest> {
    let file = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let broken = |why: String| anyhow::anyhow!("{} is not a usable backup: {why}", from.display());
    let mut entries = archive
        .entries()
        .map_err(|e| broken(format!("not a tar archive ({e})")))?;
    let manifest = match entries.next() {
        Some(Ok(mut first)) if entry_name(&first).as_deref() == Some(MANIFEST) => {
            if first.size() > MANIFEST_MAX {
                return Err(broken(format!("its {MANIFEST} is too large")));
            }
            let mut text = Vec::new();
            first
                .read_to_end(&mut text)
                .map_err(|e| broken(format!("cannot read {MANIFEST} ({e})")))?;
            parse_manifest(&text).map_err(|e| broken(format!("{MANIFEST}: {e}")))?
        }
        Some(Err(e)) => return Err(broken(format!("not a tar archive ({e})"))),
        _ => return Err(broken(format!("it does not begin with {MANIFEST}"))),
    };
    let mut seen: Vec<&str> = Vec::new();
    for item in entries {
        let mut item = item.map_err(|e| broken(format!("the archive is cut or damaged ({e})")))?;
        let name =
            entry_name(&item).ok_or_else(|| broken("an entry's name is not UTF-8".to_owned()))?;
        if item.header().entry_type() != tar::EntryType::Regular {
            return Err(broken(format!("{name} is not a regular file")));
        }
        let expected = manifest
            .entry(&name)
            .ok_or_else(|| broken(format!("{name} is not in the manifest")))?;
        if seen.contains(&expected.name.as_str()) {
            return Err(broken(format!("{name} is in the archive twice")));
        }
        seen.push(&expected.name);
        let (size, sha256) =
            hash_reader(&mut item).map_err(|e| broken(format!("cannot read {name} ({e})")))?;
        if size != expected.size || sha256 != expected.sha256 {
            return Err(broken(format!(
                "{name} differs from the manifest ({size} bytes, SHA-256 {sha256}; the \
                 manifest says {} bytes, {}): the archive was changed or damaged",
                expected.size, expected.sha256
            )));
        }
    }
    if let Some(missing) = manifest
        .entries
        .iter()
        .find(|e| !seen.contains(&e.name.as_str()))
    {
        return Err(broken(format!("{} is missing", missing.name)));
    }
    Ok(manifest)
}

/// Parses and checks a manifest.
fn parse_manifest(text: &[u8]) -> anyhow::Result<Manifest> {
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version = serde_json::from_slice(text)?;
    if version.format_version > FORMAT_VERSION {
        bail!(
            "format version {} was written by a newer ferry (this one reads up to {FORMAT_VERSION})",
            version.format_version
        );
    }
    let manifest: Manifest = serde_json::from_slice(text)?;
    let mut names: Vec<&str> = Vec::new();
    for entry in &manifest.entries {
        if !safe_name(&entry.name) || entry.name == MANIFEST {
            bail!("entry name {:?} is not allowed", entry.name);
        }
        if names.contains(&entry.name.as_str()) {
            bail!("entry {} is listed twice", entry.name);
        }
        names.push(&entry.name);
    }
    if !manifest.state_dir.is_empty() && !safe_name(&manifest.state_dir) {
        bail!("state_dir {:?} is not allowed", manifest.state_dir);
    }
    let store = manifest.store_entry();
    if manifest.entry(&store).is_none() {
        bail!("the store {store} is not listed");
    }
    for named in [&manifest.config, &manifest.secret_key]
        .into_iter()
        .flatten()
    {
        if manifest.entry(named).is_none() {
            bail!("{named} is named but not listed");
        }
    }
    if manifest.kind == Kind::Server && manifest.config.is_none() {
        bail!("a server's backup without its config");
    }
    Ok(manifest)
}

/// An entry's path as a `/`-separated string.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Option<String> {
    let path = entry.path().ok()?;
    path.to_str().map(str::to_owned)
}

/// Where a restore puts what.
#[derive(Debug)]
struct Plan {
    /// The directory that must be new or empty: the site's (`--to`) or
    /// the state directory (`--config`).
    target: PathBuf,
    /// Lock files a running server would hold.
    locks: Vec<PathBuf>,
    /// Entry name → the file it becomes.
    files: Vec<(String, PathBuf)>,
    /// The restored store.
    store: PathBuf,
    /// What to tell after the restore.
    notes: Vec<String>,
}

impl Plan {
    fn new(manifest: &Manifest, args: &RestoreArgs) -> anyhow::Result<Self> {
        match (&args.to, &args.config) {
            (Some(dir), _) => Ok(Self::site(manifest, dir)),
            (None, Some(config)) => Self::state_only(manifest, config),
            (None, None) => bail!("give --to DIR or --config FILE"),
        }
    }

    /// Everything into the new site directory `dir`.
    fn site(manifest: &Manifest, dir: &Path) -> Self {
        let state = dir.join(&manifest.state_dir);
        let mut notes: Vec<String> = manifest.notes.clone();
        for file in &manifest.not_included {
            notes.push(format!(
                "not in the backup (it was outside the config's directory; the config still \
                 names it): {file}"
            ));
        }
        if manifest.secret_key.is_none() {
            notes.push(match manifest.kind {
                Kind::Server => "the backup holds no secret key: put the backed-up server's key \
                                 where the restored config's secret_key_file (default: \
                                 secret.key in state_dir) points before the start, or the \
                                 server makes a new one and cannot open the store's secrets"
                    .to_owned(),
                Kind::Up => format!(
                    "the backup holds no secret key: put the backed-up server's key at {} \
                     before the start, or the server makes a new one and cannot open the \
                     store's secrets",
                    dir.join("secret.key").display()
                ),
            });
        }
        notes.push(match manifest.kind {
            Kind::Server => format!(
                "the repository's files are not in a backup (restore them from your storage's \
                 backup where the config's `repository` points), then check and start: ferry \
                 server --config {} --check-config",
                dir.join(manifest.config.as_deref().unwrap_or_default())
                    .display()
            ),
            Kind::Up => format!(
                "the repository's files are not in a backup: restore them from your storage's \
                 backup into {}, then start: ferry up --data-dir {}",
                dir.join("repository").display(),
                dir.display()
            ),
        });
        Self {
            target: dir.to_owned(),
            locks: vec![dir.join(LOCK_FILE), state.join(LOCK_FILE)],
            files: manifest
                .entries
                .iter()
                .map(|e| (e.name.clone(), dir.join(&e.name)))
                .collect(),
            store: state.join(STORE_FILE),
            notes,
        }
    }

    /// The store (and the secret key, if archived and missing) into the
    /// state directory of the config at `path`.
    fn state_only(manifest: &Manifest, path: &Path) -> anyhow::Result<Self> {
        let config = ferry_server::ServerConfig::load(path)?;
        let state = config.state_dir.clone();
        let store = state.join(STORE_FILE);
        let mut files = vec![(manifest.store_entry(), store.clone())];
        let mut notes = Vec::new();
        let key = config
            .engine
            .secret_key_file
            .clone()
            .unwrap_or_else(|| state.join("secret.key"));
        match manifest
            .secret_key
            .as_deref()
            .and_then(|n| manifest.entry(n))
        {
            Some(entry) if key.exists() => {
                let mut file =
                    File::open(&key).with_context(|| format!("cannot read {}", key.display()))?;
                let (_, sha256) = hash_reader(&mut file)
                    .with_context(|| format!("cannot read {}", key.display()))?;
                if sha256 != entry.sha256 {
                    return Err(Failure {
                        exit_code: CONFLICT,
                        message: format!(
                            "{} (the config's secret key) is another key than the backup's: the \
                             restored store's secrets could not be opened with it; give the \
                             config a secret_key_file that does not exist yet, or the backup's key",
                            key.display()
                        ),
                    }
                    .into());
                }
                notes.push(format!(
                    "the secret key at {} is the backup's already",
                    key.display()
                ));
            }
            Some(entry) => files.push((entry.name.clone(), key.clone())),
            None if key.exists() => notes.push(format!(
                "the backup holds no secret key: the store's secrets open only if {} is the \
                 key the backed-up server had",
                key.display()
            )),
            None => notes.push(format!(
                "the backup holds no secret key: put the backed-up server's key at {} before \
                 the start, or the server makes a new one and cannot open the store's secrets",
                key.display()
            )),
        }
        let skipped: Vec<&str> = manifest
            .entries
            .iter()
            .filter(|e| !files.iter().any(|(n, _)| *n == e.name))
            .filter(|e| Some(e.name.as_str()) != manifest.secret_key.as_deref())
            .map(|e| e.name.as_str())
            .collect();
        if !skipped.is_empty() {
            notes.push(format!(
                "not written (this config and its files are used instead): {}",
                skipped.join(", ")
            ));
        }
        if manifest.mode == "active-active" && config.node_id == manifest.node_id {
            notes.push(format!(
                "{} has the backed-up server's node_id: if it is still a member of the cluster, \
                 run `ferry cluster remove {}` on a member before you start it and join",
                path.display(),
                config.node_id
            ));
        }
        notes.push(format!(
            "then check and start: ferry server --config {} --check-config",
            path.display()
        ));
        Ok(Self {
            target: state.clone(),
            locks: vec![state.join(LOCK_FILE)],
            files,
            store,
            notes,
        })
    }

    /// Refuses a target a running server holds, or one that is not new or
    /// empty.
    fn check_target(&self) -> anyhow::Result<()> {
        for lock in &self.locks {
            let held = ferry_server::state_lock::holder(lock)
                .with_context(|| format!("cannot check the lock {}", lock.display()))?;
            if let Some(holder) = held {
                return Err(Failure {
                    exit_code: CONFLICT,
                    message: format!(
                        "{} is in use by a running server ({holder} holds {}): a restore never \
                         writes into a running server's directory",
                        self.target.display(),
                        lock.display()
                    ),
                }
                .into());
            }
        }
        let target = &self.target;
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", target.display())),
            Ok(meta) if !meta.is_dir() => Err(Failure {
                exit_code: CONFLICT,
                message: format!("{} exists and is not a directory", target.display()),
            }
            .into()),
            Ok(_) => {
                let mut listing = std::fs::read_dir(target)
                    .with_context(|| format!("cannot read {}", target.display()))?;
                if listing.next().is_some() {
                    return Err(Failure {
                        exit_code: CONFLICT,
                        message: format!(
                            "{} is not empty: a restore writes only into a new or empty \
                             directory, never over files",
                            target.display()
                        ),
                    }
                    .into());
                }
                Ok(())
            }
        }
    }

    /// Prints what was restored and what is left to do.
    fn report(&self, manifest: &Manifest, args: &RestoreArgs) {
        println!(
            "Restored the backup of {} ({}, taken {}) from {} into {}:",
            manifest.node_id,
            manifest.mode,
            manifest.created_at,
            args.from.display(),
            self.target.display()
        );
        for (_, path) in &self.files {
            println!("  {}", path.display());
        }
        if args.join {
            println!(
                "The store keeps its Raft position: start the server, then `ferry cluster join \
                 ADDR --join-token-file F` on it; the leader sends the entries since the backup \
                 (or a snapshot, if it no longer has them)."
            );
        }
        if args.new_cluster {
            println!(
                "The store's Raft position is forgotten: start the servers of the new cluster \
                 (each restored from this backup), then `ferry cluster init` once."
            );
        }
        for note in &self.notes {
            println!("Note: {note}");
        }
    }
}

/// What a restore has written, to take back if it fails.
#[derive(Debug, Default)]
struct Writer {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Writer {
    /// Reads the archive again and writes the planned entries, each
    /// checked against the manifest as it is written.
    fn write(&mut self, from: &Path, manifest: &Manifest, plan: &Plan) -> anyhow::Result<()> {
        let file = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut written = 0;
        for item in archive.entries().context("cannot read the archive")? {
            let mut item = item.context("cannot read the archive")?;
            let Some(name) = entry_name(&item) else {
                bail!("an entry's name is not UTF-8");
            };
            let Some((_, dest)) = plan.files.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let expected = manifest
                .entry(&name)
                .with_context(|| format!("{name} is not in the manifest"))?;
            if let Some(parent) = dest.parent() {
                self.make_dirs(parent)?;
            }
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
            self.files.push(dest.clone());
            let (size, sha256) = hash_copy(&mut item, &mut out)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            if size != expected.size || sha256 != expected.sha256 {
                bail!(
                    "{name} changed in {} while it was restored: nothing is kept",
                    from.display()
                );
            }
            out.sync_all()
                .with_context(|| format!("cannot write {}", dest.display()))?;
            written += 1;
        }
        if written != plan.files.len() {
            bail!(
                "{} changed while it was restored: nothing is kept",
                from.display()
            );
        }
        for dir in plan.files.iter().filter_map(|(_, p)| p.parent()) {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Creates `dir` and its missing parents (mode 0700), recording them.
    fn make_dirs(&mut self, dir: &Path) -> anyhow::Result<()> {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dirs(parent)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.dirs.push(dir.to_owned());
        Ok(())
    }

    /// Removes what was written (best effort): a failed restore leaves
    /// the target as it found it.
    fn undo(&self) {
        for file in &self.files {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = file.as_os_str().to_owned();
                path.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(path));
            }
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `--join` drops the membership, `--new-cluster` the applied position
/// too (see the module's documentation and README's "Backup and
/// restore").
fn forget_position(plan: &Plan, args: &RestoreArgs) -> anyhow::Result<()> {
    let forget: &[&str] = match (args.join, args.new_cluster) {
        // The applied position stays, so the leader sends what follows
        // it. The membership as of the backup goes: until the leader's
        // entries tell it otherwise, the restored server takes itself for
        // no voter, and never stands for election with the vote it lost.
        (true, _) => &[MEMBERSHIP],
        (_, true) => &[APPLIED, MEMBERSHIP],
        _ => return Ok(()),
    };
    let store = ferry_store::Store::open(&plan.store)
        .with_context(|| format!("cannot open the restored store {}", plan.store.display()))?;
    store
        .remove_locals(&forget.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>())
        .with_context(|| format!("cannot update the restored store {}", plan.store.display()))?;
    Ok(())
}

/// `path` made absolute, with `.` and `..` taken out by name (links are
/// not followed: a config's `pki/ca.crt` is archived as that name).
fn normalize(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// `path` relative to `root` as a `/`-separated name, if it lies beneath
/// it ("" for `root` itself).
fn below(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts = rel
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Option<Vec<&str>>>()?;
    Some(parts.join("/"))
}

/// `dir/file` as an archive name (`file` alone when `dir` is "").
fn join_name(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

/// A relative `/`-separated name with no empty, `.` or `..` part.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_stay_beneath_the_site() {
        assert!(safe_name("state/ferry.db"));
        assert!(safe_name("pki/ca.crt"));
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a/."] {
            assert!(!safe_name(bad), "{bad:?} passed");
        }
        let root = Path::new("/srv/site");
        assert_eq!(
            below(root, Path::new("/srv/site/pki/ca.crt")).as_deref(),
            Some("pki/ca.crt")
        );
        assert_eq!(below(root, Path::new("/srv/site")).as_deref(), Some(""));
        assert_eq!(below(root, Path::new("/srv/other/ca.crt")), None);
        assert_eq!(
            normalize(Path::new("/srv/site/../pki/./ca.crt")).unwrap(),
            PathBuf::from("/srv/pki/ca.crt")
        );
        assert_eq!(join_name("", "ferry.db"), "ferry.db");
        assert_eq!(join_name("state", "ferry.db"), "state/ferry.db");
    }

    #[test]
    fn a_manifest_of_a_newer_format_or_with_unsafe_names_is_refused() {
        let entry = |name: &str| Entry {
            name: name.into(),
            size: 0,
            sha256: String::new(),
            what: "store".into(),
        };
        let mut manifest = Manifest {
            format_version: FORMAT_VERSION,
            ferry_version: "0".into(),
            node_id: "n".into(),
            mode: "single".into(),
            created_at: String::new(),
            kind: Kind::Up,
            config: None,
            state_dir: "state".into(),
            secret_key: None,
            entries: vec![entry("state/ferry.db")],
            not_included: Vec::new(),
            notes: Vec::new(),
        };
        parse_manifest(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        manifest.entries.push(entry("../escape"));
        let refused = parse_manifest(&serde_json::to_vec(&manifest).unwrap()).unwrap_err();
        assert!(refused.to_string().contains("not allowed"), "{refused}");
        manifest.entries.pop();
        manifest.format_version = FORMAT_VERSION + 1;
        let refused = parse_manifest(&serde_json::to_vec(&manifest).unwrap()).unwrap_err();
        assert!(refused.to_string().contains("newer ferry"), "{refused}");
    }
}
