//! Virtual folders: one directory of the repository seen in the homes of
//! several accounts, at a path of each one's choosing, with the permissions
//! each has there (a partner's outbox shared with an internal team).
//!
//! A [`VirtualFolder`] names the directory; a [`Mount`] puts it into one
//! account's home. Inside a home, paths at or below a mount's path lead into
//! the folder; the mount's permissions are a folder rule at its path, which
//! deeper rules of the account may refine.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::permissions::{FolderRule, Permission};
use crate::{FerryError, UnixMillis, VirtualPath};

/// A directory of the repository that can be mounted into homes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualFolder {
    /// Its name (what mounts refer to).
    pub name: String,
    /// The directory, relative to the repository (`shared/acme-out`).
    pub path: String,
    /// When it was created.
    pub created_at: UnixMillis,
}

/// A virtual folder mounted into one account's home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The account.
    pub account: String,
    /// The virtual folder's name.
    pub folder: String,
    /// Where it appears, absolute inside the home (`/outbox`).
    pub path: String,
    /// What the account may do in it.
    pub allow: BTreeSet<Permission>,
}

impl Mount {
    /// The mount's permissions as the folder rule at its path.
    pub fn rule(&self) -> FolderRule {
        FolderRule {
            account: self.account.clone(),
            path: self.path.clone(),
            allow: self.allow.clone(),
        }
    }
}

/// An account's own folder rules with its mounts' rules added; a mount's
/// rule replaces an own rule of the same path.
pub fn rules_with_mounts(own: &[FolderRule], mounts: &[Mount]) -> Vec<FolderRule> {
    let mut rules: Vec<FolderRule> = own
        .iter()
        .filter(|r| !mounts.iter().any(|m| same_path(&m.path, &r.path)))
        .cloned()
        .collect();
    rules.extend(mounts.iter().map(Mount::rule));
    rules
}

fn same_path(a: &str, b: &str) -> bool {
    match (
        VirtualPath::parse_absolute(a),
        VirtualPath::parse_absolute(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Checks that `path` may be a mount point of an account whose other
/// mounts are at `others`: not the home itself, and neither inside nor
/// above another mount (one path leads to one place). Returns it canonical.
pub fn check_mount_path(path: &str, others: &[String]) -> Result<String, FerryError> {
    let v = VirtualPath::parse_absolute(path)?;
    if v.is_root() {
        return Err(FerryError::invalid(
            "a virtual folder cannot be mounted at the home itself",
        ));
    }
    for other in others {
        let Ok(o) = VirtualPath::parse_absolute(other) else {
            continue;
        };
        let (a, b) = (v.components(), o.components());
        if a.starts_with(b) || b.starts_with(a) {
            return Err(FerryError::new(
                crate::ErrorKind::Conflict,
                format!("{v} overlaps the mount at {o}: mounts may not nest"),
            ));
        }
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::parse_permissions;

    fn mount(path: &str, allow: &str) -> Mount {
        Mount {
            account: "a".into(),
            folder: "f".into(),
            path: path.into(),
            allow: parse_permissions(allow).unwrap(),
        }
    }

    #[test]
    fn a_mount_rule_replaces_an_own_rule_of_its_path() {
        let own = [
            FolderRule {
                account: "a".into(),
                path: "/".into(),
                allow: parse_permissions("upload-only").unwrap(),
            },
            FolderRule {
                account: "a".into(),
                path: "/shared/".into(),
                allow: parse_permissions("none").unwrap(),
            },
        ];
        let rules = rules_with_mounts(&own, &[mount("/shared", "download-only")]);
        assert_eq!(rules.len(), 2);
        let p = crate::Permissions::new(&rules);
        let v = |s| VirtualPath::parse_absolute(s).unwrap();
        assert!(p.allows(&v("/shared/x"), Permission::Download));
        assert!(!p.allows(&v("/x"), Permission::Download));
    }

    #[test]
    fn mount_points_may_not_nest_or_be_the_home() {
        let others = vec!["/out".to_owned(), "/a/b".to_owned()];
        assert_eq!(check_mount_path("/in/", &others).unwrap(), "/in");
        assert!(check_mount_path("/", &others).is_err());
        assert!(check_mount_path("/out/deeper", &others).is_err());
        assert!(check_mount_path("/a", &others).is_err());
        assert!(check_mount_path("/a/b", &others).is_err());
        assert!(check_mount_path("/a/c", &others).is_ok());
        assert!(check_mount_path("/outbox", &others).is_ok());
        assert!(check_mount_path("/x/../..", &others).is_err());
    }
}
