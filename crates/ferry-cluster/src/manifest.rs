//! The sync manifests: what `ferry sync` copies from the active server to its
//! standbys in active/passive mode.
//!
//! Three text files live in the `sync/` directory next to the server's config
//! file (the *config directory* is the directory holding that file):
//!
//! * [`SYNC_CONF`] — configuration files to copy: paths or globs (globset
//!   syntax: `*`, `?`, `**`, `[..]`, `{a,b}`) relative to the config
//!   directory, written with `/`. `*` and `?` never match a `/`; `**` does.
//! * [`SYNC_TABLES_CONF`] — store tables to copy, one name per line, each one
//!   of the syncable tables. History tables (transfer log, events) are merged
//!   between servers automatically and may not be listed.
//! * [`SYNC_EXCL`] — what is never copied. A line that is exactly a known table
//!   name excludes that table; any other line is a path glob like those of
//!   `sync.conf`. `table NAME` and `file GLOB` say which one explicitly. A
//!   file glob also excludes everything below a directory it matches. The
//!   file is optional.
//!
//! In all three, `#` starts a comment (a whole line, or the rest of a line
//! when it follows whitespace), blank lines are ignored and entries are
//! trimmed. Every problem is reported with the file name, the 1-based line
//! number and the entry as written.
//!
//! On top of the manifests some files are never synced: see [`Manifests`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use ferry_store::sync::{HISTORY_TABLES, SYNCABLE_TABLES};

/// Name of the directory, next to the server's config file, holding the
/// manifests.
pub const SYNC_DIR: &str = "sync";
/// Name of the manifest listing the configuration files to copy.
pub const SYNC_CONF: &str = "sync.conf";
/// Name of the manifest listing the store tables to copy.
pub const SYNC_TABLES_CONF: &str = "sync_tables.conf";
/// Name of the optional manifest listing what is never copied.
pub const SYNC_EXCL: &str = "sync.excl";
/// Directory, directly in the config directory, where `ferry sync` keeps the
/// files it replaced. Never walked and never written by a peer.
pub const BACKUP_DIR: &str = "sync-backups";

/// Globs (relative to the config directory) that are never synced, whatever
/// the manifests say: node identity and secrets (`*.key`, `*.token`,
/// everything under `pki/`) and the sync backups. The server's own config
/// file is never synced either; its name is given to [`Manifests::parse`].
pub const ALWAYS_EXCLUDED: &[&str] = &["**/*.key", "**/*.token", "pki/**", "sync-backups/**"];

/// A manifest line that could not be used.
///
/// `line` is 1-based; `0` means the whole file (it could not be read), and
/// then `message` names the file itself.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", Location(.file, *.line))]
pub struct ManifestError {
    /// The manifest: a bare name from [`Manifests::parse`], a path under the
    /// sync directory from [`Manifests::load`].
    pub file: PathBuf,
    /// 1-based line number, or 0 for the whole file.
    pub line: usize,
    /// What is wrong, quoting the entry.
    pub message: String,
}

impl ManifestError {
    /// An error about line `line` (1-based) of `file`.
    pub fn at(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        ManifestError {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    /// `file` could not be read: "cannot read FILE: error", line 0.
    pub fn unreadable(file: impl Into<PathBuf>, error: &io::Error) -> Self {
        let file = file.into();
        let message = format!("cannot read {}: {error}", file.display());
        ManifestError {
            file,
            line: 0,
            message,
        }
    }

    /// A problem with `file` as a whole (line 0); the message names the file.
    fn whole_file(file: &Path, what: impl fmt::Display) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            line: 0,
            message: format!("{}: {what}", file.display()),
        }
    }
}

/// Renders the `FILE:LINE: ` prefix of a [`ManifestError`]; nothing for line 0,
/// whose message names the file.
struct Location<'a>(&'a Path, usize);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 == 0 {
            Ok(())
        } else {
            write!(f, "{}:{}: ", self.0.display(), self.1)
        }
    }
}

/// The validated manifests.
///
/// Never synced, whatever the manifests say (node identity and secrets; see
/// [`ALWAYS_EXCLUDED`]):
///
/// * the server's own config file (its name relative to the config directory
///   is given to [`Manifests::load`] / [`Manifests::parse`]);
/// * `**/*.key` and `**/*.token`, at any depth;
/// * anything under `pki/`;
/// * anything under [`BACKUP_DIR`].
#[derive(Debug, Clone)]
pub struct Manifests {
    /// The `sync.conf` patterns, as written but normalised (leading `./`
    /// removed), in file order.
    pub files: Vec<String>,
    /// The tables to copy: those of `sync_tables.conf` not excluded by
    /// `sync.excl`, in the order of the syncable table list.
    pub tables: Vec<String>,
    /// Tables named in `sync.excl` (syncable or history), in the order of the
    /// syncable then history table lists.
    pub excluded_tables: Vec<String>,
    /// The `sync.excl` path patterns, normalised, in file order. The built-in
    /// exclusions are not included (see [`ALWAYS_EXCLUDED`]).
    pub excluded_files: Vec<String>,
    /// `files`, compiled.
    file_set: GlobSet,
    /// `excluded_files`, compiled, each also matching below a directory.
    excl_set: GlobSet,
    /// [`ALWAYS_EXCLUDED`], compiled.
    builtin_set: GlobSet,
    /// The server's own config file, normalised.
    own_config: String,
}

/// The names used in error messages for the three manifests.
struct Names {
    conf: PathBuf,
    tables: PathBuf,
    excl: PathBuf,
}

impl Manifests {
    /// Reads and validates the three files in `sync_dir`. `own_config` is the
    /// server config file's name relative to the config dir (always
    /// excluded).
    ///
    /// A missing `sync.conf` or `sync_tables.conf` is an error naming the
    /// file; a missing `sync.excl` means no exclusions beyond the built-in
    /// ones. Errors name the files as paths under `sync_dir`.
    pub fn load(sync_dir: &Path, own_config: &str) -> Result<Self, ManifestError> {
        let names = Names {
            conf: sync_dir.join(SYNC_CONF),
            tables: sync_dir.join(SYNC_TABLES_CONF),
            excl: sync_dir.join(SYNC_EXCL),
        };
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| ManifestError::unreadable(path, &e))
        };
        let conf = read(&names.conf)?;
        let tables = read(&names.tables)?;
        let excl = match std::fs::read_to_string(&names.excl) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ManifestError::unreadable(&names.excl, &e)),
        };
        Self::parse_named(&conf, &tables, excl.as_deref(), own_config, &names)
    }

    /// Parses from strings (for tests and for [`Manifests::load`]): `conf` is
    /// `sync.conf`, `tables` is `sync_tables.conf` and `excl` is `sync.excl`
    /// (`None` when there is none). Errors name the files by their bare names.
    pub fn parse(
        conf: &str,
        tables: &str,
        excl: Option<&str>,
        own_config: &str,
    ) -> Result<Self, ManifestError> {
        let names = Names {
            conf: PathBuf::from(SYNC_CONF),
            tables: PathBuf::from(SYNC_TABLES_CONF),
            excl: PathBuf::from(SYNC_EXCL),
        };
        Self::parse_named(conf, tables, excl, own_config, &names)
    }

    fn parse_named(
        conf: &str,
        tables: &str,
        excl: Option<&str>,
        own_config: &str,
        names: &Names,
    ) -> Result<Self, ManifestError> {
        // sync.conf: path globs.
        let mut files = Vec::new();
        let mut file_globs = Vec::new();
        let mut seen = HashMap::new();
        for (line, entry) in entries(conf) {
            let at = |message: String| ManifestError::at(&names.conf, line, message);
            let (pattern, glob) = parse_glob(entry).map_err(at)?;
            if let Some(first) = seen.insert(pattern.clone(), line) {
                return Err(at(duplicate(entry, first, line)));
            }
            files.push(pattern);
            file_globs.push(glob);
        }

        // sync.excl: tables and path globs.
        let mut excluded = Vec::new();
        let mut excluded_files = Vec::new();
        let mut excl_globs = Vec::new();
        let mut seen_tables = HashMap::new();
        let mut seen_files = HashMap::new();
        for (line, entry) in excl.map(entries).into_iter().flatten() {
            let at = |message: String| ManifestError::at(&names.excl, line, message);
            match classify_exclusion(entry) {
                Exclusion::Table(name) => {
                    if !is_known_table(name) {
                        return Err(at(format!(
                            "unknown table `{name}` (known: {})",
                            known_list(&[SYNCABLE_TABLES, HISTORY_TABLES])
                        )));
                    }
                    if let Some(first) = seen_tables.insert(name, line) {
                        return Err(at(duplicate(name, first, line)));
                    }
                    excluded.push(name);
                }
                Exclusion::File(text) => {
                    let (pattern, glob) = parse_glob(text).map_err(at)?;
                    if let Some(first) = seen_files.insert(pattern.clone(), line) {
                        return Err(at(duplicate(text, first, line)));
                    }
                    // Also exclude everything below a matching directory.
                    let below = compile_glob(&format!("{pattern}/**"))
                        .map_err(|e| at(format!("`{text}`: invalid glob: {e}")))?;
                    excl_globs.push(glob);
                    excl_globs.push(below);
                    excluded_files.push(pattern);
                }
            }
        }

        // sync_tables.conf: syncable table names.
        let mut listed = HashMap::new();
        for (line, entry) in entries(tables) {
            let at = |message: String| ManifestError::at(&names.tables, line, message);
            if HISTORY_TABLES.contains(&entry) {
                return Err(at(format!(
                    "`{entry}` is history: it is merged between servers automatically, never synced"
                )));
            }
            if !SYNCABLE_TABLES.contains(&entry) {
                return Err(at(format!(
                    "unknown table `{entry}` (known: {})",
                    known_list(&[SYNCABLE_TABLES])
                )));
            }
            if let Some(first) = listed.insert(entry, line) {
                return Err(at(duplicate(entry, first, line)));
            }
        }

        let tables = SYNCABLE_TABLES
            .iter()
            .filter(|t| listed.contains_key(*t) && !excluded.contains(t))
            .map(|t| t.to_string())
            .collect();
        let excluded_tables = SYNCABLE_TABLES
            .iter()
            .chain(HISTORY_TABLES)
            .filter(|t| excluded.contains(t))
            .map(|t| t.to_string())
            .collect();

        let mut builtin = Vec::new();
        for pattern in ALWAYS_EXCLUDED {
            let glob = compile_glob(pattern).map_err(|e| {
                ManifestError::whole_file(
                    Path::new("built-in exclusions"),
                    format!("`{pattern}`: {e}"),
                )
            })?;
            builtin.push(glob);
        }

        let manifests = Manifests {
            file_set: build_set(file_globs)
                .map_err(|e| ManifestError::whole_file(&names.conf, e))?,
            excl_set: build_set(excl_globs)
                .map_err(|e| ManifestError::whole_file(&names.excl, e))?,
            builtin_set: build_set(builtin)
                .map_err(|e| ManifestError::whole_file(Path::new("built-in exclusions"), e))?,
            files,
            tables,
            excluded_tables,
            excluded_files,
            own_config: strip_dot_slash(own_config.trim()).to_string(),
        };

        for pattern in &manifests.files {
            if !has_glob_syntax(pattern) && manifests.is_excluded_file(pattern) {
                tracing::warn!(
                    "{}: `{pattern}` is excluded and will not be synced",
                    names.conf.display()
                );
            }
        }
        Ok(manifests)
    }

    /// Walks `config_dir` and returns the relative paths (with `/`) of regular
    /// files matched by `files` and not excluded, sorted.
    ///
    /// Symbolic links are never followed (they are skipped, so none can lead
    /// outside the config directory), neither are other non-regular files;
    /// the [`BACKUP_DIR`] directory is skipped, and so are names that are not
    /// UTF-8 or that [`Manifests::check_incoming_path`] would refuse. Every
    /// returned path therefore passes `check_incoming_path`.
    pub fn matching_files(&self, config_dir: &Path) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        let mut pending = vec![(config_dir.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let listing = std::fs::read_dir(&dir).map_err(|e| with_path(&dir, e))?;
            for entry in listing {
                let entry = entry.map_err(|e| with_path(&dir, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    tracing::warn!("skipping {}: name is not UTF-8", entry.path().display());
                    continue;
                };
                let relative = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                // `DirEntry::file_type` does not follow symbolic links.
                let kind = entry.file_type().map_err(|e| with_path(&entry.path(), e))?;
                if kind.is_dir() {
                    if relative != BACKUP_DIR {
                        pending.push((entry.path(), relative));
                    }
                } else if kind.is_file() && self.check_incoming_path(&relative).is_ok() {
                    found.push(relative);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Whether `relative` (a path with `/`) is excluded, by `sync.excl` or by
    /// the built-in rules (see [`Manifests`]).
    pub fn is_excluded_file(&self, relative: &str) -> bool {
        let relative = strip_dot_slash(relative);
        (!self.own_config.is_empty() && relative == self.own_config)
            || self.builtin_set.is_match(relative)
            || self.excl_set.is_match(relative)
    }

    /// Checks a relative path received from a peer before writing it: same
    /// rules as `sync.conf` entries (not absolute, no `..`, no backslash, no
    /// empty component), not excluded, and matched by one of `files`.
    pub fn check_incoming_path(&self, relative: &str) -> Result<(), String> {
        let path = normalise(relative)?;
        if !self.own_config.is_empty() && path == self.own_config {
            return Err(format!(
                "`{relative}` is this server's own config file: never synced"
            ));
        }
        if self.builtin_set.is_match(&path) {
            return Err(format!(
                "`{relative}` is node identity or a secret: never synced"
            ));
        }
        if self.excl_set.is_match(&path) {
            return Err(format!("`{relative}` is excluded by {SYNC_EXCL}"));
        }
        if !self.file_set.is_match(&path) {
            return Err(format!("`{relative}` is not listed in {SYNC_CONF}"));
        }
        Ok(())
    }
}

/// The entries of a manifest: (1-based line number, trimmed entry), without
/// comments and blank lines.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let entry = strip_comment(line).trim();
        (!entry.is_empty()).then_some((i + 1, entry))
    })
}

/// `line` without its comment: from a `#` at the start of the (trimmed) line
/// or after whitespace.
fn strip_comment(line: &str) -> &str {
    let mut previous_blank = true;
    for (i, c) in line.char_indices() {
        if c == '#' && previous_blank {
            return &line[..i];
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// A `sync.excl` entry.
enum Exclusion<'a> {
    Table(&'a str),
    File(&'a str),
}

/// Tells a table from a path in `sync.excl`: an explicit `table ` or `file `
/// prefix, otherwise a known table name is a table.
fn classify_exclusion(entry: &str) -> Exclusion<'_> {
    if let Some((word, rest)) = entry.split_once(char::is_whitespace) {
        let rest = rest.trim();
        match word {
            "table" => return Exclusion::Table(rest),
            "file" => return Exclusion::File(rest),
            _ => {}
        }
    }
    if is_known_table(entry) {
        Exclusion::Table(entry)
    } else {
        Exclusion::File(entry)
    }
}

fn is_known_table(name: &str) -> bool {
    SYNCABLE_TABLES.contains(&name) || HISTORY_TABLES.contains(&name)
}

fn known_list(lists: &[&[&str]]) -> String {
    lists
        .iter()
        .flat_map(|l| l.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

fn duplicate(entry: &str, first: usize, line: usize) -> String {
    format!("`{entry}` is listed twice (lines {first} and {line})")
}

/// Validates and normalises a path glob from `sync.conf` or `sync.excl`, and
/// compiles it.
fn parse_glob(entry: &str) -> Result<(String, Glob), String> {
    let pattern = normalise(entry)?;
    let glob = compile_glob(&pattern).map_err(|e| format!("`{entry}`: invalid glob: {e}"))?;
    Ok((pattern, glob))
}

fn compile_glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map_err(|e| e.kind().to_string())
}

fn build_set(globs: Vec<Glob>) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| format!("cannot compile the patterns: {e}"))
}

fn strip_dot_slash(path: &str) -> &str {
    let mut path = path;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path
}

/// Checks a relative path (or path glob) and returns it without leading `./`.
/// The errors quote `entry`.
fn normalise(entry: &str) -> Result<String, String> {
    if entry.is_empty() {
        return Err("empty path".to_string());
    }
    if entry.starts_with('/') {
        return Err(format!(
            "`{entry}` is an absolute path: paths are relative to the config directory"
        ));
    }
    if entry.contains('\\') {
        return Err(format!(
            "`{entry}` contains a backslash: separate components with `/`"
        ));
    }
    if entry.chars().any(char::is_control) {
        return Err(format!("`{entry}` contains a control character"));
    }
    let path = strip_dot_slash(entry);
    if path.is_empty() || path == "." {
        return Err(format!(
            "`{entry}` names the config directory itself, not a file"
        ));
    }
    let components: Vec<&str> = path.split('/').collect();
    let last = components.len() - 1;
    for (i, component) in components.iter().enumerate() {
        match *component {
            ".." => {
                return Err(format!(
                    "`{entry}` has a `..` component: paths must stay inside the config directory"
                ))
            }
            "." => return Err(format!("`{entry}` has a `.` component inside the path")),
            "" if i == last => {
                return Err(format!(
                    "`{entry}` ends with `/`: name files (use `dir/**` for all files below a directory)"
                ))
            }
            "" => return Err(format!("`{entry}` has an empty component (`//`)")),
            _ => {}
        }
    }
    Ok(path.to_string())
}

fn has_glob_syntax(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

fn with_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "\
# files to copy
server-common.toml
./partners/*.toml   # partner definitions
routes/**/*.toml

";
    const TABLES: &str = "\
accounts
# keys too
account_keys  # trailing comment
routes
partners
";

    fn parse(conf: &str, tables: &str, excl: Option<&str>) -> Result<Manifests, ManifestError> {
        Manifests::parse(conf, tables, excl, "server.toml")
    }

    fn err(conf: &str, tables: &str, excl: Option<&str>) -> ManifestError {
        parse(conf, tables, excl).unwrap_err()
    }

    #[test]
    fn valid_manifests_parse() {
        let m = parse(CONF, TABLES, None).unwrap();
        assert_eq!(
            m.files,
            ["server-common.toml", "partners/*.toml", "routes/**/*.toml"]
        );
        // SYNCABLE_TABLES order, not file order.
        assert_eq!(m.tables, ["accounts", "account_keys", "partners", "routes"]);
        assert!(m.excluded_tables.is_empty());
        assert!(m.excluded_files.is_empty());
    }

    #[test]
    fn comments_and_blank_lines() {
        let conf = "\n   \n# comment\n  # indented comment\n\ta.toml\t# tab comment\nb#c.toml\n";
        let m = parse(conf, "\n# none\n", Some("# only comments\n\n")).unwrap();
        assert_eq!(m.files, ["a.toml", "b#c.toml"]);
        assert!(m.tables.is_empty());
        assert!(m.excluded_files.is_empty());
        assert!(m.excluded_tables.is_empty());
    }

    #[test]
    fn table_lists_are_disjoint() {
        for t in HISTORY_TABLES {
            assert!(!SYNCABLE_TABLES.contains(t));
        }
    }

    #[test]
    fn absolute_path_is_rejected_with_file_and_line() {
        let e = err("a.toml\n\n/etc/x\n", TABLES, None);
        assert_eq!(e.file, Path::new("sync.conf"));
        assert_eq!(e.line, 3);
        assert!(e.message.contains("`/etc/x`"), "{e}");
        assert!(e.to_string().starts_with("sync.conf:3: "), "{e}");
    }

    #[test]
    fn dotdot_is_rejected() {
        for entry in ["../x", "a/../b", "a/..", "./../x"] {
            let e = err(&format!("# c\n{entry}\n"), TABLES, None);
            assert_eq!((e.file.as_path(), e.line), (Path::new("sync.conf"), 2));
            assert!(e.message.contains(&format!("`{entry}`")), "{e}");
            assert!(e.message.contains("`..`"), "{e}");
        }
    }

    #[test]
    fn backslash_empty_component_and_bad_glob_are_rejected() {
        let e = err("a\\b\n", TABLES, None);
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.conf"), 1));
        assert!(e.message.contains("backslash"), "{e}");

        let e = err("ok\na//b\n", TABLES, None);
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("`a//b`") && e.message.contains("empty"),
            "{e}"
        );

        let e = err("ok\ndir/\n", TABLES, None);
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`dir/`"), "{e}");

        let e = err("ok\n\nconf/[ab.toml\n", TABLES, None);
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.conf"), 3));
        assert!(e.message.contains("`conf/[ab.toml`: invalid glob"), "{e}");

        let e = err("a/{b,c\n", TABLES, None);
        assert!(e.message.contains("invalid glob"), "{e}");
    }

    #[test]
    fn leading_dot_slash_is_stripped() {
        let m = parse("./a.toml\n././b/*.toml\n", "", None).unwrap();
        assert_eq!(m.files, ["a.toml", "b/*.toml"]);
        let e = err("./\n", "", None);
        assert_eq!(e.line, 1);
    }

    #[test]
    fn duplicate_files_name_both_lines() {
        let e = err("a.toml\nb.toml\n./a.toml\n", "", None);
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.conf"), 3));
        assert!(e.message.contains("lines 1 and 3"), "{e}");
    }

    #[test]
    fn unknown_table_is_rejected() {
        let e = err(CONF, "accounts\n\nfoo\n", None);
        assert_eq!(
            (e.file.as_path(), e.line),
            (Path::new("sync_tables.conf"), 3)
        );
        assert_eq!(
            e.message,
            "unknown table `foo` (known: accounts, account_keys, account_tokens, folder_permissions, \
             virtual_folders, folder_mounts, partners, routes, schedules, monitors, notify_endpoints, \
             notify_rules, settings, admins, admin_tokens, retention_policies)"
        );
    }

    #[test]
    fn history_table_is_rejected() {
        let e = err(CONF, "accounts\ntransfers  # no\n", None);
        assert_eq!(
            (e.file.as_path(), e.line),
            (Path::new("sync_tables.conf"), 2)
        );
        assert_eq!(
            e.to_string(),
            "sync_tables.conf:2: `transfers` is history: it is merged between servers \
             automatically, never synced"
        );
    }

    #[test]
    fn duplicate_table_names_both_lines() {
        let e = err(CONF, "accounts\nroutes\n# x\naccounts\n", None);
        assert_eq!(
            (e.file.as_path(), e.line),
            (Path::new("sync_tables.conf"), 4)
        );
        assert!(e.message.contains("`accounts`"), "{e}");
        assert!(e.message.contains("lines 1 and 4"), "{e}");
    }

    #[test]
    fn excl_tables_and_globs() {
        let excl = "\
transfers
accounts        # bare table name
table routes
file partners   # a file that happens to share a table's name
pki-extra/*.pem
logs
";
        let m = parse(CONF, TABLES, Some(excl)).unwrap();
        assert_eq!(m.excluded_tables, ["accounts", "routes", "transfers"]);
        assert_eq!(m.excluded_files, ["partners", "pki-extra/*.pem", "logs"]);
        // Excluded tables disappear from `tables`.
        assert_eq!(m.tables, ["account_keys", "partners"]);
        assert!(m.is_excluded_file("partners"));
        assert!(m.is_excluded_file("pki-extra/a.pem"));
        assert!(!m.is_excluded_file("pki-extra/sub/a.pem"));
        // A directory entry excludes everything below it.
        assert!(m.is_excluded_file("logs"));
        assert!(m.is_excluded_file("logs/a/b.toml"));
        assert!(!m.is_excluded_file("logs2/a.toml"));
        assert!(m.is_excluded_file("partners/x"));
    }

    #[test]
    fn excl_errors_name_sync_excl() {
        let e = err(CONF, TABLES, Some("accounts\ntable nope\n"));
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.excl"), 2));
        assert!(
            e.message
                .starts_with("unknown table `nope` (known: accounts,"),
            "{e}"
        );
        assert!(e.message.contains("schedule_firings"), "{e}");

        let e = err(CONF, TABLES, Some("# x\nfile ../secret\n"));
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.excl"), 2));
        assert!(e.message.contains("`../secret`"), "{e}");

        let e = err(CONF, TABLES, Some("/etc/shadow\n"));
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.excl"), 1));

        let e = err(CONF, TABLES, Some("routes\ntable routes\n"));
        assert_eq!((e.file.as_path(), e.line), (Path::new("sync.excl"), 2));
        assert!(e.message.contains("lines 1 and 2"), "{e}");
    }

    #[test]
    fn builtin_exclusions() {
        let m = parse("**\n", "", None).unwrap();
        for path in [
            "server.toml",
            "./server.toml",
            "node.key",
            "a/b/node.key",
            "admin.token",
            "pki/ca.crt",
            "pki/sub/x",
            "sync-backups/server-common.toml",
        ] {
            assert!(m.is_excluded_file(path), "{path}");
        }
        for path in [
            "other.toml",
            "a/server.toml",
            "keys/node.pub",
            "x/pki/ca.crt",
        ] {
            assert!(!m.is_excluded_file(path), "{path}");
        }
    }

    #[test]
    fn check_incoming_path_rules() {
        let m = parse(CONF, TABLES, Some("partners/secret.toml\n")).unwrap();
        assert_eq!(m.check_incoming_path("server-common.toml"), Ok(()));
        assert_eq!(m.check_incoming_path("partners/acme.toml"), Ok(()));
        assert_eq!(m.check_incoming_path("routes/a/b/r.toml"), Ok(()));

        for (path, why) in [
            ("../x", "`..`"),
            ("partners/../../x.toml", "`..`"),
            ("/etc/passwd", "absolute"),
            ("pki/a.key", "never synced"),
            ("routes/pki.key", "never synced"),
            ("server.toml", "own config"),
            ("partners/secret.toml", "excluded by sync.excl"),
            ("other.toml", "not listed in sync.conf"),
            ("partners/sub/acme.toml", "not listed in sync.conf"),
            ("partners\\acme.toml", "backslash"),
            ("partners//acme.toml", "empty component"),
            ("", "empty"),
        ] {
            let e = m.check_incoming_path(path).unwrap_err();
            assert!(e.contains(why), "{path}: {e}");
        }
    }

    #[test]
    fn matching_files_walks_without_symlinks_or_secrets() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("stolen.toml"), "x").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/a.toml"), "x").unwrap();

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["partners", "routes/eu/deep", "pki", "sync", "sync-backups"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "server.toml",
            "server-common.toml",
            "partners/acme.toml",
            "partners/beta.toml",
            "partners/notes.txt",
            "routes/top.toml",
            "routes/eu/deep/r.toml",
            "pki/node.key",
            "pki/ca.toml",
            "sync/sync.conf",
            "sync-backups/server-common.toml",
            "unlisted.toml",
        ] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(
                outside.path().join("stolen.toml"),
                root.join("partners/link.toml"),
            )
            .unwrap();
            symlink(outside.path().join("dir"), root.join("routes/linked")).unwrap();
            symlink("/etc/passwd", root.join("server-other.toml")).unwrap();
        }

        let conf = "server*.toml\npartners/*.toml\nroutes/**/*.toml\npki/*\nsync-backups/*\n";
        let m = Manifests::parse(conf, "", Some("partners/beta.toml\n"), "server.toml").unwrap();
        let found = m.matching_files(root).unwrap();
        assert_eq!(
            found,
            [
                "partners/acme.toml",
                "routes/eu/deep/r.toml",
                "routes/top.toml",
                "server-common.toml",
            ]
        );
        for path in &found {
            assert_eq!(m.check_incoming_path(path), Ok(()));
        }
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let sync = dir.path().join(SYNC_DIR);
        std::fs::create_dir(&sync).unwrap();

        let e = Manifests::load(&sync, "server.toml").unwrap_err();
        assert_eq!((e.file.clone(), e.line), (sync.join(SYNC_CONF), 0));
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read {}: ", sync.join(SYNC_CONF).display())),
            "{e}"
        );

        std::fs::write(sync.join(SYNC_CONF), CONF).unwrap();
        let e = Manifests::load(&sync, "server.toml").unwrap_err();
        assert_eq!((e.file.clone(), e.line), (sync.join(SYNC_TABLES_CONF), 0));

        // No sync.excl: no exclusions.
        std::fs::write(sync.join(SYNC_TABLES_CONF), TABLES).unwrap();
        let m = Manifests::load(&sync, "server.toml").unwrap();
        assert!(m.excluded_files.is_empty() && m.excluded_tables.is_empty());
        assert_eq!(m.tables.len(), 4);

        std::fs::write(sync.join(SYNC_EXCL), "accounts\n/abs\n").unwrap();
        let e = Manifests::load(&sync, "server.toml").unwrap_err();
        assert_eq!((e.file.clone(), e.line), (sync.join(SYNC_EXCL), 2));
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: ", sync.join(SYNC_EXCL).display())),
            "{e}"
        );
    }

    #[test]
    fn shipped_placeholder_manifests_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sync");
        Manifests::load(&root, "server.toml").unwrap();
    }
}
