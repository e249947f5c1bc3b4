//! The path canonicaliser: the only place a client's path is interpreted.
//!
//! A [`VirtualPath`] is a path inside an account's home, where `/` is the home
//! itself. Parsing never fails open: `..` stops at the home (as in a chroot),
//! absolute paths are taken relative to the home, and components that could be
//! misread further down (NUL and other control characters, `..` hidden
//! between backslashes, names
//! reserved for Ferry's own bookkeeping, over-long names) are refused.
//! Symlinks are the repository's business: it checks each resolved component
//! against the home on disk.

/// Longest accepted path, in bytes, as clients send it.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest accepted single component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Prefix of names Ferry uses for its own files (partial uploads); clients can
/// neither see nor name them.
pub const RESERVED_PREFIX: &str = ".ferry-";

/// Why a client path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A component is longer than [`MAX_COMPONENT_LEN`].
    #[error("a path component is longer than {MAX_COMPONENT_LEN} bytes")]
    ComponentTooLong,
    /// The path contains a NUL or another control character.
    #[error("path contains a control character")]
    ControlCharacter,
    /// A name whose backslash-separated parts include `..` (a traversal to
    /// any tool that reads `\\` as a separator). Other backslashes are
    /// ordinary characters: the repository is POSIX.
    #[error("a name may not contain '..' between backslashes")]
    Backslash,
    /// The path names a file reserved for Ferry itself.
    #[error("name {0:?} is reserved")]
    Reserved(String),
    /// A single name was expected and this is empty, `.`, `..` or contains `/`.
    #[error("{0:?} is not a file name")]
    NotAName(String),
}

/// A canonical path inside an account's home: no `.`, no `..`, no empty
/// components, every component valid. Displayed with a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VirtualPath {
    components: Vec<String>,
}

impl VirtualPath {
    /// The home directory itself (`/`).
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a client path. Relative paths are resolved against `cwd`.
    pub fn parse(input: &str, cwd: &VirtualPath) -> Result<Self, PathError> {
        if input.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let mut components = if input.starts_with('/') {
            Vec::new()
        } else {
            cwd.components.clone()
        };
        for part in input.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    components.pop();
                }
                name => {
                    check_component(name)?;
                    components.push(name.to_owned());
                }
            }
        }
        Ok(Self { components })
    }

    /// Parses a path relative to the home root.
    pub fn parse_absolute(input: &str) -> Result<Self, PathError> {
        Self::parse(input, &Self::root())
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// True for the home directory itself.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The parent directory (the root's parent is the root).
    pub fn parent(&self) -> Self {
        let mut components = self.components.clone();
        components.pop();
        Self { components }
    }

    /// This path with one more component, validated.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        check_component(name)?;
        let mut components = self.components.clone();
        components.push(name.to_owned());
        Ok(Self { components })
    }
}

impl std::fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for c in &self.components {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// True when `name` is reserved for Ferry's own files.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Whether `name` is the temporary name of an upload that clients rename
/// once it is complete: WinSCP's `NAME.filepart`, `NAME.part`, `NAME.tmp`,
/// `NAME.partial`, and rsync's (also through sshfs) `.NAME.XXXXXX`. Routes
/// act on such an upload only once its session renames it.
pub fn is_temporary_upload_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if [".filepart", ".part", ".tmp", ".partial"]
        .iter()
        .any(|suffix| lower.len() > suffix.len() && lower.ends_with(suffix))
    {
        return true;
    }
    // rsync: a dot, the final name, a dot and six random letters or digits.
    match name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once('.'))
    {
        Some((base, tail)) => {
            !base.is_empty() && tail.len() == 6 && tail.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Checks one name as [`VirtualPath::parse`] checks each component: what a
/// listing shows must pass this, so that every listed name can be used.
pub fn check_component(name: &str) -> Result<(), PathError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(PathError::NotAName(name.to_owned()));
    }
    if name.len() > MAX_COMPONENT_LEN {
        return Err(PathError::ComponentTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if name.contains('\\') && name.split('\\').any(|part| part == "..") {
        return Err(PathError::Backslash);
    }
    if is_reserved(name) {
        return Err(PathError::Reserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        VirtualPath::parse_absolute(s)
            .map(|v| v.to_string())
            .unwrap()
    }

    #[test]
    fn dot_dot_stops_at_home() {
        assert_eq!(p("../../etc/passwd"), "/etc/passwd");
        assert_eq!(p("/../.."), "/");
        assert_eq!(p("a/b/../../../c"), "/c");
        assert_eq!(p("a/./b//c/"), "/a/b/c");
    }

    #[test]
    fn relative_paths_use_cwd() {
        let cwd = VirtualPath::parse_absolute("/in/box").unwrap();
        let v = VirtualPath::parse("../out", &cwd).unwrap();
        assert_eq!(v.to_string(), "/in/out");
        let v = VirtualPath::parse("/abs", &cwd).unwrap();
        assert_eq!(v.to_string(), "/abs");
    }

    #[test]
    fn hostile_components_are_refused() {
        for bad in ["a\0b", "a\nb", "..\\..\\x", "x/.ferry-partial.y", "\u{7f}"] {
            assert!(VirtualPath::parse_absolute(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            VirtualPath::parse_absolute(&"a".repeat(256)),
            Err(PathError::ComponentTooLong)
        );
        assert_eq!(
            VirtualPath::parse_absolute(&"a/".repeat(3000)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn temporary_upload_names() {
        for t in [
            "a.csv.filepart",
            "a.PART",
            "x.tmp",
            "b.partial",
            ".data.csv.Ab12Cd",
        ] {
            assert!(is_temporary_upload_name(t), "{t}");
        }
        for f in [
            "a.csv",
            ".part",
            "partial",
            ".profile",
            "report.tar.gz",
            ".a.csv",
        ] {
            assert!(!is_temporary_upload_name(f), "{f}");
        }
    }

    #[test]
    fn backslashes_are_ordinary_characters() {
        // POSIX names: a backslash separates nothing.
        assert_eq!(p("/dir/a\\b.txt"), "/dir/a\\b.txt");
        assert_eq!(p("C:\\Users\\x"), "/C:\\Users\\x");
        for bad in ["..\\x", "a\\..", "a\\..\\b"] {
            assert_eq!(
                VirtualPath::parse_absolute(bad),
                Err(PathError::Backslash),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn encoded_dots_are_plain_names() {
        // SFTP paths are not URL-decoded: these are ordinary names inside home.
        assert_eq!(p("%2e%2e/%2e%2e/etc"), "/%2e%2e/%2e%2e/etc");
        assert_eq!(p("..%2f..%2fetc"), "/..%2f..%2fetc");
    }

    #[test]
    fn parent_join_and_name() {
        let v = VirtualPath::parse_absolute("/a/b").unwrap();
        assert_eq!(v.parent().to_string(), "/a");
        assert_eq!(v.file_name(), Some("b"));
        assert!(VirtualPath::root().parent().is_root());
        assert!(v.join("..").is_err());
        assert!(v.join("a/b").is_err());
        assert_eq!(v.join("c").unwrap().to_string(), "/a/b/c");
        assert!(v.join(".ferry-x").is_err());
    }
}
