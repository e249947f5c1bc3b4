//! What an account may do in the folders of its home.
//!
//! An account has zero or more [`FolderRule`]s, each naming a folder of the
//! home (`/` is the home itself) and the [`Permission`]s granted there. The
//! rule of the deepest folder containing a path decides for that path, so
//! a rule is inherited by every subfolder that has none of its own. An
//! account without rules may do everything, as before permissions existed.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{FerryError, VirtualPath};

/// One thing an account may do in a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// List folders and read the attributes of what is in them.
    List,
    /// Read files.
    Download,
    /// Create files (and set the attributes of files being uploaded).
    Upload,
    /// Replace or append to files that exist.
    Overwrite,
    /// Remove files and empty folders.
    Delete,
    /// Rename files and folders (source and target both need it).
    Rename,
    /// Create folders.
    CreateDirs,
}

impl Permission {
    /// Every permission, in order.
    pub const ALL: [Permission; 7] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Delete,
        Permission::Rename,
        Permission::CreateDirs,
    ];

    /// The name used in the CLI, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::CreateDirs => "create-dirs",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                FerryError::invalid(format!(
                    "unknown permission {s:?} (known: {})",
                    Permission::ALL.map(Permission::as_str).join(", ")
                ))
            })
    }
}

/// Named sets of permissions.
pub const PRESETS: &[(&str, &[Permission])] = &[
    ("all", &Permission::ALL),
    // A drop box: files go in, nothing is seen or taken out.
    ("upload-only", &[Permission::Upload]),
    ("download-only", &[Permission::List, Permission::Download]),
    ("none", &[]),
];

/// Parses a comma-separated list of permissions and preset names
/// (`list,download`, `upload-only`, `download-only,upload`).
pub fn parse_permissions(text: &str) -> Result<BTreeSet<Permission>, FerryError> {
    let mut set = BTreeSet::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match PRESETS.iter().find(|(name, _)| *name == word) {
            Some((_, preset)) => set.extend(preset.iter().copied()),
            None => {
                set.insert(word.parse()?);
            }
        }
    }
    Ok(set)
}

/// The permissions of an account in one folder of its home and in the
/// folders below it that have no rule of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRule {
    /// The account's name.
    pub account: String,
    /// The folder, an absolute path inside the home (`/` for the home).
    pub path: String,
    /// What is allowed there.
    pub allow: BTreeSet<Permission>,
}

/// The rules of one account, ready to answer for a path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// By folder, as parsed components; deepest first.
    rules: Vec<(Vec<String>, BTreeSet<Permission>)>,
}

impl Permissions {
    /// The permissions an account's rules give. Rules whose path does not
    /// parse are skipped (the API never stores one).
    pub fn new(rules: &[FolderRule]) -> Self {
        let mut rules: Vec<_> = rules
            .iter()
            .filter_map(|r| {
                VirtualPath::parse_absolute(&r.path)
                    .ok()
                    .map(|p| (p.components().to_vec(), r.allow.clone()))
            })
            .collect();
        rules.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Self { rules }
    }

    /// Whether the account may do everything everywhere (it has no rule
    /// that takes anything away).
    pub fn unrestricted(&self) -> bool {
        self.rules
            .iter()
            .all(|(_, allow)| allow.len() == Permission::ALL.len())
    }

    /// The permissions that hold at `path` (a file or a folder).
    pub fn at(&self, path: &VirtualPath) -> BTreeSet<Permission> {
        let parts = path.components();
        self.rules
            .iter()
            .find(|(folder, _)| parts.starts_with(folder))
            .map_or_else(
                || Permission::ALL.into_iter().collect(),
                |(_, allow)| allow.clone(),
            )
    }

    /// Whether `permission` holds at `path`.
    pub fn allows(&self, path: &VirtualPath, permission: Permission) -> bool {
        self.at(path).contains(&permission)
    }

    /// `Ok` if `permission` holds at `path`, else the "permission denied"
    /// every protocol answers with.
    pub fn check(&self, path: &VirtualPath, permission: Permission) -> Result<(), FerryError> {
        if self.allows(path, permission) {
            Ok(())
        } else {
            Err(FerryError::denied(format!(
                "permission denied: no {permission} permission for {path}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, allow: &str) -> FolderRule {
        FolderRule {
            account: "a".into(),
            path: path.into(),
            allow: parse_permissions(allow).unwrap(),
        }
    }

    fn v(p: &str) -> VirtualPath {
        VirtualPath::parse_absolute(p).unwrap()
    }

    #[test]
    fn no_rule_allows_everything() {
        let p = Permissions::new(&[]);
        assert!(p.unrestricted());
        for perm in Permission::ALL {
            assert!(p.allows(&v("/x/y"), perm));
        }
    }

    #[test]
    fn the_deepest_rule_decides_and_is_inherited() {
        let p = Permissions::new(&[
            rule("/", "download-only"),
            rule("/in", "upload-only"),
            rule("/in/open", "all"),
        ]);
        assert!(!p.unrestricted());
        assert!(p.allows(&v("/report.csv"), Permission::Download));
        assert!(!p.allows(&v("/report.csv"), Permission::Upload));
        assert!(p.allows(&v("/in/a.dat"), Permission::Upload));
        assert!(!p.allows(&v("/in/a.dat"), Permission::Download));
        assert!(!p.allows(&v("/in/deep/a.dat"), Permission::List));
        assert!(p.allows(&v("/in/open/x/y"), Permission::Delete));
        // A name that merely starts like the folder is not inside it.
        assert!(p.allows(&v("/inbox/a"), Permission::Download));
        assert!(p.check(&v("/in/a"), Permission::List).is_err());
        let e = p.check(&v("/in/a"), Permission::List).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::PermissionDenied);
        assert!(e.message.contains("list"), "{e}");
    }

    #[test]
    fn lists_parse_with_presets_and_refuse_unknown_words() {
        let set = parse_permissions("download-only, upload").unwrap();
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            [Permission::List, Permission::Download, Permission::Upload]
        );
        assert!(parse_permissions("none").unwrap().is_empty());
        assert!(parse_permissions("read").is_err());
    }
}
